"""Planning costs: ``cost(frames [N, H, h, w, 3], rewards [N, H] | None, actions [N, H, A]) -> [N]``, lower is better.

A cost is a weighted sum of terms. Each term computes a per-step cost [N, H] (or a total [N]) and reduces the
horizon: only the ``last`` predicted frame counts (VP2's goal-image costs), ``all`` frames count equally (their
mean; ``sum`` adds them up), or ``discounted`` (step t weighs ``discount ** (H - 1 - t)``, so the end matters
most and early frames still steer).

Terms: pixel MSE to a goal image, perceptual (ST-LPIPS) distance to a goal image, an object-aware keypoint
distance read off the pixels (``ObjectKeypoints``), predicted reward (negated), or any callable with the same
signature.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import ConfigError
from ..frames import to_unit

HORIZON_MODES = ("last", "all", "sum", "discounted")


@dataclass
class CostTerm:
    fn: object  # callable(frames, rewards, actions) -> [N, H] per step, or [N] already reduced
    weight: float = 1.0
    frames: str = "last"  # which steps of the horizon count: last / all (mean) / sum / discounted
    discount: float = 0.9  # for frames="discounted"
    name: str = ""

    def __post_init__(self):
        if self.frames not in HORIZON_MODES:
            raise ConfigError(f"cost term {self.name or self.fn}: frames must be one of {HORIZON_MODES}, "
                              f"got {self.frames!r}")
        if not 0 < self.discount <= 1:
            raise ConfigError(f"cost term {self.name or self.fn}: discount must be in (0, 1], got {self.discount}")


def reduce_horizon(per_step: torch.Tensor, mode: str, discount: float = 0.9) -> torch.Tensor:
    """[N, H] -> [N]."""
    if mode == "last":
        return per_step[:, -1]
    if mode == "all":
        return per_step.mean(1)
    if mode == "sum":
        return per_step.sum(1)
    h = per_step.shape[1]
    w = discount ** torch.arange(h - 1, -1, -1, dtype=per_step.dtype, device=per_step.device)
    return (per_step * w).sum(1) / w.sum()


def _unit_frames(frames) -> torch.Tensor:
    x = to_unit(frames)
    if x.ndim != 5 or x.shape[-1] != 3:
        raise ValueError(f"frames: expected [N, H, h, w, 3], got shape {tuple(x.shape)}")
    return x


def _goal(goal, name: str) -> torch.Tensor:
    g = to_unit(goal)
    if g.ndim != 3 or g.shape[-1] != 3:
        raise ValueError(f"{name}: goal image must be [h, w, 3] (uint8 or float in [0, 1]), got {tuple(g.shape)}")
    return g


def _blur_matrix(n: int, sigma: float, f: int, dtype) -> torch.Tensor:
    """[n / f, n]: average f x f blocks, then a row-normalised Gaussian of ``sigma / f`` blocks (truncated at the
    borders), as one linear map."""
    pos = torch.arange(n // f, dtype=dtype)
    g = torch.exp(-0.5 * ((pos[:, None] - pos[None, :]) / (sigma / f)) ** 2)
    pool = torch.repeat_interleave(torch.eye(n // f, dtype=dtype), f, dim=1) / f
    return (g / g.sum(1, keepdim=True)) @ pool


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Approximately Gaussian blur (``sigma`` pixels) of frames [..., h, w, 3], returned at reduced resolution.

    Averaging f x f blocks (f the largest power of two <= sigma / 2, which blurs far less than sigma) and the
    rest of the Gaussian are one matrix per axis. For a cost only the blurred content matters, not its
    resolution; this is ~100x cheaper than a full-resolution convolution (measured: 200 x 10 frames 64x64,
    sigma 4: 7.5 s as a separable conv2d on one core).
    """
    if sigma <= 0:
        return x
    h, w = x.shape[-3:-1]
    f = 1
    while 2 * f <= sigma / 2 and h % (2 * f) == 0 and w % (2 * f) == 0:
        f *= 2
    mh = _blur_matrix(h, sigma, f, x.dtype).to(x.device)
    mw = _blur_matrix(w, sigma, f, x.dtype).to(x.device)
    return (mh @ x.movedim(-1, -3) @ mw.T).movedim(-3, -1)  # matmuls on [..., 3, h, w]: ~1.5x einsum's speed


