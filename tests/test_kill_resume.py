"""Fault injection: real CLI runs killed with SIGKILL, resumed, and compared bit for bit with an unbroken run.

Each default-suite scenario runs ``python -m ivideogpt.cli ...`` in a subprocess and kills it at a point drawn
from a seeded RNG: a training step, or the middle of a checkpoint write (the ``IVIDEOGPT_FAULT`` test hook stops
the process there, then the test sends SIGKILL to its process group: ``kill -9`` at a reproducible place).
``--resume`` finishes the run, and its final weights, optimizer and every other training state, metrics and
curves must equal those of the same command run without interruption, bit for bit (wall-clock fields aside).
The kill points are chosen after a checkpoint that holds state in use (a sampler that has drawn, a world model
that has trained), so that anything the resume fails to restore shows.

``-m slow`` adds randomised versions (up to four kills per run at random times or random fault points, every run
in its own process), a transformer stage that fine-tunes the tokenizer jointly, and two-process
``accelerate launch`` (gloo) runs.
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import ivideogpt
from ivideogpt.checkpoint import latest_checkpoint
from ivideogpt.cli import main

SRC = str(Path(ivideogpt.__file__).resolve().parents[1])
WALL_CLOCK = {"elapsed_s", "seconds", "metrics_bytes", "timers", "cpu_timers"}  # differ run to run, by design

# A 32px tokenizer small enough for a step in milliseconds, VQ context codes restarted after 2 idle steps (so
# restarts happen all through the run) and a hinge-GAN discriminator from step 1 (training state beside the model).
TOKENIZER_SETS = ["model.resolution=32", "model.channels=[16]", "model.embed_dim=8", "model.codebook_size=64",
                  "model.context_grid=4", "model.future_grid=2", "model.cross_attn_max_res=8",
                  "model.cross_attn_heads=2", "model.dead_code_steps=2", "model.gan_weight=0.5",
                  "model.gan_start_step=1", "model.disc_channels=8", "model.disc_layers=2"]
TRAIN_SETS = ["train.batch_size=2", "train.clip_len=4", "train.log_every=1", "train.warmup_steps=2",
              "train.val_every=4", "train.val_batches=1", "train.save_every=3", "train.keep_last=2"]
TRANSFORMER_SETS = ["model.n_layer=1", "model.d_model=32", "model.n_head=2", "model.d_ff=64", "model.dropout=0.1",
                    "model.spatial_frequencies=1", "train.token_cache_stride=2"]
RL_SETS = ["agent.batch_size=8", "agent.hidden_dim=16", "agent.feature_dim=8", "agent.encoder_channels=4",
           "agent.encoder_strides=[2,2,2,2]", "agent.num_expl_steps=10", "run.episode_length=10",
           "run.num_seed_steps=15", "run.eval_every_env_steps=20", "run.eval_episodes=1",
           "run.save_every_env_steps=10", "run.demos=1", "run.env_kwargs.size=32", "mbpo.init_train_steps=2",
           "mbpo.batch_size=2", "mbpo.clip_len=3", "mbpo.n_future=1", "mbpo.horizon=2",
           "mbpo.initial_rollout_batch=2", "mbpo.rollout_batch=2", "mbpo.rollout_every_env_steps=10",
           "mbpo.transformer_every_env_steps=5", "mbpo.tokenizer_every_env_steps=2"]


def _sets(items):
    return [a for s in items for a in ("--set", s)]


# ------------------------------------------------------------------------------------------- processes
def _env(**extra) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **extra}
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _cli(args) -> list[str]:
    return [sys.executable, "-m", "ivideogpt.cli", *args]


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc): ``accelerate launch`` starts its workers in sessions of their own,
    so killing the launcher's process group alone would leave them running."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _kill_group(proc) -> None:
    below = _descendants(proc.pid)
    for pid in below:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def run_killed_at(cmd: list[str], fault: str, tmp: Path, timeout: float = 300) -> bool:
    """Run ``cmd`` (its own process group) with the fault hook armed at ``fault`` (``POINT:N``); SIGKILL the
    group once a process reports it stopped there. True if killed, False if the run ended first."""
    mark = tmp / f"fault-{time.monotonic_ns()}"
    proc = subprocess.Popen(cmd, env=_env(IVIDEOGPT_FAULT=fault, IVIDEOGPT_FAULT_MARK=str(mark)),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None:
            if mark.exists():
                _kill_group(proc)
                return True
            if time.monotonic() > deadline:
                raise AssertionError(f"{fault}: not reached within {timeout} s")
            time.sleep(0.01)
    finally:
        if proc.poll() is None:
            _kill_group(proc)
    out = proc.stdout.read().decode(errors="replace")
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{out[-3000:]}"
    return False


def run_killed_after(cmd: list[str], seconds: float, timeout: float = 300) -> bool:
    """Run ``cmd`` and SIGKILL its process group after ``seconds`` (a random moment, wherever it lands)."""
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        return True
    out = proc.stdout.read().decode(errors="replace")
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{out[-3000:]}"
    return False


def run_to_end(cmd: list[str], timeout: float = 600) -> None:
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"


# ------------------------------------------------------------------------------------------- comparisons
def assert_same(a, b, where: str) -> None:
    """Bit-for-bit equality of nested training state (tensors, arrays, dicts, lists, numbers)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape, where
        assert a.cpu().contiguous().view(-1).view(torch.uint8).equal(b.cpu().contiguous().view(-1).view(torch.uint8)), \
            f"{where}: tensors differ (max abs diff {(a.double() - b.double()).abs().max().item():.3g})"
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape, where
        assert a.tobytes() == b.tobytes(), f"{where}: arrays differ"
    elif isinstance(a, dict):
        assert isinstance(b, dict), where
        ka, kb = set(a) - WALL_CLOCK, set(b) - WALL_CLOCK
        assert ka == kb, f"{where}: keys differ: {sorted(ka ^ kb, key=str)}"
        for k in sorted(ka, key=str):
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), f"{where}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        assert math.isnan(b), f"{where}: nan vs {b}"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def _same_files(a: Path, b: Path) -> None:
    """Every file under ``a`` equals its twin under ``b`` (the same names on both sides)."""
    fa = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    fb = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert fa == fb, f"{a} vs {b}: files differ: {set(map(str, fa)) ^ set(map(str, fb))}"
    for rel in fa:
        pa, pb, where = a / rel, b / rel, str(rel)
        if rel.suffix == ".safetensors":
            sa, sb = load_file(str(pa)), load_file(str(pb))
            assert_same(sa, sb, where)
        elif rel.suffix == ".pt":
            assert_same(torch.load(pa, weights_only=True), torch.load(pb, weights_only=True), where)
        elif rel.suffix == ".npz":
            with np.load(pa) as za, np.load(pb) as zb:
                assert_same(dict(za), dict(zb), where)
        elif rel.suffix == ".json" and rel.name in ("state.json",):
            assert_same(json.loads(pa.read_text()), json.loads(pb.read_text()), where)
        else:
            assert pa.read_bytes() == pb.read_bytes(), f"{where}: contents differ"


