"""Per-frame PSNR and SSIM, batched in torch.

Both take two stacks of frames ``[..., H, W, 3]`` (uint8, or float in [0, 1]) and return one value per
frame with the leading dimensions kept. They reproduce scikit-image's ``peak_signal_noise_ratio`` and
Gaussian ``structural_similarity`` (sigma 1.5, 11x11 window, K1 = 0.01, K2 = 0.03, population
covariance, valid region only) to 1e-6 — the SSIM protocol of the iVideoGPT paper.
"""

from __future__ import annotations

import math

import torch
from pytorch_msssim import ssim as _msssim_ssim

from ..frames import to_unit

# Gaussian SSIM window of the paper (and scikit-image's gaussian_weights=True at sigma 1.5).
SSIM_WIN_SIZE = 11
SSIM_WIN_SIGMA = 1.5


def frame_pair(a, b) -> tuple[torch.Tensor, torch.Tensor]:
    """Check two frame stacks and return them as float32 tensors ``[..., H, W, 3]`` in [0, 1].

    Shared by every frame metric so that all of them accept and reject the same inputs.
    """
    x, y = to_unit(a), to_unit(b)
    if x.shape != y.shape:
        raise ValueError(f"frame shapes differ: a is {tuple(x.shape)}, b is {tuple(y.shape)}")
    if x.ndim < 3 or x.shape[-1] != 3:
        raise ValueError(
            f"frames must be [..., H, W, 3]; got a {tuple(x.shape)} and b {tuple(y.shape)}"
        )
    for name, t in (("a", x), ("b", y)):
        # A float frame in [0, 255] or [-1, 1] would give plausible-looking but wrong numbers.
        if t.numel() and (t.min() < 0 or t.max() > 1):
            raise ValueError(
                f"float frames must lie in [0, 1]; {name} spans [{t.min():.3g}, {t.max():.3g}] "
                "(pass uint8 frames, or divide by 255)"
            )
    return x, y


def psnr(a, b, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per frame: ``[..., H, W, 3]`` pairs -> ``[...]`` float32.

    Frames are compared in [0, 1] (uint8 is divided by 255), so ``data_range`` is 1 unless the
    peak of interest differs. Identical frames give ``inf``, as scikit-image does; average PSNR over
    a test set only after deciding how to treat them (e.g. best-of-K picks them, which is right).
    """
    x, y = frame_pair(a, b)
    # float64 so the result matches scikit-image (which works in float64) to well below 1e-4 dB.
    mse = (x.double() - y.double()).square().mean(dim=(-3, -2, -1))
    return (10.0 * torch.log10(data_range**2 / mse)).float()


def ssim(a, b) -> torch.Tensor:
    """Gaussian SSIM per frame (mean over pixels of the valid region and over channels): ``[...]``.

    Frames must be at least 11x11 (the window); scikit-image would also refuse smaller ones.
    """
    x, y = frame_pair(a, b)
    h, w = x.shape[-3], x.shape[-2]
    if h < SSIM_WIN_SIZE or w < SSIM_WIN_SIZE:
        raise ValueError(f"SSIM needs frames of at least {SSIM_WIN_SIZE}x{SSIM_WIN_SIZE}; got {h}x{w}")
    lead = x.shape[:-3]
    n = math.prod(lead)
    if n == 0:
        return torch.zeros(lead)
    xs = x.reshape(n, h, w, 3).movedim(-1, 1).double()
    ys = y.reshape(n, h, w, 3).movedim(-1, 1).double()
    out = _msssim_ssim(
        xs, ys, data_range=1.0, size_average=False, win_size=SSIM_WIN_SIZE, win_sigma=SSIM_WIN_SIGMA,
        K=(0.01, 0.03),
    )
    return out.float().reshape(lead)
