"""The RL configuration: agent (DrQ-v2), run (env wrappers, replay, evaluation) and MBPO (world model).

Presets live in ``ivideogpt/configs/rl/<name>.yaml`` with sections ``agent``, ``run`` and ``mbpo``.
Step counts are in *agent* steps (one policy decision = ``action_repeat`` env steps) unless the name
says ``env_steps``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import apply_overrides, from_dict, load_preset
from ..errors import ConfigError
from .drqv2 import DrQV2Config

KIND = "rl"


@dataclass
class RunConfig:
    action_repeat: int = 2
    frame_stack: int = 3
    episode_length: int = 100  # agent steps (paper: 200 env steps at action repeat 2)
    success_bonus: float = 0.0  # added to the reward at every successful env step
    env_kwargs: dict = field(default_factory=dict)  # passed to ivideogpt.envs.make(name, **env_kwargs)
    replay_capacity: int = 1_000_000  # frames
    num_seed_steps: int = 2000  # agent steps before the first update (drqv2: 4000 frames)
    demos: int = 5  # expert episodes put in the replay first (0: none, e.g. door-lock in the paper)
    demo_noise: float = 0.1  # Gaussian action noise of the scripted expert
    eval_every_env_steps: int = 10000
    eval_episodes: int = 10
    save_every_env_steps: int = 10000  # checkpoint at the first episode end after this many env steps


@dataclass
class MBPOConfig:
    real_ratio: float = 0.5  # fraction of each actor-critic batch from real transitions
    horizon: int = 10  # imagined steps per rollout
    initial_rollout_batch: int = 640  # rollouts started once the world model has had its initial training
    rollout_batch: int = 32  # rollouts started every rollout_every_env_steps
    rollout_every_env_steps: int = 200
    imagined_capacity: int = 1_000_000  # frames
    temperature: float = 1.0
    top_k: int = 100
    # online world-model training on real clips
    init_train_steps: int = 1000  # transformer (and tokenizer) steps when training starts
    transformer_every_env_steps: int = 10
    tokenizer_every_env_steps: int = 40
    batch_size: int = 16
    clip_len: int = 12
    n_future: int = 5  # future frames the tokenizer reconstructs per clip
    lr: float = 1e-4  # Adam, weight decay 0 (paper)
    tokenizer_lr: float = 1e-4
    grad_clip: float = 1.0
    reward_weight: float = 1.0
    # presets for --world-model scratch
    tokenizer_preset: str = "tiny-cpu"
    transformer_preset: str = "tiny-cpu"

    def __post_init__(self):
        if not 0.0 <= self.real_ratio <= 1.0:
            raise ValueError(f"real_ratio must be in [0, 1], got {self.real_ratio}")


@dataclass
class RLConfig:
    agent: DrQV2Config = field(default_factory=DrQV2Config)
    run: RunConfig = field(default_factory=RunConfig)
    mbpo: MBPOConfig = field(default_factory=MBPOConfig)


def load_rl_config(preset: str, overrides: list[str] | None = None) -> RLConfig:
    """Preset name (configs/rl/) or YAML path, plus ``section.field=value`` overrides -> RLConfig."""
    data = load_preset(KIND, preset)
    source = data.pop("_source", preset)
    data = apply_overrides(data, overrides)
    unknown = set(data) - {"agent", "run", "mbpo"}
    if unknown:
        raise ConfigError(f"{source}: unknown section(s) {sorted(unknown)} (expected agent, run, mbpo)")
    return from_dict(RLConfig, data, where=source)