def _metrics(run: Path) -> list[dict]:
    rows = []
    for line in (run / "metrics.jsonl").read_text().splitlines():
        row = {k: v for k, v in json.loads(line).items() if k not in WALL_CLOCK}
        if "checkpoint" in row:
            row["checkpoint"] = Path(row["checkpoint"]).name
        rows.append(row)
    return rows


def assert_same_training_run(a: Path, b: Path) -> None:
    """Checkpoints (weights, discriminator, train_state.pt), metrics.jsonl, validation PNGs, token cache."""
    _same_files(a / "checkpoints", b / "checkpoints")
    assert_same(_metrics(a), _metrics(b), "metrics.jsonl")
    if (a / "samples").exists():
        _same_files(a / "samples", b / "samples")
    if (a / "token_cache.pt").exists():
        assert_same(torch.load(a / "token_cache.pt", weights_only=True),
                    torch.load(b / "token_cache.pt", weights_only=True), "token_cache.pt")
    left = [p.name for p in (b / "checkpoints").iterdir() if p.name.startswith(".")]
    assert not left, f"half-written checkpoints left behind: {left}"


def assert_same_rl_run(a: Path, b: Path) -> None:
    """The final checkpoint (agent, optimizers, generators, replays, world model, learner, loop state) and
    the evaluation curve."""
    _same_files(a / "checkpoint", b / "checkpoint")
    assert (a / "curve.csv").read_text() == (b / "curve.csv").read_text()
    left = [p.name for p in b.iterdir() if p.name.startswith(".checkpoint")]
    assert not left, f"half-written checkpoints left behind: {left}"


