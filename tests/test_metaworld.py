"""Meta-World pixel env (sim extra): frames, seeding, action repeat / frame stack, state restore, experts,
multi-task collection with workers. Kept to a few env steps each."""

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

# Not importorskip: importing metaworld here would import mujoco before ivideogpt chooses MUJOCO_GL.
if importlib.util.find_spec("metaworld") is None:
    pytest.skip("Meta-World needs the sim extra", allow_module_level=True)

import ivideogpt.envs.metaworld  # noqa: E402,F401  (first: sets MUJOCO_GL before mujoco is imported)
from ivideogpt.cli import main  # noqa: E402
from ivideogpt.data.episodes import EpisodeDataset  # noqa: E402
from ivideogpt.envs import make, make_expert  # noqa: E402
from ivideogpt.errors import ConfigError  # noqa: E402

GL_VARS = ("MUJOCO_GL", "PYOPENGL_PLATFORM")  # set in this process by the import above
SIZE = 32  # small frames keep the tests fast; the default is 64


@pytest.fixture(scope="module")
def env():
    e = make("metaworld:hammer", size=SIZE)
    yield e
    e.close()


def test_frames_upright_and_shaped(env):
    obs, info = env.reset(seed=0)
    assert obs.shape == (SIZE, SIZE, 3) and obs.dtype == np.uint8
    assert set(info) >= {"success", "state"} and info["state"].shape == (39,) and info["success"] is False
    # our frame is the raw corner4 render turned by 180 degrees
    raw = env.unwrapped._renderer.render()
    assert np.array_equal(obs, raw[::-1, ::-1])
    # upright: grey wall at the top, brown wooden table at the bottom (R - B is large for wood, ~0 for grey)
    redness = obs[..., 0].astype(float) - obs[..., 2]
    quarter = SIZE // 4
    assert redness[-quarter:].mean() > redness[:quarter].mean() + 15, (redness[-quarter:].mean(),
                                                                        redness[:quarter].mean())


def test_seeded_resets_are_reproducible_and_distinct(env):
    o1, i1 = env.reset(seed=7)
    other = make("metaworld:hammer-v3", size=SIZE)  # 'hammer' and 'hammer-v3' are the same task
    o2, i2 = other.reset(seed=7)
    assert np.array_equal(o1, o2) and np.array_equal(i1["state"], i2["state"])
    o3, i3 = other.reset(seed=8)
    # a different seed places the objects elsewhere (the hammer's position is in state[4:7])
    assert np.abs(i3["state"][4:7] - i1["state"][4:7]).max() > 1e-3
    # the env's own sequence of unseeded resets also gives new instances
    _, i4 = other.reset()
    assert np.abs(i4["state"][4:7] - i3["state"][4:7]).max() > 1e-3
    other.close()


def test_action_repeat_and_frame_stack():
    rng = np.random.default_rng(0)
    acts = rng.uniform(-1, 1, (3, 4)).astype(np.float32)
    twice = make("metaworld:plate-slide", size=SIZE, action_repeat=2, frame_stack=3, success_bonus=0.0)
    once = make("metaworld:plate-slide", size=SIZE, action_repeat=1, success_bonus=0.0)
    obs, _ = twice.reset(seed=1)
    o1, _ = once.reset(seed=1)
    assert obs.shape == (3, SIZE, SIZE, 3) and all(np.array_equal(obs[k], o1) for k in range(3))
    for a in acts:
        prev = obs
        obs, r, term, trunc, info = twice.step(a)
        r1 = 0.0
        for _ in range(2):
            o1, r_once, _, _, info1 = once.step(a)
            r1 += r_once
        assert np.array_equal(obs[-1], o1) and np.array_equal(info["state"], info1["state"])
        assert np.isclose(r, r1) and not term and not trunc
        assert np.array_equal(obs[:2], prev[1:])  # the stack shifts by one frame per step
    assert twice.metadata["render_fps"] * 2 == once.metadata["render_fps"]
    twice.close()
    once.close()


