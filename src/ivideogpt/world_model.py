"""WorldModel = tokenizer + transformer, used interactively: reset(context) -> step(action) -> frame, reward.

Every step adds the action to the [S2] slot embedding, samples the next frame's ``n`` future tokens with the
transformer's KV cache kept across frames (the prefix is never recomputed), and decodes only that frame
against the context features the tokenizer computed once at ``reset``.

Frames in and out are uint8 ``[B, T, H, W, 3]`` (numpy in -> numpy out, torch in -> torch out); actions
are raw float ``[B, A]`` / ``[B, K, A]`` (the transformer normalises them with the dataset statistics it was
trained with); rewards come back in the original scale.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .checkpoint import CONFIG_FILE, latest_checkpoint, read_kind
from .errors import CheckpointError
from .fileio import atomic_dir
from .frames import to_model, to_uint8

KIND = "world_model"


@dataclass
class StepResult:
    frames: np.ndarray | torch.Tensor  # uint8 [B, H, W, 3]
    rewards: np.ndarray | torch.Tensor | None  # float [B] (None for a model without a reward head)


class WorldModel(torch.nn.Module):
    def __init__(self, tokenizer, transformer, *, goal_conditioned: bool = False):
        super().__init__()
        self.tokenizer, self.transformer = tokenizer, transformer
        self.goal_conditioned = goal_conditioned
        self._check_compatible()
        if transformer.config.code_embedding and not bool(transformer.code_vectors.any()):
            transformer.set_code_vectors(*tokenizer.code_vectors())  # a new transformer; a loaded one keeps its own
        self._state = None

    # ----------------------------------------------------------------------------------------- loading
    def _check_compatible(self) -> None:
        t, c = self.tokenizer, self.transformer.config
        want = {"context_tokens": t.n_context_tokens, "future_tokens": t.n_future_tokens,
                "context_vocab_size": t.context_vocab_size, "future_vocab_size": t.future_vocab_size}
        if c.code_embedding:
            want["code_vector_dim"] = t.code_vector_dim
        got = {k: getattr(c, k) for k in want}
        if want != got:
            raise CheckpointError(
                f"transformer was built for a different tokenizer: expects {got}, tokenizer has {want}")
        n_ctx = t.context_frames + (1 if self.goal_conditioned else 0)
        if c.context_frames != n_ctx:
            raise CheckpointError(f"transformer expects {c.context_frames} context frames, tokenizer/goal give {n_ctx}")

    @classmethod
    def from_pretrained(cls, path, map_location: str | torch.device = "cpu") -> WorldModel:
        """A world-model directory, a transformer run directory (its latest checkpoint), or a reference release
        directory (converted in memory, see ``ivideogpt.convert.reference``)."""
        from .tokenizer import Tokenizer
        from .transformer import Transformer

        p = Path(path)
        from .convert.reference import is_release

        if is_release(p):
            from .convert.reference import load_release

            print(f"{p}: a reference (thuml/iVideoGPT) release; converting it in memory (`ivideogpt convert "
                  "reference` saves the converted model once)", file=sys.stderr)
            return load_release(p).to(map_location).eval()
        if not (p / CONFIG_FILE).is_file():
            ck = latest_checkpoint(p)
            if ck is None:
                raise CheckpointError(f"{p}: not a world-model directory nor a run directory with checkpoints")
            p = ck / "model"
        if read_kind(p) != KIND:
            raise CheckpointError(f"{p}: holds a '{read_kind(p)}', expected a '{KIND}' (tokenizer/ + transformer/)")
        meta = json.loads((p / CONFIG_FILE).read_text())["config"]
        wm = cls(Tokenizer.from_pretrained(p / "tokenizer"), Transformer.from_pretrained(p / "transformer"),
                 goal_conditioned=bool(meta.get("goal_conditioned", False)))
        return wm.to(map_location).eval()

    @classmethod
    def from_preset(cls, tokenizer: str = "tiny-cpu", transformer: str | None = None, **transformer_overrides):
        """An untrained world model; the transformer's sequence numbers are taken from the tokenizer."""
        from .config import from_dict, load_preset
        from .tokenizer import Tokenizer
        from .transformer import Transformer, TransformerConfig

        tok = Tokenizer.from_preset(tokenizer)
        cfg = dict(load_preset("transformer", transformer or tokenizer)["model"])
        cfg.update(sequence_fields(tok), **transformer_overrides)
        where = f"transformer preset '{transformer or tokenizer}'"
        return cls(tok, Transformer(from_dict(TransformerConfig, cfg, where=where)))

    def save_pretrained(self, path) -> None:
        with atomic_dir(path) as tmp:
            self.write_into(tmp)

    def write_into(self, path: Path) -> None:
        """Write the model directory into an existing directory (used inside atomic checkpoint writes)."""
        path.mkdir(parents=True, exist_ok=True)
        meta = {"kind": KIND, "config": {"goal_conditioned": self.goal_conditioned}}
        (path / CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        self.tokenizer.save_pretrained(path / "tokenizer")
        self.transformer.save_pretrained(path / "transformer")

    # ------------------------------------------------------------------------------------- properties
    @property
    def device(self) -> torch.device:
        return next(self.transformer.parameters()).device

    @property
    def context_frames(self) -> int:
        return self.tokenizer.context_frames

    @property
    def action_dim(self) -> int:
        return self.transformer.config.action_dim

    @property
    def max_steps(self) -> int:
        """How many frames a rollout predicts after the context before re-anchoring (max_frames - T0, or for a
        model trained on segments, segment_frames - T0: the frames one segment holds); step() goes on past it
        by re-anchoring on the latest frames (see _reanchor)."""
        c = self.transformer.config
        return (c.segment_frames or c.max_frames) - c.context_frames

    # ------------------------------------------------------------------------------------ validation
    def _frames_in(self, frames, name: str, ndim: int = 5) -> torch.Tensor:
        x = frames if isinstance(frames, torch.Tensor) else torch.as_tensor(np.asarray(frames))
        r = self.tokenizer.config.resolution
        if x.ndim != ndim or tuple(x.shape[-3:]) != (r, r, 3):
            want = "[B, T, H, W, 3]" if ndim == 5 else "[B, H, W, 3]"
            raise ValueError(f"{name}: expected uint8 {want} with H = W = {r}, got shape {tuple(x.shape)}")
        if x.dtype != torch.uint8:
            raise TypeError(f"{name}: expected dtype uint8, got {x.dtype}")
        return x

    def _actions_in(self, actions, batch: int, sequence: bool, name: str = "actions") -> torch.Tensor | None:
        """Raw float actions [B, A] (one step) or [B, K, A] (``sequence``), on the model's device."""
        if actions is None:
            return None
        if self.action_dim == 0:
            raise ValueError("this world model is action-free (trained without actions): pass actions=None")
        a = actions if isinstance(actions, torch.Tensor) else torch.as_tensor(np.asarray(actions))
        want = "[B, K, A]" if sequence else "[B, A]"
        if a.ndim != (3 if sequence else 2) or a.shape[0] != batch or a.shape[-1] != self.action_dim:
            raise ValueError(f"{name}: expected shape {want} with B = {batch} and A = {self.action_dim}, "
                             f"got {tuple(a.shape)}")
        if not a.is_floating_point():
            raise TypeError(f"{name}: expected a float array, got dtype {a.dtype}")
        return a.to(self.device, torch.float32)

    # ----------------------------------------------------------------------------------- interaction
    @torch.no_grad()
    def reset(self, context_frames, goal=None, *, context_actions=None, samples: int = 1, temperature: float = 1.0,
              top_k: int | None = 100, seed: int | None = None, generator: torch.Generator | None = None) -> None:
        """Start B rollouts from ``context_frames`` uint8 [B, T, H, W, 3] (and a goal frame [B, H, W, 3]).

        T = T0 (the tokenizer's context frames), or more: frames observed after the context, with the actions
        that led to them in ``context_actions`` float [B, T - T0, A]. Those are tokenized as future frames and
        fed to the transformer, so the rollout continues from what was seen instead of predicting it (each one
        uses up one of the ``max_steps`` frames of this reset).

        ``samples`` = S > 1 starts S rollouts from each context (a planner's candidate action sequences): the
        context is encoded and run through the transformer once, then its KV cache and features are repeated,
        so steps take B * S rows, sample-major (row ``b * S + j`` is sample j of context b).
        """
        x = self._frames_in(context_frames, "context_frames")
        samples = _samples_in(samples)
        t0 = self.context_frames
        extra = x.shape[1] - t0
        if extra < 0 or extra >= self.max_steps:
            raise ValueError(f"context_frames: this model takes {t0} context frames (plus at most "
                             f"{self.max_steps - 1} observed ones), got {x.shape[1]}")
        ca = self._actions_in(context_actions, x.shape[0], sequence=True, name="context_actions")
        if ca is None and extra and self.action_dim > 0:
            raise ValueError(f"{extra} observed frame(s) after the context: pass context_actions "
                             f"[B, {extra}, {self.action_dim}] (the actions that led to them)")
        if ca is not None and ca.shape[1] != extra:
            raise ValueError(f"context_actions: expected [B, {extra}, {self.action_dim}] (one per frame after the "
                             f"first {t0}), got {tuple(ca.shape)}")
        if self.goal_conditioned and goal is None:
            raise ValueError("this world model is goal-conditioned: pass goal= (uint8 [B, H, W, 3])")
        if not self.goal_conditioned and goal is not None:
            raise ValueError("this world model was not trained goal-conditioned: goal must be None")
        if generator is None:
            generator = torch.Generator(device=self.device)
            generator.manual_seed(int(seed) if seed is not None else int(torch.randint(0, 2**62, (1,))))
        ctx = self.tokenizer.encode_context_state(to_model(x[:, :t0], device=self.device))
        ctx_ids = ctx.ids
        seen = to_model(x[:, t0:], device=self.device)
        observed = self.tokenizer.encode_future(seen, ctx) if extra else \
            ctx_ids.new_zeros(x.shape[0], 0, self.tokenizer.n_future_tokens)
        # A previous-frame tokenizer decodes the first predicted frame against the last real frame seen.
        ctx = self.tokenizer.advance(ctx, seen)
        if self.goal_conditioned:
            g = self._frames_in(goal, "goal", ndim=4)
            if g.shape[0] != x.shape[0]:
                raise ValueError(f"goal: batch {g.shape[0]} != context batch {x.shape[0]}")
            # The goal is one more context frame for the transformer, in front (the tokenizer never sees it).
            goal_ids = self.tokenizer.encode_context(to_model(g[:, None], device=self.device))
            ctx_ids = torch.cat([goal_ids, ctx_ids], dim=1)
        layout = self.transformer.config.layout
        tokens = layout.build(ctx_ids, observed)
        cache = self.transformer.new_cache(x.shape[0], device=self.device)
        self.transformer.prefill(tokens, cache, ca)
        if samples > 1:
            cache, ctx = cache.repeat_interleave(samples), ctx.expand(samples)
        rows = lambda t: t.to(self.device).repeat_interleave(samples, 0)  # noqa: E731
        self._state = {"ctx": ctx, "cache": cache, "generator": generator, "steps": extra,
                       "batch": x.shape[0] * samples,
                       "temperature": temperature, "top_k": top_k,
                       "numpy": not isinstance(context_frames, torch.Tensor),
                       # For _reanchor: the latest frames (uint8 [B*S, H, W, 3] each), the action that led to
                       # each one (None for the first T0), and the goal.
                       "frames": list(rows(x).unbind(1)),
                       "actions": [None] * t0 + (list(rows(ca).unbind(1)) if ca is not None else [None] * extra),
                       "goal": None if goal is None else rows(self._frames_in(goal, "goal", ndim=4))}

    @property
    def _anchor_frames(self) -> int:
        return self.context_frames + self.max_steps // 2

    @torch.no_grad()
    def _reanchor(self) -> None:
        """Long play: the KV cache holds max_frames, so when it is full the rollout starts over from its own
        latest frames -- the last T0 + max_steps // 2 of them, the first T0 as context and the rest as observed
        frames with the actions that led to them -- with the same generator and sampling settings. The next
        step is then exactly that of a fresh ``rollout(those frames, context_actions=..., generator=...)``."""
        s, keep = self._state, self._anchor_frames
        frames, acts = s["frames"][-keep:], s["actions"][-keep:][self.context_frames:]
        ca = torch.stack(acts, 1) if acts and acts[0] is not None else None
        numpy = s["numpy"]
        self.reset(torch.stack(frames, 1), s["goal"], context_actions=ca, temperature=s["temperature"],
                   top_k=s["top_k"], generator=s["generator"])
        new, self._state = self._state, s  # in place: envs sharing this model hold this dict (world_model_env)
        s.clear()
        s.update(new, numpy=numpy)

    @torch.no_grad()
    def _step_ids(self, actions: torch.Tensor | None):
        s = self._state
        if s is None:
            raise RuntimeError("call reset(context_frames) before step()")
        if s["steps"] >= self.max_steps:
            self._reanchor()
        ids, reward = self.transformer.generate_frame(s["cache"], actions, temperature=s["temperature"],
                                                      top_k=s["top_k"], generator=s["generator"])
        s["steps"] += 1
        s["actions"] = _last(s["actions"], self._anchor_frames - 1) + [actions]  # _decode adds its frame
        return ids, reward

    def _out(self, x: torch.Tensor | None):
        if x is None:
            return None
        return x.cpu().numpy() if self._state["numpy"] else x

    @torch.no_grad()
    def step(self, actions=None) -> StepResult:
        """One interactive step: ``actions`` float [B, A] (None for an action-free model)."""
        s = self._state
        if s is None:
            raise RuntimeError("call reset(context_frames) before step()")
        a = self._actions_in(actions, s["batch"], sequence=False)
        if a is None and self.action_dim > 0:
            raise ValueError(f"this world model is action-conditioned: step() needs actions [B, {self.action_dim}]")
        ids, reward = self._step_ids(a)
        return StepResult(self._out(self._decode(ids)), self._out(reward))

    def _decode(self, ids: torch.Tensor) -> torch.Tensor:
        """One frame's future ids [B, n] -> uint8 [B, H, W, 3]. A previous-frame tokenizer's next frame is decoded
        against this one: the state moves on."""
        frame, self._state["ctx"] = self.tokenizer.decode_step(ids, self._state["ctx"])
        frame = to_uint8(frame)
        self._state["frames"] = _last(self._state["frames"], self._anchor_frames - 1) + [frame]  # for _reanchor
        return frame

    @torch.no_grad()
    def rollout(self, context_frames, actions=None, *, horizon: int | None = None, goal=None, context_actions=None,
                samples: int = 1, temperature: float = 1.0, top_k: int | None = 100, seed: int | None = None,
                generator: torch.Generator | None = None):
        """``context [B,T,H,W,3]``, ``actions [B,K,A]`` -> ``frames [B,K,H,W,3]``, ``rewards [B,K]``.

        ``actions[:, i]`` is taken after the last frame seen and leads to ``frames[:, i]``. Action-free
        models take ``actions=None`` and a ``horizon``. Frames after the first T0 are observed ones, with
        ``context_actions`` (see :meth:`reset`). With ``samples`` = S, each context is rolled out S times
        (encoded once): actions and outputs have B * S rows, sample-major.
        """
        b = len(context_frames) * _samples_in(samples)
        a = self._actions_in(actions, b, sequence=True)
        if a is None:
            if self.action_dim > 0:
                raise ValueError(
                    f"this world model is action-conditioned: rollout() needs actions [B, K, {self.action_dim}]")
            if horizon is None:
                raise ValueError("action-free rollout: pass horizon=K")
        k = a.shape[1] if a is not None else int(horizon)
        self.reset(context_frames, goal, context_actions=context_actions, samples=samples, temperature=temperature,
                   top_k=top_k, seed=seed, generator=generator)
        frames, rewards = [], []
        for i in range(k):
            step_ids, r = self._step_ids(None if a is None else a[:, i])
            # Decoded frame by frame exactly as step() does: one batched decode of all K frames is the same
            # maths, but its float sums differ in the last bit and flip a few uint8 pixels (measured), and
            # rollout() must equal reset() + step() bit for bit.
            frames.append(self._decode(step_ids))
            rewards.append(r)
        frames = torch.stack(frames, dim=1)
        rew = torch.stack(rewards, dim=1) if rewards and rewards[0] is not None else None
        return self._out(frames), self._out(rew)


    # ------------------------------------------------------------------------------ in-context imitation
    @torch.no_grad()
    def imitate(self, demo_frames, query_frames, horizon: int, *, temperature: float = 1.0, top_k: int | None = 100,
                seed: int | None = None, generator: torch.Generator | None = None):
        """Video in-context imitation (VidIT): continue ``query_frames`` the way ``demo_frames`` goes on.

        ``demo_frames`` uint8 [B, Td, H, W, 3] (or None: no demonstration), ``query_frames`` uint8 [B, Tq, H, W, 3]
        -> the next ``horizon`` frames of the query, uint8 [B, horizon, H, W, 3]. The demonstration is cut into
        segments of the model's ``segment_frames`` (the last may be shorter), each tokenized against its own
        first frame(s), and laid in front of the query, which is one more segment; the model then generates the
        query's next frames. Nothing tells the model which behaviour to follow but the frames. Needs an action-free
        model; it was trained on clips of ``max_frames`` frames, so demo and query together (plus ``horizon``)
        may not be longer, and the query plus ``horizon`` must fit in one segment.
        """
        c = self.transformer.config
        if self.action_dim:
            raise ValueError("imitate() needs an action-free world model (the demonstration, not actions, says what "
                             "to do); this one takes actions")
        if self.goal_conditioned:
            raise ValueError("imitate() needs a world model without goal conditioning")
        q = self._frames_in(query_frames, "query_frames")
        d = None if demo_frames is None else self._frames_in(demo_frames, "demo_frames")
        t0, seg = self.context_frames, c.segment_frames or c.max_frames
        horizon = int(horizon)
        if horizon < 1:
            raise ValueError(f"horizon: expected >= 1 frames to generate, got {horizon}")
        if not t0 <= q.shape[1] <= seg - horizon:
            raise ValueError(f"query_frames: {q.shape[1]} frame(s) + horizon {horizon} must fit in one segment of "
                             f"{seg} frames, with at least the {t0} context frame(s) given")
        lay = c.layout
        plan = [] if d is None else lay.plan(d.shape[1], seg) if d.shape[1] >= t0 else None
        if plan is None:
            raise ValueError(f"demo_frames: at least {t0} frame(s) (a context frame), got {d.shape[1]}")
        if d is not None and d.shape[0] != q.shape[0]:
            raise ValueError(f"demo_frames: batch {d.shape[0]} != query_frames batch {q.shape[0]}")
        total = lay.plan_length(plan + [q.shape[1] + horizon])
        if total > c.max_len:
            raise ValueError(f"demo ({0 if d is None else d.shape[1]} frames) + query ({q.shape[1]}) + horizon "
                             f"({horizon}) need {total} tokens; this model was trained on sequences of at most "
                             f"{c.max_len} ({c.max_frames} frames in segments of {seg})")
        if generator is None:
            generator = torch.Generator(device=self.device)
            generator.manual_seed(int(seed) if seed is not None else int(torch.randint(0, 2**62, (1,))))
        tok = self.tokenizer

        def segment(frames):
            x = to_model(frames, device=self.device)
            state = tok.encode_context_state(x[:, :t0])
            fut = tok.encode_future(x[:, t0:], state) if x.shape[1] > t0 else \
                state.ids.new_zeros(x.shape[0], 0, tok.n_future_tokens)
            return lay.build(state.ids, fut), tok.advance(state, x[:, t0:])

        parts, start = [], 0
        for n in plan:
            parts.append(segment(d[:, start:start + n])[0])
            start += n
        query_tokens, state = segment(q)
        tokens = torch.cat(parts + [query_tokens], dim=1)
        cache = self.transformer.new_cache(q.shape[0], max_len=total, device=self.device)
        self.transformer.prefill(tokens, cache, plan=plan + [q.shape[1]])
        frames = []
        for _ in range(horizon):
            ids, _ = self.transformer.generate_frame(cache, None, temperature=temperature, top_k=top_k,
                                                     generator=generator)
            frame, state = tok.decode_step(ids, state)
            frames.append(to_uint8(frame))
        out = torch.stack(frames, dim=1)
        return out if isinstance(query_frames, torch.Tensor) else out.cpu().numpy()


def _last(items: list, n: int) -> list:
    return items[len(items) - n:] if len(items) > n else items


def _samples_in(samples) -> int:
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 1:
        raise ValueError(f"samples: expected an int >= 1 (rollouts per context), got {samples!r}")
    return int(samples)


def sequence_fields(tokenizer) -> dict:
    """The transformer config fields that must come from the tokenizer."""
    return {"context_tokens": tokenizer.n_context_tokens, "future_tokens": tokenizer.n_future_tokens,
            "context_frames": tokenizer.context_frames, "context_vocab_size": tokenizer.context_vocab_size,
            "future_vocab_size": tokenizer.future_vocab_size, "code_vector_dim": tokenizer.code_vector_dim}
