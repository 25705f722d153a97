"""The one place where frames change representation.

At API boundaries frames are uint8 ``[..., H, W, 3]`` (channels-last, like simulators and video
files); inside models they are float ``[..., 3, H, W]`` in ``[-1, 1]``.
"""

from __future__ import annotations

import numpy as np
import torch


def to_model(frames, device=None, dtype=torch.float32) -> torch.Tensor:
    """uint8 ``[..., H, W, 3]`` (numpy or torch) -> float ``[..., 3, H, W]`` in [-1, 1]."""
    x = torch.as_tensor(np.asarray(frames) if not isinstance(frames, torch.Tensor) else frames)
    if x.dtype != torch.uint8:
        raise TypeError(f"frames must be uint8 [..., H, W, 3], got dtype {x.dtype}")
    if x.ndim < 3 or x.shape[-1] != 3:
        raise ValueError(f"frames must be [..., H, W, 3], got shape {tuple(x.shape)}")
    x = x.to(device=device).movedim(-1, -3).to(dtype)
    return x / 127.5 - 1.0


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float ``[..., 3, H, W]`` in [-1, 1] -> uint8 ``[..., H, W, 3]`` (rounded, clamped)."""
    y = ((x.detach().float().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
    return y.movedim(-3, -1)


def to_unit(frames) -> torch.Tensor:
    """uint8 ``[..., H, W, 3]`` or float in [0, 1] -> float32 ``[..., H, W, 3]`` in [0, 1] (metrics)."""
    x = frames if isinstance(frames, torch.Tensor) else torch.as_tensor(np.asarray(frames))
    if x.dtype == torch.uint8:
        return x.float() / 255.0
    return x.float()
