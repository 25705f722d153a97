"""The world model as an ordinary Gymnasium environment (single and batched).

``reset`` starts from real context frames -- drawn from an episode dataset, or given in
``options["context_frames"]`` -- and every ``step`` is one interactive world-model step: the action goes
in, the predicted frame (the observation) and the predicted reward come out. Episodes never terminate
(the model has no notion of failure); they are truncated after ``horizon`` steps (default: what the
transformer's KV cache holds, ``world_model.max_steps``; a longer horizon continues from the model's latest
frames, see ``WorldModel._reanchor``).

Seeding: ``reset(seed=s)`` seeds the env's ``np_random`` (which episode/start is drawn) and, from it, the
world model's sampling generator, so ``reset(seed=s)`` plus the same actions reproduces the same frames.

Action space: the dataset's per-dimension action ``min``/``max`` (``meta.json`` ``action_stats``) when a
dataset is given (its action dimension must be the model's), otherwise ``[-1, 1]^A``. Actions are passed
to the model raw; it normalises them with the statistics it was trained with. Actions outside the box are
not clipped (the model extrapolates).

``WorldModelVectorEnv`` runs ``num_envs`` rollouts as one batch: a step costs one batched transformer
step, not ``num_envs`` of them. All sub-environments share one horizon, so they end together and the
autoreset of Gymnasium 1.x (next-step or same-step) resets the whole batch at once.
"""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from ..data.episodes import EpisodeDataset
from ..errors import ConfigError, DataError
from ..world_model import WorldModel

_SEED_HIGH = 2**62  # torch.Generator.manual_seed takes a signed 64-bit seed


def _load_world_model(world_model, device) -> WorldModel:
    if isinstance(world_model, (str, Path)):
        return WorldModel.from_pretrained(world_model, map_location=device or "cpu")
    if not isinstance(world_model, WorldModel):
        raise ConfigError(f"world_model: expected a WorldModel or a path to one, got {type(world_model).__name__}")
    # An environment only samples: dropout would also draw from the global RNG and break seeding.
    return world_model.eval() if device is None else world_model.to(device).eval()


class _Contexts:
    """Where reset() gets its context frames: a dataset split, drawn with the env's np_random."""

    def __init__(self, dataset, split: str, wm: WorldModel):
        self.data = dataset if isinstance(dataset, EpisodeDataset) else EpisodeDataset(dataset)
        self.t0 = wm.context_frames
        r = wm.tokenizer.resolution
        if tuple(self.data.image_size) != (r, r):
            raise DataError(f"{self.data.path}: frames are {list(self.data.image_size)}, the world model takes "
                            f"[{r}, {r}]")
        self.episodes = [i for i in self.data.split(split) if self.data.length(i) >= self.t0]
        if not self.episodes:
            raise DataError(f"{self.data.path}: split '{split}' has no episode with at least {self.t0} frames")

    def draw(self, rng: np.random.Generator, n: int):
        """``n`` random (episode, start) -> context uint8 [n, T0, H, W, 3], goals [n, H, W, 3] (last frame of
        the episode, used by goal-conditioned models), and where they came from."""
        ctx, goals, where = [], [], []
        for _ in range(n):
            i = self.episodes[int(rng.integers(len(self.episodes)))]
            t = self.data.length(i)
            start = int(rng.integers(t - self.t0 + 1))
            ctx.append(self.data.frames(i, start, start + self.t0))
            goals.append(self.data.frames(i, t - 1, t)[0])
            where.append((i, start))
        return np.stack(ctx), np.stack(goals), where

    def action_bounds(self, action_dim: int) -> tuple[np.ndarray, np.ndarray]:
        stats = self.data.meta["action_stats"]
        if self.data.action_dim != action_dim or stats is None:
            raise DataError(f"{self.data.path}: actions have {self.data.action_dim} dimensions, the world model "
                            f"takes {action_dim}")
        return np.asarray(stats["min"], np.float32), np.asarray(stats["max"], np.float32)


def _spaces(wm: WorldModel, contexts: _Contexts | None) -> tuple[spaces.Box, spaces.Box]:
    r, a = wm.tokenizer.resolution, wm.action_dim
    obs = spaces.Box(0, 255, (r, r, 3), np.uint8)
    if contexts is not None and a > 0:
        low, high = contexts.action_bounds(a)
    else:
        low, high = -np.ones(a, np.float32), np.ones(a, np.float32)
    return obs, spaces.Box(low, high, (a,), np.float32)


def _horizon(horizon: int | None, wm: WorldModel) -> int:
    if horizon is None:
        return wm.max_steps
    if int(horizon) < 1:
        raise ConfigError(f"horizon: expected >= 1 (past the world model's max_steps = {wm.max_steps} it "
                          f"re-anchors on its latest frames), got {horizon}")
    return int(horizon)


