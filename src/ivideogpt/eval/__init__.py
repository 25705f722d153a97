"""Evaluation metrics on frames ``[..., H, W, 3]`` (uint8 or float in [0, 1]), one value per frame.

``psnr``, ``ssim`` and ``perceptual`` (ST-LPIPS, offline weights) are always available; ``lpips`` is
standard AlexNet LPIPS from weight files the user supplies; ``fvd`` compares sets of videos
``[B, T, H, W, 3]`` and imports its module (scipy, I3D) on first call.

The public names ``perceptual``, ``lpips`` and ``fvd`` are functions that share their module's name, so
``ivideogpt.eval.<name>`` is the function; reach a module with ``from ivideogpt.eval.fvd import ...``.
"""

from __future__ import annotations

import sys
import types

from .lpips import LPIPS, lpips
from .metrics import psnr, ssim
from .perceptual import STLPIPS, perceptual


def fvd(*args, **kwargs):
    """Fréchet Video Distance between real and generated videos; see ``ivideogpt.eval.fvd.fvd``."""
    from .fvd import fvd as impl

    return impl(*args, **kwargs)


class _Package(types.ModuleType):
    # The first import of the submodule `.fvd` (by the function above or by anyone's
    # `from ivideogpt.eval.fvd import ...`) would rebind the attribute `fvd` to the module and break
    # `ivideogpt.eval.fvd(real, fake)`. The eager imports above already settled the other two names.
    def __setattr__(self, name, value):
        if not (name == "fvd" and isinstance(value, types.ModuleType)):
            super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

__all__ = ["psnr", "ssim", "perceptual", "lpips", "fvd", "STLPIPS", "LPIPS"]
