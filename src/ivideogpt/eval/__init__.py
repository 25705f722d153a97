"""Evaluation metrics on frames ``[..., H, W, 3]`` (uint8 or float in [0, 1]), one value per frame.

``psnr``, ``ssim`` and ``perceptual`` (ST-LPIPS, offline weights; module ``stlpips``) are always available;
``lpips`` is standard AlexNet LPIPS from weight files the user supplies (module ``lpips_net``); ``fvd``
compares sets of videos ``[B, T, H, W, 3]`` (module ``frechet``, which loads scipy and the I3D on first call).
"""

from __future__ import annotations

from .lpips_net import LPIPS, lpips
from .metrics import psnr, ssim
from .stlpips import STLPIPS, perceptual


def fvd(*args, **kwargs):
    """Fréchet Video Distance between real and generated videos; see :func:`ivideogpt.eval.frechet.fvd`."""
    from .frechet import fvd as impl

    return impl(*args, **kwargs)


__all__ = ["psnr", "ssim", "perceptual", "lpips", "fvd", "STLPIPS", "LPIPS"]
