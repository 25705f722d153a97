"""Training engine: exact resume, NaN handling, refusing to overwrite a run, schedules."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from torch.utils.data import Dataset

from ivideogpt.checkpoint import latest_checkpoint
from ivideogpt.train.config import TrainConfig
from ivideogpt.train.engine import Trainer, TrainingError, lr_lambda


class _Items(Dataset):
    """Item k is a pure function of k, like the real clip datasets."""

    def __len__(self):
        return 10**6

    def __getitem__(self, k):
        rng = np.random.default_rng([7, k])
        x = rng.standard_normal(4).astype(np.float32)
        return {"x": torch.from_numpy(x), "y": torch.tensor(x @ np.array([1.0, -2.0, 0.5, 3.0], np.float32))}


class _ToyModule(torch.nn.Module):
    def __init__(self, nan_at):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.1), torch.nn.Linear(8, 1))
        self.nan_at = nan_at

    def forward(self, batch, step):
        loss = ((self.net(batch["x"]).squeeze(-1) - batch["y"]) ** 2).mean()
        if self.nan_at is not None and step >= self.nan_at:
            loss = loss * float("nan")
        return loss, {}


class ToyTask:
    name = "toy"

    def __init__(self, nan_at: int | None = None):
        self.nan_at = nan_at

    def trainable(self):
        torch.manual_seed(0)
        return _ToyModule(self.nan_at)

    def train_dataset(self):
        return _Items()

    def val_dataset(self):
        return None

    def validate(self, model, batches):
        return {}, None

    def save_model(self, model, path):
        path.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path / "model.safetensors"))

    def load_model(self, model, path):
        model.load_state_dict(load_file(str(path / "model.safetensors")))


def _cfg(**kw):
    base = dict(max_steps=6, batch_size=4, lr=1e-2, warmup_steps=2, schedule="cosine", save_every=3,
                log_every=1, keep_last=5)
    base.update(kw)
    return TrainConfig(**base)


def _weights(run):
    return load_file(str(latest_checkpoint(run) / "model" / "model.safetensors"))


def test_resume_is_exact(tmp_path):
    import shutil

    Trainer(ToyTask(), _cfg(max_steps=6), tmp_path / "full", progress=False).fit()
    # Same run, "killed" right after its step-3 checkpoint: drop what came later, then resume to 6.
    Trainer(ToyTask(), _cfg(max_steps=6), tmp_path / "part", progress=False).fit()
    shutil.rmtree(tmp_path / "part" / "checkpoints" / "step_00000006")
    rows = [r for r in map(json.loads, open(tmp_path / "part" / "metrics.jsonl")) if r.get("step", 0) <= 3]
    (tmp_path / "part" / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows if "event" not in r))
    Trainer(ToyTask(), _cfg(max_steps=6), tmp_path / "part", resume=True, progress=False).fit()
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "part")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)
    # and the loss curve continues identically
    la = [r["loss"] for r in map(json.loads, open(tmp_path / "full" / "metrics.jsonl")) if "loss" in r]
    lb = [r["loss"] for r in map(json.loads, open(tmp_path / "part" / "metrics.jsonl")) if "loss" in r]
    assert np.allclose(la, lb, atol=1e-6)


class _NoisyTask(ToyTask):
    """A task whose loss draws from every process-global random stream (torch, numpy, Python), as user code may."""

    def trainable(self):
        module = super().trainable()
        base = module.forward

        def forward(batch, step):
            loss, logs = base(batch, step)
            noise = float(np.random.standard_normal()) + random.random() + float(torch.randn(()))
            return loss * (1 + 0.1 * noise), logs

        module.forward = forward
        return module


def test_resume_restores_every_global_random_stream(tmp_path):
    """Killed right after its step-3 checkpoint (what came later deleted, metrics.jsonl left as it was: the resume
    drops the rows written after the checkpoint), then resumed: bit-identical weights, optimizer, RNG and metrics."""
    import shutil

    Trainer(_NoisyTask(), _cfg(max_steps=6), tmp_path / "full", progress=False).fit()
    Trainer(_NoisyTask(), _cfg(max_steps=6), tmp_path / "part", progress=False).fit()
    shutil.rmtree(tmp_path / "part" / "checkpoints" / "step_00000006")
    Trainer(_NoisyTask(), _cfg(max_steps=6), tmp_path / "part", resume=True, progress=False).fit()
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "part")
    assert all(torch.equal(a[k], b[k]) for k in a)
    sa, sb = (torch.load(latest_checkpoint(tmp_path / r) / "train_state.pt", weights_only=True)
              for r in ("full", "part"))
    ra, rb = sa["rng"][0], sb["rng"][0]
    assert torch.equal(ra["torch"], rb["torch"]) and ra["python"] == rb["python"]
    assert torch.equal(ra["numpy"]["key"], rb["numpy"]["key"]) and ra["numpy"]["pos"] == rb["numpy"]["pos"]
    for pa, pb in zip(sa["optimizer"]["state"].values(), sb["optimizer"]["state"].values()):
        assert all(torch.equal(pa[k], pb[k]) for k in pa)
    rows = [[{k: v for k, v in r.items() if k not in ("elapsed_s", "seconds", "checkpoint")}
             for r in map(json.loads, open(tmp_path / run / "metrics.jsonl"))] for run in ("full", "part")]
    assert rows[0] == rows[1] and len(rows[0]) == 7


def test_minutes_budget_clock_continues_after_resume(tmp_path):
    import shutil

    Trainer(ToyTask(), _cfg(max_steps=6, max_minutes=60.0), tmp_path, progress=False).fit()
    at3 = torch.load(tmp_path / "checkpoints" / "step_00000003" / "train_state.pt", weights_only=True)["elapsed_s"]
    shutil.rmtree(tmp_path / "checkpoints" / "step_00000006")
    Trainer(ToyTask(), _cfg(max_steps=6, max_minutes=60.0), tmp_path, resume=True, progress=False).fit()
    end = [json.loads(x) for x in open(tmp_path / "metrics.jsonl")][-1]
    assert end["event"] == "end" and end["seconds"] >= round(at3, 1)
    # a budget already spent before the checkpoint stops the resumed run at once, as it would have stopped
    shutil.rmtree(tmp_path / "checkpoints" / "step_00000006")
    summary = Trainer(ToyTask(), _cfg(max_steps=6, max_minutes=at3 / 60), tmp_path, resume=True,
                      progress=False).fit()
    assert summary["stopped_by"] == "max_minutes" and summary["step"] == 3


def test_refuses_to_overwrite_without_resume(tmp_path):
    Trainer(ToyTask(), _cfg(max_steps=1), tmp_path, progress=False).fit()
    with pytest.raises(TrainingError, match="--resume"):
        Trainer(ToyTask(), _cfg(max_steps=1), tmp_path, progress=False).fit()


def test_nan_stops_and_keeps_last_good_checkpoint(tmp_path):
    with pytest.raises(TrainingError, match="nan at step 4"):
        Trainer(ToyTask(nan_at=4), _cfg(max_steps=6), tmp_path, progress=False).fit()
    assert latest_checkpoint(tmp_path).name == "step_00000003"


def test_lr_schedule_warmup_then_cosine():
    f = lr_lambda(_cfg(max_steps=102, warmup_steps=2, min_lr_ratio=0.1))
    assert f(0) == pytest.approx(0.5) and f(1) == pytest.approx(1.0)
    assert f(2) == pytest.approx(1.0) and f(102) == pytest.approx(0.1)
    assert f(52) == pytest.approx(0.55)
