"""DrQ-v2 (Yarats et al. 2021) in one file, after facebookresearch/drqv2's ``drqv2.py``.

Pixels -> random-shift augmentation -> conv encoder -> (actor, twin critics), each with a trunk
Linear + LayerNorm + tanh. The actor is deterministic (DDPG-style) with a scheduled exploration
std, the critics regress clipped double-Q n-step targets, and the critic target is an EMA of the
critic. The encoder is trained by the critic loss only.

Observations are uint8 frame stacks ``[B, S, H, W, 3]`` (S = frame stack); the encoder sees them as
``[B, 3*S, H, W]``. Every random draw (exploration, augmentation, target noise) comes from the agent's
own ``torch.Generator``, so a run is a function of its seed and resumes exactly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError


@dataclass
class DrQV2Config:
    lr: float = 1e-4
    feature_dim: int = 50
    hidden_dim: int = 1024
    # Encoder: 32-channel 3x3 convs. The original strides (2, 1, 1, 1) keep a 25x25 map at 64x64 input;
    # the CPU preset strides more to make an update affordable on one core.
    encoder_channels: int = 32
    encoder_strides: list[int] = field(default_factory=lambda: [2, 1, 1, 1])
    critic_target_tau: float = 0.01
    batch_size: int = 256
    nstep: int = 3
    discount: float = 0.99
    update_every_steps: int = 2  # agent steps between updates
    updates_per_step: int = 1  # updates each time (iVideoGPT's Meta-World code: every step, 2 updates)
    num_expl_steps: int = 2000  # agent steps of uniform random actions at the start
    stddev_schedule: str = "linear(1.0,0.1,500000)"  # over agent steps
    stddev_clip: float = 0.3
    aug_pad: int = 4  # random shift of up to +-pad pixels

    def __post_init__(self):
        for name in ("update_every_steps", "updates_per_step", "batch_size", "nstep"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"agent.{name} must be >= 1, got {getattr(self, name)}")


# ---------------------------------------------------------------------------------------------- helpers
def schedule(spec: str, step: int) -> float:
    """``'0.2'`` (constant) or ``'linear(init,final,duration)'``, as in drqv2's utils.schedule."""
    try:
        return float(spec)
    except ValueError:
        pass
    m = re.fullmatch(r"\s*linear\(\s*([^,]+),\s*([^,]+),\s*([^)]+)\)\s*", spec)
    if not m:
        raise ConfigError(f"stddev_schedule: expected a number or 'linear(init,final,duration)', got {spec!r}")
    init, final, duration = (float(g) for g in m.groups())
    mix = min(max(step / duration, 0.0), 1.0)
    return (1.0 - mix) * init + mix * final


def weight_init(m):
    if isinstance(m, nn.Linear):
        nn.init.orthogonal_(m.weight.data)
        m.bias.data.fill_(0.0)
    elif isinstance(m, nn.Conv2d):
        gain = nn.init.calculate_gain("relu")
        nn.init.orthogonal_(m.weight.data, gain)
        m.bias.data.fill_(0.0)


def soft_update(net: nn.Module, target: nn.Module, tau: float) -> None:
    with torch.no_grad():
        for p, tp in zip(net.parameters(), target.parameters()):
            tp.data.lerp_(p.data, tau)


def stack_to_channels(obs: torch.Tensor) -> torch.Tensor:
    """uint8 frame stack [B, S, H, W, 3] -> float [B, 3*S, H, W] in [0, 255] (the encoder rescales)."""
    b, s, h, w, c = obs.shape
    return obs.permute(0, 1, 4, 2, 3).reshape(b, s * c, h, w).float()


