"""Tokenizer configs. Every size in the models is derived from these fields (presets in configs/tokenizer/)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..errors import ConfigError


@dataclass
class BackboneConfig:
    """Conv encoder/decoder and quantizer shared by the compressive and the per-frame tokenizer.

    Defaults are the paper's 64x64 tokenizer (Table 2), laid out like the reference checkpoint.
    """

    resolution: int = 64
    # "conv": 3x3 conv at full resolution (reference). "patch": a stem_patch x stem_patch stride-stem_patch
    # conv in, PixelShuffle out -- far cheaper on CPU (paper-facts: 3.5 vs 8 ms per frame, better PSNR).
    stem: Literal["conv", "patch"] = "conv"
    stem_patch: int = 4
    # Pixel range the conv stacks were trained on. "unit": [0, 1] as the reference's checkpoints (frames are
    # mapped from and back to [-1, 1] inside the encoders/decoders, so everything around them is unchanged).
    pixels: Literal["signed", "unit"] = "signed"
    channels: list[int] = field(default_factory=lambda: [128, 256, 512])  # one per level; 2x down between
    layers_per_block: int = 2
    decoder_layers_per_block: int = 3
    norm_groups: int = 32  # 0 = no GroupNorm in the conv stacks (attention inputs keep one group)
    embed_dim: int = 64  # latent channels before quantization
    mid_attention: bool = False  # self-attention in the mid block of the (unconditional) pair
    # GroupNorm before the decoders' output conv (reference). Off, the output conv reads the residual
    # stream directly and keeps per-frame colour offsets that GroupNorm removes (faster early learning).
    # The encoders always keep it: without it their latents grew until FSQ's tanh saturated (codes died).
    decoder_norm_out: bool = True
    # quantizer: "vq" = nearest code (matmul + argmin) with dead-code restart; "fsq" = finite scalar levels
    quantizer: Literal["vq", "fsq"] = "vq"
    codebook_size: int = 8192  # vq only (fsq: product of fsq_levels)
    codebook_dim: int | None = None  # vq code dim; None = embed_dim
    fsq_levels: list[int] = field(default_factory=lambda: [8, 5, 5, 5])
    commit_beta: float = 1.0  # weight of the encoder-side term inside the VQ loss (reference: 1.0)
    dead_code_steps: int = 100  # vq: re-seed codes unused for this many training steps (0 = never)
    # loss weights (paper: equal)
    l1_weight: float = 1.0
    commit_weight: float = 1.0
    perceptual_weight: float = 1.0
    # Optional hinge-GAN (VQGAN): weight x adaptive weight x generator loss, from gan_start_step on; a PatchGAN
    # discriminator of disc_layers layers, disc_channels wide (compressive tokenizer only). 0 = off (default).
    gan_weight: float = 0.0
    gan_start_step: int = 0
    disc_channels: int = 64
    disc_layers: int = 3

    def __post_init__(self):
        self.validate()

    # ---- derived sizes ----------------------------------------------------------------------------
    @property
    def stem_stride(self) -> int:
        return self.stem_patch if self.stem == "patch" else 1

    def level_resolutions(self) -> list[int]:
        """Spatial size of each encoder level's output (the last level does not downsample)."""
        r = self.resolution // self.stem_stride
        out = []
        for i in range(len(self.channels)):
            if i < len(self.channels) - 1:
                r //= 2
            out.append(r)
        return out

    def decoder_resolutions(self) -> list[int]:
        """Map size after the decoder's mid block (stage 0) and after each up block (all but the last double)."""
        n = len(self.channels)
        return [self.latent_grid * 2 ** min(i, n - 1) for i in range(n + 1)]

    def decoder_channels(self) -> list[int]:
        """Channels of the same decoder maps (the encoder's levels in reverse, the mid block first)."""
        ch = list(reversed(self.channels))
        return [ch[0]] + ch

    @property
    def latent_grid(self) -> int:
        return self.level_resolutions()[-1]

    @property
    def code_dim(self) -> int:
        return len(self.fsq_levels) if self.quantizer == "fsq" else (self.codebook_dim or self.embed_dim)

    def validate(self) -> None:
        if self.pixels not in ("signed", "unit"):
            raise ConfigError(f"tokenizer.pixels: expected 'signed' ([-1, 1]) or 'unit' ([0, 1]), got {self.pixels!r}")
        if self.gan_weight < 0 or self.gan_start_step < 0 or self.disc_layers < 1 or self.disc_channels < 4:
            raise ConfigError(f"tokenizer GAN settings: expected gan_weight >= 0, gan_start_step >= 0, disc_layers "
                              f">= 1, disc_channels >= 4; got {self.gan_weight}, {self.gan_start_step}, "
                              f"{self.disc_layers}, {self.disc_channels}")
        if not self.channels:
            raise ConfigError("tokenizer.channels: expected at least one level, got []")
        bad = [c for c in self.channels if self.norm_groups and c % self.norm_groups]
        if bad:
            raise ConfigError(f"tokenizer.channels: each must be divisible by norm_groups={self.norm_groups}, "
                              f"got {self.channels}")
        down = self.stem_stride * 2 ** (len(self.channels) - 1)
        if self.resolution % down:
            raise ConfigError(f"tokenizer.resolution: must be divisible by {down} (stem x 2^(levels-1)), "
                              f"got {self.resolution}")
        if self.quantizer == "fsq" and (not self.fsq_levels or min(self.fsq_levels) < 2):
            raise ConfigError(f"tokenizer.fsq_levels: expected a list of ints >= 2, got {self.fsq_levels}")
        if self.quantizer == "vq" and self.codebook_size < 2:
            raise ConfigError(f"tokenizer.codebook_size: expected >= 2, got {self.codebook_size}")


