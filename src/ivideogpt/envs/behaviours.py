"""``pusher-behaviours``: pusher episodes that follow one hidden behaviour, for video in-context imitation.

Each episode draws a behaviour ``z`` (one of K directions, evenly spaced: K = 4 gives right, down, left, up in
frame coordinates) that is fixed for the episode and independent of the scene. An episode is a series of trials
of ``trial_steps`` frames in the same scene: at a trial's first frame the effector is placed anew at its home
pose, the table's centre, jittered uniformly by up to ``start_spread`` per axis (as a robot restarts each trial from
home; blocks are kept clear of that area), whatever ``z`` is. It holds still (with jitter) for ``hold_steps``
actions, then sweeps in direction ``z`` for the rest of the trial, pushing whatever it meets. So the first
``hold_steps + 1`` frames of a trial say nothing about ``z`` and the rest show it: a trial is a demonstration,
the held start of another one a query. (``start_spread`` up to 0.2 keeps every sweep on the table; at 0.2 the
start is anywhere in the centre 40 % of the table: measured in RESULTS, "Video in-context imitation".)

``z`` is in ``info["behaviour"]`` (and the episode's labels), never in the frames. The step into a trial's first
frame is a re-placement, not dynamics: the action of that step is ignored (the expert sends zeros).
"""

from __future__ import annotations

import math

import numpy as np

from .experts import NoisyExpert
from .pusher import PusherEnv

# The effector starts within [PLACE_LO, PLACE_HI]^2 (table units) at most: a full sweep from anywhere there stays
# on the table in every direction, so the start position cannot reveal the behaviour.
HOME = 0.5
MAX_SPREAD = 0.2
PLACE_LO, PLACE_HI = HOME - MAX_SPREAD, HOME + MAX_SPREAD


def behaviour_directions(k: int) -> np.ndarray:
    """Unit vectors ``[K, 2]`` (x right, y down) of the K behaviours; behaviour ``z`` and ``z + K/2`` are
    opposite (each other's contrastive behaviour)."""
    a = 2 * math.pi * np.arange(k) / k
    return np.stack([np.cos(a), np.sin(a)], 1)