def random_shift(x: torch.Tensor, pad: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """DrQ's augmentation: replicate-pad by ``pad`` and crop back at a random integer offset, per sample.

    Written as padding + an integer gather (the original uses grid_sample with an integer-aligned grid,
    which is the same crop): exact, and cheaper on CPU.
    """
    n, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    shift = torch.randint(0, 2 * pad + 1, (n, 2), generator=generator, device=x.device)
    rows = (shift[:, 0:1] + torch.arange(h, device=x.device)[None])  # [n, h]
    cols = (shift[:, 1:2] + torch.arange(w, device=x.device)[None])  # [n, w]
    idx_r = rows[:, None, :, None].expand(n, c, h, w + 2 * pad)
    out = padded.gather(2, idx_r)
    idx_c = cols[:, None, None, :].expand(n, c, h, w)
    return out.gather(3, idx_c)


class TruncatedNormal(torch.distributions.Normal):
    """Normal whose samples are clamped to (-1, 1) with a straight-through gradient (drqv2 utils)."""

    def __init__(self, loc, scale, low=-1.0, high=1.0, eps=1e-6):
        super().__init__(loc, scale, validate_args=False)
        self.low, self.high, self.eps = low, high, eps

    def _clamp(self, x):
        clamped = torch.clamp(x, self.low + self.eps, self.high - self.eps)
        return x - x.detach() + clamped.detach()

    def sample(self, clip=None, generator: torch.Generator | None = None):
        eps = torch.randn(self.loc.shape, generator=generator, device=self.loc.device, dtype=self.loc.dtype)
        eps = eps * self.scale
        if clip is not None:
            eps = torch.clamp(eps, -clip, clip)
        return self._clamp(self.loc + eps)


# ---------------------------------------------------------------------------------------------- networks
class Encoder(nn.Module):
    def __init__(self, in_channels: int, resolution: int, channels: int, strides: list[int]):
        super().__init__()
        layers, size, c_in = [], resolution, in_channels
        for s in strides:
            layers += [nn.Conv2d(c_in, channels, 3, stride=s), nn.ReLU()]
            size, c_in = (size - 3) // s + 1, channels
        if size < 1:
            raise ConfigError(f"encoder_strides {strides}: a {resolution}x{resolution} input shrinks to nothing")
        self.convnet = nn.Sequential(*layers)
        self.repr_dim = channels * size * size
        self.apply(weight_init)

    def forward(self, obs):
        h = self.convnet(obs / 255.0 - 0.5)
        return h.flatten(1)


class Actor(nn.Module):
    def __init__(self, repr_dim: int, action_dim: int, feature_dim: int, hidden_dim: int):
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(repr_dim, feature_dim), nn.LayerNorm(feature_dim), nn.Tanh())
        self.policy = nn.Sequential(nn.Linear(feature_dim, hidden_dim), nn.ReLU(inplace=True),
                                    nn.Linear(hidden_dim, hidden_dim), nn.ReLU(inplace=True),
                                    nn.Linear(hidden_dim, action_dim))
        self.apply(weight_init)

    def forward(self, h, std: float) -> TruncatedNormal:
        mu = torch.tanh(self.policy(self.trunk(h)))
        return TruncatedNormal(mu, torch.ones_like(mu) * std)


class Critic(nn.Module):
    def __init__(self, repr_dim: int, action_dim: int, feature_dim: int, hidden_dim: int):
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(repr_dim, feature_dim), nn.LayerNorm(feature_dim), nn.Tanh())

        def q():
            return nn.Sequential(nn.Linear(feature_dim + action_dim, hidden_dim), nn.ReLU(inplace=True),
                                 nn.Linear(hidden_dim, hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, 1))

        self.Q1, self.Q2 = q(), q()
        self.apply(weight_init)

    def forward(self, h, action):
        x = torch.cat([self.trunk(h), action], dim=-1)
        return self.Q1(x), self.Q2(x)


