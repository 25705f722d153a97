"""The sharded store: same data as the per-episode format through EpisodeDataset (clips, splits, statistics,
training batches), crash-safe resume, several writers, conversion both ways, and one clear error (exit 2)
naming the file for a truncated shard, a bad checksum, a missing index or a wrong-shape record."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from ivideogpt.cli import main
from ivideogpt.data import ClipDataset, EpisodeDataset, EpisodeWriter
from ivideogpt.data.augment import AugmentConfig
from ivideogpt.data.shards import ShardWriter, convert_dataset, open_writer
from ivideogpt.errors import DataError
from ivideogpt.train.engine import StreamSampler

H, W, A = 8, 10, 3


def make_episodes(n, seed=0, success=True):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        t = 6 + i % 5
        out.append({"frames": rng.integers(0, 256, (t, H, W, 3), dtype=np.uint8),
                    "actions": rng.normal(size=(t - 1, A)).astype(np.float32) * (i + 1),
                    "rewards": rng.uniform(0, 10, t - 1).astype(np.float32),
                    **({"success": rng.random(t - 1) < 0.3} if success else {}),
                    "info": {"task": f"t{i % 2}"}})
    return out


KW = {"image_size": (H, W), "action_dim": A, "source": "test"}


def write(path, eps, shard_size=None, **kw):
    with open_writer(path, shard_size=shard_size, **KW, **kw) as w:
        for e in eps:
            w.add_episode(**e)
    return path


def assert_same(a: EpisodeDataset, b: EpisodeDataset):
    assert len(a) == len(b)
    for key in ("episode_lengths", "num_frames", "num_episodes", "splits", "has_success", "episode_info"):
        assert a.meta.get(key) == b.meta.get(key), key
    for key in ("mean", "std", "min", "max"):
        np.testing.assert_allclose(a.meta["action_stats"][key], b.meta["action_stats"][key], rtol=1e-12)
        np.testing.assert_allclose(a.meta["reward_stats"][key], b.meta["reward_stats"][key], rtol=1e-12)
    for i in range(len(a)):
        ea, eb = a.episode(i), b.episode(i)
        assert ea.keys() == eb.keys()
        for k in ea:
            np.testing.assert_array_equal(ea[k], eb[k])


@pytest.fixture
def pair(tmp_path):
    eps = make_episodes(11)
    return eps, EpisodeDataset(write(tmp_path / "old", eps)), EpisodeDataset(write(tmp_path / "sh", eps, 4))


def test_sharded_reads_like_per_episode(pair, tmp_path):
    eps, old, sh = pair
    assert sh.sharded and not old.sharded and sh.meta["num_shards"] == 3
    assert sorted(p.name for p in (tmp_path / "sh" / "shards").iterdir()) == [
        "000000-000004.bin", "000000.json", "000001-000004.bin", "000001.json", "000002-000003.bin", "000002.json"]
    assert_same(old, sh)
    for i, e in enumerate(eps):
        np.testing.assert_array_equal(sh.episode(i)["frames"], e["frames"])
        assert sh.episode_info(i) == e["info"]
    for step in (1, 2):
        for i in range(len(eps)):
            ca, cb = old.clip(i, 1, 3, step), sh.clip(i, 1, 3, step)
            for k in ca:
                np.testing.assert_array_equal(ca[k], cb[k])
    np.testing.assert_array_equal(old.frames_at(5, [0, 3, 2]), sh.frames_at(5, [0, 3, 2]))
    sh.validate()


def test_training_batches_equal_across_formats(pair):
    """The tokenizer's train stream (ClipDataset + the engine's sampler, augmentation on) is the same batches."""
    _, old, sh = pair
    aug = AugmentConfig()
    batches = []
    for ds in (old, sh):
        clips = ClipDataset(ds, 4, augment=aug, seed=7, resolution=8)
        loader = torch.utils.data.DataLoader(clips, batch_size=3, num_workers=0,
                                             sampler=StreamSampler(0, 3, 0, 1, len(clips)))
        it = iter(loader)
        batches.append([next(it) for _ in range(4)])
    for ba, bb in zip(*batches):
        for k in ba:
            torch.testing.assert_close(ba[k], bb[k], rtol=0, atol=0)


def test_two_ranks_and_workers_read_disjoint_reproducible_items(pair):
    """Each rank reads its own slice of every global batch, each DataLoader worker whole batches of it: the two
    ranks' items are disjoint, their union is the one-process stream, and what the workers read is item k."""
    _, _, sh = pair
    clips = ClipDataset(sh, 4, seed=3)
    steps, batch = 3, 2
    got = {}
    for rank in range(2):
        sampler = StreamSampler(0, batch, rank, 2, len(clips))
        idx = [k for k, _ in zip(iter(sampler), range(steps * batch))]
        loader = torch.utils.data.DataLoader(clips, batch_size=batch, num_workers=2, sampler=sampler)
        it = iter(loader)
        read = [t for b in (next(it) for _ in range(steps))
                for t in zip(b["source"].tolist(), b["episode"].tolist(), b["start"].tolist())]
        assert read == [clips.locate(k)[:3] for k in idx]  # workers read exactly item k
        got[rank] = idx
    assert not set(got[0]) & set(got[1])
    assert sorted(got[0] + got[1]) == list(range(2 * steps * batch))