def contrastive(z: int, k: int) -> int:
    """The behaviour opposite ``z`` (e.g. left for right)."""
    return (int(z) + k // 2) % k


class BehaviourPusherEnv(PusherEnv):
    """:class:`PusherEnv` with a hidden per-episode behaviour and trials (see the module docstring).

    ``reset(options={"behaviour": z})`` fixes z instead of drawing it. ``info`` adds ``behaviour``,
    ``trial`` (index), ``trial_step`` (0 at a trial's first frame) and ``labels`` (what the episode records).
    """

    def __init__(self, behaviours: int = 4, trial_steps: int = 8, hold_steps: int = 3, start_spread: float = 0.05,
                 size: int = 64,
                 n_blocks: int = 1, max_episode_steps: int = 100, max_step: float = 0.05,
                 effector_radius: float = 0.07, block_size: tuple[float, float] = (0.07, 0.1),
                 success_threshold: float = 0.05, success_bonus: float = 1.0, substeps: int = 4,
                 render_mode: str | None = "rgb_array"):
        if int(behaviours) < 2 or int(behaviours) % 2:
            raise ValueError(f"behaviours must be an even number >= 2 (each has an opposite), got {behaviours}")
        if not 0 <= int(hold_steps) <= int(trial_steps) - 2:
            raise ValueError(f"need 0 <= hold_steps <= trial_steps - 2 (a trial must move), got hold_steps="
                             f"{hold_steps}, trial_steps={trial_steps}")
        if not 0 <= float(start_spread) <= MAX_SPREAD:
            raise ValueError(f"start_spread must be in [0, {MAX_SPREAD}] (sweeps stay on the table), "
                             f"got {start_spread}")
        super().__init__(size, n_blocks, max_episode_steps, max_step, effector_radius, block_size, success_threshold,
                         success_bonus, substeps, render_mode)
        self.behaviours, self.trial_steps, self.hold_steps = int(behaviours), int(trial_steps), int(hold_steps)
        self.start_spread = float(start_spread)
        self.behaviour = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        options = dict(options or {})
        z = options.pop("behaviour", None)
        super().reset(seed=seed, options=options)
        self.behaviour = int(self.np_random.integers(self.behaviours)) if z is None else int(z)
        if not 0 <= self.behaviour < self.behaviours:
            raise ValueError(f"reset options: behaviour must be in [0, {self.behaviours}), got {z}")
        if "effector" not in options:
            self._place_effector()
        self._frame = self._render_frame()
        return self._frame, self._info()

    def _place(self, rng) -> None:
        """As the pusher places the scene, redrawn until no block is where the effector can start. (A start area
        wider than 0.1 cannot be kept clear on this table: then each trial's start avoids the blocks instead.)"""
        if self.start_spread > 0.1:
            return super()._place(rng)
        reach = self.start_spread * math.sqrt(2) + self.effector_radius + 0.02
        for _ in range(1000):
            super()._place(rng)
            if all(math.hypot(b[0] - HOME, b[1] - HOME) > r + reach for b, r in zip(self.blocks, self.bounds)):
                return
        raise ValueError("could not keep the blocks clear of the effector's home; use fewer/smaller blocks")

    def _place_effector(self) -> None:
        rng, re = self.np_random, self.effector_radius
        for _ in range(100):
            e = HOME + rng.uniform(-self.start_spread, self.start_spread, 2)
            if all(math.hypot(e[0] - b[0], e[1] - b[1]) > r + re + 0.02 for b, r in zip(self.blocks, self._bounds)):
                break
        self.effector = [float(e[0]), float(e[1])]

    def step(self, action):
        if (self.t + 1) % self.trial_steps:
            return super().step(action)
        # The step into a new trial: the effector is placed anew; nothing else moves.
        self._place_effector()
        self.t += 1
        self._frame = self._render_frame()
        info = self._info()
        reward = -info["distance"] + self.success_bonus * info["success"]
        return self._frame, float(reward), False, self.t >= self.max_episode_steps, info

    def _info(self) -> dict:
        info = super()._info()
        info.update(behaviour=self.behaviour, trial=self.t // self.trial_steps, trial_step=self.t % self.trial_steps,
                    hold_steps=self.hold_steps, trial_steps=self.trial_steps, behaviours=self.behaviours,
                    labels={"behaviour": self.behaviour, "behaviours": self.behaviours,
                            "trial_steps": self.trial_steps, "hold_steps": self.hold_steps})
        return info

    _STATE_FIELDS = PusherEnv._STATE_FIELDS + ("behaviour",)


class BehaviourExpert(NoisyExpert):
    """Acts out ``info["behaviour"]``: still (plus the Gaussian ``noise``) for the first ``hold_steps`` actions of
    a trial, then a sweep in the behaviour's direction at a speed drawn per trial from ``speed`` (fractions of
    the maximum step), plus the noise. Zeros on the re-placement step."""

    def __init__(self, noise: float = 0.1, epsilon: float = 0.0, seed: int | None = None,
                 burst: tuple[int, int] = (2, 6), speed: tuple[float, float] = (0.7, 1.0)):
        if not 0 < float(speed[0]) <= float(speed[1]) <= 1:
            raise ValueError(f"need 0 < speed[0] <= speed[1] <= 1, got speed={tuple(speed)}")
        self.speed = (float(speed[0]), float(speed[1]))
        super().__init__(2, noise=noise, epsilon=epsilon, seed=seed, burst=burst)

    def act(self, obs, info: dict) -> np.ndarray:
        if info["trial_step"] == info["trial_steps"] - 1:
            return np.zeros(2, np.float32)  # the re-placement step ignores its action
        if info["trial_step"] == 0:
            self._speed = float(self.rng.uniform(*self.speed))
        return super().act(obs, info)

    def scripted(self, info: dict) -> np.ndarray:
        if info["trial_step"] < info["hold_steps"]:
            return np.zeros(2)
        return self._speed * behaviour_directions(info["behaviours"])[info["behaviour"]]
