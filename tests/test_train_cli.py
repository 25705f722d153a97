"""Training commands end to end on a tiny pusher dataset: exact resume through the real tokenizer stage,
a two-process CPU run under `accelerate launch` (gloo), a transformer run that loads as a WorldModel, and bad
input that exits 2 with one line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ivideogpt.checkpoint import latest_checkpoint
from ivideogpt.cli import main
from ivideogpt.commands.collect import collect

TINY = ["--set", "train.batch_size=2", "--set", "train.clip_len=4", "--set", "train.val_every=0",
        "--set", "train.log_every=1", "--set", "train.warmup_steps=1", "--no-progress"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "pusher"
    collect("pusher", path, episodes=6, steps=8, size=64, seed=3, progress=False)
    return path


def _tok(data, out, *extra):
    return main(["train", "tokenizer", "--preset", "tiny-cpu", "--data", str(data), "--out", str(out), *TINY,
                 *extra])


def _weights(run):
    return load_file(str(latest_checkpoint(run) / "model" / "model.safetensors"))


@pytest.mark.parametrize("gan", [[], ["--set", "model.gan_weight=0.5", "--set", "model.gan_start_step=1",
                                     "--set", "model.disc_channels=8"]], ids=["plain", "gan"])
def test_tokenizer_resume_equals_uninterrupted(data, tmp_path, gan):
    assert _tok(data, tmp_path / "a", "--max-steps", "4", "--set", "train.save_every=2", *gan) == 0
    assert _tok(data, tmp_path / "b", "--max-steps", "4", "--set", "train.save_every=2", *gan) == 0
    # Kill run b right after its step-2 checkpoint, then resume it.
    shutil.rmtree(tmp_path / "b" / "checkpoints" / "step_00000004")
    rows = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    (tmp_path / "b" / "metrics.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows if r.get("step", 0) <= 2 and "event" not in r))
    assert main(["train", "tokenizer", "--data", str(data), "--out", str(tmp_path / "b"), "--resume",
                 "--no-progress"]) == 0
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-5, msg=k)
    if gan:  # the discriminator is training state: it resumes too
        da, db = (load_file(str(latest_checkpoint(tmp_path / r) / "discriminator.safetensors")) for r in "ab")
        for k in da:
            torch.testing.assert_close(da[k], db[k], rtol=0, atol=1e-5, msg=k)


def test_transformer_run_is_a_world_model(data, tmp_path):
    from ivideogpt import WorldModel

    assert _tok(data, tmp_path / "tok", "--max-steps", "1") == 0
    rc = main(["train", "transformer", "--preset", "tiny-cpu", "--tokenizer", str(tmp_path / "tok"), "--data",
               str(data), "--out", str(tmp_path / "wm"), "--actions", "--rewards", "--max-steps", "2", *TINY,
               "--set", "train.clip_len=6"])
    assert rc == 0 and (tmp_path / "wm" / "token_cache.pt").exists()
    # The run is complete on its own: move it, then load it (the tokenizer is inside, not referenced by path).
    shutil.move(str(tmp_path / "wm"), str(tmp_path / "moved"))
    shutil.rmtree(tmp_path / "tok")
    wm = WorldModel.from_pretrained(tmp_path / "moved")
    assert wm.action_dim == 2 and wm.transformer.config.use_reward
    ctx = torch.zeros(1, wm.context_frames, 64, 64, 3, dtype=torch.uint8)
    frames, rewards = wm.rollout(ctx, torch.zeros(1, 3, 2), seed=0)
    assert frames.shape == (1, 3, 64, 64, 3) and rewards.shape == (1, 3)


def test_bad_input_exits_2_with_one_line(data, tmp_path, capsys):
    assert _tok(tmp_path / "missing", tmp_path / "x", "--max-steps", "1") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing" in err[0]
    assert _tok(data, tmp_path / "y", "--max-steps", "1", "--set", "model.no_such_field=3") == 2
    assert "no_such_field" in capsys.readouterr().err
    (tmp_path / "z").mkdir()
    (tmp_path / "z" / "file").write_text("precious")
    assert _tok(data, tmp_path / "z", "--max-steps", "1") == 2
    assert "--resume" in capsys.readouterr().err and (tmp_path / "z" / "file").read_text() == "precious"


def test_two_process_accelerate_gloo(data, tmp_path):
    accelerate = Path(sys.executable).parent / "accelerate"
    if not accelerate.exists():
        pytest.skip("accelerate CLI not installed")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29533",
           "-m", "ivideogpt.cli", "train", "tokenizer", "--preset", "tiny-cpu", "--data", str(data),
           "--out", str(tmp_path / "ddp"), "--max-steps", "2", *TINY]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    cks = list((tmp_path / "ddp" / "checkpoints").iterdir())
    assert [p.name for p in cks] == ["step_00000002"]
    assert json.loads((tmp_path / "ddp" / "run.json").read_text())["num_processes"] == 2