def _frames_option(options: dict, key: str, shape: tuple[int, ...]) -> np.ndarray | None:
    """``options[key]`` as uint8 of exactly ``shape`` (None when absent)."""
    if options.get(key) is None:
        return None
    x = np.asarray(options[key])
    if x.dtype != np.uint8:
        raise TypeError(f"options['{key}']: expected dtype uint8, got {x.dtype}")
    if x.shape != shape:
        raise ValueError(f"options['{key}']: expected shape {list(shape)}, got {list(x.shape)}")
    return x.copy()


def _reset_inputs(options: dict, n: int, single: bool, wm: WorldModel, contexts: _Contexts | None, rng):
    """Context frames [n, T0, H, W, 3], goal [n, H, W, 3] or None, and info, for one reset.

    Given ``context_frames``/``goal`` options (without the batch axis for a single env) win over the
    dataset; a drawn goal (the episode's last frame) is used only by goal-conditioned models.
    """
    r = wm.tokenizer.resolution
    lead = () if single else (n,)
    ctx = _frames_option(options, "context_frames", (*lead, wm.context_frames, r, r, 3))
    goal = _frames_option(options, "goal", (*lead, r, r, 3))
    if single:
        ctx, goal = (None if x is None else x[None] for x in (ctx, goal))
    info = {}
    if ctx is None:
        if contexts is None:
            want = "[T0, H, W, 3]" if single else f"[{n}, T0, H, W, 3]"
            raise ValueError(f"reset(): this env has no dataset; pass options={{'context_frames': uint8 {want}}}")
        ctx, drawn_goal, where = contexts.draw(rng, n)
        if goal is None and wm.goal_conditioned:
            goal = drawn_goal
        info = {"episode": np.array([w[0] for w in where]), "start": np.array([w[1] for w in where])}
    return ctx, goal, info


def _resume(wm: WorldModel, rollout: dict) -> None:
    """Put this env's rollout (KV cache, context features, generator) back into the world model.

    A WorldModel holds one rollout at a time; envs sharing one model (no second copy of the weights)
    would otherwise step each other's rollouts.
    """
    wm._state = rollout


def _check_actions(action, shape: tuple[int, ...]) -> np.ndarray:
    a = np.asarray(action, dtype=np.float32)
    if a.shape != shape:
        raise ValueError(f"action: expected shape {list(shape)}, got {list(a.shape)}")
    if not np.isfinite(a).all():
        raise ValueError("action: contains NaN or infinity")
    return a


