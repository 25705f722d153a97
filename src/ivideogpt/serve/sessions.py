"""Play sessions: one per browser tab, all sharing one WorldModel (one copy of the weights).

A session is driven by JSON messages (the page's WebSocket) and answers with JSON messages; nothing here knows
about HTTP, so the protocol is tested without a server. A WorldModel holds one rollout at a time: each session
keeps its own rollout state (KV cache, generator, frames) and puts it back into the model, under the
playground's lock, for each step -- as the Gymnasium env does when several envs share a model.

Client -> server:
  {"type": "start", "episode": int | null, "seed": int | null}   new context (null: a random held-out episode)
  {"type": "reset"}                                              the same context and seed again
  {"type": "step", "action": [A floats] | null}                  one world-model step (null: action-free)
  {"type": "settings", "temperature": float, "greedy": bool}
  {"type": "export", "format": "gif" | "mp4"}                    the session so far as a video file
Server -> client: "info" (once), "context", "frame", "export", "error" (the session goes on after an error).
Frames are base64 of raw uint8 RGB bytes [H, W, 3], so the page shows (and a test can read) the exact pixels.
"""

from __future__ import annotations

import base64
import io
import json
import math
import threading
import time

import numpy as np
import torch

from ..data.episodes import EpisodeDataset
from ..errors import ConfigError, DataError
from .ground_truth import GroundTruth

MAX_RECORDED = 3000  # frames kept per session for "record" (about 5 min at 10 steps/s)
MAX_MESSAGE = 64 * 1024  # bytes; a step message is ~100


class PlayError(ValueError):
    """A bad message: reported to the page, and the session goes on."""


def encode_frame(frame: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(frame, dtype=np.uint8).tobytes()).decode("ascii")


def decode_frame(text: str, resolution: int) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), np.uint8).reshape(resolution, resolution, 3)


class Playground:
    """The shared part: the world model, its dataset of contexts, the session count and the model lock."""

    def __init__(self, world_model, data=None, *, context: int | None = None, max_sessions: int = 4,
                 split: str = "val", env: str | None = None, threads: int | None = None):
        self.wm, self.env = world_model.eval(), env
        # Torch's thread count is per OS thread: set where the model runs (the server's worker thread).
        self.threads = threads
        self.resolution = int(self.wm.tokenizer.config.resolution)
        t0 = self.wm.context_frames
        self.context = int(context) if context is not None else min(max(2, t0), t0 + self.wm.max_steps - 1)
        if not t0 <= self.context < t0 + self.wm.max_steps:
            raise ConfigError(f"--context {self.context}: this model starts from {t0} to "
                              f"{t0 + self.wm.max_steps - 1} real frames")
        if data is None:
            raise ConfigError("play needs a dataset of context frames: pass --data DIR (a collected or imported "
                              "dataset with the model's frame size)")
        self.data = data if isinstance(data, EpisodeDataset) else EpisodeDataset(data)
        if tuple(self.data.image_size) != (self.resolution, self.resolution):
            raise DataError(f"{self.data.path}: frames are {list(self.data.image_size)}, the world model takes "
                            f"[{self.resolution}, {self.resolution}]")
        if self.data.action_dim != self.wm.action_dim and self.wm.action_dim:
            raise DataError(f"{self.data.path}: actions have {self.data.action_dim} dimensions, the world model "
                            f"takes {self.wm.action_dim}")
        ok = [i for i in range(len(self.data)) if self.data.length(i) >= self.context]
        held_out = sorted(set(self.data.split(split)) & set(ok))
        self.episodes, self.split = (held_out, split) if held_out else (ok, "all")
        self.playable = set(ok)  # a chosen episode may be any long enough one; random ones are held out
        if not self.episodes:
            raise DataError(f"{self.data.path}: no episode has the {self.context} frames a context needs")
        self.max_sessions = int(max_sessions)
        self.lock = threading.Lock()  # one rollout in the model at a time
        self._open = 0
        self._count_lock = threading.Lock()

    def info(self) -> dict:
        stats = self.data.meta.get("action_stats") or {}
        a = self.wm.action_dim
        lo = [float(v) for v in stats.get("min", [-1.0] * a)][:a]
        hi = [float(v) for v in stats.get("max", [1.0] * a)][:a]
        return {"type": "info", "resolution": self.resolution, "action_dim": a, "action_min": lo, "action_max": hi,
                "context_frames": self.wm.context_frames, "context": self.context, "max_steps": self.wm.max_steps,
                "fps": float(self.data.meta.get("fps", 10)), "episodes": self.episodes, "split": self.split,
                "data": str(self.data.path), "has_reward": bool(self.wm.transformer.config.use_reward)}

    def open(self) -> Session:
        with self._count_lock:
            if self._open >= self.max_sessions:
                raise PlayError(f"too many sessions: this server plays at most {self.max_sessions} at once "
                                "(close a tab, or restart with a larger --max-sessions)")
            self._open += 1
        return Session(self)

    def close(self, session: Session) -> None:
        with self._count_lock:
            self._open -= 1


