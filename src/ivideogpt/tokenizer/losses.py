"""Reconstruction terms and the logged image quality, on float frames in [-1, 1]."""

from __future__ import annotations

from collections.abc import Callable

import torch

Perceptual = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x, y) [M, 3, H, W] -> [M]


@torch.no_grad()
def psnr_db(x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean over frames of the PSNR (dB, images mapped to [0, 1]) of ``x`` against ``y`` [..., 3, H, W]."""
    a = (x.detach().float().clamp(-1, 1) + 1) / 2
    b = (y.detach().float().clamp(-1, 1) + 1) / 2
    mse = ((a - b) ** 2).flatten(-3).mean(-1).clamp(min=1e-10)
    return (10 * torch.log10(1.0 / mse)).mean().item()


def l1_sum(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (x - y).abs().sum()


def perceptual_mean(perceptual: Perceptual, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean perceptual distance over frames of ``x``/``y`` [..., 3, H, W]."""
    return perceptual(x.reshape(-1, *x.shape[-3:]), y.reshape(-1, *y.shape[-3:])).mean()


def moving_pixels(x: torch.Tensor, ref: torch.Tensor, threshold: float) -> torch.Tensor:
    """1.0 where ``x`` differs from ``ref`` (broadcast) by more than ``threshold`` in any channel, else 0.0:
    frames [..., 3, H, W] -> mask [..., 1, H, W]."""
    return ((x - ref).abs().amax(-3, keepdim=True) > threshold).to(x.dtype)