# ------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from ivideogpt.commands.collect import collect

    path = tmp_path_factory.mktemp("data") / "pusher"
    collect("pusher", path, episodes=4, steps=8, size=32, seed=3, progress=False)
    return path


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    """An (untrained) 32px tokenizer for the transformer stage."""
    from ivideogpt.tokenizer import Tokenizer

    path = tmp_path_factory.mktemp("tok") / "tokenizer"
    torch.manual_seed(0)
    Tokenizer.from_preset("tiny-cpu", [s.split("model.", 1)[1] for s in TOKENIZER_SETS[:9]]).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def vq_world_model(tmp_path_factory):
    """A micro world model whose tokenizer has a VQ context codebook with fast dead-code restart."""
    import conftest

    path = tmp_path_factory.mktemp("wm") / "wm"
    conftest.micro_world_model(res=32, context_frames=2, max_steps=4, action_dim=0, use_reward=False,
                               tokenizer_overrides=dict(quantizer="vq", codebook_size=32, dead_code_steps=2,
                                                        future_quantizer="fsq")).save_pretrained(path)
    return path


@pytest.fixture
def single_thread():
    # The in-process runs must do the same float work as the OMP_NUM_THREADS=1 subprocesses.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tokenizer_cmd(data, out, steps=12, extra=()):
    return ["train", "tokenizer", "--preset", "tiny-cpu", "--data", str(data), "--out", str(out),
            "--max-steps", str(steps), *_sets(TOKENIZER_SETS + TRAIN_SETS), *extra, "--no-progress"]


def transformer_cmd(data, tok, out, steps=8, extra=()):
    return ["train", "transformer", "--preset", "tiny-cpu", "--tokenizer", str(tok), "--data", str(data),
            "--out", str(out), "--actions", "--rewards", "--max-steps", str(steps),
            *_sets(TRAIN_SETS + TRANSFORMER_SETS), *extra, "--no-progress"]


def rl_cmd(kind, out, steps=40, world_model=None):
    wm = ["--world-model", str(world_model)] if world_model else []
    return [kind, "--env", "pusher", "--steps", str(steps), "--seed", "3", "--out", str(out), *wm,
            *_sets(RL_SETS), "--threads", "1", "--no-progress"]


def kill_then_finish(cmd, tmp: Path, fault: str) -> None:
    """Kill a subprocess at ``fault`` (``POINT:N``), then resume it to the end in this process (the same CLI
    entry point; the slow tests resume in subprocesses too)."""
    assert run_killed_at(_cli(cmd), fault, tmp), f"the run ended before reaching {fault}"
    assert main([*cmd, "--resume"]) == 0


