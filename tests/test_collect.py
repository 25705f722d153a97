"""`ivideogpt collect`: writes a dataset, resumes to identical data, refuses to overwrite."""

import json
import time

import numpy as np
import pytest

from ivideogpt.cli import main
from ivideogpt.commands.collect import episode_seeds
from ivideogpt.data import episodes as episodes_mod
from ivideogpt.data.episodes import EpisodeDataset
from ivideogpt.envs import make, make_expert

ARGS = ["collect", "--env", "pusher", "--steps", "6", "--noise", "0.1", "--size", "32", "--seed", "3",
        "--no-progress", "--env-kwargs", "n_blocks=2"]


def _arrays(path):
    ds = EpisodeDataset(path)
    return [ds.episode(i) for i in range(len(ds))]


def test_collect_writes_dataset(tmp_path, capsys):
    out = tmp_path / "d"
    assert main([*ARGS, "--episodes", "3", "--out", str(out)]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert "3 episodes" in line and "18 frames" in line and "success" in line and str(out) in line
    ds = EpisodeDataset(out)
    assert len(ds) == 3 and ds.image_size == (32, 32) and ds.action_dim == 2
    meta = json.loads((out / "meta.json").read_text())
    assert meta["source"] == "pusher" and meta["extra"]["env_kwargs"]["n_blocks"] == 2
    ep = ds.episode(1)
    assert ep["frames"].shape == (6, 32, 32, 3) and ep["frames"].dtype == np.uint8
    assert ep["actions"].shape == (5, 2) and ep["rewards"].shape == (5,) and ep["success"].shape == (5,)
    # the stored episode is exactly a replay of the env with the stored actions from seed (3, 1)
    env = make("pusher", size=32, n_blocks=2, max_episode_steps=5)
    obs, info = env.reset(seed=episode_seeds(3, 1)[0])
    assert np.array_equal(obs, ep["frames"][0])
    expert = make_expert("pusher", noise=0.1)
    expert.reset(episode_seeds(3, 1)[1])
    for t in range(5):
        a = expert.act(obs, info)
        assert np.array_equal(a, ep["actions"][t])  # action t is chosen after seeing frame t
        obs, r, _, _, info = env.step(a)
        assert np.array_equal(obs, ep["frames"][t + 1]) and np.isclose(r, ep["rewards"][t])
        assert info["success"] == ep["success"][t]


def test_resume_after_interruption_matches_uninterrupted(tmp_path, monkeypatch):
    full = tmp_path / "full"
    assert main([*ARGS, "--episodes", "5", "--out", str(full)]) == 0

    part = tmp_path / "part"
    real_add = episodes_mod.EpisodeWriter.add_episode
    calls = {"n": 0}

    def add_then_interrupt(self, *a, **k):
        if calls["n"] == 2:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C during the third episode
        calls["n"] += 1
        return real_add(self, *a, **k)

    monkeypatch.setattr(episodes_mod.EpisodeWriter, "add_episode", add_then_interrupt)
    assert main([*ARGS, "--episodes", "5", "--out", str(part)]) == 130
    monkeypatch.setattr(episodes_mod.EpisodeWriter, "add_episode", real_add)
    assert len(EpisodeDataset(part)) == 2
    assert main([*ARGS, "--episodes", "5", "--out", str(part), "--resume"]) == 0

    a, b = _arrays(full), _arrays(part)
    assert len(a) == len(b) == 5
    for ea, eb in zip(a, b):
        for k in ea:
            assert np.array_equal(ea[k], eb[k]), k
    meta_a = json.loads((full / "meta.json").read_text())
    meta_b = json.loads((part / "meta.json").read_text())
    assert meta_a["action_stats"] == meta_b["action_stats"] and meta_a["splits"] == meta_b["splits"]


def test_workers_give_the_same_data_and_task_info(tmp_path):
    one, three = tmp_path / "one", tmp_path / "three"
    assert main([*ARGS, "--episodes", "5", "--out", str(one)]) == 0
    assert main([*ARGS, "--episodes", "5", "--out", str(three), "--workers", "3"]) == 0
    a, b = _arrays(one), _arrays(three)
    assert len(a) == len(b) == 5
    for ea, eb in zip(a, b):
        for k in ea:
            assert np.array_equal(ea[k], eb[k]), k
    meta_a = json.loads((one / "meta.json").read_text())
    meta_b = json.loads((three / "meta.json").read_text())
    assert meta_a["action_stats"] == meta_b["action_stats"] and meta_a["splits"] == meta_b["splits"]
    assert meta_a["episode_info"] == [{"task": "pusher"}] * 5 == meta_b["episode_info"]
    assert EpisodeDataset(three).episode_info(4) == {"task": "pusher"}


def test_bad_worker_count_exits_2(tmp_path, capsys):
    assert main([*ARGS, "--episodes", "1", "--out", str(tmp_path / "d"), "--workers", "0"]) == 2
    assert "--workers" in capsys.readouterr().err


def test_resume_with_other_settings_refused(tmp_path, capsys):
    out = tmp_path / "d"
    assert main([*ARGS, "--episodes", "1", "--out", str(out)]) == 0
    assert main([*ARGS, "--episodes", "2", "--out", str(out), "--resume", "--noise", "0.3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "noise" in err[0] and "resume" in err[0]


def test_existing_dir_without_resume_exits_2(tmp_path, capsys):
    out = tmp_path / "d"
    assert main([*ARGS, "--episodes", "1", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main([*ARGS, "--episodes", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "--resume" in err[0], err


@pytest.mark.parametrize("extra, word", [(["--env", "nope"], "pusher"), (["--env-kwargs", "nblocks=2"], "nblocks"),
                                         (["--env", "metaworld:hamer"], "hammer")])
def test_bad_arguments_exit_2_with_one_line(tmp_path, capsys, extra, word):
    assert main([*ARGS, "--episodes", "1", "--out", str(tmp_path / "d"), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and word in err[0], err


@pytest.mark.slow
def test_collect_200_episodes_under_60_seconds(tmp_path):
    t = time.perf_counter()
    assert main(["collect", "--episodes", "200", "--steps", "32", "--out", str(tmp_path / "d"),
                 "--no-progress"]) == 0
    assert time.perf_counter() - t < 60


def test_episode_info_survives_a_crash_and_old_datasets_read_as_empty(tmp_path, monkeypatch):
    from ivideogpt.data.episodes import EpisodeWriter

    frames = np.zeros((3, 8, 8, 3), np.uint8)
    acts = np.zeros((2, 1), np.float32)
    with EpisodeWriter(tmp_path / "d", image_size=(8, 8), action_dim=1) as w:
        w.add_episode(frames, acts)  # no info: an episode as older datasets have them
        w.add_episode(frames, acts, info={"task": "a"})
    assert json.loads((tmp_path / "d" / "meta.json").read_text())["episode_info"] == [{}, {"task": "a"}]
    # crash after episode 2's directory is in place but before meta.json lists it
    real = EpisodeWriter._write_meta
    w = EpisodeWriter(tmp_path / "d", image_size=(8, 8), action_dim=1, resume=True)
    monkeypatch.setattr(EpisodeWriter, "_write_meta", lambda self: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        w.add_episode(frames, acts, info={"task": "b"})
    monkeypatch.setattr(EpisodeWriter, "_write_meta", real)
    assert EpisodeDataset(tmp_path / "d").meta["num_episodes"] == 2
    EpisodeWriter(tmp_path / "d", image_size=(8, 8), action_dim=1, resume=True).close()  # recovers episode 2
    ds = EpisodeDataset(tmp_path / "d")
    assert [ds.episode_info(i) for i in range(3)] == [{}, {"task": "a"}, {"task": "b"}]
    with pytest.raises(episodes_mod.DataError, match="JSON"):
        with EpisodeWriter(tmp_path / "e", image_size=(8, 8), action_dim=1) as w2:
            w2.add_episode(frames, acts, info={"bad": object()})
