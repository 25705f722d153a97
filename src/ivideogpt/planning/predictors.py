"""Models that predict the futures of candidate action sequences from the current state of an episode.

Each predictor is ``predict(actions [N, H, A]) -> (frames [N, H, h, w, 3] uint8, rewards [N, H] | None)`` and is
told about the real episode with ``reset(env, obs, seed)`` at its start and ``observe(env, obs, action)`` after
every real step. Two of them:

- ``WorldModelPredictor``: the world model rolls every candidate out from the last real frames.
- ``SimulatorPredictor``: the "oracle" of VP2's simulator row. A second instance of the real environment is
  restored to the real episode's current state (``get_state``/``set_state``) before each candidate, so its
  futures are exact. Planned with the same planner, cost and samples as the world model, it separates what the
  model gets wrong from what the planner and cost cannot do.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError


class WorldModelPredictor:
    """``observed``: how many of the latest real frames after the tokenizer's context frames the model is also
    given, with the actions that led to them (``WorldModel.reset(..., context_actions=...)``; the demo's model
    predicts far better from two real frames than from one)."""

    def __init__(self, wm, *, temperature: float = 1.0, top_k: int | None = 100, seed: int = 0, observed: int = 0):
        if not 0 <= observed < wm.max_steps:
            t0 = wm.context_frames
            raise ConfigError(f"--context {t0 + observed} ({observed} observed after the tokenizer's {t0}): this "
                              f"model takes {t0} to {t0 + wm.max_steps - 1} context frames")
        self.wm, self.temperature, self.top_k, self.seed = wm, temperature, top_k, int(seed)
        self.observed = int(observed)
        self.history: list[np.ndarray] = []
        self.actions: list[np.ndarray] = []
        self.calls = 0

    def reset(self, env, obs, seed: int | None = None) -> None:
        self.history, self.actions = [np.asarray(obs)], []
        self.calls = 0
        if seed is not None:
            self.seed = int(seed)

    def observe(self, env, obs, action=None) -> None:
        self.history = (self.history + [np.asarray(obs)])[-(self.wm.context_frames + self.observed):]
        if action is not None and self.observed:
            self.actions = (self.actions + [np.asarray(action, np.float32)])[-self.observed:]

    def _n_observed(self) -> int:
        # Each observed frame needs the action that led to it; an episode's first steps have fewer.
        return min(self.observed, len(self.history) - 1, len(self.actions))

    def context(self) -> np.ndarray:
        """The last real frames [T0 + observed, h, w, 3]; at an episode's start, where fewer have been seen, the
        first frame stands in for the missing context frames (the scene was at rest before the episode)."""
        t0, k = self.wm.context_frames, self._n_observed()
        frames = self.history[-(t0 + k):]
        return np.stack([frames[0]] * (t0 + k - len(frames)) + frames)

    def context_actions(self) -> np.ndarray | None:
        """The actions [observed, A] that led to the observed frames of :meth:`context` (None without any)."""
        k = self._n_observed()
        return np.stack(self.actions[-k:]) if k else None

    def __call__(self, actions):
        actions = np.asarray(actions, np.float32)
        room = self.wm.max_steps - self._n_observed()
        if actions.ndim != 3 or actions.shape[1] > room:
            raise ConfigError(f"world model predictor: actions must be [N, H, A] with H <= {room} "
                              f"(the model's longest rollout after the frames it is given), got {actions.shape}")
        seen = self.context_actions()
        extra = {} if seen is None else {"context_actions": seen[None]}
        # A different sampling seed per call, reproducible from the episode seed.
        seed = int(np.random.SeedSequence([self.seed, self.calls]).generate_state(1)[0])
        self.calls += 1
        # Every candidate starts from the same frames: encode and prefill them once (samples=N).
        frames, rewards = self.wm.rollout(self.context()[None], actions, samples=len(actions),
                                          temperature=self.temperature, top_k=self.top_k, seed=seed, **extra)
        return frames, rewards


class SimulatorPredictor:
    """Exact futures from a private copy of the real environment (``sim``), restored per candidate."""

    def __init__(self, sim):
        for method in ("get_state", "set_state"):
            if not callable(getattr(sim, method, None)):
                raise ConfigError(f"oracle planning needs {type(sim).__name__}.{method}(); this environment has none")
        self.sim, self.state = sim, None

    def reset(self, env, obs, seed: int | None = None) -> None:
        # Reset the copy with the episode's seed first: whatever an env keeps outside get_state (task, goal
        # set-up) then matches the real one; the restored state does the rest.
        self.sim.reset(seed=seed)
        self.observe(env, obs)

    def observe(self, env, obs, action=None) -> None:
        self.state = env.get_state()

    def __call__(self, actions):
        actions = np.asarray(actions, np.float32)
        n, h = actions.shape[:2]
        frames, rewards = None, np.empty((n, h), np.float32)
        for i in range(n):
            self.sim.set_state(self.state)
            for t in range(h):
                obs, rewards[i, t], *_ = self.sim.step(actions[i, t])
                if frames is None:
                    frames = np.empty((n, h, *obs.shape), np.uint8)
                frames[i, t] = obs
        return frames, rewards
