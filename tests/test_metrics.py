"""PSNR / SSIM per frame, checked against scikit-image on random, smooth and simulator frames."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from ivideogpt.eval import psnr, ssim


def sk_psnr(a, b):
    return peak_signal_noise_ratio(a, b, data_range=1.0)


def sk_ssim(a, b):
    return structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                 data_range=1.0, channel_axis=-1)


def per_frame(fn, a, b):
    """scikit-image on every frame of [..., H, W, 3] float64 stacks -> [...]."""
    lead = a.shape[:-3]
    fa, fb = a.reshape(-1, *a.shape[-3:]), b.reshape(-1, *b.shape[-3:])
    return np.array([fn(x, y) for x, y in zip(fa, fb)]).reshape(lead)


def smooth_frames(rng, n, size=64):
    """Low-frequency images (sums of random sinusoids) with mild noise: closer to real frames."""
    t = np.linspace(0, 1, size)
    yy, xx = np.meshgrid(t, t, indexing="ij")
    out = np.zeros((n, size, size, 3))
    for i in range(n):
        for c in range(3):
            f = rng.uniform(0.5, 3, size=(3, 2))
            ph = rng.uniform(0, 2 * np.pi, size=3)
            img = sum(np.sin(2 * np.pi * (fx * xx + fy * yy) + p) for (fx, fy), p in zip(f, ph))
            out[i, :, :, c] = 0.5 + 0.15 * img
    return np.clip(out + rng.normal(0, 0.02, out.shape), 0, 1)


def pusher_frames(steps=9):
    envs = pytest.importorskip("ivideogpt.envs")
    env = envs.make("pusher")
    frame, _ = env.reset(seed=0)
    frames = [frame]
    rng = np.random.default_rng(0)
    for _ in range(steps - 1):
        frame, *_ = env.step(rng.uniform(-1, 1, size=env.action_space.shape).astype(np.float32))
        frames.append(frame)
    return np.stack(frames)


@pytest.mark.parametrize("kind", ["random", "smooth"])
def test_match_scikit_image(kind):
    rng = np.random.default_rng(1)
    if kind == "random":
        a = rng.uniform(0, 1, size=(2, 3, 64, 64, 3))
        b = np.clip(a + rng.normal(0, 0.2, a.shape), 0, 1)
    else:
        a = smooth_frames(rng, 6).reshape(2, 3, 64, 64, 3)
        b = np.clip(a + rng.normal(0, 0.05, a.shape), 0, 1)
    p, s = psnr(a, b), ssim(a, b)
    assert p.shape == s.shape == (2, 3) and p.dtype == s.dtype == torch.float32
    np.testing.assert_allclose(p.numpy(), per_frame(sk_psnr, a, b), atol=1e-4, rtol=0)
    np.testing.assert_allclose(s.numpy(), per_frame(sk_ssim, a, b), atol=1e-4, rtol=0)


def test_match_scikit_image_on_simulator_frames():
    frames = pusher_frames()  # uint8 [T, 64, 64, 3]
    a, b = frames[:-1], frames[1:]  # consecutive frames: small, local changes
    fa, fb = a / 255.0, b / 255.0
    np.testing.assert_allclose(psnr(a, b).numpy(), per_frame(sk_psnr, fa, fb), atol=1e-4, rtol=0)
    np.testing.assert_allclose(ssim(a, b).numpy(), per_frame(sk_ssim, fa, fb), atol=1e-4, rtol=0)
    # uint8 in, torch in, float in: one answer
    torch.testing.assert_close(ssim(torch.from_numpy(a), torch.from_numpy(b)), ssim(fa, fb))


def test_uint8_equals_float_and_known_values():
    a = np.zeros((2, 16, 16, 3), np.uint8)
    b = a.copy()
    b[0] = 255  # MSE 1 -> 0 dB
    b[1, ::2] = 51  # half the pixels off by 0.2 -> MSE 0.02 -> 16.9897 dB
    np.testing.assert_allclose(psnr(a, b).numpy(), [0.0, 10 * np.log10(1 / 0.02)], atol=1e-5)
    torch.testing.assert_close(psnr(a, b), psnr(a / 255.0, b / 255.0))


def test_identical_frames():
    a = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    assert torch.isinf(psnr(a, a)).all()  # as scikit-image: no noise, infinite PSNR
    torch.testing.assert_close(ssim(a, a), torch.ones(3))


def test_ssim_orders_degradations():
    rng = np.random.default_rng(2)
    a = smooth_frames(rng, 1)
    s = [ssim(a, np.clip(a + rng.normal(0, sd, a.shape), 0, 1)).item() for sd in (0.01, 0.05, 0.2)]
    assert s[0] > s[1] > s[2]


@pytest.mark.parametrize(
    "shape_a, shape_b, match",
    [((2, 8, 8, 3), (2, 8, 9, 3), r"\(2, 8, 8, 3\).*\(2, 8, 9, 3\)"),
     ((2, 8, 8, 4), (2, 8, 8, 4), r"\[\.\.\., H, W, 3\].*\(2, 8, 8, 4\)"),
     ((8, 3), (8, 3), r"\[\.\.\., H, W, 3\]")],
)
def test_bad_shapes(shape_a, shape_b, match):
    for fn in (psnr, ssim):
        with pytest.raises(ValueError, match=match):
            fn(np.zeros(shape_a, np.uint8), np.zeros(shape_b, np.uint8))


def test_bad_range_and_small_frames():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        psnr(np.full((4, 4, 3), 200.0), np.zeros((4, 4, 3)))
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(np.zeros((10, 32, 3)), np.zeros((10, 32, 3)))