class PixelMSE:
    """Mean squared error in [0, 1] pixel units between each predicted frame and the goal image: [N, H].

    ``blur`` (Gaussian sigma in pixels, 0 = off) blurs both first. Plain MSE is flat while an object and its
    place in the goal image do not overlap (moving it anywhere else costs the same), so a planner gets no
    signal from far away; blurring spreads every object over ~3 sigma and makes the cost fall with distance.
    """

    def __init__(self, goal, blur: float = 0.0):
        self.blur = float(blur)
        if self.blur < 0:
            raise ConfigError(f"PixelMSE: blur must be >= 0 pixels, got {blur}")
        goal = _goal(goal, "PixelMSE")
        self.goal_shape, self.goal = tuple(goal.shape), gaussian_blur(goal, self.blur)

    def __call__(self, frames, rewards, actions) -> torch.Tensor:
        x = _unit_frames(frames)
        if x.shape[-3:] != self.goal_shape:
            raise ValueError(f"PixelMSE: frames are {tuple(x.shape[-3:])}, goal is {self.goal_shape}")
        return (gaussian_blur(x, self.blur) - self.goal.to(x.device)).square().mean(dim=(-3, -2, -1))


class PerceptualDistance:
    """ST-LPIPS distance (``ivideogpt.eval.perceptual``) between each predicted frame and the goal: [N, H]."""

    def __init__(self, goal, batch_size: int = 64):
        self.goal, self.batch_size = _goal(goal, "PerceptualDistance"), batch_size

    def __call__(self, frames, rewards, actions) -> torch.Tensor:
        from ..eval import perceptual

        x = _unit_frames(frames)
        return perceptual(x, self.goal.expand_as(x), batch_size=self.batch_size)


def colour_centroid(weight: torch.Tensor) -> torch.Tensor:
    """Weighted mean pixel position [..., 2] (x = column, y = row; the frame spans [0, 1]) of weights [..., h, w]."""
    h, w = weight.shape[-2:]
    cy = (torch.arange(h, dtype=weight.dtype, device=weight.device) + 0.5) / h
    cx = (torch.arange(w, dtype=weight.dtype, device=weight.device) + 0.5) / w
    total = weight.sum((-2, -1)).clamp_min(1e-6)
    return torch.stack([(weight.sum(-2) * cx).sum(-1) / total, (weight.sum(-1) * cy).sum(-1) / total], -1)


class ObjectKeypoints:
    """Object-aware goal cost read off the pixels, per step [N, H] in frame widths.

    Pixel MSE to a goal image is dominated by the effector (large, high contrast): even a perfect model plans
    the effector into its goal-image pose and leaves the object. Here the user designates the object and the
    effector by colour (as Visual Foresight designates pixels); their positions in every predicted frame are soft
    colour centroids, the object's goal is its centroid in the goal image, and the cost is

        |object - goal| + approach * |effector - (object - reach * unit(goal - object))|

    the second term pulling the effector to the push pose behind the object (``reach``: centre distance at which
    they touch) so a short horizon still gets a signal before the object moves. Positions come only from the
    frames, so a world model is judged by where it draws things. A pixel counts for a colour with weight
    ``exp(-d^2 / 2 sigma^2)`` (d: RGB distance in [0, 1]) when it is nearer that colour than the background's.
    """

    def __init__(self, goal, object_colour, effector_colour, background_colour, reach: float,
                 approach: float = 0.5, sigma: float = 0.1):
        if reach < 0 or approach < 0 or sigma <= 0:
            raise ConfigError(f"ObjectKeypoints: need reach >= 0, approach >= 0, sigma > 0; got reach={reach}, "
                              f"approach={approach}, sigma={sigma}")
        self.colours = {k: torch.as_tensor(np.asarray(c, np.float32)).reshape(3) for k, c in
                        (("object", object_colour), ("effector", effector_colour), ("background", background_colour))}
        self.reach, self.approach, self.sigma = float(reach), float(approach), float(sigma)
        goal = _goal(goal, "ObjectKeypoints")
        self.goal_shape, self.goal = tuple(goal.shape), self.locate(goal, "object")

    def locate(self, x: torch.Tensor, what: str) -> torch.Tensor:
        """Position [..., 2] of the object or the effector in frames [..., h, w, 3] in [0, 1]."""
        d = (x - self.colours[what].to(x)).square().sum(-1)
        d_bg = (x - self.colours["background"].to(x)).square().sum(-1)
        w = torch.exp(-d / (2 * self.sigma ** 2)) * (d < d_bg)
        # A 3x3 erosion (min-filter) keeps filled shapes and removes thin lines: pusher draws the object's goal
        # ring in the object's colour, which would pull its centroid a third of the way to the goal.
        lead = w.shape[:-2]
        w = -torch.nn.functional.max_pool2d(-w.reshape(-1, 1, *w.shape[-2:]), 3, stride=1, padding=1)
        return colour_centroid(w.reshape(*lead, *w.shape[-2:]))

    def __call__(self, frames, rewards, actions) -> torch.Tensor:
        x = _unit_frames(frames)
        if x.shape[-3:] != self.goal_shape:
            raise ValueError(f"ObjectKeypoints: frames are {tuple(x.shape[-3:])}, goal is {self.goal_shape}")
        obj, eff = self.locate(x, "object"), self.locate(x, "effector")
        to_goal = self.goal.to(x) - obj
        dist = to_goal.norm(dim=-1)
        push_pose = obj - self.reach * to_goal / dist.clamp_min(1e-6)[..., None]
        return dist + self.approach * (eff - push_pose).norm(dim=-1)


