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
                                         (["--env", "metaworld:hammer-v3"], "sim")])
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
