"""The training engine's config: one dataclass shared by every stage (the ``train:`` section of a preset)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass
class AugmentSettings:
    enabled: bool = False
    crop_scale: list[float] = field(default_factory=lambda: [0.8, 1.0])
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    hue: float = 0.05


@dataclass
class TrainConfig:
    max_steps: int = 1000
    max_minutes: float | None = None  # wall-clock budget: stop, save and report when exceeded
    batch_size: int = 8  # per process
    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.99])
    warmup_steps: int = 100
    schedule: Literal["constant", "cosine"] = "constant"
    min_lr_ratio: float = 0.1  # cosine floor, as a fraction of lr
    grad_clip: float = 1.0
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = "auto"  # auto: bf16 on GPU, fp32 on CPU
    seed: int = 0
    num_workers: int = 0
    # data
    clip_len: int = 8
    frame_step: int = 1
    # "raw": the model normalises actions with the mixture's mean/std (one dataset: its own). "per_source": each
    # dataset's actions are normalised with its own statistics and padded dims stay 0 (mixed action spaces,
    # e.g. the OXE mixture); the model's action_mean/std are then 0/1.
    action_norm: Literal["raw", "per_source"] = "raw"
    augment: AugmentSettings = field(default_factory=AugmentSettings)
    # bookkeeping
    log_every: int = 10
    val_every: int = 250
    val_batches: int = 4
    save_every: int = 250
    keep_last: int = 2
    # stage-specific (tokenizer: n_future frames per clip; transformer: loss weights and flags)
    n_future: int | None = None
    reward_weight: float = 1.0
    use_actions: bool = True
    use_rewards: bool = True
    goal_conditioned: bool = False
    cache_tokens: bool = True
    token_cache_stride: int = 1  # cache every k-th clip start per episode
    freeze_tokenizer: bool = True
    freeze_transformer: bool = False
