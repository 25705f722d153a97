"""Clip augmentation: one crop + colour jitter per clip, identical across frames, bounded, deterministic."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ivideogpt.data.augment import AugmentConfig, apply, crop_box, sample_params


def clip(t=4, h=24, w=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(t, 3, h, w, generator=g) * 2 - 1


def test_identical_across_frames():
    frame = clip(1)
    frames = frame.repeat(5, 1, 1, 1)
    for s in range(20):
        out = apply(frames, sample_params(AugmentConfig(), np.random.default_rng(s)))
        assert out.shape == frames.shape
        assert not torch.equal(out[0], frame[0])
        for t in range(1, 5):
            assert torch.equal(out[t], out[0])


def test_same_transform_for_every_frame_of_a_real_clip():
    # Each output frame must equal the clip transform applied to that frame alone, up to the one
    # clip-level statistic (contrast mean) -- with contrast off, exactly.
    frames = clip(3)
    params = sample_params(AugmentConfig(contrast=0.0), np.random.default_rng(1))
    out = apply(frames, params)
    for t in range(3):
        torch.testing.assert_close(out[t:t + 1], apply(frames[t:t + 1], params))


def test_crop_scale_and_ratio_bounds():
    cfg = AugmentConfig()
    h, w = 64, 64
    for s in range(300):
        top, left, ch, cw = sample_params(cfg, np.random.default_rng(s))["crop"]
        assert 0.8 - 1e-9 <= ch * cw <= 1.0 + 1e-9
        assert 3 / 4 - 1e-9 <= cw / ch <= 4 / 3 + 1e-9
        assert top >= 0 and left >= 0 and top + ch <= 1 + 1e-9 and left + cw <= 1 + 1e-9
        y, x, ph, pw = crop_box((top, left, ch, cw), h, w)
        assert y >= 0 and x >= 0 and y + ph <= h and x + pw <= w
        assert 0.8 - 2 / h <= ph * pw / (h * w) <= 1.0


def test_crop_is_a_resized_crop():
    cfg = AugmentConfig(crop_scale=(0.25, 0.25), crop_ratio=(1.0, 1.0), brightness=0, contrast=0,
                        saturation=0, hue=0)
    frames = clip(2, 32, 32)
    params = sample_params(cfg, np.random.default_rng(0))
    y, x, ph, pw = crop_box(params["crop"], 32, 32)
    assert (ph, pw) == (16, 16)
    expected = F.interpolate(frames[..., y:y + 16, x:x + 16], size=(32, 32), mode="bilinear",
                             antialias=True, align_corners=False).clamp(-1, 1)
    torch.testing.assert_close(apply(frames, params), expected, atol=1e-5, rtol=0)
    assert apply(frames, params, size=(8, 8)).shape == (2, 3, 8, 8)


def test_deterministic_given_params_and_seed():
    frames = clip()
    p1 = sample_params(AugmentConfig(), np.random.default_rng(7))
    p2 = sample_params(AugmentConfig(), np.random.default_rng(7))
    assert p1 == p2
    assert torch.equal(apply(frames, p1), apply(frames, p2))
    p3 = sample_params(AugmentConfig(), np.random.default_rng(8))
    assert not torch.equal(apply(frames, p1), apply(frames, p3))


def test_identity_when_disabled():
    frames = clip()
    params = sample_params(AugmentConfig(enabled=False), np.random.default_rng(0))
    assert torch.equal(apply(frames, params), frames)
    assert apply(frames, params, size=(12, 16)).shape == (4, 3, 12, 16)


def test_output_in_range_and_colour_ops():
    frames = clip()
    for s in range(10):
        params = sample_params(AugmentConfig(brightness=0.9, contrast=0.9), np.random.default_rng(s))
        out = apply(frames, params)
        assert out.min() >= -1 and out.max() <= 1
    # hue shift by a third of the wheel turns pure red into pure green
    red = torch.tensor([1.0, -1.0, -1.0]).view(1, 3, 1, 1).expand(1, 3, 4, 4)
    params = {"enabled": True, "crop": (0, 0, 1, 1), "brightness": 1.0, "contrast": 1.0, "saturation": 1.0,
              "hue": 1 / 3, "order": [0, 1, 2, 3]}
    torch.testing.assert_close(apply(red, params)[0, :, 0, 0], torch.tensor([-1.0, 1.0, -1.0]), atol=1e-5,
                               rtol=0)
    # brightness 0.5 halves the [0, 1] intensity; saturation 0 gives gray
    params.update(hue=0.0, brightness=0.5)
    torch.testing.assert_close(apply(red, params)[0, :, 0, 0], torch.tensor([0.0, -1.0, -1.0]), atol=1e-5,
                               rtol=0)
    params.update(brightness=1.0, saturation=0.0)
    gray = apply(red, params)[0, :, 0, 0]
    assert torch.allclose(gray, gray[0].expand(3))
    assert math.isclose((gray[0].item() + 1) / 2, 0.299, abs_tol=1e-5)


@pytest.mark.parametrize("hue", [0.0, 0.1, -0.05])
def test_hue_roundtrip_preserves_value(hue):
    frames = clip(1)
    params = {"enabled": True, "crop": (0, 0, 1, 1), "brightness": 1.0, "contrast": 1.0, "saturation": 1.0,
              "hue": hue, "order": [3, 0, 1, 2]}
    out = apply(frames, params)
    # hue rotation keeps each pixel's max channel (HSV value)
    torch.testing.assert_close(out.max(1).values, frames.max(1).values, atol=1e-5, rtol=0)
    if hue == 0.0:
        torch.testing.assert_close(out, frames, atol=1e-5, rtol=0)
