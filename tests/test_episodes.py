"""Episode format: round trip, crash-safe resume, exact statistics, validation errors, `ivideogpt info`."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from ivideogpt.cli import main
from ivideogpt.data import EpisodeDataset, EpisodeWriter
from ivideogpt.errors import DataError

H, W, A = 8, 10, 3


def make_episodes(n, seed=0, base_len=6, success=True):
    rng = np.random.default_rng(seed)
    eps = []
    for i in range(n):
        t = base_len + i % 4
        eps.append({
            "frames": rng.integers(0, 256, (t, H, W, 3), dtype=np.uint8),
            "actions": rng.normal(size=(t - 1, A)).astype(np.float32) * (i + 1),
            "rewards": rng.uniform(0, 10, t - 1).astype(np.float32),
            **({"success": rng.random(t - 1) < 0.3} if success else {}),
        })
    return eps


def write(path, eps, **kw):
    with EpisodeWriter(path, image_size=(H, W), action_dim=A, source="test", **kw) as w:
        for e in eps:
            w.add_episode(**e)
    return w.meta


def assert_stats_exact(meta, eps):
    acts = np.concatenate([e["actions"] for e in eps]).astype(np.float64)
    rews = np.concatenate([e["rewards"] for e in eps]).astype(np.float64)
    st = meta["action_stats"]
    np.testing.assert_allclose(st["mean"], acts.mean(0), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(st["std"], acts.std(0), rtol=1e-10)
    np.testing.assert_array_equal(st["min"], acts.min(0))
    np.testing.assert_array_equal(st["max"], acts.max(0))
    rs = meta["reward_stats"]
    np.testing.assert_allclose([rs["mean"], rs["std"]], [rews.mean(), rews.std()], rtol=1e-10)
    assert (rs["min"], rs["max"]) == (rews.min(), rews.max())


def test_round_trip(tmp_path):
    eps = make_episodes(5)
    meta = write(tmp_path / "ds", eps, fps=15, extra={"env": "pusher"})
    ds = EpisodeDataset(tmp_path / "ds")
    assert len(ds) == 5 and ds.meta == meta == json.loads((tmp_path / "ds/meta.json").read_text())
    assert meta["format"] == "ivideogpt-episodes" and meta["version"] == 1
    assert meta["image_size"] == [H, W] and meta["action_dim"] == A and meta["fps"] == 15
    assert meta["episode_lengths"] == [len(e["frames"]) for e in eps]
    assert meta["num_frames"] == sum(len(e["frames"]) for e in eps)
    assert meta["has_success"] and meta["extra"] == {"env": "pusher"}
    for i, e in enumerate(eps):
        got = ds.episode(i)
        assert set(got) == {"frames", "actions", "rewards", "success"}
        for k in got:
            np.testing.assert_array_equal(got[k], e[k])
        assert got["frames"].dtype == np.uint8 and got["actions"].dtype == np.float32
        assert ds.length(i) == len(e["frames"])
        np.testing.assert_array_equal(ds.frames(i, 1, 5, 2), e["frames"][1:5:2])
        np.testing.assert_array_equal(ds.frames_at(i, [0, 3]), e["frames"][[0, 3]])
    assert not list((tmp_path / "ds/episodes").glob(".*"))  # no temp dirs left behind


def test_stats_exact_over_all_episodes(tmp_path):
    eps = make_episodes(7)
    assert_stats_exact(write(tmp_path / "ds", eps), eps)


def test_clip_with_frame_step_sums_actions_and_rewards(tmp_path):
    eps = make_episodes(1, base_len=12)
    write(tmp_path / "ds", eps)
    ds = EpisodeDataset(tmp_path / "ds")
    c = ds.clip(0, start=1, length=4, step=3)  # frames 1, 4, 7, 10
    e = eps[0]
    np.testing.assert_array_equal(c["frames"], e["frames"][[1, 4, 7, 10]])
    np.testing.assert_allclose(c["actions"][1], e["actions"][4:7].sum(0), rtol=1e-6)
    np.testing.assert_allclose(c["rewards"], e["rewards"][1:10].reshape(3, 3).sum(1), rtol=1e-6)
    np.testing.assert_array_equal(c["success"], e["success"][1:10].reshape(3, 3).any(1))
    assert c["actions"].shape == (3, A)
    c1 = ds.clip(0, start=2, length=5)
    np.testing.assert_array_equal(c1["actions"], e["actions"][2:6])
    with pytest.raises(IndexError):
        ds.clip(0, start=2, length=4, step=4)  # needs 13 frames from 2


def test_splits_by_episode_deterministic(tmp_path):
    meta = write(tmp_path / "a", make_episodes(12), val_fraction=0.25, seed=3)
    train, val = set(meta["splits"]["train"]), set(meta["splits"]["val"])
    assert len(val) == 3 and not train & val and train | val == set(range(12))
    other_data = write(tmp_path / "b", make_episodes(12, seed=1), val_fraction=0.25, seed=3)
    assert other_data["splits"] == meta["splits"]
    assert write(tmp_path / "c", make_episodes(12), val_fraction=0.25, seed=4)["splits"] != meta["splits"]
    two = write(tmp_path / "d", make_episodes(2), val_fraction=0.1)["splits"]
    assert len(two["val"]) == 1 and len(two["train"]) == 1


def test_resume_after_crash(tmp_path):
    root = tmp_path / "ds"
    eps = make_episodes(6)
    write(root, eps[:3])
    meta_after_3 = (root / "meta.json").read_text()
    # Crash between renaming episode 3 into place and rewriting meta.json ...
    with EpisodeWriter(root, image_size=(H, W), action_dim=A, source="test", resume=True) as w:
        w.add_episode(**eps[3])
    (root / "meta.json").write_text(meta_after_3)
    # ... while episode 4 was still being written under its temporary name.
    tmp = root / "episodes" / ".000004.abc.tmp"
    tmp.mkdir()
    (tmp / "frames.npy").write_bytes(b"\x93NUMPY partial")

    with pytest.raises(DataError, match="--resume"):
        EpisodeWriter(root, image_size=(H, W), action_dim=A, source="test")
    with EpisodeWriter(root, image_size=(H, W), action_dim=A, source="test", resume=True) as w:
        assert w.num_episodes == 4
        assert not tmp.exists()
        assert w.add_episode(**eps[4]) == 4
        assert w.add_episode(**eps[5]) == 5
    ds = EpisodeDataset(root)
    assert len(ds) == 6 and ds.meta["episode_lengths"] == [len(e["frames"]) for e in eps]
    assert ds.meta["num_frames"] == sum(len(e["frames"]) for e in eps)
    for i, e in enumerate(eps):
        np.testing.assert_array_equal(ds.episode(i)["frames"], e["frames"])
    assert_stats_exact(ds.meta, eps)
    assert ds.meta["splits"] == write(tmp_path / "fresh", eps)["splits"]  # as if written in one go


def test_resume_drops_corrupt_unlisted_episode(tmp_path):
    root = tmp_path / "ds"
    eps = make_episodes(3)
    write(root, eps[:2])
    meta2 = (root / "meta.json").read_text()
    write(root, eps[2:], resume=True)
    (root / "meta.json").write_text(meta2)
    (root / "episodes/000002/rewards.npy").write_bytes(b"")
    with pytest.warns(UserWarning, match="000002"):
        w = EpisodeWriter(root, image_size=(H, W), action_dim=A, source="test", resume=True)
    assert w.num_episodes == 2 and not (root / "episodes/000002").exists()
    w.close()


@pytest.mark.parametrize("field,kw", [("action_dim", {"action_dim": A + 1}),
                                      ("image_size", {"image_size": (H, H)}),
                                      ("source", {"source": "other"})])
def test_resume_with_different_settings_names_field(tmp_path, field, kw):
    write(tmp_path / "ds", make_episodes(2))
    args = {"image_size": (H, W), "action_dim": A, "source": "test", **kw}
    with pytest.raises(DataError, match=field):
        EpisodeWriter(tmp_path / "ds", resume=True, **args)


def test_add_episode_validates(tmp_path):
    e = make_episodes(1)[0]
    with EpisodeWriter(tmp_path / "ds", image_size=(H, W), action_dim=A) as w:
        with pytest.raises(DataError, match="frames: expected uint8"):
            w.add_episode(e["frames"].astype(np.float32), e["actions"], e["rewards"])
        with pytest.raises(DataError, match="actions: expected shape"):
            w.add_episode(e["frames"], e["actions"][:, :2], e["rewards"])
        with pytest.raises(DataError, match="NaN"):
            w.add_episode(e["frames"], np.full_like(e["actions"], np.nan), e["rewards"])
        w.add_episode(e["frames"], e["actions"], e["rewards"], e["success"])
        with pytest.raises(DataError, match="success"):
            w.add_episode(e["frames"], e["actions"], e["rewards"])
        assert w.num_episodes == 1


def test_truncated_frames_is_data_error_naming_file(tmp_path):
    write(tmp_path / "ds", make_episodes(2))
    path = tmp_path / "ds/episodes/000001/frames.npy"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    ds = EpisodeDataset(tmp_path / "ds")  # construction stays cheap: no frame files read
    ds.frames(0, 0, 2)
    with pytest.raises(DataError, match=r"000001/frames\.npy: truncated"):
        ds.frames(1, 0, 2)


def test_wrong_shape_actions_is_data_error(tmp_path):
    write(tmp_path / "ds", make_episodes(2))
    path = tmp_path / "ds/episodes/000000/actions.npy"
    np.save(path, np.zeros((5, A + 2), np.float32))
    want = r"000000/actions\.npy: expected float32 \[5, 3\], got float32 \[5, 5\]"
    with pytest.raises(DataError, match=want):
        EpisodeDataset(tmp_path / "ds").episode(0)
    np.save(path, np.zeros((5, A), np.float64))
    with pytest.raises(DataError, match="got float64"):
        EpisodeDataset(tmp_path / "ds").clip(0, 0, 3)


def test_meta_errors(tmp_path):
    with pytest.raises(DataError, match="meta.json: not found"):
        EpisodeDataset(tmp_path / "nothing")
    write(tmp_path / "ds", make_episodes(2))
    meta_path = tmp_path / "ds/meta.json"
    good = json.loads(meta_path.read_text())
    meta_path.write_text("{not json")
    with pytest.raises(DataError, match="meta.json: not valid JSON"):
        EpisodeDataset(tmp_path / "ds")
    meta_path.write_text(json.dumps({k: v for k, v in good.items() if k != "action_dim"}))
    with pytest.raises(DataError, match=r"missing field\(s\) \['action_dim'\]"):
        EpisodeDataset(tmp_path / "ds")
    meta_path.write_text(json.dumps(good))
    shutil.rmtree(tmp_path / "ds/episodes/000001")
    with pytest.raises(DataError, match="000001: episode directory missing"):
        EpisodeDataset(tmp_path / "ds")


def test_info_command(tmp_path, capsys):
    write(tmp_path / "ds", make_episodes(9, base_len=12))
    out = tmp_path / "sheet.png"
    assert main(["info", str(tmp_path / "ds"), "--out", str(out), "--episodes", "3", "--frames", "5"]) == 0
    text = capsys.readouterr().out
    assert "episodes   9" in text and f"image      {H}x{W}" in text and "actions    dim 3" in text
    img = np.asarray(Image.open(out))
    scale = round(128 / H)
    gap = 2
    assert img.shape == (gap + 3 * (H * scale + gap), gap + 5 * (W * scale + gap), 3)
    ds = EpisodeDataset(tmp_path / "ds")
    first = ds.frames(0, 0, 1)[0].repeat(scale, 0).repeat(scale, 1)
    np.testing.assert_array_equal(img[gap:gap + H * scale, gap:gap + W * scale], first)
    assert main(["info", str(tmp_path / "ds")]) == 0
    assert (tmp_path / "ds/contact_sheet.png").exists()


def test_info_bad_dataset_exits_2_one_line(tmp_path, capsys):
    write(tmp_path / "ds", make_episodes(2))
    (tmp_path / "ds/episodes/000000/frames.npy").write_bytes(b"garbage")
    assert main(["info", str(tmp_path / "ds")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "000000/frames.npy" in err
    assert main(["info", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "meta.json" in err


def test_info_checks_every_episode_not_only_the_sheet(tmp_path, capsys):
    """`ivideogpt info` is the integrity check: a truncated episode it would not draw still fails it."""
    from ivideogpt.cli import main
    from ivideogpt.commands.collect import collect

    collect("pusher", tmp_path / "d", episodes=8, steps=6, size=32, progress=False)
    f = tmp_path / "d" / "episodes" / "000001" / "frames.npy"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    assert main(["info", str(tmp_path / "d"), "--episodes", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "000001" in err[0] and "frames.npy" in err[0]