class NegativeReward:
    """Minus the predicted reward per step: [N, H] (frames='sum' gives the negative return over the horizon)."""

    def __call__(self, frames, rewards, actions) -> torch.Tensor:
        if rewards is None:
            raise ValueError("NegativeReward: the model predicts no rewards (trained without a reward head)")
        r = rewards if isinstance(rewards, torch.Tensor) else torch.as_tensor(np.asarray(rewards))
        return -r.float()


@dataclass
class Cost:
    """A weighted sum of terms; callable as ``cost(frames, rewards, actions) -> [N]`` (float64 tensor)."""

    terms: list[CostTerm] = field(default_factory=list)

    def __post_init__(self):
        if not self.terms:
            raise ConfigError("a planning cost needs at least one term")

    def __call__(self, frames, rewards, actions) -> torch.Tensor:
        total = None
        for term in self.terms:
            c = term.fn(frames, rewards, actions)
            c = (c if isinstance(c, torch.Tensor) else torch.as_tensor(np.asarray(c))).double().cpu()
            n = len(actions)
            if c.ndim == 2 and c.shape[0] == n:
                c = reduce_horizon(c, term.frames, term.discount)
            elif c.shape != (n,):
                raise ValueError(f"cost term {term.name or term.fn}: returned shape {tuple(c.shape)}, expected "
                                 f"[{n}, H] or [{n}]")
            total = term.weight * c if total is None else total + term.weight * c
        return total


COST_NAMES = ("mse", "perceptual", "keypoints", "reward")


def goal_cost(spec: str, goal=None, frames: str = "last", discount: float = 0.9, blur: float = 0.0,
              designation: dict | None = None) -> Cost:
    """A cost from a spec like ``mse``, ``perceptual``, ``keypoints``, ``reward`` or ``mse:1,perceptual:0.5``
    (name:weight).

    Goal-image terms use ``frames``; the reward term always sums over the whole horizon (its meaning);
    ``blur`` is the Gaussian sigma (pixels) of the ``mse`` term; ``designation`` holds the ``keypoints`` term's
    colours and reach (``ObjectKeypoints`` arguments; an environment's ``designation()``, e.g. pusher's).
    """
    terms = []
    for part in spec.split(","):
        name, _, w = part.strip().partition(":")
        try:
            weight = float(w) if w else 1.0
        except ValueError:
            raise ConfigError(f"cost '{spec}': weight of '{name}' must be a number, got {w!r}") from None
        if name in ("mse", "perceptual", "keypoints") and goal is None:
            raise ConfigError(f"cost '{spec}': term '{name}' needs a goal image")
        if name == "mse":
            terms.append(CostTerm(PixelMSE(goal, blur), weight, frames, discount, name))
        elif name == "perceptual":
            terms.append(CostTerm(PerceptualDistance(goal), weight, frames, discount, name))
        elif name == "keypoints":
            if designation is None:
                raise ConfigError(f"cost '{spec}': term 'keypoints' needs the object and effector designated by "
                                  f"the environment (pusher has them; this environment does not)")
            terms.append(CostTerm(ObjectKeypoints(goal, **designation), weight, frames, discount, name))
        elif name == "reward":
            terms.append(CostTerm(NegativeReward(), weight, "sum", discount, name))
        else:
            raise ConfigError(f"cost '{spec}': unknown term '{name}'; known: {list(COST_NAMES)}")
    return Cost(terms)
