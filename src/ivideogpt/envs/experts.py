"""Scripted expert policies for collecting data, with Gaussian noise and an epsilon-random mix."""

from __future__ import annotations

import math

import numpy as np


class NoisyExpert:
    """A scripted policy (``scripted(info)``, defined by subclasses) made noisy for data collection.

    ``noise``: std of Gaussian noise added to every action; ``epsilon``: probability of starting a
    burst of a random action held for ``burst`` (min, max) steps, so random data has real motion
    rather than jitter. Actions are clipped to [-1, 1]. ``reset(seed)`` makes the noise reproducible.
    """

    def __init__(self, action_dim: int, noise: float = 0.1, epsilon: float = 0.0, seed: int | None = None,
                 burst: tuple[int, int] = (2, 6)):
        if noise < 0 or not 0 <= epsilon <= 1:
            raise ValueError(f"need noise >= 0 and 0 <= epsilon <= 1, got noise={noise}, epsilon={epsilon}")
        if not 1 <= int(burst[0]) <= int(burst[1]):
            raise ValueError(f"need 1 <= burst[0] <= burst[1], got burst={tuple(burst)}")
        self.action_dim = int(action_dim)
        self.noise, self.epsilon, self.burst = float(noise), float(epsilon), (int(burst[0]), int(burst[1]))
        self.reset(seed)

    def reset(self, seed: int | None = None) -> None:
        self.rng = np.random.default_rng(seed)
        self._random_action, self._random_left = None, 0

    def act(self, obs, info: dict) -> np.ndarray:
        if self._random_left == 0 and self.epsilon > 0 and self.rng.random() < self.epsilon:
            self._random_action = self.rng.uniform(-1.0, 1.0, self.action_dim)
            self._random_left = int(self.rng.integers(self.burst[0], self.burst[1] + 1))
        if self._random_left > 0:
            self._random_left -= 1
            a = self._random_action
        else:
            a = self.scripted(info)
        if self.noise > 0:
            a = a + self.rng.normal(0.0, self.noise, self.action_dim)
        return np.clip(a, -1.0, 1.0).astype(np.float32)

    def scripted(self, info: dict) -> np.ndarray:
        raise NotImplementedError


class PusherExpert(NoisyExpert):
    """Go around block 0 to the side opposite the goal, then push it onto the goal (plus the noise of
    :class:`NoisyExpert`). Reads only ``info`` (the low-dim state)."""

    def __init__(self, noise: float = 0.1, epsilon: float = 0.0, seed: int | None = None,
                 burst: tuple[int, int] = (2, 6)):
        super().__init__(2, noise=noise, epsilon=epsilon, seed=seed, burst=burst)

    def reset(self, seed: int | None = None) -> None:
        super().reset(seed)
        self._orbit = 0.0  # -1/+1 while going around block 0 (kept so the way round doesn't flip)

    def scripted(self, info: dict) -> np.ndarray:
        """The noiseless action for the current state."""
        s = np.asarray(info["state"], np.float64)
        e, b, g = s[:2], s[2:4], s[-2:]
        rb, re, step = float(info["block_radii"][0]), float(info["effector_radius"]), float(info["max_step"])
        to_goal = g - b
        dist = float(np.linalg.norm(to_goal))
        if dist < 1e-6:
            return np.zeros(2)
        u = to_goal / dist
        contact = rb + re  # centre distance at which the effector touches the block's bounding circle
        v = e - b
        along = float(v @ u)  # < 0: effector is behind the block (on the far side from the goal)
        lateral = v - along * u
        if along < 0 and np.linalg.norm(lateral) < 0.35 * rb and -along < contact + 2 * step:
            # Pushing: forward along u, steering back onto the line through the block, slowing near the goal.
            self._orbit = 0.0
            gap = max(0.0, -along - contact)
            move = u * min(step, dist + gap) - 0.8 * lateral
        else:
            target = np.clip(b - u * contact, re, 1 - re)
            move = self._go_around(e, b, target, contact + 0.015, step, re)
        n = float(np.max(np.abs(move))) / step
        return move / step if n <= 1 else move / (n * step)

    def _go_around(self, e, b, target, radius, step, margin) -> np.ndarray:
        """Displacement from ``e`` towards ``target``, orbiting the circle of ``radius`` around ``b`` when
        the straight path would touch the block. The way round is chosen once per approach (no
        dithering) and prefers the side that stays on the table (``margin`` from its edges)."""
        seg = target - e
        length = float(np.linalg.norm(seg))
        # closest approach of the straight path e -> target to the block centre
        t = float(np.clip((b - e) @ seg / max(length, 1e-9) ** 2, 0.0, 1.0))
        # blocked only if the block lies between e and the target (a target on the wall may be closer)
        if length < step or t >= 1.0 or np.linalg.norm(e + t * seg - b) >= radius:
            self._orbit = 0.0
            return seg
        v = e - b
        a_now = math.atan2(v[1], v[0])
        turn = (math.atan2(target[1] - b[1], target[0] - b[0]) - a_now + math.pi) % (2 * math.pi) - math.pi
        other = turn - math.copysign(2 * math.pi, turn)
        if self._orbit == 0.0:
            off = _off_table(b, radius, a_now, turn, margin) - _off_table(b, radius, a_now, other, margin)
            self._orbit = math.copysign(1.0, other if off > 0 else turn)
        if math.copysign(1.0, turn) != self._orbit:
            turn = other
        a_next = a_now + math.copysign(min(abs(turn), 1.2 * step / radius), turn)
        return b + (radius + 0.01) * np.array([math.cos(a_next), math.sin(a_next)]) - e


def _off_table(b, radius, a0, turn, margin) -> float:
    """How far (summed over points along the arc) an orbit from angle a0 by ``turn`` leaves the table."""
    a = a0 + np.linspace(0.0, turn, 16)
    pts = b[None, :] + radius * np.stack([np.cos(a), np.sin(a)], 1)
    return float(np.sum(np.maximum(margin - pts, 0) + np.maximum(pts - (1 - margin), 0)))
