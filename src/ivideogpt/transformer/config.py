"""Transformer config: architecture, plus the sequence numbers taken from the tokenizer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from .layout import SequenceLayout


@dataclass
class TransformerConfig:
    # LLaMA backbone (defaults: the paper's "small" model, GPT-2 small sizes).
    n_layer: int = 12
    d_model: int = 768
    n_head: int = 12
    d_ff: int = 3072
    dropout: float = 0.1
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-6
    init_std: float = 0.02
    # Longest clip (context + future frames) a KV cache is sized for by default.
    max_frames: int = 16
    # > 0: training clips are cut into segments of this many frames, each tokenized against its own context
    # frame(s) and laid out one after another (layout.py, "several segments"; video in-context imitation).
    # 0: a clip is one segment.
    segment_frames: int = 0
    # Sequence numbers: written from the tokenizer when the model is created for training
    # (defaults: the paper's 64x64 tokenizer).
    context_tokens: int = 256
    future_tokens: int = 16
    context_frames: int = 2
    context_vocab_size: int = 8192
    future_vocab_size: int = 8192
    # Interaction: action_dim 0 = action-free; raw actions are normalised with these statistics.
    action_dim: int = 0
    action_mean: list[float] = field(default_factory=list)
    action_std: list[float] = field(default_factory=list)
    use_reward: bool = False
    # Embedding extras for small data (off in the paper presets, whose models stay LlamaModel-identical).
    # code_embedding: add a learned projection of each code's codebook vector (the tokenizer's; code_vector_dim
    # is written from it) to the token embedding, so codes that decode alike start alike instead of as
    # unrelated ids. spatial_frequencies > 0: add a learned projection of sin/cos features of each code token's
    # cell centre, shared by the context and future grids, so a future token finds "its" context tokens
    # without learning the grid arithmetic from 1-D rotary positions.
    code_embedding: bool = False
    code_vector_dim: int = 0
    spatial_frequencies: int = 0
    # frame_embedding: add a learned embedding of each token's frame index within its segment, so a token of the
    # query's frame k can find frame k of a demonstration by content instead of by a rotary offset of a whole
    # segment (video in-context imitation, benchmarks/RESULTS.md "Video in-context imitation").
    frame_embedding: bool = False
    # Reference compatibility (converted thuml/iVideoGPT checkpoints; defaults keep this package's behaviour):
    # first_slot False drops the sequence's first [S1] as the reference does (positions shift by one);
    # sample_vocab "all" samples future tokens over the whole vocabulary as the reference's generate does
    # (a non-future id is fed back as sampled and read as the nearest future code, as its detokenize clamps),
    # instead of only over the future codes.
    first_slot: bool = True
    sample_vocab: Literal["future", "all"] = "future"

    def __post_init__(self):
        if self.d_model % self.n_head or (self.d_model // self.n_head) % 2:
            raise ValueError(f"d_model ({self.d_model}) must split into n_head ({self.n_head}) even-sized heads")
        if self.action_dim < 0:
            raise ValueError(f"action_dim must be >= 0, got {self.action_dim}")
        for name in ("action_mean", "action_std"):
            stats = getattr(self, name)
            if stats and len(stats) != self.action_dim:
                raise ValueError(f"{name} has {len(stats)} entries, expected action_dim = {self.action_dim}")
        if self.action_std and min(self.action_std) < 0:
            raise ValueError(f"action_std must be non-negative, got {self.action_std}")
        if self.code_embedding and self.code_vector_dim < 1:
            raise ValueError("code_embedding needs code_vector_dim >= 1 (the tokenizer's codebook dims)")
        if self.sample_vocab not in ("future", "all"):
            raise ValueError(f"sample_vocab must be 'future' or 'all', got {self.sample_vocab!r}")
        if self.spatial_frequencies < 0:
            raise ValueError(f"spatial_frequencies must be >= 0, got {self.spatial_frequencies}")
        if self.max_frames < self.context_frames + 1:
            raise ValueError(f"max_frames ({self.max_frames}) must exceed context_frames ({self.context_frames})")
        if self.segment_frames < 0 or 0 < self.segment_frames <= self.context_frames:
            raise ValueError(f"segment_frames must be 0 (one segment) or exceed context_frames "
                             f"({self.context_frames}), got {self.segment_frames}")
        if self.segment_frames and not self.first_slot:
            raise ValueError("segment_frames needs first_slot=True (each segment starts with its [S1])")
        _ = self.layout  # validates the token counts
        if self.spatial_frequencies:
            self.layout.grid_side(self.context_tokens), self.layout.grid_side(self.future_tokens)

    @property
    def layout(self) -> SequenceLayout:
        return SequenceLayout(
            self.context_tokens,
            self.future_tokens,
            self.context_frames,
            self.context_vocab_size,
            self.future_vocab_size,
            self.first_slot,
        )

    @property
    def vocab_size(self) -> int:
        return self.layout.vocab_size

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

    @property
    def max_len(self) -> int:
        lay = self.layout
        return lay.plan_length(lay.plan(self.max_frames, self.segment_frames))