def test_resume_fills_part_full_shard_and_loses_only_the_shard_in_flight(tmp_path):
    eps = make_episodes(10)
    root = tmp_path / "sh"
    write(root, eps[:5], 3)  # shard 0 full, shard 1 committed with 2 episodes
    # A crash with shard 1 reopened and an episode in flight: the dataset still reads the 5 committed episodes.
    w = ShardWriter(root, shard_size=3, resume=True, **KW)
    assert w.next_episode == 5
    w.add_episode(**eps[5])  # fills shard 1: committed
    w.add_episode(**eps[6])  # shard 2, in flight
    w.abort()
    assert len(EpisodeDataset(root)) == 6
    w = ShardWriter(root, shard_size=3, resume=True, **KW)
    w.add_episode(**eps[6])  # shard 2 in flight again, now with episode 7 too
    w.add_episode(**eps[7])
    w.abort()
    assert len(EpisodeDataset(root)) == 6
    with pytest.raises(DataError, match="--resume"):
        ShardWriter(root, shard_size=3, **KW)
    with pytest.raises(DataError, match="shard_size"):
        ShardWriter(root, shard_size=4, resume=True, **KW)
    write(root, eps[6:], 3, resume=True)
    sh = EpisodeDataset(root)
    assert sorted(p.name for p in (root / "shards").iterdir() if p.suffix == ".bin") == [
        "000000-000003.bin", "000001-000003.bin", "000002-000003.bin", "000003-000001.bin"]
    assert_same(EpisodeDataset(write(tmp_path / "old", eps)), sh)


def test_several_writers_fill_disjoint_shards(tmp_path):
    eps = make_episodes(10)
    root = tmp_path / "multi"
    for wid in (1, 0):  # any order; writer w writes shards w, w + 2, ...
        with ShardWriter(root, shard_size=3, writer=wid, num_writers=2, **KW) as w:
            while w.next_episode < len(eps):
                w.add_episode(**eps[w.next_episode])
        if wid == 1:
            assert sorted(p.name for p in (root / "shards").glob("*.json")) == ["000001.json", "000003.json"]
            with pytest.raises(DataError, match="000000.json: shard 0 missing"):
                EpisodeDataset(root)
    assert_same(EpisodeDataset(write(tmp_path / "one", eps, 3)), EpisodeDataset(root))


def test_convert_both_ways_and_cli(pair, tmp_path):
    eps, old, sh = pair
    assert main(["convert-data", str(old.path), "--out", str(tmp_path / "c1"), "--shard-size", "4",
                 "--no-progress"]) == 0
    c1 = EpisodeDataset(tmp_path / "c1")
    assert c1.sharded
    assert_same(old, c1)
    convert_dataset(tmp_path / "c1", tmp_path / "c2", progress=False)
    c2 = EpisodeDataset(tmp_path / "c2")
    assert not c2.sharded
    assert_same(old, c2)
    assert main(["convert-data", str(tmp_path / "c1"), "--verify"]) == 0


def _corrupt_truncated(root):
    p = next((root / "shards").glob("000001-*.bin"))
    p.write_bytes(p.read_bytes()[:-5])
    return p


