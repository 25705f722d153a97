"""Our DrQ-v2 (ivideogpt.rl) against a transcription of facebookresearch/drqv2 (tests/drqv2_reference.py): the same
weights, batch and noise must give the same losses and parameters; the random shift the same crop; the replay the
same n-step samples at every start."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import drqv2_reference as R
from ivideogpt.rl.drqv2 import DrQV2Agent, DrQV2Config, random_shift, schedule, stack_to_channels
from ivideogpt.rl.replay import ReplayBuffer

pytestmark = pytest.mark.usefixtures("one_thread")


def test_random_shift_and_schedule_match_the_reference():
    x = torch.rand(6, 9, 64, 64) * 255
    g = torch.Generator().manual_seed(3)
    g2 = torch.Generator().set_state(g.get_state())
    ours = random_shift(x, 4, g)
    sh = torch.randint(0, 9, (6, 2), generator=g2)  # ours: [:, 0] rows (y), [:, 1] columns (x)
    ref = R.random_shifts_aug(x, 4, torch.stack([sh[:, 1], sh[:, 0]], 1).view(6, 1, 1, 2))
    assert (ours - ref).abs().max() < 1e-2  # grid_sample's float error on a 0..255 scale
    for s in (0, 100, 1250, 2500, 10**6):
        assert schedule("linear(1.0,0.1,2500)", s) == pytest.approx(R.schedule("linear(1.0,0.1,2500)", s), abs=1e-12)


def test_replay_nstep_samples_match_the_reference_sampler():
    rng = np.random.default_rng(0)
    S, n, gamma = 3, 3, 0.99
    rb = ReplayBuffer(10000, (8, 8, 3), 2, frame_stack=S, nstep=n, discount=gamma)
    eps = []
    for T in (5, 12, 3, 50):
        frames = rng.integers(0, 255, (T + 1, 8, 8, 3), dtype=np.uint8)
        acts = rng.uniform(-1, 1, (T, 2)).astype(np.float32)
        rews = rng.normal(size=T).astype(np.float32)
        rb.add_episode(frames, acts, rews)
        # The reference's episode: observation[t] = stack up to t (first frame repeated), a dummy first step.
        stacks = np.stack([np.concatenate([frames[max(t - k, 0)].transpose(2, 0, 1) for k in range(S - 1, -1, -1)], 0)
                           for t in range(T + 1)])
        eps.append(dict(observation=stacks, action=np.concatenate([np.zeros((1, 2), np.float32), acts]),
                        reward=np.concatenate([[0.0], rews]).astype(np.float32)[:, None],
                        discount=np.ones((T + 1, 1), np.float32)))
    starts = rb.valid_starts()
    assert len(starts) == sum(max(len(e["action"]) - n, 0) for e in eps)
    rew, disc, nxt = rb.nstep_targets(starts)
    obs = stack_to_channels(torch.as_tensor(rb.stack(starts))).numpy()
    next_obs = stack_to_channels(torch.as_tensor(rb.stack(nxt))).numpy()
    ends = np.cumsum([len(e["action"]) for e in eps])
    for b, i in enumerate(starts):
        e = eps[int(np.searchsorted(ends, i, side="right"))]
        o, a, r, d, no = R.ref_sample(e, i - int(rb.ep_start[i]) + 1, n, gamma)
        np.testing.assert_array_equal(o, obs[b])
        np.testing.assert_array_equal(no, next_obs[b])
        np.testing.assert_allclose(a, rb.actions[i], atol=1e-6)
        assert r[0] == pytest.approx(rew[b], abs=1e-5) and d[0] == pytest.approx(disc[b], abs=1e-6)


def test_three_updates_match_the_reference():
    """Augmentation off (pad 0); the reference is given the target and actor noise our agent's generator drew."""
    rng = np.random.default_rng(0)
    S = 3
    cfg = DrQV2Config(hidden_dim=64, encoder_strides=[2, 2, 1, 1], batch_size=16, aug_pad=0, stddev_schedule="0.5")
    ag = DrQV2Agent(cfg, S, 32, 2, seed=0)
    enc, act, cri, crt = (copy.deepcopy(m) for m in (ag.encoder, ag.actor, ag.critic, ag.critic_target))
    opts = [torch.optim.Adam(m.parameters(), lr=cfg.lr) for m in (enc, act, cri)]
    batch = dict(obs=rng.integers(0, 255, (16, S, 32, 32, 3), dtype=np.uint8),
                 next_obs=rng.integers(0, 255, (16, S, 32, 32, 3), dtype=np.uint8),
                 action=rng.uniform(-1, 1, (16, 2)).astype(np.float32),
                 reward=rng.normal(size=16).astype(np.float32), discount=np.full(16, 0.99 ** 3, np.float32))
    for _ in range(3):
        state = ag.generator.get_state()
        logs = ag.update(batch, 1000)
        g = torch.Generator().set_state(state)  # replay the draws: two augmentations, target noise, actor noise
        torch.randint(0, 1, (16, 2), generator=g)
        torch.randint(0, 1, (16, 2), generator=g)
        noise_next, noise_pi = torch.randn((16, 2), generator=g), torch.randn((16, 2), generator=g)
        cl, al = R.ref_update(enc, act, cri, crt, opts, stack_to_channels(torch.as_tensor(batch["obs"])),
                              torch.as_tensor(batch["action"]), torch.as_tensor(batch["reward"])[:, None],
                              torch.as_tensor(batch["discount"])[:, None],
                              stack_to_channels(torch.as_tensor(batch["next_obs"])), 0.5, cfg.stddev_clip,
                              cfg.critic_target_tau, noise_next, noise_pi)
        assert float(logs["critic_loss"]) == pytest.approx(cl, rel=1e-4)
        assert float(logs["actor_loss"]) == pytest.approx(al, rel=1e-4, abs=1e-6)
        for ours, ref in ((ag.encoder, enc), (ag.actor, act), (ag.critic, cri), (ag.critic_target, crt)):
            for p, q in zip(ours.parameters(), ref.parameters()):
                assert (p - q).abs().max() < 1e-5
