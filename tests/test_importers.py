"""`ivideogpt import`: video folders (MP4/GIF) and LeRobot v2.1 / v3.0 datasets written by our own fixture writer.

Video is lossy (H.264), so frames are checked approximately: close to the source frame, and closer to it than to
any other frame of the episode (which proves the episode boundaries and frame order). Actions and rewards are
checked exactly."""

import json

import numpy as np
import pytest
from PIL import Image

from ivideogpt.cli import main
from ivideogpt.data.episodes import EpisodeDataset
from ivideogpt.data.video_import import square_resize

pytest.importorskip("pyarrow")
from ivideogpt.data.lerobot import write_lerobot_fixture  # noqa: E402

H = W = 32
MAX_MEAN_ERR = 6.0  # mean absolute error (0-255) allowed after H.264 at crf 10 on smooth frames


def smooth_frames(n: int, seed: int, h: int = H, w: int = W) -> np.ndarray:
    """Frames a codec keeps well: a colour gradient plus a soft blob that moves a lot from frame to frame."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = rng.uniform(40, 120, 3)
    out = np.empty((n, h, w, 3), np.uint8)
    for t in range(n):
        cy, cx = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w
        blob = 120 * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * (0.15 * h) ** 2))
        img = base[None, None] + 1.5 * np.stack([x, y, x + y], -1) * 32 / w + blob[..., None]
        out[t] = np.clip(img, 0, 255).astype(np.uint8)
    return out


def check_frames(got: np.ndarray, want: np.ndarray):
    assert got.shape == want.shape, (got.shape, want.shape)
    err = np.abs(got.astype(float)[:, None] - want.astype(float)[None]).mean(axis=(2, 3, 4))  # [T_got, T_want]
    assert np.diag(err).max() < MAX_MEAN_ERR, np.diag(err)
    assert (err.argmin(1) == np.arange(len(got))).all(), err.round(1)


# ---- videos -------------------------------------------------------------------------------------


def write_mp4(path, frames, fps=8):
    import imageio_ffmpeg

    w = imageio_ffmpeg.write_frames(str(path), (frames.shape[2], frames.shape[1]), fps=fps, codec="libx264",
                                    quality=None, output_params=["-crf", "10"], macro_block_size=1,
                                    ffmpeg_log_level="error")
    w.send(None)
    for f in frames:
        w.send(np.ascontiguousarray(f))
    w.close()


def test_import_video_folder(tmp_path, capsys):
    src = tmp_path / "videos"
    (src / "sub").mkdir(parents=True)
    a, b = smooth_frames(7, 0, 32, 48), smooth_frames(5, 1, 32, 48)  # not square: --size crops the centre
    write_mp4(src / "a.mp4", a)
    write_mp4(src / "sub" / "b.mp4", b)
    gif = smooth_frames(4, 2, 32, 48)
    Image.fromarray(gif[0]).save(src / "c.gif", save_all=True, append_images=[Image.fromarray(f) for f in gif[1:]],
                                 duration=100, loop=0)
    (src / "notes.txt").write_text("not a video")
    out = tmp_path / "ds"
    assert main(["import", "--format", "video", str(src), "--out", str(out), "--frame-step", "2", "--size", "16",
                 "--no-progress"]) == 0
    assert "3 episodes" in capsys.readouterr().out
    ds = EpisodeDataset(out)
    assert len(ds) == 3 and ds.action_dim == 0 and ds.image_size == (16, 16)
    sources = [ds.episode_info(i)["source"] for i in range(3)]
    assert sources == ["a.mp4", "c.gif", "sub/b.mp4"]  # sorted paths under SRC
    for i, video in zip(range(3), (a, gif, b)):
        want = np.stack([square_resize(f, 16) for f in video[::2]])
        ep = ds.episode(i)
        assert ep["actions"].shape == (len(want) - 1, 0) and not ep["rewards"].any()
        if i == 1:
            # GIF: a 256-colour palette, no codec blur; the order must still be exact
            assert np.abs(ep["frames"].astype(float) - want).mean() < MAX_MEAN_ERR
        check_frames(ep["frames"], want)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["fps"] == pytest.approx(4.0) and meta["extra"]["frame_step"] == 2  # 8 fps, every 2nd frame


def test_import_video_resume_skips_done_videos(tmp_path, monkeypatch):
    from ivideogpt.data import episodes as episodes_mod

    src = tmp_path / "v"
    src.mkdir()
    for k in range(3):
        write_mp4(src / f"{k}.mp4", smooth_frames(3, k))
    real = episodes_mod.EpisodeWriter.add_episode
    calls = {"n": 0}

    def add_then_interrupt(self, *a, **kw):
        if calls["n"] == 1:
            raise KeyboardInterrupt
        calls["n"] += 1
        return real(self, *a, **kw)

    monkeypatch.setattr(episodes_mod.EpisodeWriter, "add_episode", add_then_interrupt)
    args = ["import", "--format", "video", str(src), "--out", str(tmp_path / "d"), "--no-progress"]
    assert main(args) == 130
    monkeypatch.setattr(episodes_mod.EpisodeWriter, "add_episode", real)
    assert main([*args, "--resume"]) == 0
    ds = EpisodeDataset(tmp_path / "d")
    assert [ds.episode_info(i)["source"] for i in range(len(ds))] == ["0.mp4", "1.mp4", "2.mp4"]


def test_import_video_sizes_must_match_without_size(tmp_path, capsys):
    src = tmp_path / "v"
    src.mkdir()
    write_mp4(src / "a.mp4", smooth_frames(3, 0, 32, 32))
    write_mp4(src / "b.mp4", smooth_frames(3, 1, 16, 16))
    assert main(["import", "--format", "video", str(src), "--out", str(tmp_path / "d"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "b.mp4" in err[0] and "--size" in err[0]


# ---- LeRobot ------------------------------------------------------------------------------------


def episodes(lengths=(6, 4, 5), a_dim=3):
    rng = np.random.default_rng(0)
    return [{"frames": smooth_frames(t, 10 + i), "actions": rng.normal(size=(t, a_dim)).astype(np.float32),
             "rewards": rng.uniform(0, 1, t).astype(np.float32), "task": f"task {i % 2}"}
            for i, t in enumerate(lengths)]


@pytest.mark.parametrize("version, video", [("v2.1", True), ("v3.0", True), ("v3.0", False)])
def test_import_lerobot(tmp_path, version, video):
    eps = episodes()
    # v3.0: 2 episodes per file, so episode 1 starts mid-file and episode 2 is in a second file
    src = write_lerobot_fixture(tmp_path / "lr", eps, version=version, episodes_per_file=2, video=video)
    out = tmp_path / "ds"
    assert main(["import", "--format", "lerobot", str(src), "--out", str(out), "--no-progress"]) == 0
    ds = EpisodeDataset(out)
    assert len(ds) == 3 and ds.action_dim == 3 and ds.image_size == (H, W)
    for i, ep_src in enumerate(eps):
        ep = ds.episode(i)
        t = len(ep_src["frames"])
        assert ds.length(i) == t
        # row t's action leads from frame t to t+1; the last row's action has no next frame
        assert np.array_equal(ep["actions"], ep_src["actions"][:-1])
        assert np.array_equal(ep["rewards"], ep_src["rewards"][:-1])
        if video:
            check_frames(ep["frames"], ep_src["frames"])
        else:
            assert np.array_equal(ep["frames"], ep_src["frames"])  # PNG cells are lossless
        assert ds.episode_info(i) == {"episode_index": i, "tasks": [ep_src["task"]]}
    meta = json.loads((out / "meta.json").read_text())
    assert meta["extra"]["codebase_version"] == version and meta["extra"]["reward_key"] == "next.reward"
    assert meta["fps"] == 10


def test_lerobot_v3_layout_follows_lerobot(tmp_path):
    """The fixture (and so the reader) uses LeRobot's own v3.0 names and templates."""
    import pyarrow.parquet as pq

    src = write_lerobot_fixture(tmp_path / "lr", episodes(), version="v3.0", episodes_per_file=2)
    info = json.loads((src / "meta/info.json").read_text())
    assert info["data_path"] == "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    assert info["video_path"] == "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
    rows = pq.read_table(src / "meta/episodes/chunk-000/file-000.parquet").to_pydict()
    key = "videos/observation.images.top/"
    assert rows["dataset_from_index"] == [0, 6, 10] and rows["dataset_to_index"] == [6, 10, 15]
    assert rows[key + "file_index"] == [0, 0, 1] and rows[key + "from_timestamp"] == [0.0, 0.6, 0.0]
    assert (src / "videos/observation.images.top/chunk-000/file-001.mp4").exists()
    assert (src / "data/chunk-000/file-001.parquet").exists()
    v2 = write_lerobot_fixture(tmp_path / "v2", episodes(), version="v2.1")
    assert (v2 / "data/chunk-000/episode_000002.parquet").exists()
    assert (v2 / "videos/chunk-000/observation.images.top/episode_000002.mp4").exists()
    lines = (v2 / "meta/episodes.jsonl").read_text().splitlines()
    assert json.loads(lines[1]) == {"episode_index": 1, "tasks": ["task 1"], "length": 4}


def test_lerobot_options_and_errors(tmp_path, capsys):
    src = write_lerobot_fixture(tmp_path / "lr", episodes(), version="v2.1")
    out = tmp_path / "small"
    assert main(["import", "--format", "lerobot", str(src), "--out", str(out), "--size", "16", "--no-progress"]) == 0
    ds = EpisodeDataset(out)
    assert ds.image_size == (16, 16)
    check_frames(ds.episode(0)["frames"], np.stack([square_resize(f, 16) for f in episodes()[0]["frames"]]))
    capsys.readouterr()
    for extra, word in ((["--camera", "observation.images.wrist"], "observation.images.top"),
                        (["--action-key", "act"], "act"), (["--reward-key", "reward"], "reward"),
                        (["--frame-step", "2"], "--frame-step")):
        assert main(["import", "--format", "lerobot", str(src), "--out", str(tmp_path / "x"), "--no-progress",
                     *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and word in err[0], err
    assert main(["import", "--format", "lerobot", str(tmp_path), "--out", str(tmp_path / "y")]) == 2
    assert "meta/info.json" in capsys.readouterr().err