def _corrupt_checksum(root):
    p = next((root / "shards").glob("000001-*.bin"))
    b = bytearray(p.read_bytes())
    b[100] ^= 0xFF
    p.write_bytes(bytes(b))
    return p


def _corrupt_missing_index(root):
    p = root / "shards" / "000001.json"
    p.unlink()
    return p


def _corrupt_wrong_shape(root):
    p = root / "shards" / "000001.json"
    idx = json.loads(p.read_text())
    idx["lengths"][0] += 40  # a record longer than its bytes
    p.write_text(json.dumps(idx))
    return p


@pytest.mark.parametrize("corrupt", [_corrupt_truncated, _corrupt_checksum, _corrupt_missing_index,
                                     _corrupt_wrong_shape], ids=["truncated", "checksum", "no-index", "shape"])
def test_corruption_is_one_clear_error_exit_2_nothing_lost(pair, corrupt, capsys, tmp_path):
    _, _, sh = pair
    root = sh.path
    bad = corrupt(root)
    before = {p.name: p.read_bytes() for p in (root / "shards").iterdir()}
    before_meta = (root / "meta.json").read_bytes()
    capsys.readouterr()
    for argv in (["info", str(root), "--no-sheet", "--verify"], ["convert-data", str(root), "--verify"],
                 ["convert-data", str(root), "--out", str(tmp_path / "x"), "--shard-size", "2"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and err.startswith("error: ") and str(bad) in err, err
    # The error wrote and deleted nothing.
    assert {p.name: p.read_bytes() for p in (root / "shards").iterdir()} == before
    assert (root / "meta.json").read_bytes() == before_meta
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x" / "shards").glob("*.json"))
    # Resuming a writer into a dataset whose committed data are bad also stops with the file named.
    if corrupt is _corrupt_wrong_shape or corrupt is _corrupt_truncated:
        with pytest.raises(DataError, match=str(bad.name)):
            ShardWriter(root, shard_size=4, resume=True, **KW)


def test_writer_validates_and_keeps_committed_on_error(tmp_path):
    root = tmp_path / "sh"
    eps = make_episodes(3)
    with pytest.raises(DataError, match="episode 2 frames"):
        with ShardWriter(root, shard_size=2, **KW) as w:
            w.add_episode(**eps[0])
            w.add_episode(**eps[1])
            w.add_episode(frames=np.zeros((3, H + 1, W, 3), np.uint8), actions=np.zeros((2, A)))
    assert len(EpisodeDataset(root)) == 2


def test_old_format_writer_unchanged_by_default(tmp_path):
    w = open_writer(tmp_path / "d", **KW)
    assert isinstance(w, EpisodeWriter)
    w.close()
    assert not os.path.exists(tmp_path / "d" / "shards")


def test_train_tokenizer_same_weights_on_both_formats(tmp_path):
    """`ivideogpt collect --shard-size` data and per-episode data of the same collection train a tokenizer to the
    same weights (same seed): the batches are the same."""
    from safetensors.torch import load_file

    from ivideogpt.checkpoint import latest_checkpoint
    from ivideogpt.commands.collect import collect

    collect("pusher", tmp_path / "old", episodes=5, steps=8, size=64, seed=3, progress=False)
    assert main(["collect", "--env", "pusher", "--episodes", "5", "--steps", "8", "--seed", "3", "--shard-size",
                 "2", "--out", str(tmp_path / "sh"), "--no-progress"]) == 0
    assert EpisodeDataset(tmp_path / "sh").meta["num_shards"] == 3
    assert_same(EpisodeDataset(tmp_path / "old"), EpisodeDataset(tmp_path / "sh"))
    tiny = ["--set", "train.batch_size=2", "--set", "train.clip_len=4", "--set", "train.val_every=0",
            "--set", "train.warmup_steps=1", "--set", "train.augment.enabled=true", "--set", "train.val_batches=1",
            "--no-progress"]
    for name in ("old", "sh"):
        assert main(["train", "tokenizer", "--preset", "tiny-cpu", "--data", str(tmp_path / name), "--out",
                     str(tmp_path / f"run_{name}"), "--max-steps", "2", *tiny]) == 0
    a, b = (load_file(str(latest_checkpoint(tmp_path / f"run_{n}") / "model" / "model.safetensors"))
            for n in ("old", "sh"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