def test_truncation_after_max_episode_steps(env):
    env.unwrapped.max_episode_steps = 2
    try:
        env.reset(seed=0)
        assert env.step(np.zeros(4))[3] is False and env.step(np.zeros(4))[3] is True
    finally:
        env.unwrapped.max_episode_steps = 100


def _roll(e, acts):
    out = []
    for a in acts:
        obs, r, _, _, info = e.step(a)
        out.append((obs.copy(), r, info["success"], info["state"].copy()))
    return out


# door-lock's reward reads arrays Meta-World keeps as live views into MuJoCo's memory (init_left_pad, ...)
@pytest.mark.parametrize("task", ["hammer", "door-lock"])
def test_state_restore_same_env_and_copy(task):
    env = make(f"metaworld:{task}", size=SIZE)
    expert = make_expert(f"metaworld:{task}", noise=0.0)
    obs, info = env.reset(seed=3)
    for _ in range(8):  # move somewhere interesting first
        obs, _, _, _, info = env.step(expert.act(obs, info))
    saved = env.unwrapped.get_state()
    acts = np.random.default_rng(1).uniform(-1, 1, (5, 4)).astype(np.float32)
    first = _roll(env, acts)
    env.unwrapped.set_state(saved)
    again = _roll(env, acts)
    copy = make(f"metaworld:{task}", size=SIZE)
    copy.reset(seed=99)  # a different instance: the restore must bring the goal and objects along
    copy.unwrapped.set_state(saved)
    on_copy = _roll(copy, acts)
    for a, b, c in zip(first, again, on_copy):
        for x, y in ((a, b), (a, c)):
            assert np.array_equal(x[0], y[0]) and x[1] == y[1] and x[2] == y[2] and np.array_equal(x[3], y[3])
    assert any(not np.array_equal(first[0][0], f[0]) for f in first[1:])  # the actions did move things
    with pytest.raises(ValueError, match=task):  # a state of another task is refused
        env.unwrapped.set_state(dataclasses.replace(saved, task="plate-slide-v3"))
    copy.close()
    env.close()


def test_expert_solves_hammer_with_success_bonus(env):
    expert = make_expert("metaworld:hammer", noise=0.1, epsilon=0.0, seed=0)
    obs, info = env.reset(seed=0)
    for _ in range(60):
        obs, r, _, _, info = env.step(expert.act(obs, info))
        if info["success"]:
            break
    assert info["success"], "the scripted hammer expert (noise 0.1) should succeed within 60 steps"
    assert r >= env.unwrapped.success_bonus  # bonus on top of Meta-World's reward (0..10 per env step)
    # the noise is reproducible from the expert's seed
    a = make_expert("metaworld:hammer", noise=0.3, seed=5)
    b = make_expert("metaworld:hammer", noise=0.3, seed=5)
    assert np.array_equal(a.act(obs, info), b.act(obs, info))


def test_check_env_passes(env):
    from gymnasium.utils.env_checker import check_env

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env)
    # the only allowed note: no registered spec, so alternative render modes cannot be tried
    bad = [str(w.message) for w in caught if "spec" not in str(w.message)]
    assert not bad, bad


def test_names_and_errors():
    with pytest.raises(ConfigError, match="hammer-v3"):
        make("metaworld:hamer")
    with pytest.raises(ConfigError, match="one task"):
        make("metaworld:mt10")
    with pytest.raises(ConfigError, match="name a task"):
        make("metaworld:")
    with pytest.raises(ConfigError, match="camera"):
        make("metaworld:hammer", camera="nope")
    from ivideogpt.envs.metaworld import TASK_GROUPS, expand_tasks

    assert expand_tasks("mt10") == TASK_GROUPS["mt10"] and len(TASK_GROUPS["mt10"]) == 10
    assert "reach-v3" in TASK_GROUPS["mt10"] and "window-close-v3" in TASK_GROUPS["mt10"]
    assert expand_tasks("hammer, plate-slide-v3") == ["hammer-v3", "plate-slide-v3"]


