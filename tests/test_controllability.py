"""Action controllability: the inverse-dynamics model learns actions from real pusher frames, reads nothing
from motionless pairs, and — inside the evaluate protocol — exposes a perfect predictor that ignores its
actions (high on true actions, ~0 when scored against the shuffled actions it was given)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from ivideogpt.commands.collect import collect
from ivideogpt.data.clips import ClipDataset
from ivideogpt.errors import CheckpointError
from ivideogpt.eval.controllability import InverseDynamics, controllability, r2_mae, train_inverse_dynamics
from ivideogpt.eval.protocol import PSNR_CAP, evaluate
from ivideogpt.frames import to_uint8

RES, T0, H = 32, 2, 6


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    # 24 short episodes: enough scenes (table textures, block shapes) that the IDM cannot memorise them.
    return collect("pusher", tmp_path_factory.mktemp("idm") / "pusher", episodes=24, steps=12, size=RES,
                   progress=False)


@pytest.fixture(scope="module")
def idm(data):
    return train_inverse_dynamics(data, steps=150, batch=32, seed=0)


def val_clips(data, length=12):
    ds = ClipDataset(data, length, split="val", val_clips_per_episode=1)
    items = [ds[i] for i in range(len(ds))]
    return to_uint8(torch.stack([it["frames"] for it in items])), torch.stack([it["actions"] for it in items])


def test_idm_recovers_actions_from_real_frames_not_from_still_pairs(idm, data):
    frames, actions = val_clips(data)
    real = controllability(idm, frames[:, :-1], frames[:, 1:], actions)
    assert real["r2"] > 0.5, real  # measured 0.95 (val episodes the IDM never saw)
    assert real["n"] == actions.shape[0] * actions.shape[1]
    still = controllability(idm, frames[:, :-1], frames[:, :-1], actions)
    # No motion -> one constant output (motion-weighted pooling) -> R^2 <= 0, whatever the scene.
    assert still["r2"] < 0.05 and still["mae"] > real["mae"], still


def test_r2_mae_closed_forms():
    rng = np.random.default_rng(0)
    a = torch.tensor(rng.normal(size=(50, 3)), dtype=torch.float32)
    a[:, 2] = 0.5  # a dimension that never varies: left out of R^2
    std = torch.ones(3)
    perfect = r2_mae(a, a, std)
    assert perfect["r2"] == pytest.approx(1.0) and perfect["mae"] == 0.0 and perfect["n"] == 50
    mean = r2_mae(a.mean(0).expand_as(a), a, std)
    assert mean["r2"] == pytest.approx(0.0, abs=1e-9)
    assert r2_mae(-a, a, std)["r2"] < -1  # worse than the mean: negative
    assert r2_mae(a[:0], a[:0], std)["r2"] is None


def test_idm_training_is_deterministic_and_round_trips(data, tmp_path):
    a = train_inverse_dynamics(data, steps=3, batch=4, seed=1)
    b = train_inverse_dynamics(data, steps=3, batch=4, seed=1)
    for (k, v), w in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(v, w), k
    a.save_pretrained(tmp_path / "idm", extra={"fingerprint": {"x": 1}})
    c = InverseDynamics.from_pretrained(tmp_path / "idm")
    x = torch.randint(0, 256, (2, RES, RES, 3), dtype=torch.uint8)
    y = torch.randint(0, 256, (2, RES, RES, 3), dtype=torch.uint8)
    assert torch.equal(a.predict(x, y), c.predict(x, y))
    with pytest.raises(CheckpointError):
        InverseDynamics.from_pretrained(tmp_path / "nothing")


class ActionIgnoringOracle:
    """A 'world model' that returns the true future of each clip (found by its context frames) whatever
    actions it is given: perfect pixels, zero controllability."""

    context_frames, action_dim, max_steps = T0, 2, H

    def __init__(self, frames: torch.Tensor):
        self.futures = {f[:T0].numpy().tobytes(): f[T0:T0 + H] for f in frames}
        self.tokenizer = SimpleNamespace(config=SimpleNamespace(resolution=RES))
        self.transformer = SimpleNamespace(config=SimpleNamespace(use_reward=False))

    def rollout(self, ctx, actions=None, *, horizon=None, seed=None, temperature=1.0, top_k=None):
        pred = torch.stack([self.futures[c.numpy().tobytes()] for c in ctx])
        return pred[:, : actions.shape[1]], None


def test_controllability_exposes_a_model_that_ignores_actions(idm, data):
    frames, _ = val_clips(data, T0 + H)
    report = evaluate(ActionIgnoringOracle(frames), data, horizon=H, samples=2, fvd=False, perceptual=False,
                      progress=False, idm=idm)
    c = report["controllability"]
    assert report["metrics"]["psnr"]["mean"]["mean"] == PSNR_CAP  # perfect frames
    assert c["predicted"]["r2"] == pytest.approx(c["real"]["r2"], abs=1e-6) and c["real"]["r2"] > 0.5
    assert c["shuffled_vs_own"]["r2"] == pytest.approx(c["real"]["r2"], abs=1e-6)  # it shows the clip's own motion
    assert c["shuffled_vs_given"]["r2"] < 0.2, c  # ... not the motion it was told to make
    assert report["reward"]["reason"].endswith("no reward head")