class Session:
    def __init__(self, playground: Playground):
        self.pg = playground
        self.rng = np.random.default_rng()
        self.temperature, self.top_k = 1.0, 100
        self.rollout = None  # this session's WorldModel state (see the module docstring)
        self.truth: GroundTruth | None = None
        self.episode = self.seed = None
        self.steps, self.recorded = 0, []

    # ---------------------------------------------------------------------------------------- messages
    def handle(self, text: str) -> dict:
        """One message in, one reply out; a bad message gives an "error" reply and changes nothing."""
        if self.pg.threads and torch.get_num_threads() != self.pg.threads:
            torch.set_num_threads(self.pg.threads)
        try:
            if len(text) > MAX_MESSAGE:
                raise PlayError(f"message too long ({len(text)} bytes, at most {MAX_MESSAGE})")
            try:
                msg = json.loads(text)
            except ValueError as e:
                raise PlayError(f"malformed message (not JSON: {e})") from None
            if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
                raise PlayError('malformed message: expected a JSON object with a "type"')
            kind = msg["type"]
            handler = {"start": self.start, "reset": self.reset, "step": self.step, "settings": self.settings,
                       "export": self.export}.get(kind)
            if handler is None:
                raise PlayError(f"unknown message type {kind!r}; expected start, reset, step, settings or export")
            return handler(msg)
        except PlayError as e:
            return {"type": "error", "message": str(e)}

    def start(self, msg: dict) -> dict:
        pg = self.pg
        episode = msg.get("episode")
        if episode is None:
            episode = pg.episodes[int(self.rng.integers(len(pg.episodes)))]
        elif not _is_int(episode) or episode not in pg.playable:
            raise PlayError(f"episode: expected an episode index of {pg.data.path} with at least {pg.context} "
                            f"frames (0..{len(pg.data) - 1}), got {episode!r}")
        seed = msg.get("seed")
        if seed is None:
            seed = int(self.rng.integers(2**31))
        elif not _is_int(seed) or not 0 <= seed < 2**62:
            raise PlayError(f"seed: expected an integer in [0, 2**62), got {seed!r}")
        self.episode, self.seed = int(episode), int(seed)
        n = pg.context
        self.context = pg.data.frames(self.episode, 0, n)
        acts = pg.data.episode(self.episode)["actions"][: n - pg.wm.context_frames]
        self.context_actions = acts if pg.wm.action_dim else None
        self.truth = GroundTruth(pg.data, self.episode, n, pg.env) if pg.wm.action_dim else None
        return self.reset({})

    def reset(self, msg: dict) -> dict:
        if self.episode is None:
            raise PlayError('no context yet: send {"type": "start"} first')
        pg = self.pg
        ca = None if self.context_actions is None else self.context_actions[None]
        with pg.lock:
            pg.wm.reset(self.context[None], context_actions=ca, temperature=self.temperature, top_k=self.top_k,
                        seed=self.seed)
            self.rollout = pg.wm._state
        truth = self.truth.restart() if self._has_truth() else None
        self.steps, self.recorded = 0, [(self.context[-1], truth)]
        reason = "no ground truth: an action-free model" if self.truth is None else self.truth.reason
        return {"type": "context", "episode": self.episode, "seed": self.seed,
                "frames": [encode_frame(f) for f in self.context],
                "truth": None if truth is None else encode_frame(truth), "truth_reason": reason,
                "temperature": self.temperature}

    def step(self, msg: dict) -> dict:
        if self.rollout is None:
            raise PlayError('no context yet: send {"type": "start"} first')
        pg = self.pg
        a = self._action(msg.get("action"))
        t = time.perf_counter()
        with pg.lock:
            pg.wm._state = self.rollout
            out = pg.wm.step(None if a is None else a[None])
            self.rollout = pg.wm._state
        ms = (time.perf_counter() - t) * 1e3
        self.steps += 1
        frame = out.frames[0]
        reply = {"type": "frame", "step": self.steps, "frame": encode_frame(frame), "ms": round(ms, 2),
                 "reward": None if out.rewards is None else float(out.rewards[0]), "truth": None,
                 "truth_reward": None}
        truth_frame = None
        if self._has_truth():
            truth_frame, reward = self.truth.step(a)
            reply.update(truth=encode_frame(truth_frame), truth_reward=reward)
        self.recorded = self.recorded[-MAX_RECORDED + 1:] + [(frame, truth_frame)]
        return reply

    def settings(self, msg: dict) -> dict:
        temp = msg.get("temperature", self.temperature)
        if isinstance(temp, bool) or not isinstance(temp, (int, float)) or not math.isfinite(temp) or temp < 0:
            raise PlayError(f"temperature: expected a number >= 0, got {temp!r}")
        greedy = msg.get("greedy", False)
        if not isinstance(greedy, bool):
            raise PlayError(f"greedy: expected true or false, got {greedy!r}")
        self.temperature = 0.0 if greedy else float(temp)
        if self.rollout is not None:
            self.rollout["temperature"] = self.temperature  # from the next step on
        return {"type": "settings", "temperature": self.temperature}

    def export(self, msg: dict) -> dict:
        fmt = msg.get("format", "gif")
        if fmt not in ("gif", "mp4"):
            raise PlayError(f"format: expected 'gif' or 'mp4', got {fmt!r}")
        if not self.recorded:
            raise PlayError("nothing to record yet: start a context first")
        import imageio.v3 as iio

        # Dream | truth side by side when the simulator runs, each frame scaled x4 (nearest) to be watchable.
        rows = [np.concatenate([f, t], 1) if t is not None else f for f, t in self.recorded]
        scale = max(1, 256 // self.pg.resolution)
        video = np.stack(rows).repeat(scale, 1).repeat(scale, 2)
        buf = io.BytesIO()
        fps = self.pg.data.meta.get("fps", 10)
        if fmt == "gif":
            iio.imwrite(buf, video, extension=".gif", duration=1000 / fps, loop=0)
        else:
            iio.imwrite(buf, video, extension=".mp4", fps=fps, codec="libx264", macro_block_size=1)
        return {"type": "export", "format": fmt, "frames": len(rows),
                "data": base64.b64encode(buf.getvalue()).decode("ascii")}

    # ----------------------------------------------------------------------------------------- helpers
    def _has_truth(self) -> bool:
        return self.truth is not None and self.truth.env is not None

    def _action(self, action) -> np.ndarray | None:
        a_dim = self.pg.wm.action_dim
        if a_dim == 0:
            if action not in (None, []):
                raise PlayError("this world model is action-free: send \"action\": null")
            return None
        if not isinstance(action, list) or len(action) != a_dim:
            got = f"{len(action)} values" if isinstance(action, list) else repr(action)
            raise PlayError(f"action: expected a list of {a_dim} numbers, got {got}")
        for i, v in enumerate(action):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise PlayError(f"action[{i}]: expected a finite number, got {v!r}")
        return np.asarray(action, np.float32)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)
