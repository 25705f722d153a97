"""WorldModelEnv / WorldModelVectorEnv: Gymnasium conformance, seeding, agreement with WorldModel.rollout,
batched stepping, autoreset, and clear errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode

import conftest
from ivideogpt import WorldModel
from ivideogpt.commands.collect import collect
from ivideogpt.envs import make
from ivideogpt.envs.world_model_env import WorldModelEnv, WorldModelVectorEnv
from ivideogpt.errors import CheckpointError, ConfigError, DataError

RES, T0, HORIZON = 32, 2, 4


pytestmark = pytest.mark.usefixtures("one_thread")


def micro_world_model(action_dim: int = 2, use_reward: bool = True) -> WorldModel:
    """32x32 frames, 16 + 4 tokens per frame, max_steps = HORIZON; actions made to matter."""
    return conftest.micro_world_model(action_dim=action_dim, use_reward=use_reward, context_frames=T0,
                                      max_steps=HORIZON)


@pytest.fixture(scope="module")
def data32(tmp_path_factory):
    return collect("pusher", tmp_path_factory.mktemp("data") / "pusher32", episodes=4, steps=12, size=RES,
                   progress=False)


def context(b: int | None = None, seed: int = 0) -> np.ndarray:
    shape = (T0, RES, RES, 3) if b is None else (b, T0, RES, RES, 3)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def run(env, acts):
    out = [env.step(a) for a in acts]
    return np.stack([o[0] for o in out]), np.array([o[1] for o in out]), [o[3] for o in out]


def test_check_env_passes_with_tiny_cpu_and_pusher_data(tmp_path):
    data = collect("pusher", tmp_path / "pusher", episodes=4, steps=12, progress=False)
    wm = WorldModel.from_preset("tiny-cpu", action_dim=2, action_mean=[0, 0], action_std=[1, 1], use_reward=True)
    env = WorldModelEnv(wm, data)
    assert env.observation_space.shape == (wm.tokenizer.resolution,) * 2 + (3,)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any checker warning other than the spec-less render note fails
        warnings.filterwarnings("ignore", message=".*not having a spec.*")
        check_env(env)


def test_check_env_passes_with_micro_model(data32):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", message=".*not having a spec.*")
        check_env(WorldModelEnv(micro_world_model(), data32))


def test_reset_draws_real_context_and_seeds_everything(data32):
    from ivideogpt.data import EpisodeDataset

    env = WorldModelEnv(micro_world_model(), data32)
    ds = EpisodeDataset(data32)
    obs, info = env.reset(seed=4)
    assert obs.shape == (RES, RES, 3) and obs.dtype == np.uint8
    assert info["episode"] in ds.split("val")
    np.testing.assert_array_equal(info["context_frames"], ds.frames(info["episode"], info["start"],
                                                                    info["start"] + T0))
    np.testing.assert_array_equal(obs, info["context_frames"][-1])
    np.testing.assert_array_equal(env.render(), obs)

    acts = np.random.default_rng(0).uniform(-1, 1, (HORIZON, 2)).astype(np.float32)
    f1, r1, trunc = run(env, acts)
    assert trunc == [False] * (HORIZON - 1) + [True]
    np.testing.assert_array_equal(env.render(), f1[-1])
    env.reset(seed=4)
    f2, r2, _ = run(env, acts)
    np.testing.assert_array_equal(f1, f2)
    np.testing.assert_array_equal(r1, r2)
    # Same context, another seed: the world model samples differently.
    env.reset(seed=5, options={"context_frames": info["context_frames"]})
    f3, _, _ = run(env, acts)
    assert not np.array_equal(f1, f3)
    # The train split is another set of episodes.
    train = WorldModelEnv(micro_world_model(), data32, split="train")
    assert train.reset(seed=0)[1]["episode"] in ds.split("train")


def test_env_steps_are_world_model_steps():
    """Greedy decoding (no randomness): the env's frames and rewards are WorldModel.rollout's."""
    wm = micro_world_model()
    env = WorldModelEnv(wm, horizon=3, temperature=0.0)
    ctx = context()
    acts = np.random.default_rng(1).normal(size=(3, 2)).astype(np.float32)
    obs, info = env.reset(options={"context_frames": ctx})
    np.testing.assert_array_equal(obs, ctx[-1])
    np.testing.assert_array_equal(info["context_frames"], ctx)
    frames, rewards, trunc = run(env, acts)
    want_f, want_r = wm.rollout(ctx[None], acts[None], temperature=0.0)
    np.testing.assert_array_equal(frames, want_f[0])
    np.testing.assert_allclose(rewards, want_r[0], rtol=1e-6)
    assert trunc == [False, False, True]
    with pytest.raises(RuntimeError, match="horizon"):
        env.step(acts[0])


def test_envs_sharing_one_world_model_keep_their_own_rollouts():
    wm = micro_world_model()
    acts = np.random.default_rng(4).normal(size=(HORIZON, 2)).astype(np.float32)
    alone = []
    for seed in (0, 1):
        env = WorldModelEnv(wm)
        env.reset(seed=seed, options={"context_frames": context(seed=seed)})
        alone.append(run(env, acts)[0])
    a, b = WorldModelEnv(wm), WorldModelEnv(wm)
    a.reset(seed=0, options={"context_frames": context(seed=0)})
    b.reset(seed=1, options={"context_frames": context(seed=1)})
    interleaved = [[], []]
    for act in acts:  # a, b, a, b, ...: each step must continue its own env's rollout
        interleaved[0].append(a.step(act)[0])
        interleaved[1].append(b.step(act)[0])
    np.testing.assert_array_equal(np.stack(interleaved[0]), alone[0])
    np.testing.assert_array_equal(np.stack(interleaved[1]), alone[1])


def test_action_space_and_rewards():
    env = WorldModelEnv(micro_world_model())
    assert env.action_space.shape == (2,)
    np.testing.assert_array_equal(env.action_space.low, [-1, -1])
    np.testing.assert_array_equal(env.action_space.high, [1, 1])
    assert env.horizon == HORIZON

    free = WorldModelEnv(micro_world_model(action_dim=0, use_reward=False))
    assert free.action_space.shape == (0,)
    free.reset(seed=0, options={"context_frames": context()})
    obs, reward, terminated, truncated, _ = free.step(free.action_space.sample())
    assert obs.shape == (RES, RES, 3) and reward == 0.0 and terminated is False and truncated is False


def test_action_space_from_dataset(data32):
    from ivideogpt.data import EpisodeDataset

    stats = EpisodeDataset(data32).meta["action_stats"]
    env = WorldModelEnv(micro_world_model(), data32)
    np.testing.assert_allclose(env.action_space.low, stats["min"], rtol=1e-6)
    np.testing.assert_allclose(env.action_space.high, stats["max"], rtol=1e-6)
    assert env.metadata["render_fps"] == EpisodeDataset(data32).meta["fps"]


def test_env_errors(tmp_path, data32):
    wm = micro_world_model()
    env = WorldModelEnv(wm)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(2, np.float32))
    with pytest.raises(ValueError, match="no dataset"):
        env.reset()
    with pytest.raises(ValueError, match=r"context_frames.*\[2, 32, 32, 3\]"):
        env.reset(options={"context_frames": context()[:1]})
    with pytest.raises(TypeError, match="uint8"):
        env.reset(options={"context_frames": context().astype(np.float32)})
    env.reset(options={"context_frames": context()})
    with pytest.raises(ValueError, match=r"action: expected shape \[2\]"):
        env.step(np.zeros(3, np.float32))
    with pytest.raises(ConfigError, match="horizon"):
        WorldModelEnv(wm, horizon=0)
    big = collect("pusher", tmp_path / "pusher64", episodes=2, steps=4, progress=False)
    with pytest.raises(DataError, match="frames are"):
        WorldModelEnv(wm, big)
    with pytest.raises(DataError, match="split"):
        WorldModelEnv(wm, data32, split="test")
    with pytest.raises(CheckpointError):
        WorldModelEnv(tmp_path / "no-model")


def test_load_from_path_and_make(tmp_path, data32):
    wm = micro_world_model()
    wm.save_pretrained(tmp_path / "wm")
    ctx = context()
    acts = np.random.default_rng(2).normal(size=(2, 2)).astype(np.float32)
    envs = [WorldModelEnv(wm, temperature=0.0), WorldModelEnv(str(tmp_path / "wm"), temperature=0.0),
            make("world_model", path=tmp_path / "wm", temperature=0.0, horizon=2)]
    outs = []
    for env in envs:
        env.reset(options={"context_frames": ctx})
        outs.append(run(env, acts)[0])
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_array_equal(outs[0], outs[2])
    assert envs[2].horizon == 2
    assert make("world_model", path=tmp_path / "wm", dataset=data32).reset(seed=0)[0].shape == (RES, RES, 3)
    with pytest.raises(ConfigError, match="unknown argument"):
        make("world_model", path=tmp_path / "wm", num_envs=2)


# ------------------------------------------------------------------------------------------------ vector


def test_vector_env_is_one_batched_world_model_step(data32):
    wm = micro_world_model()
    venv = WorldModelVectorEnv(wm, data32, num_envs=3)
    assert venv.single_observation_space.shape == (RES, RES, 3)
    assert venv.observation_space.shape == (3, RES, RES, 3)
    assert venv.action_space.shape == (3, 2)
    assert venv.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    calls = []
    generate = wm.transformer.generate_frame
    wm.transformer.generate_frame = lambda *a, **k: calls.append(1) or generate(*a, **k)

    obs, info = venv.reset(seed=0)
    assert obs.shape == (3, RES, RES, 3) and obs.dtype == np.uint8
    assert info["context_frames"].shape == (3, T0, RES, RES, 3) and info["_context_frames"].all()
    np.testing.assert_array_equal(obs, info["context_frames"][:, -1])
    venv.action_space.seed(0)
    acts = [venv.action_space.sample() for _ in range(2)]
    out1 = [venv.step(a) for a in acts]
    assert len(calls) == 2  # one transformer frame generation per step for all 3 envs
    assert out1[0][0].shape == (3, RES, RES, 3) and out1[0][1].shape == (3,)
    assert len(venv.render()) == 3

    venv.reset(seed=0)
    out2 = [venv.step(a) for a in acts]
    for a, b in zip(out1, out2):
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])


def test_vector_env_matches_world_model_rollout():
    wm = micro_world_model()
    ctx = context(b=3)
    acts = np.random.default_rng(3).normal(size=(3, 2, 2)).astype(np.float32)
    venv = WorldModelVectorEnv(wm, num_envs=3, horizon=2, temperature=0.0)
    venv.reset(options={"context_frames": ctx})
    obs = [venv.step(acts[:, i]) for i in range(2)]
    want_f, want_r = wm.rollout(ctx, acts, temperature=0.0)
    np.testing.assert_array_equal(np.stack([o[0] for o in obs], 1), want_f)
    np.testing.assert_allclose(np.stack([o[1] for o in obs], 1), want_r, rtol=1e-6)


def test_vector_autoreset_next_step(data32):
    venv = WorldModelVectorEnv(micro_world_model(), data32, num_envs=2, horizon=2)
    venv.reset(seed=1)
    a = np.zeros((2, 2), np.float32)
    _, _, term, trunc, _ = venv.step(a)
    assert not trunc.any() and not term.any()
    _, r, term, trunc, _ = venv.step(a)
    assert trunc.all() and not term.any() and (r != 0).all()
    obs, r, term, trunc, info = venv.step(a)  # the autoreset step: new contexts, reward 0, action ignored
    assert (r == 0).all() and not trunc.any() and not term.any()
    np.testing.assert_array_equal(obs, info["context_frames"][:, -1])
    _, _, _, trunc, _ = venv.step(a)
    assert not trunc.any()


def test_vector_autoreset_same_step_and_disabled():
    ctx = context(b=2)
    a = np.zeros((2, 2), np.float32)
    venv = WorldModelVectorEnv(micro_world_model(), num_envs=2, horizon=2, temperature=0.0,
                               autoreset_mode="SameStep")
    venv.reset(options={"context_frames": ctx})
    venv.step(a)
    obs, _, _, trunc, info = venv.step(a)
    assert trunc.all() and info["_final_obs"].all()
    np.testing.assert_array_equal(obs, ctx[:, -1])  # restarted from the given contexts (no dataset)
    want, _ = micro_world_model().rollout(ctx, np.zeros((2, 2, 2), np.float32), temperature=0.0)
    np.testing.assert_array_equal(np.stack(info["final_obs"]), want[:, -1])

    off = WorldModelVectorEnv(micro_world_model(), num_envs=2, horizon=1, autoreset_mode=AutoresetMode.DISABLED)
    off.reset(seed=0, options={"context_frames": ctx})
    assert off.step(a)[3].all()
    with pytest.raises(RuntimeError, match="reset"):
        off.step(a)


def test_vector_env_errors():
    venv = WorldModelVectorEnv(micro_world_model(), num_envs=2)
    with pytest.raises(RuntimeError, match="reset"):
        venv.step(np.zeros((2, 2), np.float32))
    with pytest.raises(ValueError, match="no dataset"):
        venv.reset()
    with pytest.raises(ValueError, match=r"\[2, 2, 32, 32, 3\]"):
        venv.reset(options={"context_frames": context(b=3)})
    with pytest.raises(ValueError, match="lockstep"):
        venv.reset(options={"context_frames": context(b=2), "reset_mask": np.array([True, False])})
    venv.reset(options={"context_frames": context(b=2), "reset_mask": np.array([True, True])})
    with pytest.raises(ValueError, match=r"action: expected shape \[2, 2\]"):
        venv.step(np.zeros((3, 2), np.float32))
    with pytest.raises(ConfigError, match="autoreset_mode"):
        WorldModelVectorEnv(micro_world_model(), autoreset_mode="sometimes")
    with pytest.raises(ConfigError, match="num_envs"):
        WorldModelVectorEnv(micro_world_model(), num_envs=0)


def test_horizon_past_max_steps_reanchors_and_shared_envs_stay_apart():
    """An episode longer than the KV cache: WorldModel re-anchors inside step(); two envs sharing the model,
    stepped in turn, each give the frames of their own rollout (the re-anchor keeps each env's state its own)."""
    wm = micro_world_model()
    k = 3 * HORIZON
    envs = [WorldModelEnv(wm, horizon=k) for _ in range(2)]
    ctxs = [context(seed=s) for s in (0, 1)]
    acts = np.random.default_rng(2).normal(size=(2, k, 2)).astype(np.float32)
    for env, ctx in zip(envs, ctxs):
        env.reset(seed=7, options={"context_frames": ctx})
    got = [[], []]
    for i in range(k):
        for j, env in enumerate(envs):
            obs, _, _, truncated, _ = env.step(acts[j, i])
            got[j].append(obs)
    assert truncated
    for j in range(len(envs)):
        alone = WorldModelEnv(wm, horizon=k)
        alone.reset(seed=7, options={"context_frames": ctxs[j]})
        np.testing.assert_array_equal(np.stack(got[j]), run(alone, acts[j])[0])