# ---------------------------------------------------------------------------------------------- agent
class DrQV2Agent:
    def __init__(self, cfg: DrQV2Config, frame_stack: int, resolution: int, action_dim: int, seed: int = 0):
        self.cfg, self.frame_stack, self.action_dim = cfg, frame_stack, action_dim
        torch.manual_seed(seed)  # the same seed gives the same initial weights
        self.generator = torch.Generator().manual_seed(seed)
        self.encoder = Encoder(3 * frame_stack, resolution, cfg.encoder_channels, list(cfg.encoder_strides))
        rd = self.encoder.repr_dim
        self.actor = Actor(rd, action_dim, cfg.feature_dim, cfg.hidden_dim)
        self.critic = Critic(rd, action_dim, cfg.feature_dim, cfg.hidden_dim)
        self.critic_target = Critic(rd, action_dim, cfg.feature_dim, cfg.hidden_dim)
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.encoder_opt = torch.optim.Adam(self.encoder.parameters(), lr=cfg.lr)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=cfg.lr)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=cfg.lr)

    # -- acting ----------------------------------------------------------------------------------
    @torch.no_grad()
    def act(self, obs, step: int, eval_mode: bool) -> torch.Tensor:
        """uint8 frame stacks [B, S, H, W, 3] -> actions float [B, A] in [-1, 1].

        ``step`` (agent steps) sets the exploration std; before ``num_expl_steps`` actions are uniform.
        """
        x = torch.as_tensor(obs)
        dist = self.actor(self.encoder(stack_to_channels(x)), schedule(self.cfg.stddev_schedule, step))
        if eval_mode:
            return dist.mean
        if step < self.cfg.num_expl_steps:
            return torch.rand(dist.mean.shape, generator=self.generator) * 2.0 - 1.0
        return dist.sample(generator=self.generator)

    # -- learning --------------------------------------------------------------------------------
    def aug(self, obs: torch.Tensor) -> torch.Tensor:
        return random_shift(stack_to_channels(obs), self.cfg.aug_pad, self.generator)

    def update(self, batch: dict, step: int) -> dict:
        """One DrQ-v2 update on ``batch`` (obs, action, reward, discount, next_obs) -> logs.

        ``reward`` is the n-step discounted return and ``discount`` gamma^n (0 past a terminal state).
        """
        cfg = self.cfg
        obs = self.encoder(self.aug(torch.as_tensor(batch["obs"])))
        with torch.no_grad():
            next_obs = self.encoder(self.aug(torch.as_tensor(batch["next_obs"])))
        action = torch.as_tensor(batch["action"]).float()
        reward = torch.as_tensor(batch["reward"]).float()[:, None]
        discount = torch.as_tensor(batch["discount"]).float()[:, None]
        std = schedule(cfg.stddev_schedule, step)

        # critic (and encoder): clipped double-Q n-step target
        with torch.no_grad():
            next_action = self.actor(next_obs, std).sample(clip=cfg.stddev_clip, generator=self.generator)
            tq1, tq2 = self.critic_target(next_obs, next_action)
            target_q = reward + discount * torch.min(tq1, tq2)
        q1, q2 = self.critic(obs, action)
        critic_loss = F.mse_loss(q1, target_q) + F.mse_loss(q2, target_q)
        self.encoder_opt.zero_grad(set_to_none=True)
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_opt.step()
        self.encoder_opt.step()

        # actor: maximise min(Q1, Q2) of its own (noisy) action; the encoder is not trained by it
        dist = self.actor(obs.detach(), std)
        a = dist.sample(clip=cfg.stddev_clip, generator=self.generator)
        aq1, aq2 = self.critic(obs.detach(), a)
        actor_loss = -torch.min(aq1, aq2).mean()
        self.actor_opt.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_opt.step()

        soft_update(self.critic, self.critic_target, cfg.critic_target_tau)
        return {"critic_loss": critic_loss.item(), "actor_loss": actor_loss.item(), "q": q1.mean().item(),
                "target_q": target_q.mean().item(), "stddev": std}

    # -- checkpoints -----------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"encoder": self.encoder.state_dict(), "actor": self.actor.state_dict(),
                "critic": self.critic.state_dict(), "critic_target": self.critic_target.state_dict(),
                "encoder_opt": self.encoder_opt.state_dict(), "actor_opt": self.actor_opt.state_dict(),
                "critic_opt": self.critic_opt.state_dict(), "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        for name in ("encoder", "actor", "critic", "critic_target", "encoder_opt", "actor_opt", "critic_opt"):
            getattr(self, name).load_state_dict(state[name])
        self.generator.set_state(state["generator"])
