"""Sampling-based MPC planners, CEM and MPPI, over any model that predicts the futures of action sequences.

The planner core knows nothing about world models or simulators. It takes

    predict(actions [N, H, A]) -> (frames [N, H, h, w, 3] uint8 or float in [0, 1], rewards [N, H] or None)
    cost(frames, rewards, actions) -> [N]   (lower is better; see ``costs.py``)

so the world model, the real simulator restored to the current state (the "oracle") and a test's perfect
model all plug in the same way. Every call to ``plan`` optimises one action sequence of ``horizon`` steps;
MPC executes its first action, and the next call warm-starts from the rest of it (shifted by one step).

Sampling noise is correlated in time (an AR(1) filter over the horizon, as in PDDM/VP2): independent noise
per step mostly cancels out over a few steps, so smooth sequences explore much further with the same std.

The paper's settings (VP2: horizon 10, MPPI 200 samples, CEM 200 samples x 3 iterations with the top 5 %)
are the dataclass defaults below, and nowhere else.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import ConfigError


@dataclass
class PlannerConfig:
    horizon: int = 10  # planned steps per call (VP2: 10)
    samples: int = 200  # candidate sequences per iteration (VP2: 200)
    iterations: int = 1  # refinement rounds per call
    init_std: float = 0.5  # sampling std, as a fraction of each dimension's half-range (high - low) / 2
    smoothing: float = 0.5  # AR(1) coefficient of the noise over time: its lag-1 autocorrelation (0 = white)
    warm_start: bool = True  # start each call from the previous plan shifted by one step (else from the middle)
    max_batch: int = 200  # candidates per predict() call: bounds memory, not results


@dataclass
class CEMConfig(PlannerConfig):
    iterations: int = 3  # VP2: 3
    elite_fraction: float = 0.05  # VP2: top 5 %
    min_std: float = 0.05  # floor (fraction of half-range) so the search never freezes on a plateau


@dataclass
class MPPIConfig(PlannerConfig):
    iterations: int = 1  # VP2's MPPI: one weighted update per step
    # Weights exp(-(c - min c) / (temperature * std c)): the temperature is in units of the batch's cost std,
    # so one value works for pixel MSE (~1e-3), perceptual distances (~0.3) and rewards (~1) alike.
    temperature: float = 0.3


def _check(cfg: PlannerConfig, low: np.ndarray, high: np.ndarray) -> None:
    problems = []
    if cfg.horizon < 1 or cfg.samples < 2 or cfg.iterations < 1 or cfg.max_batch < 1:
        problems.append(f"need horizon >= 1, samples >= 2, iterations >= 1, max_batch >= 1; got horizon="
                        f"{cfg.horizon}, samples={cfg.samples}, iterations={cfg.iterations}, max_batch={cfg.max_batch}")
    if not 0.0 <= cfg.smoothing < 1.0:
        problems.append(f"smoothing must be in [0, 1), got {cfg.smoothing}")
    if cfg.init_std <= 0:
        problems.append(f"init_std must be > 0, got {cfg.init_std}")
    if isinstance(cfg, CEMConfig):
        if not 0 < cfg.elite_fraction <= 1:
            problems.append(f"elite_fraction must be in (0, 1], got {cfg.elite_fraction}")
        if not 0 <= cfg.min_std <= cfg.init_std:
            problems.append(f"min_std must be in [0, init_std], got {cfg.min_std}")
    if isinstance(cfg, MPPIConfig) and cfg.temperature <= 0:
        problems.append(f"temperature must be > 0, got {cfg.temperature}")
    if low.shape != high.shape or low.ndim != 1 or not np.all(high > low):
        problems.append(f"action bounds: need 1-D low < high of equal shape, got low={low}, high={high}")
    if problems:
        raise ConfigError(f"{type(cfg).__name__}: " + "; ".join(problems))


def correlated_noise(rng: np.random.Generator, n: int, horizon: int, dim: int, smoothing: float) -> np.ndarray:
    """Standard-normal noise [n, horizon, dim] with lag-1 autocorrelation ``smoothing`` along the horizon.

    e_0 = w_0, e_t = b e_{t-1} + sqrt(1 - b^2) w_t keeps every step's variance at 1 (a plain low-pass
    filter would shrink it), so ``init_std`` means the same with or without smoothing.
    """
    w = rng.standard_normal((n, horizon, dim))
    e = np.empty_like(w)
    e[:, 0] = w[:, 0]
    scale = math.sqrt(1.0 - smoothing**2)
    for t in range(1, horizon):
        e[:, t] = smoothing * e[:, t - 1] + scale * w[:, t]
    return e


def evaluate(predict, cost, actions: np.ndarray, max_batch: int):
    """Costs [N] of candidate sequences [N, H, A], calling ``predict`` on at most ``max_batch`` at a time.

    Also returns the predicted frames of the cheapest candidate (for showing what the model imagined).
    """
    costs, best_cost, best_frames = [], math.inf, None
    for i in range(0, len(actions), max_batch):
        chunk = actions[i:i + max_batch]
        frames, rewards = predict(chunk)
        c = cost(frames, rewards, chunk)
        c = (c.detach().cpu().numpy() if isinstance(c, torch.Tensor) else np.asarray(c)).astype(np.float64)
        if c.shape != (len(chunk),):
            raise ValueError(f"cost returned shape {c.shape}, expected ({len(chunk)},): one value per candidate")
        j = int(np.argmin(c))
        if c[j] < best_cost:
            best_cost, best_frames = float(c[j]), frames[j]
        costs.append(c)
    return np.concatenate(costs), best_frames


class Planner:
    """Shared machinery: bounds, noise, warm start, chunked evaluation. Subclasses define ``_update``."""

    def __init__(self, cfg: PlannerConfig, action_low, action_high, seed: int | None = None):
        """``action_low`` / ``action_high``: the action box, one value per action dimension ([A] each)."""
        self.cfg = cfg
        self.low = np.asarray(action_low, np.float64).reshape(-1)
        self.high = np.asarray(action_high, np.float64).reshape(-1)
        _check(cfg, self.low, self.high)
        self.mid, self.half = (self.high + self.low) / 2, (self.high - self.low) / 2
        self.rng = np.random.default_rng(seed)
        self.reset()

    @property
    def action_dim(self) -> int:
        return len(self.low)

    def reset(self) -> None:
        """Forget the previous plan (call at the start of every episode)."""
        self.mean = np.tile(self.mid, (self.cfg.horizon, 1))
        self.last_plan = None  # [H, A]: the sequence returned by the last plan()
        self.last_best_frames = None  # what the model predicted for the best candidate seen in the last call
        self.last_costs = None

    def initial_mean(self) -> np.ndarray:
        """Warm start: the previous plan shifted by one step, its last action repeated at the end."""
        if self.last_plan is None or not self.cfg.warm_start:
            return np.tile(self.mid, (self.cfg.horizon, 1))
        return np.concatenate([self.last_plan[1:], self.last_plan[-1:]], axis=0)

    def sample(self, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
        """``samples`` candidates [N, H, A] around ``mean`` with per-(step, dim) ``std`` (action units), clipped
        to the bounds. Candidate 0 is the mean itself, so an iteration never loses the best plan it started from."""
        cfg = self.cfg
        eps = correlated_noise(self.rng, cfg.samples, cfg.horizon, self.action_dim, cfg.smoothing)
        eps[0] = 0.0
        return np.clip(mean[None] + std[None] * eps, self.low, self.high)

    def plan(self, predict, cost) -> np.ndarray:
        """Optimise and return the action sequence [H, A] (float32); MPC executes its first row."""
        cfg = self.cfg
        mean = self.initial_mean()
        std = np.tile(cfg.init_std * self.half, (cfg.horizon, 1))
        best_cost = math.inf
        for _ in range(cfg.iterations):
            cand = self.sample(mean, std)
            costs, frames = evaluate(predict, cost, cand, cfg.max_batch)
            if costs.min() < best_cost:
                best_cost, self.last_best_frames = float(costs.min()), frames
            mean, std = self._update(cand, costs, mean, std)
        self.last_costs = costs
        self.last_plan = np.clip(mean, self.low, self.high)
        return self.last_plan.astype(np.float32)

    def act(self, predict, cost) -> np.ndarray:
        """Re-plan and return the first action [A]."""
        return self.plan(predict, cost)[0]

    def _update(self, cand, costs, mean, std):
        raise NotImplementedError


class CEM(Planner):
    """Cross-entropy method: refit mean and std to the elite (cheapest) candidates, ``iterations`` times."""

    def __init__(self, cfg: CEMConfig | None, action_low, action_high, seed: int | None = None):
        super().__init__(cfg or CEMConfig(), action_low, action_high, seed)

    @property
    def n_elites(self) -> int:
        return max(2, int(round(self.cfg.elite_fraction * self.cfg.samples)))

    def _update(self, cand, costs, mean, std):
        elites = cand[np.argsort(costs, kind="stable")[: self.n_elites]]
        floor = self.cfg.min_std * self.half
        return elites.mean(0), np.maximum(elites.std(0), floor)


class MPPI(Planner):
    """Model-predictive path integral: the mean moves to the exponentially cost-weighted average of the
    candidates; the sampling std stays fixed."""

    def __init__(self, cfg: MPPIConfig | None, action_low, action_high, seed: int | None = None):
        super().__init__(cfg or MPPIConfig(), action_low, action_high, seed)

    def weights(self, costs: np.ndarray) -> np.ndarray:
        spread = costs.std()
        if not spread > 0:  # all candidates equally good: plain average
            return np.full(len(costs), 1.0 / len(costs))
        w = np.exp(-(costs - costs.min()) / (self.cfg.temperature * spread))
        return w / w.sum()

    def _update(self, cand, costs, mean, std):
        return np.einsum("n,nha->ha", self.weights(costs), cand), std


PLANNERS = {"cem": (CEM, CEMConfig), "mppi": (MPPI, MPPIConfig)}


def make_planner(name: str, action_low, action_high, seed: int | None = None, **overrides) -> Planner:
    """``make_planner('mppi', low, high, samples=64)``: a planner with the paper's defaults, overridden."""
    if name not in PLANNERS:
        raise ConfigError(f"unknown planner '{name}'; known: {sorted(PLANNERS)}")
    cls, cfg_cls = PLANNERS[name]
    fields = set(cfg_cls.__dataclass_fields__)
    unknown = sorted(k for k in overrides if k not in fields)
    if unknown:
        raise ConfigError(f"{cfg_cls.__name__}: unknown field(s) {unknown}; valid: {sorted(fields)}")
    cfg = cfg_cls(**{k: v for k, v in overrides.items() if v is not None})
    return cls(cfg, action_low, action_high, seed)