# ------------------------------------------------------------------------------------------- default suite
# Each draws its kill point from a seeded RNG: a training step after the first checkpoint, or the N-th
# checkpoint write (N >= 2 or a replacement, so that an earlier checkpoint exists to resume from).
def test_tokenizer_killed_at_a_step_resumes_exactly(data, tmp_path, single_thread):
    assert main(tokenizer_cmd(data, tmp_path / "a")) == 0
    # checkpoints at 3, 6, 9, 12: a kill at the top of step k leaves k - 1 steps done, some past the checkpoint
    k = random.Random(1).choice([5, 6, 8, 9, 11, 12])
    kill_then_finish(tokenizer_cmd(data, tmp_path / "b"), tmp_path, f"train.step:{k}")
    assert_same_training_run(tmp_path / "a", tmp_path / "b")
    state = torch.load(latest_checkpoint(tmp_path / "a") / "train_state.pt", weights_only=True)
    assert int(state["quantizer_usage"]["tokenizer.quantize.usage.step"]) == 12


def test_transformer_killed_while_writing_a_checkpoint_resumes_exactly(data, tokenizer_dir, tmp_path, single_thread):
    assert main(transformer_cmd(data, tokenizer_dir, tmp_path / "a")) == 0
    n = random.Random(2).randint(2, 3)  # checkpoints at steps 3, 6, 8
    kill_then_finish(transformer_cmd(data, tokenizer_dir, tmp_path / "b"), tmp_path, f"checkpoint.partial:{n}")
    assert_same_training_run(tmp_path / "a", tmp_path / "b")


def test_drqv2_killed_at_a_step_resumes_exactly(tmp_path, single_thread):
    assert main(rl_cmd("drqv2", tmp_path / "a")) == 0
    # checkpoints at env steps 10, 20, 30, 40; from 20 on they hold an agent and replay sampler in use
    k = random.Random(3).randint(22, 40)
    kill_then_finish(rl_cmd("drqv2", tmp_path / "b"), tmp_path, f"rl.step:{k}")
    assert_same_rl_run(tmp_path / "a", tmp_path / "b")
    assert json.loads((tmp_path / "a" / "checkpoint" / "state.json").read_text())["updates"] > 10


def test_mbrl_killed_while_replacing_its_checkpoint_resumes_exactly(vq_world_model, tmp_path, single_thread):
    assert main(rl_cmd("mbrl", tmp_path / "a", world_model=vq_world_model)) == 0
    n = random.Random(4).randint(2, 3)  # replacing the checkpoint of env step 20 by 30's, or 30's by 40's
    # Killed between moving the old checkpoint aside and renaming the new one in: OUT/checkpoint is missing.
    kill_then_finish(rl_cmd("mbrl", tmp_path / "b", world_model=vq_world_model), tmp_path, f"atomic_dir.swapped:{n}")
    assert_same_rl_run(tmp_path / "a", tmp_path / "b")
    learner = torch.load(tmp_path / "a" / "checkpoint" / "agent.pt", weights_only=True)["learner"]
    assert learner["steps"]["tokenizer"] > 5 and learner["steps"]["transformer"] > 3
    assert int(learner["tokenizer_usage"]["quantize.usage.step"]) == learner["steps"]["tokenizer"]


