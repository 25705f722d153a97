"""DrQ-v2 as written in facebookresearch/drqv2 @ d6dbadce (drqv2.py, utils.py, replay_buffer.py; MIT licence),
transcribed for tests/test_drqv2_reference.py: the update, the random-shift augmentation and the n-step sampler."""
import re

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import distributions as pyd


def weight_init(m):
    if isinstance(m, nn.Linear):
        nn.init.orthogonal_(m.weight.data)
        m.bias.data.fill_(0.0)
    elif isinstance(m, nn.Conv2d):
        gain = nn.init.calculate_gain('relu')
        nn.init.orthogonal_(m.weight.data, gain)
        m.bias.data.fill_(0.0)


def soft_update_params(net, target_net, tau):
    for param, target_param in zip(net.parameters(), target_net.parameters()):
        target_param.data.copy_(tau * param.data + (1 - tau) * target_param.data)


class TruncatedNormal(pyd.Normal):
    def __init__(self, loc, scale, low=-1.0, high=1.0, eps=1e-6):
        super().__init__(loc, scale, validate_args=False)
        self.low, self.high, self.eps = low, high, eps

    def _clamp(self, x):
        clamped_x = torch.clamp(x, self.low + self.eps, self.high - self.eps)
        return x - x.detach() + clamped_x.detach()

    def sample(self, clip=None, sample_shape=torch.Size(), noise=None):  # noqa: B008 (as in drqv2)
        shape = self._extended_shape(sample_shape)
        eps = torch.randn(shape, dtype=self.loc.dtype) if noise is None else noise.clone()
        eps *= self.scale
        if clip is not None:
            eps = torch.clamp(eps, -clip, clip)
        return self._clamp(self.loc + eps)


def schedule(schdl, step):
    try:
        return float(schdl)
    except ValueError:
        match = re.match(r'linear\((.+),(.+),(.+)\)', schdl)
        init, final, duration = [float(g) for g in match.groups()]
        mix = np.clip(step / duration, 0.0, 1.0)
        return (1.0 - mix) * init + mix * final


def random_shifts_aug(x, pad, shift=None):
    n, c, h, w = x.size()
    x = F.pad(x, tuple([pad] * 4), 'replicate')
    eps = 1.0 / (h + 2 * pad)
    arange = torch.linspace(-1.0 + eps, 1.0 - eps, h + 2 * pad, dtype=x.dtype)[:h]
    arange = arange.unsqueeze(0).repeat(h, 1).unsqueeze(2)
    base_grid = torch.cat([arange, arange.transpose(1, 0)], dim=2)
    base_grid = base_grid.unsqueeze(0).repeat(n, 1, 1, 1)
    if shift is None:
        shift = torch.randint(0, 2 * pad + 1, size=(n, 1, 1, 2), dtype=x.dtype)
    shift = shift.to(x.dtype) * (2.0 / (h + 2 * pad))
    return F.grid_sample(x, base_grid + shift, padding_mode='zeros', align_corners=False)


def ref_sample(episode, idx, nstep, gamma):
    """replay_buffer.ReplayBuffer._sample at a given idx (1-based, after the dummy first step)."""
    obs = episode['observation'][idx - 1]
    action = episode['action'][idx]
    next_obs = episode['observation'][idx + nstep - 1]
    reward = np.zeros_like(episode['reward'][idx])
    discount = np.ones_like(episode['discount'][idx])
    for i in range(nstep):
        reward += discount * episode['reward'][idx + i]
        discount *= episode['discount'][idx + i] * gamma
    return obs, action, reward, discount, next_obs


def ref_actor(actor, h, std):
    mu = torch.tanh(actor.policy(actor.trunk(h)))
    return TruncatedNormal(mu, torch.ones_like(mu) * std)


def ref_update(enc, actor, critic, critic_target, opts, obs, action, reward, discount, next_obs, std, clip, tau,
               noise_next, noise_pi):
    """DrQV2Agent.update with the augmentation already applied (obs/next_obs float [B, C, H, W])."""
    encoder_opt, actor_opt, critic_opt = opts
    obs = enc(obs)
    with torch.no_grad():
        next_obs = enc(next_obs)
    with torch.no_grad():
        dist = ref_actor(actor, next_obs, std)
        next_action = dist.sample(clip=clip, noise=noise_next)
        t1, t2 = critic_target(next_obs, next_action)
        target_Q = reward + discount * torch.min(t1, t2)
    Q1, Q2 = critic(obs, action)
    critic_loss = F.mse_loss(Q1, target_Q) + F.mse_loss(Q2, target_Q)
    encoder_opt.zero_grad(set_to_none=True)
    critic_opt.zero_grad(set_to_none=True)
    critic_loss.backward()
    critic_opt.step()
    encoder_opt.step()
    o = obs.detach()
    dist = ref_actor(actor, o, std)
    a = dist.sample(clip=clip, noise=noise_pi)
    q1, q2 = critic(o, a)
    actor_loss = -torch.min(q1, q2).mean()
    actor_opt.zero_grad(set_to_none=True)
    actor_loss.backward()
    actor_opt.step()
    soft_update_params(critic, critic_target, tau)
    return critic_loss.item(), actor_loss.item()
