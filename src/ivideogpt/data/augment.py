"""Clip augmentation: one random resized crop and one colour jitter per clip, identical across its frames.

Identical across frames because a world model must learn the scene's motion, not a flicker the
augmentation adds. Parameters are drawn once per clip with ``sample_params`` (from a numpy
Generator, so a clip is a pure function of its seed) and applied with ``apply``. Torch ops only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass
class AugmentConfig:
    crop_scale: tuple[float, float] = (0.8, 1.0)  # area of the crop as a fraction of the frame
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)  # width / height of the crop
    brightness: float = 0.2  # factor drawn from [1 - b, 1 + b]
    contrast: float = 0.2
    saturation: float = 0.2
    hue: float = 0.05  # shift drawn from [-h, h] (fraction of the colour wheel)
    enabled: bool = True


def sample_params(cfg: AugmentConfig, rng: np.random.Generator) -> dict:
    """Draw one clip's augmentation. The crop is relative (fractions of H and W), so the same
    parameters apply at any resolution."""
    if not cfg.enabled:
        return {"enabled": False}
    lo, hi = math.log(cfg.crop_ratio[0]), math.log(cfg.crop_ratio[1])
    # As torchvision's RandomResizedCrop: rejection-sample area and aspect ratio, then fall back
    # to the full frame (only reachable with extreme ratios).
    crop = (0.0, 0.0, 1.0, 1.0)
    for _ in range(10):
        area = rng.uniform(*cfg.crop_scale)
        ratio = math.exp(rng.uniform(lo, hi))
        w, h = math.sqrt(area * ratio), math.sqrt(area / ratio)
        if w <= 1 and h <= 1:
            crop = (rng.uniform(0, 1 - h), rng.uniform(0, 1 - w), h, w)
            break
    return {
        "enabled": True,
        "crop": crop,  # (top, left, height, width), fractions
        "brightness": rng.uniform(1 - cfg.brightness, 1 + cfg.brightness),
        "contrast": rng.uniform(1 - cfg.contrast, 1 + cfg.contrast),
        "saturation": rng.uniform(1 - cfg.saturation, 1 + cfg.saturation),
        "hue": rng.uniform(-cfg.hue, cfg.hue),
        "order": rng.permutation(4).tolist(),  # jitter order, random as in torchvision's ColorJitter
    }


def crop_box(crop, h: int, w: int) -> tuple[int, int, int, int]:
    """Relative (top, left, height, width) -> pixel box inside an h x w frame."""
    top, left, ch, cw = crop
    ph, pw = max(1, min(h, round(ch * h))), max(1, min(w, round(cw * w)))
    py, px = min(h - ph, round(top * h)), min(w - pw, round(left * w))
    return py, px, ph, pw


def resize(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """[T, 3, H, W] -> [T, 3, *size], bilinear with antialiasing (no-op when already that size)."""
    if tuple(frames.shape[-2:]) == tuple(size):
        return frames
    return F.interpolate(frames, size=tuple(size), mode="bilinear", antialias=True, align_corners=False)


def apply(frames: torch.Tensor, params: dict, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Augment a clip ``frames`` [T, 3, H, W] in [-1, 1]; output [T, 3, *size] (default: H, W)."""
    h, w = frames.shape[-2:]
    size = (h, w) if size is None else tuple(size)
    if not params.get("enabled", False):
        return resize(frames, size)
    y, x, ch, cw = crop_box(params["crop"], h, w)
    out = resize(frames[..., y:y + ch, x:x + cw], size)
    out = (out + 1) / 2
    for op in params["order"]:
        if op == 0:
            out = (out * params["brightness"]).clamp(0, 1)
        elif op == 1:
            # One mean over the whole clip (not per frame) so every frame gets the same affine map.
            mean = _gray(out).mean()
            out = _blend(out, mean, params["contrast"])
        elif op == 2:
            out = _blend(out, _gray(out).unsqueeze(-3), params["saturation"])
        elif params["hue"] != 0:
            out = _shift_hue(out, params["hue"])
    return out * 2 - 1


def _gray(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x.unbind(-3)
    return 0.299 * r + 0.587 * g + 0.114 * b  # ITU-R 601 luma, as PIL and torchvision


def _blend(x: torch.Tensor, other, factor: float) -> torch.Tensor:
    return (factor * x + (1 - factor) * other).clamp(0, 1)


def _shift_hue(x: torch.Tensor, shift: float) -> torch.Tensor:
    """Rotate hue by ``shift`` (fraction of the wheel) through HSV; x in [0, 1], [..., 3, H, W]."""
    r, g, b = x.unbind(-3)
    maxc, _ = x.max(-3)
    minc, _ = x.min(-3)
    delta = maxc - minc
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    rc, gc, bc = (maxc - r) / safe, (maxc - g) / safe, (maxc - b) / safe
    hue = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    hue = torch.where(delta > 0, (hue / 6.0) % 1.0, torch.zeros_like(hue))
    sat = torch.where(maxc > 0, delta / maxc.clamp_min(1e-12), torch.zeros_like(maxc))
    hue = (hue + shift) % 1.0
    # HSV -> RGB
    v = maxc
    i = torch.floor(hue * 6.0)
    f = hue * 6.0 - i
    p, q, t = v * (1 - sat), v * (1 - sat * f), v * (1 - sat * (1 - f))
    i = i.long() % 6
    choices = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    out = torch.zeros_like(x)
    for k, (rr, gg, bb) in enumerate(choices):
        m = (i == k).unsqueeze(-3)
        out = torch.where(m, torch.stack([rr, gg, bb], -3), out)
    return out.clamp(0, 1)
