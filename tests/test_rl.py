"""DrQ-v2 / MBPO pieces: n-step targets, replay mixing, augmentation, interactive imagination, resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import conftest
from ivideogpt.errors import ConfigError
from ivideogpt.rl.config import RLConfig, load_rl_config
from ivideogpt.rl.drqv2 import random_shift, schedule
from ivideogpt.rl.mbpo import add_rollouts, build_world_model, env_action_stats, imagine, mixed_batch
from ivideogpt.rl.replay import ReplayBuffer

H = 8  # tiny frames for replay tests


def frames_numbered(n: int, offset: int = 0) -> np.ndarray:
    """Frame i is filled with the value offset + i: stacks and next observations are readable."""
    return (np.arange(n, dtype=np.uint8)[:, None, None, None] + offset) * np.ones((1, H, H, 3), np.uint8)


def test_nstep_targets_match_hand_computation():
    buf = ReplayBuffer(100, (H, H, 3), 1, frame_stack=3, nstep=3, discount=0.9)
    rewards = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    buf.add_episode(frames_numbered(6), np.zeros((5, 1)), rewards)
    # Non-terminal (time-limit) episode: only the first T - n + 1 = 3 transitions have a full n-step window.
    assert buf.valid_starts().tolist() == [0, 1, 2]
    reward, disc, nxt = buf.nstep_targets(np.array([0, 2]))
    assert reward[0] == pytest.approx(1 + 0.9 * 2 + 0.81 * 3)
    assert reward[1] == pytest.approx(3 + 0.9 * 4 + 0.81 * 5)
    assert disc.tolist() == pytest.approx([0.729, 0.729])
    assert nxt.tolist() == [3, 5]
    # Frame stacks: the first frame is repeated at the episode start, then it slides.
    assert buf.stack(np.array([0, 1, 4]))[:, :, 0, 0, 0].tolist() == [[0, 0, 0], [0, 0, 1], [2, 3, 4]]

    # A terminal episode: every step is a start; returns stop at the terminal and do not bootstrap.
    buf.add_episode(frames_numbered(4, offset=10), np.zeros((3, 1)), np.array([1.0, 1.0, 1.0]), terminal=True)
    assert buf.valid_starts().tolist() == [0, 1, 2, 6, 7, 8]
    reward, disc, nxt = buf.nstep_targets(np.array([6, 7, 8]))
    assert reward.tolist() == pytest.approx([1 + 0.9 + 0.81, 1 + 0.9, 1.0])
    assert disc.tolist() == [0.0, 0.0, 0.0]
    assert nxt.tolist() == [9, 9, 9]
    # The stack never reaches into the previous episode.
    assert buf.stack(np.array([6]))[0, :, 0, 0, 0].tolist() == [10, 10, 10]


def test_sampled_batch_is_consistent_with_its_transitions():
    buf = ReplayBuffer(100, (H, H, 3), 1, frame_stack=2, nstep=2, discount=0.5)
    buf.add_episode(frames_numbered(11), np.arange(10, dtype=np.float32)[:, None], np.arange(10.0))
    b = buf.sample(64, np.random.default_rng(0))
    t = b["action"][:, 0].astype(int)  # the action encodes the step index
    assert (b["obs"][:, -1, 0, 0, 0] == t).all() and (b["next_obs"][:, -1, 0, 0, 0] == t + 2).all()
    assert b["reward"] == pytest.approx(t + 0.5 * (t + 1))
    assert t.max() <= 8  # the last transition has no 2-step window


def test_imagined_history_frames_fill_the_first_stack():
    buf = ReplayBuffer(100, (H, H, 3), 1, frame_stack=3, nstep=1, discount=0.9)
    start = frames_numbered(3)[None]  # a real stack 0, 1, 2
    pred = frames_numbered(2, offset=50)[None]  # two predicted frames
    add_rollouts(buf, start, pred, np.zeros((1, 2, 1), np.float32), np.array([[1.0, 2.0]], np.float32))
    assert len(buf) == 2
    idx = buf.valid_starts()
    assert buf.stack(idx)[:, :, 0, 0, 0].tolist() == [[0, 1, 2], [1, 2, 50]]
    assert buf.nstep_targets(idx)[0].tolist() == [1.0, 2.0]


def test_replay_drops_oldest_episodes_when_full():
    buf = ReplayBuffer(14, (H, H, 3), 1, frame_stack=1, nstep=1, discount=0.9)
    for k in range(3):
        buf.add_episode(frames_numbered(6, offset=10 * k), np.zeros((5, 1)), np.full(5, float(k)))
    assert buf.num_episodes == 2 and buf.size == 12
    assert buf.frames[0, 0, 0, 0] == 10 and set(buf.rewards[:buf.size][buf.is_step[:buf.size]].tolist()) == {1.0, 2.0}
    assert buf.ep_start[:buf.size].tolist() == [0] * 6 + [6] * 6


def test_mixed_batch_real_ratio():
    real = ReplayBuffer(1000, (H, H, 3), 1, frame_stack=3, nstep=3, discount=0.99)
    imag = ReplayBuffer(1000, (H, H, 3), 1, frame_stack=3, nstep=3, discount=0.99)
    real.add_episode(np.zeros((41, H, H, 3), np.uint8), np.zeros((40, 1)), np.zeros(40))
    rng = np.random.default_rng(0)
    # Nothing imagined yet: all real.
    assert mixed_batch(real, imag, 64, 0.5, rng)["is_real"].all()
    for _ in range(5):
        add_rollouts(imag, np.full((4, 3, H, H, 3), 255, np.uint8), np.full((4, 10, H, H, 3), 255, np.uint8),
                     np.ones((4, 10, 1), np.float32), np.ones((4, 10), np.float32))
    fractions = []
    for _ in range(20):
        b = mixed_batch(real, imag, 256, 0.5, rng)
        from_real = b["obs"][:, -1, 0, 0, 0] == 0  # real frames are black, imagined white
        assert (from_real == b["is_real"]).all()
        assert (b["reward"][~from_real] > 0).all() and (b["reward"][from_real] == 0).all()
        fractions.append(from_real.mean())
    assert np.mean(fractions) == pytest.approx(0.5, abs=0.01)
    assert mixed_batch(real, imag, 100, 0.25, rng)["is_real"].sum() == 25


def test_random_shift_is_a_per_sample_shift_of_the_replicate_padded_image():
    pad, n, c, h = 4, 32, 9, 16
    x = torch.rand(n, c, h, h) * 255
    y = random_shift(x, pad, torch.Generator().manual_seed(0))
    assert y.shape == x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    shifts = []
    for i in range(n):
        found = [(dy, dx) for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)
                 if torch.equal(y[i], padded[i, :, dy:dy + h, dx:dx + h])]
        assert len(found) == 1, f"sample {i} is not exactly one crop of the padded image"
        shifts.append(found[0])
    assert len(set(shifts)) > n // 4  # drawn per sample, not one shift for the batch
    # Same as drqv2's grid_sample formulation for the same integer shift.
    dy, dx = shifts[0]
    eps = 1.0 / (h + 2 * pad)
    ar = torch.linspace(-1.0 + eps, 1.0 - eps, h + 2 * pad)[:h]
    ar = ar.unsqueeze(0).repeat(h, 1).unsqueeze(2)
    grid = torch.cat([ar, ar.transpose(1, 0)], dim=2)[None] + torch.tensor([dx, dy]) * 2.0 / (h + 2 * pad)
    ref = F.grid_sample(padded[:1], grid, padding_mode="zeros", align_corners=False)
    assert torch.allclose(ref, y[:1], atol=1e-3)


def test_stddev_schedule():
    assert schedule("0.2", 10) == 0.2
    assert schedule("linear(1.0,0.1,100)", 0) == 1.0
    assert schedule("linear(1.0,0.1,100)", 50) == pytest.approx(0.55)
    assert schedule("linear(1.0,0.1,100)", 1000) == pytest.approx(0.1)


def test_env_action_stats_uniform():
    mean, std = env_action_stats([-1.0, 0.0], [1.0, 2.0])
    assert mean == [0.0, 1.0] and std == pytest.approx([2 / 12**0.5, 2 / 12**0.5])


@pytest.fixture(scope="module")
def scratch_world_model():
    cfg = RLConfig().mbpo
    return build_world_model("scratch", action_dim=2, action_low=[-1, -1], action_high=[1, 1], resolution=64,
                             min_frames=6, cfg=cfg, seed=0)


def test_imagined_rollouts_call_the_policy_on_predicted_frames(scratch_world_model):
    wm = scratch_world_model
    assert wm.action_dim == 2 and wm.transformer.config.use_reward
    assert wm.transformer.action_std.tolist() == pytest.approx([1 / 3**0.5] * 2)  # from the env's [-1, 1] box
    seen, sent = [], []
    rng = np.random.default_rng(0)

    def policy(stack):
        seen.append(stack.copy())
        a = rng.uniform(-1, 1, (len(stack), 2)).astype(np.float32)
        sent.append(a)
        return a

    calls = {"reset": 0, "step": []}
    real_reset, real_step = wm.reset, wm.step
    wm.reset = lambda *a, **k: (calls.__setitem__("reset", calls["reset"] + 1), real_reset(*a, **k))[1]
    wm.step = lambda a: (calls["step"].append(np.array(a)), real_step(a))[1]
    try:
        start = np.random.default_rng(1).integers(0, 255, (3, 3, 64, 64, 3), dtype=np.uint8)
        frames, actions, rewards = imagine(wm, policy, start, 4, generator=torch.Generator().manual_seed(0))
    finally:
        del wm.reset, wm.step
    assert frames.shape == (3, 4, 64, 64, 3) and actions.shape == (3, 4, 2) and rewards.shape == (3, 4)
    assert len(seen) == 4 and calls["reset"] == 1  # one reset (KV cache kept), then one step per policy call
    assert np.array_equal(seen[0], start)
    for k in range(1, 4):
        # step k's policy input ends with the frame predicted at step k-1 (interactive, not open loop)
        assert np.array_equal(seen[k][:, -1], frames[:, k - 1])
        assert np.array_equal(seen[k][:, :-1], seen[k - 1][:, 1:])
    for k in range(4):
        assert np.array_equal(calls["step"][k], sent[k]) and np.array_equal(actions[:, k], sent[k])


def tiny_config(agent_sets=(), **mbpo) -> RLConfig:
    sets = ["agent.batch_size=8", "agent.hidden_dim=16", "agent.feature_dim=8", "agent.encoder_channels=4",
            "agent.encoder_strides=[2,2,2,2]", "agent.num_expl_steps=10", "run.episode_length=10",
            "run.num_seed_steps=15", "run.eval_every_env_steps=20", "run.eval_episodes=1",
            "run.save_every_env_steps=20", "run.demos=1", "mbpo.init_train_steps=1", "mbpo.batch_size=2",
            "mbpo.clip_len=3", "mbpo.n_future=1", "mbpo.horizon=2", "mbpo.initial_rollout_batch=2",
            "mbpo.rollout_batch=2", "mbpo.rollout_every_env_steps=10", "mbpo.transformer_every_env_steps=5",
            "mbpo.tokenizer_every_env_steps=10"]
    sets += [f"mbpo.{k}={v}" for k, v in mbpo.items()] + list(agent_sets)
    return load_rl_config("cpu", sets)


def run_trainer(out, steps, world_model=None, resume=False, env_kwargs=None, agent_sets=()):
    from ivideogpt.rl.loop import RLTrainer

    cfg = tiny_config(agent_sets)
    cfg.run.env_kwargs = env_kwargs or {}
    t = RLTrainer(cfg, "pusher", out, seed=3, world_model=world_model, resume=resume, progress=False)
    t.train(steps)
    return t


def _same_agent(a, b):
    for name in ("encoder", "actor", "critic", "critic_target"):
        sa, sb = getattr(a.agent, name).state_dict(), getattr(b.agent, name).state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa), name


def test_drqv2_resume_continues_exactly(tmp_path):
    kw = {"size": 32}
    straight = run_trainer(tmp_path / "a", 50, env_kwargs=kw)
    run_trainer(tmp_path / "b", 30, env_kwargs=kw)
    resumed = run_trainer(tmp_path / "b", 50, resume=True, env_kwargs=kw)
    assert straight.state["updates"] > 10
    assert (tmp_path / "a" / "curve.csv").read_text() == (tmp_path / "b" / "curve.csv").read_text()
    assert [r["env_steps"] for r in straight.state["curve"]] == [0, 20, 40, 50]
    _same_agent(straight, resumed)
    assert np.array_equal(straight.replay.frames[:straight.replay.size], resumed.replay.frames[:resumed.replay.size])
    assert (tmp_path / "a" / "curve.png").stat().st_size > 0 and (tmp_path / "a" / "timing.json").exists()


def test_update_ratio(tmp_path):
    """updates_per_step multiplies the updates (iVideoGPT's 2 per agent step); update_every_steps divides them."""
    kw = {"size": 32}
    n = {}
    for every, per in [(1, 1), (1, 2), (2, 1)]:
        t = run_trainer(tmp_path / f"{every}_{per}", 30, env_kwargs=kw,
                        agent_sets=[f"agent.update_every_steps={every}", f"agent.updates_per_step={per}"])
        n[every, per] = t.state["updates"]
    assert n[1, 1] > 5 and n[1, 2] == 2 * n[1, 1] and n[2, 1] in (n[1, 1] // 2, (n[1, 1] + 1) // 2)
    with pytest.raises(ConfigError, match="updates_per_step"):
        tiny_config(["agent.updates_per_step=0"])


def test_mbpo_resume_continues_exactly(tmp_path):
    # A micro action-free, reward-less model on disk: build_world_model gives it action and reward heads.
    micro = conftest.micro_world_model(res=32, context_frames=2, max_steps=4, action_dim=0, use_reward=False)
    micro.save_pretrained(tmp_path / "wm")
    wm, kw = str(tmp_path / "wm"), {"size": 32}
    straight = run_trainer(tmp_path / "a", 40, world_model=wm, env_kwargs=kw)
    run_trainer(tmp_path / "b", 20, world_model=wm, env_kwargs=kw)
    resumed = run_trainer(tmp_path / "b", 40, world_model=wm, resume=True, env_kwargs=kw)
    assert straight.wm.action_dim == 2 and straight.wm.transformer.config.use_reward
    assert straight.state["rollouts"] > 0 and len(straight.imagined) > 0
    assert straight.learner.steps["transformer"] > 1 and straight.learner.steps["tokenizer"] > 1
    assert (tmp_path / "a" / "curve.csv").read_text() == (tmp_path / "b" / "curve.csv").read_text()
    _same_agent(straight, resumed)
    sa, sb = straight.wm.state_dict(), resumed.wm.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert np.array_equal(straight.imagined.frames[:straight.imagined.size],
                          resumed.imagined.frames[:resumed.imagined.size])
    timing = __import__("json").loads((tmp_path / "a" / "timing.json").read_text())
    assert timing["sections"]["rollouts"]["cpu_seconds"] > 0 and timing["sections"]["wm_transformer"]["seconds"] > 0


def test_pusher_episode_length_is_ours_not_the_envs():
    """With action repeat 2, 60 agent steps are 120 env steps: pusher's own 100-step limit must not cut them."""
    from ivideogpt.rl.wrappers import make_pixel_env

    env = make_pixel_env("pusher", action_repeat=2, frame_stack=3, episode_length=60, env_kwargs={"size": 16})
    env.reset(seed=0)
    ends = [any(env.step(np.zeros(2, np.float32))[2:4]) for _ in range(60)]
    assert ends == [False] * 59 + [True]