class WorldModelEnv(gym.Env):
    """One world-model rollout as a ``gymnasium.Env``: observation = the last frame, uint8 [H, W, 3]."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, world_model: WorldModel | str, dataset: str | EpisodeDataset | None = None, *,
                 split: str = "val", horizon: int | None = None, temperature: float = 1.0,
                 top_k: int | None = 100, render_mode: str | None = "rgb_array", device=None):
        if render_mode not in (None, "rgb_array"):
            raise ConfigError(f"render_mode: expected 'rgb_array' or None, got {render_mode!r}")
        self.world_model = _load_world_model(world_model, device)
        self.contexts = None if dataset is None else _Contexts(dataset, split, self.world_model)
        self.observation_space, self.action_space = _spaces(self.world_model, self.contexts)
        self.horizon = _horizon(horizon, self.world_model)
        self.temperature, self.top_k, self.render_mode = temperature, top_k, render_mode
        if self.contexts is not None:
            self.metadata = {**self.metadata, "render_fps": self.contexts.data.meta["fps"]}
        self._frame, self._steps, self._rollout = None, None, None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        wm_seed = int(self.np_random.integers(_SEED_HIGH))  # drawn first: same stream with or without data
        ctx, goal, info = _reset_inputs(options or {}, 1, True, self.world_model, self.contexts, self.np_random)
        self.world_model.reset(ctx, goal, temperature=self.temperature, top_k=self.top_k, seed=wm_seed)
        self._rollout = self.world_model._state  # see _resume
        self._frame, self._steps = ctx[0, -1].copy(), 0
        return self._frame.copy(), {"context_frames": ctx[0], **{k: int(v[0]) for k, v in info.items()}}

    def step(self, action):
        if self._steps is None:
            raise RuntimeError("call reset() before step()")
        if self._steps >= self.horizon:
            raise RuntimeError(f"the episode was truncated after horizon = {self.horizon} steps: call reset()")
        a = _check_actions(action, self.action_space.shape)
        _resume(self.world_model, self._rollout)
        out = self.world_model.step(a[None] if self.world_model.action_dim else None)
        self._steps += 1
        self._frame = out.frames[0]
        reward = 0.0 if out.rewards is None else float(out.rewards[0])
        return self._frame.copy(), reward, False, self._steps == self.horizon, {"step": self._steps}

    def render(self):
        if self.render_mode is None:
            return None
        if self._frame is None:
            raise RuntimeError("call reset() before render()")
        return self._frame.copy()


class WorldModelVectorEnv(VectorEnv):
    """``num_envs`` world-model rollouts stepped as one batch; observations uint8 [B, H, W, 3].

    Autoreset (``metadata["autoreset_mode"]``): NEXT_STEP (default; the step after truncation returns the
    new first observations, reward 0, and ignores its actions), SAME_STEP (the truncating step returns the
    new first observations; the predicted ones are in ``info["final_obs"]``), or DISABLED (call reset()).
    Autoreset draws new contexts from the dataset; without one it restarts from the context frames given to
    the last reset(). Partial resets (``options["reset_mask"]`` not all True) are refused: the batch shares
    one KV cache position.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10, "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, world_model: WorldModel | str, dataset: str | EpisodeDataset | None = None, *,
                 num_envs: int = 1, split: str = "val", horizon: int | None = None, temperature: float = 1.0,
                 top_k: int | None = 100, autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
                 render_mode: str | None = "rgb_array", device=None):
        if int(num_envs) < 1:
            raise ConfigError(f"num_envs: expected >= 1, got {num_envs}")
        if render_mode not in (None, "rgb_array"):
            raise ConfigError(f"render_mode: expected 'rgb_array' or None, got {render_mode!r}")
        try:
            self.autoreset_mode = AutoresetMode(autoreset_mode)
        except ValueError:
            raise ConfigError(f"autoreset_mode: expected one of {[m.value for m in AutoresetMode]}, "
                              f"got {autoreset_mode!r}") from None
        self.world_model = _load_world_model(world_model, device)
        self.contexts = None if dataset is None else _Contexts(dataset, split, self.world_model)
        self.num_envs = int(num_envs)
        self.single_observation_space, self.single_action_space = _spaces(self.world_model, self.contexts)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.horizon = _horizon(horizon, self.world_model)
        self.temperature, self.top_k, self.render_mode = temperature, top_k, render_mode
        fps = self.contexts.data.meta["fps"] if self.contexts is not None else self.metadata["render_fps"]
        self.metadata = {**self.metadata, "render_fps": fps, "autoreset_mode": self.autoreset_mode}
        self._given = None  # (context, goal, info) of the last reset, for autoreset without a dataset
        self._frames, self._steps, self._rollout = None, None, None

    def _restart(self, options: dict | None = None):
        """Start all B rollouts -> (obs, info): contexts from ``options``, else the dataset, else (autoreset
        without a dataset) the context frames given to the last reset()."""
        wm_seed = int(self.np_random.integers(_SEED_HIGH))
        if options is None and self.contexts is None:
            ctx, goal, info = self._given
        else:
            ctx, goal, info = _reset_inputs(options or {}, self.num_envs, False, self.world_model, self.contexts,
                                            self.np_random)
            self._given = (ctx, goal, {})
        self.world_model.reset(ctx, goal, temperature=self.temperature, top_k=self.top_k, seed=wm_seed)
        self._rollout = self.world_model._state  # see _resume
        self._frames, self._steps = ctx[:, -1].copy(), 0
        info = {**info, "context_frames": ctx.copy()}
        return self._frames.copy(), {**info, **{f"_{k}": np.ones(self.num_envs, dtype=bool) for k in info}}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        options = dict(options or {})
        mask = options.pop("reset_mask", None)
        if mask is not None and not np.all(mask):
            raise ValueError("reset_mask: the sub-environments run in lockstep (one batched world model) and can "
                             "only be reset together; pass no mask or an all-True one")
        return self._restart(options)

    def step(self, actions):
        if self._steps is None:
            raise RuntimeError("call reset() before step()")
        b = self.num_envs
        false = np.zeros(b, dtype=bool)
        if self._steps >= self.horizon:
            if self.autoreset_mode != AutoresetMode.NEXT_STEP:
                raise RuntimeError(f"the episodes were truncated after horizon = {self.horizon} steps: call reset()")
            obs, info = self._restart()
            return obs, np.zeros(b), false, false.copy(), info
        a = _check_actions(actions, self.action_space.shape)
        _resume(self.world_model, self._rollout)
        out = self.world_model.step(a if self.world_model.action_dim else None)
        self._steps += 1
        self._frames = out.frames
        rewards = np.zeros(b) if out.rewards is None else np.asarray(out.rewards, dtype=np.float64)
        truncated = np.full(b, self._steps == self.horizon)
        obs, info = self._frames.copy(), {}
        if truncated[0] and self.autoreset_mode == AutoresetMode.SAME_STEP:
            final_obs = np.empty(b, dtype=object)
            for i in range(b):
                final_obs[i] = obs[i]
            obs, info = self._restart()
            info.update(final_obs=final_obs, _final_obs=np.ones(b, dtype=bool),
                        final_info={}, _final_info=np.ones(b, dtype=bool))
        return obs, rewards, false, truncated, info

    def render(self):
        if self.render_mode is None:
            return None
        if self._frames is None:
            raise RuntimeError("call reset() before render()")
        return tuple(f.copy() for f in self._frames)
