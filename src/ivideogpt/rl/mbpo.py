"""MBPO with an iVideoGPT world model (paper Algorithm 1), the model-based parts of the RL loop:

* :func:`build_world_model`: a pre-trained world model (action-free or not) or one from presets, made
  action-conditioned with a reward head, with action statistics from the env's action bounds when the
  model has none from a dataset;
* :class:`WorldModelLearner`: online training on real replay clips, reusing the training stages' losses
  (``TransformerTrainModule`` with a frozen tokenizer for transformer steps, ``TokenizerTrainModule`` for
  tokenizer steps), each on its own schedule;
* :func:`imagine`: batched, KV-cached imagined rollouts from real frame stacks with the policy in the loop
  (it is called at every imagined step on the stack that holds the frames predicted so far).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np
import torch

from ..errors import ConfigError
from ..frames import to_model
from .config import MBPOConfig
from .replay import ReplayBuffer


def env_action_stats(low, high) -> tuple[list[float], list[float]]:
    """Mean and std of a uniform distribution over the action box: how online-collected actions spread
    before any data exists (the transformer normalises actions with these)."""
    low, high = np.asarray(low, np.float64), np.asarray(high, np.float64)
    if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
        raise ConfigError(f"action space bounds must be finite to normalise actions, got {low} .. {high}")
    return ((low + high) / 2).tolist(), ((high - low) / math.sqrt(12.0)).tolist()


def build_world_model(spec: str, *, action_dim: int, action_low, action_high, resolution: int, min_frames: int,
                      cfg: MBPOConfig, seed: int):
    """``spec``: a world-model / run directory, or ``'scratch'`` (``cfg.tokenizer_preset`` /
    ``cfg.transformer_preset``). Returns a WorldModel with ``action_dim`` actions, a reward head and room for
    ``min_frames`` frames per sequence."""
    from ..train.transformer_task import TransformerTask
    from ..transformer import Transformer
    from ..world_model import WorldModel

    torch.manual_seed(seed)  # fresh heads / a scratch model start from the same weights, run after run
    mean, std = env_action_stats(action_low, action_high)
    if spec == "scratch":
        wm = WorldModel.from_preset(cfg.tokenizer_preset, cfg.transformer_preset, action_dim=action_dim,
                                    use_reward=True, action_mean=mean, action_std=std)
    else:
        wm = WorldModel.from_pretrained(spec)
    if wm.tokenizer.config.resolution != resolution:
        raise ConfigError(f"world model {spec}: takes {wm.tokenizer.config.resolution}px frames, the env renders "
                          f"{resolution}px")
    old = wm.transformer
    c = old.config
    if c.action_dim not in (0, action_dim):
        raise ConfigError(f"world model {spec}: trained with {c.action_dim}-D actions, the env has {action_dim}-D")
    keep_stats = c.action_dim == action_dim and bool(c.action_mean)  # dataset statistics: keep them
    new_cfg = dataclasses.replace(
        c, action_dim=action_dim, use_reward=True, max_frames=max(c.max_frames, min_frames),
        action_mean=list(c.action_mean) if keep_stats else mean, action_std=list(c.action_std) if keep_stats else std)
    if new_cfg != c:
        # An action-free or reward-less model gains zero-initialised action / fresh reward heads; everything
        # else is copied (the paper's action-free pre-training -> action-conditioned fine-tuning path).
        new = Transformer(new_cfg)
        TransformerTask._load_init(new, old)
        wm = WorldModel(wm.tokenizer, new, goal_conditioned=wm.goal_conditioned)
    if wm.goal_conditioned:
        raise ConfigError(f"world model {spec}: a goal-conditioned model cannot be used for MBPO")
    return wm.eval()


class WorldModelLearner:
    """Online world-model training: ``train_transformer(clips)`` / ``train_tokenizer(clips)`` one step each."""

    def __init__(self, wm, cfg: MBPOConfig, seed: int):
        from ..train.config import TrainConfig
        from ..train.tokenizer_task import TokenizerTrainModule
        from ..train.transformer_task import TransformerTrainModule

        self.wm, self.cfg = wm, cfg
        if cfg.clip_len < wm.context_frames + 1 or cfg.clip_len > wm.transformer.config.max_frames:
            raise ConfigError(f"mbpo.clip_len {cfg.clip_len}: must be in [{wm.context_frames + 1}, "
                              f"{wm.transformer.config.max_frames}] for this world model")
        tcfg = TrainConfig(seed=seed, freeze_tokenizer=True, freeze_transformer=False, n_future=cfg.n_future,
                           reward_weight=cfg.reward_weight, use_actions=True, use_rewards=True)
        self.transformer_module = TransformerTrainModule(wm, tcfg)
        self.tokenizer_module = TokenizerTrainModule(wm.tokenizer, None, cfg.n_future, seed)
        self.transformer_opt = torch.optim.Adam(wm.transformer.parameters(), lr=cfg.lr, weight_decay=0.0)
        self.tokenizer_opt = torch.optim.Adam(wm.tokenizer.parameters(), lr=cfg.tokenizer_lr, weight_decay=0.0)
        self.steps = {"transformer": 0, "tokenizer": 0}

    @staticmethod
    def _batch(clips: dict) -> dict:
        return {"frames": to_model(torch.as_tensor(clips["frames"])),
                "actions": torch.as_tensor(clips["actions"]), "rewards": torch.as_tensor(clips["rewards"])}

    def _step(self, which: str, module, params, opt, clips: dict) -> dict:
        train_part = self.wm.transformer if which == "transformer" else self.wm.tokenizer
        train_part.train()
        loss, logs = module(self._batch(clips), self.steps[which])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip)
        opt.step()
        train_part.eval()
        self.steps[which] += 1
        return {k: float(v) for k, v in logs.items()}

    def train_transformer(self, clips: dict) -> dict:
        return self._step("transformer", self.transformer_module, list(self.wm.transformer.parameters()),
                          self.transformer_opt, clips)

    def train_tokenizer(self, clips: dict) -> dict:
        return self._step("tokenizer", self.tokenizer_module, list(self.wm.tokenizer.parameters()),
                          self.tokenizer_opt, clips)

    def state_dict(self) -> dict:
        """Training state beside the world model's weights: optimizers, step counters and the tokenizer's
        quantizer usage (it decides when dead codes restart)."""
        from ..tokenizer.quantizer import usage_state

        return {"transformer_opt": self.transformer_opt.state_dict(), "tokenizer_opt": self.tokenizer_opt.state_dict(),
                "steps": dict(self.steps), "tokenizer_usage": usage_state(self.wm.tokenizer)}

    def load_state_dict(self, state: dict) -> None:
        from ..tokenizer.quantizer import load_usage_state

        self.transformer_opt.load_state_dict(state["transformer_opt"])
        self.tokenizer_opt.load_state_dict(state["tokenizer_opt"])
        self.steps = {k: int(v) for k, v in state["steps"].items()}
        if "tokenizer_usage" in state:  # absent from checkpoints written before it was saved
            load_usage_state(self.wm.tokenizer, state["tokenizer_usage"])


@torch.no_grad()
def imagine(wm, policy: Callable[[np.ndarray], np.ndarray], start_stacks: np.ndarray, horizon: int, *,
            generator: torch.Generator, temperature: float = 1.0, top_k: int | None = 100):
    """Interactive imagined rollouts.

    ``start_stacks`` uint8 [B, S, H, W, 3]: real frame stacks; the world model is reset on their last
    ``context_frames`` frames. At every step ``policy(stack [B, S, H, W, 3]) -> actions [B, A]`` sees the
    current stack (real frames shifted out, predicted frames shifted in), then the model predicts the next
    frame and reward for all B rollouts at once (KV cache kept across steps).
    Returns (frames uint8 [B, horizon, H, W, 3], actions float32 [B, horizon, A], rewards float32 [B, horizon]).
    """
    t0 = wm.context_frames
    if start_stacks.shape[1] < t0:
        raise ConfigError(f"frame stack {start_stacks.shape[1]} is shorter than the world model's {t0} context frames")
    if horizon > wm.max_steps:
        raise ConfigError(f"mbpo.horizon {horizon}: this world model rolls out at most {wm.max_steps} frames")
    wm.reset(start_stacks[:, -t0:], temperature=temperature, top_k=top_k, generator=generator)
    stack = start_stacks.copy()
    frames, actions, rewards = [], [], []
    for _ in range(horizon):
        a = np.asarray(policy(stack), np.float32)
        res = wm.step(a)
        stack = np.concatenate([stack[:, 1:], res.frames[:, None]], axis=1)
        frames.append(res.frames)
        actions.append(a)
        rewards.append(np.asarray(res.rewards, np.float32))
    return np.stack(frames, 1), np.stack(actions, 1), np.stack(rewards, 1)


def add_rollouts(buffer: ReplayBuffer, start_stacks: np.ndarray, frames: np.ndarray, actions: np.ndarray,
                 rewards: np.ndarray) -> None:
    """Store each rollout as one imagined episode whose first S-1 frames are the real history."""
    s = start_stacks.shape[1]
    for b in range(len(frames)):
        buffer.add_episode(np.concatenate([start_stacks[b], frames[b]]), actions[b], rewards[b], history=s - 1)


def mixed_batch(real: ReplayBuffer, imagined: ReplayBuffer | None, batch_size: int, real_ratio: float,
                rng: np.random.Generator) -> dict:
    """``round(batch_size * real_ratio)`` real transitions, the rest imagined (all real while nothing is
    imagined yet)."""
    n_real = batch_size
    if imagined is not None and len(imagined.valid_starts()) > 0:
        n_real = int(round(batch_size * real_ratio))
    parts = [real.sample(n_real, rng)] if n_real > 0 else []
    if n_real < batch_size:
        parts.append(imagined.sample(batch_size - n_real, rng))
    out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    out["is_real"] = np.concatenate([np.full(n_real, True), np.full(batch_size - n_real, False)])
    return out