def _python(code: str, **env) -> str:
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env={**{k: v for k, v in os.environ.items() if k not in GL_VARS}, **env})
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_mujoco_gl_chosen_at_import_and_pusher_stays_light():
    out = _python("import os, sys, ivideogpt, ivideogpt.envs as e; e.make('pusher'); print('mujoco' in sys.modules)\n"
                  "import ivideogpt.envs.metaworld; print(os.environ['MUJOCO_GL'])")
    assert out.splitlines()[0] == "False" and out.splitlines()[1] in ("egl", "osmesa")
    # a user's choice is never overridden, and one that cannot render gives a one-line ConfigError naming it
    kept = _python("import os, ivideogpt.envs.metaworld as m\nprint(os.environ['MUJOCO_GL'])\n"
                   "try: m.MetaWorldEnv('hammer', size=16)\nexcept m.ConfigError as e: print(e)", MUJOCO_GL="disable")
    assert kept.splitlines()[0] == "disable" and "MUJOCO_GL='disable'" in kept.splitlines()[1]


COLLECT = ["collect", "--env", "metaworld:hammer,plate-slide", "--episodes", "3", "--steps", "4", "--size",
           str(SIZE), "--noise", "0.1", "--epsilon", "0.2", "--no-progress"]


def test_no_working_gl_backend_is_a_clear_error(monkeypatch):
    from ivideogpt.envs import metaworld as mw

    for var in GL_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delitem(sys.modules, "mujoco")  # as if it were not imported yet (restored afterwards)
    err = mw._choose_gl(("nope",))
    assert "MUJOCO_GL" not in os.environ
    assert "nope" in err and "libegl1" in err and "libosmesa6" in err


def test_multitask_collection_records_tasks_and_replays(tmp_path):
    assert main([*COLLECT, "--out", str(tmp_path / "one")]) == 0
    a = EpisodeDataset(tmp_path / "one")
    assert len(a) == 3 and a.action_dim == 4 and a.has_success
    # round robin over the tasks, recorded per episode
    assert [a.episode_info(i)["task"] for i in range(3)] == ["metaworld:hammer-v3", "metaworld:plate-slide-v3",
                                                             "metaworld:hammer-v3"]
    meta = json.loads((tmp_path / "one" / "meta.json").read_text())
    assert meta["extra"]["tasks"] == ["metaworld:hammer-v3", "metaworld:plate-slide-v3"]
    assert meta["extra"]["env_config"]["action_repeat"] == 2 and meta["fps"] == 40  # 80 Hz sim / repeat 2
    # episode 2 ran in the env that had already run episode 0; a fresh env replays it exactly from its seed,
    # so reusing an env leaks nothing into the next episode
    from ivideogpt.commands.collect import episode_seeds

    e = make("metaworld:hammer", size=SIZE, max_episode_steps=3)
    obs, _ = e.reset(seed=episode_seeds(0, 2)[0])
    ep = a.episode(2)
    assert np.array_equal(obs, ep["frames"][0])
    for t in range(3):
        obs, r, _, _, info = e.step(ep["actions"][t])
        assert np.array_equal(obs, ep["frames"][t + 1]) and np.isclose(r, ep["rewards"][t])
        assert info["success"] == ep["success"][t]
    e.close()


@pytest.mark.slow
def test_multitask_collection_with_workers_matches_one_process(tmp_path):
    assert main([*COLLECT, "--out", str(tmp_path / "one")]) == 0
    assert main([*COLLECT, "--out", str(tmp_path / "two"), "--workers", "2"]) == 0
    a, b = EpisodeDataset(tmp_path / "one"), EpisodeDataset(tmp_path / "two")
    assert len(a) == len(b) == 3
    for i in range(3):
        ea, eb = a.episode(i), b.episode(i)
        assert a.episode_info(i) == b.episode_info(i)
        for k in ea:
            assert np.array_equal(ea[k], eb[k]), (i, k)