@dataclass
class TokenizerConfig(BackboneConfig):
    """The compressive (conditional) tokenizer: a context pair and a prediction pair."""

    context_frames: int = 2  # T0: every future frame attends to all of them
    future_grid: int = 4  # future tokens per frame = future_grid^2 (latent split into patches)
    # Context tokens per frame = context_grid^2. None (paper): one token per latent position. Smaller: the
    # latent is cut into patches like the future one -- a shorter transformer sequence, for CPU-sized models.
    context_grid: int | None = None
    cond_mid_attention: bool = True  # mid-block self-attention in the prediction pair (reference: yes)
    cross_attn_max_res: int = 16  # cross-attention at every level whose map is <= this size
    cross_attn_heads: int = 4
    cross_attn_dropout: float = 0.1
    # Not in the reference: also add the last context frame's map at the same positions (1x1 conv, zero init)
    # at every cross-attention level. Lets small CPU-trained models place the scene from the first steps.
    context_skip: bool = False
    future_codebook_size: int = 8192  # vq only
    # The future codebook's quantizer; None = the same as ``quantizer``. Measured on pusher (RESULTS.md): with a
    # residual decoder, VQ kept the arm out of the future tokens for 1200+ steps while FSQ let it through.
    future_quantizer: Literal["vq", "fsq"] | None = None
    future_fsq_levels: list[int] = field(default_factory=lambda: [8, 5, 5, 5])
    perceptual_on: Literal["both", "future"] = "both"
    # Not in the paper: extra L1 weight on future-frame pixels that differ from the last context frame by
    # more than motion_threshold (in [-1, 1] units). 0 = off (paper presets).
    motion_weight: float = 0.0
    motion_threshold: float = 0.1
    # Not in the paper: the same extra weight on the *context* frames' pixels that change anywhere in the clip
    # (the arm, pushed objects). Small moving objects otherwise vanish from the context tokens, and a transformer
    # that cannot see where the arm starts cannot learn what an action does to it.
    context_motion_weight: float = 0.0
    # What the prediction decoder attends to. "decoded" (paper): the context decoder's maps, rebuilt from the
    # context *tokens* -- future frames can be decoded from ids alone. "frames": the context encoder's maps of the
    # real context frames (a world model always has them), so the static scene is not limited by how well the
    # context tokens reconstruct it; decoding then needs the context frames, not just their ids.
    future_decoder_context: Literal["decoded", "frames"] = "decoded"
    # Not in the paper: the prediction decoder outputs a change added to the last context frame (the real one
    # with future_decoder_context=frames, else its reconstruction): the static scene costs nothing to learn.
    # Without motion_weight the decoder can settle on "no change" and leave the future tokens unused.
    future_residual: bool = False
    # Not in the paper: the prediction encoder also sees the future frame minus the last context frame, so what
    # changed is in its input from the first step instead of being discovered through the cross-attention.
    future_encoder_delta: bool = False
    # What a future frame is encoded and decoded against. "context" (paper): the T0 context frames, for every
    # future frame. "previous" (Delta-IRIS-like, not in the paper): the frame before it, so a pushed object is a
    # local one-pixel shift next to its previous position instead of a long-range copy from the first frame.
    # Tokens of frame t then depend on the context and frames <= t. Decoding runs frame by frame: the reference
    # of frame t+1 is decoded frame t, re-encoded by the context pair (with future_decoder_context: decoded the
    # decoder sees only its quantised reconstruction, so a reference that drifted by less than the codes resolve
    # is snapped back instead of copied forward). Needs context_frames: 1.
    future_reference: Literal["context", "previous"] = "context"

    def validate(self) -> None:
        super().validate()
        g = self.latent_grid
        if self.future_reference == "previous" and self.context_frames != 1:
            raise ConfigError(f"tokenizer.future_reference: 'previous' encodes each future frame against the one "
                              f"frame before it and needs context_frames: 1, got {self.context_frames}")
        if self.future_grid < 1 or g % self.future_grid:
            raise ConfigError(f"tokenizer.future_grid: must divide the latent grid {g}, got {self.future_grid}")
        if self.context_grid is not None and (self.context_grid < 1 or g % self.context_grid):
            raise ConfigError(f"tokenizer.context_grid: must divide the latent grid {g}, got {self.context_grid}")
        if self.context_frames < 1:
            raise ConfigError(f"tokenizer.context_frames: expected >= 1, got {self.context_frames}")
        if not any(r <= self.cross_attn_max_res for r in self.level_resolutions()):
            raise ConfigError(f"tokenizer.cross_attn_max_res: {self.cross_attn_max_res} is below every level "
                              f"({self.level_resolutions()}): future frames would never see the context")
        if any(c % self.cross_attn_heads for c in self.channels):
            raise ConfigError(f"tokenizer.cross_attn_heads: must divide every channel count {self.channels}, "
                              f"got {self.cross_attn_heads}")
        if self.future_decoder_context == "frames":
            enc = {(r, c) for r, c in zip(self.level_resolutions(), self.channels) if r <= self.cross_attn_max_res}
            dec = decoder_levels(self)
            missing = [lv for lv in dec if lv not in enc]
            if missing:
                raise ConfigError(f"tokenizer.future_decoder_context: 'frames' needs a context encoder map for every "
                                  f"decoder cross-attention level (resolution, channels) {missing}; encoder has "
                                  f"{sorted(enc)}")
        if self.future_kind == "fsq" and (not self.future_fsq_levels or min(self.future_fsq_levels) < 2):
            raise ConfigError(f"tokenizer.future_fsq_levels: expected ints >= 2, got {self.future_fsq_levels}")

    @property
    def context_patch(self) -> int:
        return self.latent_grid // (self.context_grid or self.latent_grid)

    @property
    def future_patch(self) -> int:
        return self.latent_grid // self.future_grid

    @property
    def future_code_dim(self) -> int:
        return len(self.future_fsq_levels) if self.future_kind == "fsq" else (self.codebook_dim or self.embed_dim)

    @property
    def future_kind(self) -> str:
        return self.future_quantizer or self.quantizer


@dataclass
class BaselineConfig(BackboneConfig):
    """Per-frame tokenizer (no conditioning): every frame -> token_grid^2 tokens."""

    token_grid: int = 16

    def validate(self) -> None:
        super().validate()
        if self.gan_weight != 0.0:
            raise ConfigError(f"tokenizer.gan_weight: the per-frame baseline trains without the adversarial loss; "
                              f"expected 0.0, got {self.gan_weight}")
        if self.token_grid < 1 or self.latent_grid % self.token_grid:
            raise ConfigError(f"tokenizer.token_grid: must divide the latent grid {self.latent_grid}, "
                              f"got {self.token_grid}")


def decoder_levels(cfg: TokenizerConfig) -> list[tuple[int, int]]:
    """(resolution, channels) of each prediction-decoder map that cross-attends to the context."""
    return [(r, c) for r, c in zip(cfg.decoder_resolutions(), cfg.decoder_channels()) if r <= cfg.cross_attn_max_res]