# ------------------------------------------------------------------------------------------- slow, randomised
def _scenario(name: str, out: Path, ctx: dict) -> tuple[list[str], list[str]]:
    """(CLI arguments, fault points that scenario passes through)."""
    train_points = ["train.step", "checkpoint.partial"]
    rl_points = ["rl.step", "checkpoint.partial", "atomic_dir.swapped"]
    if name == "tokenizer":
        return tokenizer_cmd(ctx["data"], out, steps=15), train_points
    if name == "transformer":
        return transformer_cmd(ctx["data"], ctx["tok"], out, steps=12), train_points
    if name == "transformer-joint":  # the tokenizer fine-tuned on the fly: its dead-code restarts too
        return transformer_cmd(ctx["data"], ctx["tok"], out, steps=9, extra=_sets(
            ["train.freeze_tokenizer=false", "train.cache_tokens=false", "train.n_future=2"])), train_points
    if name == "drqv2":
        return rl_cmd("drqv2", out, steps=60), rl_points
    return rl_cmd("mbrl", out, steps=50, world_model=ctx["wm"]), rl_points


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("name", ["tokenizer", "transformer", "transformer-joint", "drqv2", "mbrl"])
def test_randomised_kills_resume_exactly(name, seed, data, tokenizer_dir, vq_world_model, tmp_path):
    """Every run in its own process; up to 4 kills per run, each at a random time or a random fault point."""
    ctx = {"data": data, "tok": tokenizer_dir, "wm": vq_world_model}
    ref, points = _scenario(name, tmp_path / "a", ctx)
    t = time.monotonic()
    run_to_end(_cli(ref))
    wall = time.monotonic() - t
    cmd, _ = _scenario(name, tmp_path / "b", ctx)
    rng = random.Random(f"{name}-{seed}")
    kills, killed, first = 0, True, True
    while killed and kills < 4:
        c = _cli(cmd if first else [*cmd, "--resume"])
        if rng.random() < 0.5:
            killed = run_killed_after(c, rng.uniform(0.3, 1.0) * wall)
        else:
            killed = run_killed_at(c, f"{rng.choice(points)}:{rng.randint(1, 4)}", tmp_path)
        kills += killed
        first = False
    if killed:
        run_to_end(_cli([*cmd, "--resume"]))
    (assert_same_rl_run if name in ("drqv2", "mbrl") else assert_same_training_run)(tmp_path / "a", tmp_path / "b")


def _launch(args: list[str], port: int) -> list[str]:
    accelerate = Path(sys.executable).parent / "accelerate"
    if not accelerate.exists():
        pytest.skip("accelerate CLI not installed")
    return [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
            "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(port),
            "-m", "ivideogpt.cli", *args]


@pytest.mark.slow
def test_two_process_gloo_killed_resumes_exactly(data, tmp_path):
    """``accelerate launch`` with two CPU processes: killed (the whole process group) at a step after the first
    checkpoint, resumed with two processes, equal to an unbroken two-process run, each process's RNG included."""
    run_to_end(_launch(tokenizer_cmd(data, tmp_path / "a", steps=8), 29541))
    k = random.Random(5).randint(5, 8)
    assert run_killed_at(_launch(tokenizer_cmd(data, tmp_path / "b", steps=8), 29542), f"train.step:{k}", tmp_path)
    run_to_end(_launch([*tokenizer_cmd(data, tmp_path / "b", steps=8), "--resume"], 29543))
    assert_same_training_run(tmp_path / "a", tmp_path / "b")
    rng = torch.load(latest_checkpoint(tmp_path / "a") / "train_state.pt", weights_only=True)["rng"]
    assert len(rng) == 2


def test_frozen_tokenizer_stays_frozen_when_tokenizing_on_the_fly():
    """Without the token cache the transformer stage tokenizes clips in every step; a frozen VQ tokenizer must not
    count usage or restart dead codes there (it did: the engine put the whole module in training mode)."""
    import conftest
    from ivideogpt.train.config import TrainConfig
    from ivideogpt.train.transformer_task import TransformerTrainModule

    wm = conftest.micro_world_model(res=32, context_frames=2, max_steps=4, tokenizer_overrides=dict(
        quantizer="vq", codebook_size=32, dead_code_steps=1, future_quantizer="fsq"))
    module = TransformerTrainModule(wm, TrainConfig(freeze_tokenizer=True, cache_tokens=False)).train()
    before = {k: v.clone() for k, v in wm.tokenizer.state_dict().items()}
    g = torch.Generator().manual_seed(0)
    batch = {"frames": torch.rand(2, 4, 3, 32, 32, generator=g) * 2 - 1, "actions": torch.randn(2, 4, 2, generator=g),
             "rewards": torch.randn(2, 4, generator=g)}
    for step in range(3):
        module(batch, step)[0].backward()
    assert wm.transformer.training and not wm.tokenizer.training
    assert all(torch.equal(before[k], v) for k, v in wm.tokenizer.state_dict().items())
