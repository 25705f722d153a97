"""The token sequence of a clip: the one place that knows where every token sits.

    [S1] ctx_1 (N) [S1] ctx_2 (N) ... [S1] ctx_T0 (N) [S2] fut_1 (n) [S2] fut_2 (n) ...

Vocabulary: context codes ``0 .. Vc-1``, future codes ``Vc .. Vc+Vf-1`` (the tokenizer's future
ids offset by ``Vc``), then the two slot tokens ``S1 = Vc+Vf`` and ``S2 = Vc+Vf+1``.

Unlike the reference we keep the very first [S1]: every frame then starts with a slot, so the
arithmetic is uniform and the first context token has something to attend to. The length of a
clip of ``T`` frames is ``(N+1)*T0 + (n+1)*(T-T0)``. ``first_slot=False`` drops that first [S1] as the
reference does (one token shorter, every position one less): converted reference checkpoints use it.

Actions enter at the [S2] slot in front of the frame they lead to; the reward of the transition
into a future frame is read at that frame's last token (it has seen the action and the whole frame).

Spatial coordinates (:meth:`SequenceLayout.spatial_coords`): context and future tokens are square grids
(row-major) of different sizes; each code token gets the centre of its cell in one shared ``[0, 1]^2`` frame,
so "the same place" is the same coordinate in an 8x8 context grid and a 4x4 future grid.

Several segments (:meth:`SequenceLayout.plan`, video in-context imitation): a sequence may hold several
clips one after another, each laid out as above with its own context frames (its future frames are tokenized
against its own context), ``[S1] ctx [S2] fut ... [S1] ctx [S2] fut ...``. A *plan* lists the frames of each
segment; every per-position rule (slots, targets, rewards, spatial coordinates) is a function of the position
*within* its segment (:meth:`SequenceLayout.local_positions`), while rotary positions run on through the whole
sequence. A context frame is never a target, so later segments' context frames are given, not predicted.

Goal-conditioned variant (:meth:`SequenceLayout.goal_reorder`): frames are reordered to
``(o_T, o_1, ..., o_{T-1})`` so the goal is one more context frame in front. A goal-conditioned
model is therefore built with ``context_frames = T0 + 1``; nothing else changes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SequenceLayout:
    context_tokens: int  # N: tokens per context frame
    future_tokens: int  # n: tokens per future frame
    context_frames: int  # T0
    context_vocab: int  # Vc
    future_vocab: int  # Vf
    first_slot: bool = True  # False: the sequence starts with the first context code (reference layout)

    def __post_init__(self):
        for name in ("context_tokens", "future_tokens", "context_frames", "context_vocab", "future_vocab"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"SequenceLayout.{name} must be >= 1, got {getattr(self, name)}")

    # -- vocabulary ---------------------------------------------------------------------------
    @property
    def slot_context(self) -> int:
        return self.context_vocab + self.future_vocab

    @property
    def slot_future(self) -> int:
        return self.context_vocab + self.future_vocab + 1

    @property
    def vocab_size(self) -> int:
        return self.context_vocab + self.future_vocab + 2

    @property
    def future_code_range(self) -> tuple[int, int]:
        """Token ids ``[lo, hi)`` of future codes; sampling is restricted to this range."""
        return self.context_vocab, self.context_vocab + self.future_vocab

    # -- lengths ------------------------------------------------------------------------------
    @property
    def context_length(self) -> int:
        """Tokens of the context part (all [S1] + context codes): the prefill."""
        return (self.context_tokens + 1) * self.context_frames - (0 if self.first_slot else 1)

    @property
    def frame_length(self) -> int:
        """Tokens per future frame including its [S2] slot."""
        return self.future_tokens + 1

    def length(self, num_frames: int) -> int:
        if num_frames < self.context_frames:
            raise ValueError(f"a clip needs at least {self.context_frames} frames, got {num_frames}")
        return self.context_length + self.frame_length * (num_frames - self.context_frames)

    def num_frames(self, length: int) -> int:
        """Inverse of :meth:`length` (the length must end on a frame boundary)."""
        extra = length - self.context_length
        if extra < 0 or extra % self.frame_length:
            raise ValueError(f"sequence length {length} does not end on a frame boundary of {self}")
        return self.context_frames + extra // self.frame_length

    # -- build / split ------------------------------------------------------------------------
    def build(self, ctx_ids: torch.Tensor, fut_ids: torch.Tensor) -> torch.Tensor:
        """``ctx_ids [B,T0,N]`` (0..Vc-1), ``fut_ids [B,F,n]`` (0..Vf-1) -> tokens ``[B,L]``.

        Several segments of equal length: ``ctx_ids [B,S,T0,N]``, ``fut_ids [B,S,F,n]`` -> the S segments one
        after another (plan ``[T0 + F] * S``).
        """
        if ctx_ids.ndim == 4:
            if fut_ids.ndim != 4 or fut_ids.shape[:2] != ctx_ids.shape[:2]:
                raise ValueError(f"segmented ids: ctx_ids [B,S,T0,N] and fut_ids [B,S,F,n] with the same B and S, "
                                 f"got {tuple(ctx_ids.shape)} and {tuple(fut_ids.shape)}")
            return torch.cat([self.build(ctx_ids[:, i], fut_ids[:, i]) for i in range(ctx_ids.shape[1])], dim=1)
        B = ctx_ids.shape[0]
        if tuple(ctx_ids.shape[1:]) != (self.context_frames, self.context_tokens):
            raise ValueError(
                f"ctx_ids must be [B, {self.context_frames}, {self.context_tokens}], got {tuple(ctx_ids.shape)}"
            )
        if fut_ids.ndim != 3 or fut_ids.shape[0] != B or fut_ids.shape[2] != self.future_tokens:
            raise ValueError(f"fut_ids must be [{B}, F, {self.future_tokens}], got {tuple(fut_ids.shape)}")
        F = fut_ids.shape[1]
        s1 = ctx_ids.new_full((B, self.context_frames, 1), self.slot_context)
        s2 = ctx_ids.new_full((B, F, 1), self.slot_future)
        ctx = torch.cat([s1, ctx_ids], dim=2).reshape(B, -1)
        fut = torch.cat([s2, fut_ids.to(ctx_ids.dtype) + self.context_vocab], dim=2).reshape(B, -1)
        return torch.cat([ctx if self.first_slot else ctx[:, 1:], fut], dim=1)

    def split(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Inverse of :meth:`build`: tokens ``[B,L]`` -> ``(ctx_ids [B,T0,N], fut_ids [B,F,n])``."""
        B, L = tokens.shape
        F = self.num_frames(L) - self.context_frames
        ctx = tokens[:, : self.context_length]
        if not self.first_slot:
            ctx = torch.cat([ctx.new_full((B, 1), self.slot_context), ctx], dim=1)
        ctx = ctx.reshape(B, self.context_frames, self.context_tokens + 1)
        fut = tokens[:, self.context_length :].reshape(B, F, self.frame_length)
        return ctx[:, :, 1:], fut[:, :, 1:] - self.context_vocab

    # -- segments -----------------------------------------------------------------------------
    def plan(self, num_frames: int, segment_frames: int = 0) -> list[int]:
        """Frames per segment of a clip of ``num_frames`` cut into segments of ``segment_frames`` (0: one
        segment); the last segment may be shorter but holds at least the context frames."""
        if segment_frames <= 0:
            return [num_frames]
        plan = [segment_frames] * (num_frames // segment_frames)
        if num_frames % segment_frames:
            plan.append(num_frames % segment_frames)
        if plan[-1] < self.context_frames:
            raise ValueError(f"{num_frames} frames in segments of {segment_frames}: the last segment has "
                             f"{plan[-1]} frame(s), fewer than the {self.context_frames} context frame(s)")
        return plan

    def local_positions_of_length(self, length: int, segment_frames: int = 0) -> torch.Tensor:
        """``[length]``: positions within their segments of the first ``length`` tokens of a sequence whose
        segments are ``segment_frames`` long (0: one segment); the sequence may stop anywhere."""
        pos = torch.arange(length)
        return pos % self.length(segment_frames) if segment_frames > 0 else pos

    def plan_length(self, plan: list[int]) -> int:
        if len(plan) > 1 and not self.first_slot:
            raise ValueError("several segments need first_slot=True (each segment starts with its [S1])")
        return sum(self.length(f) for f in plan)

    def local_positions(self, plan: list[int]) -> torch.Tensor:
        """``[L]``: each token's position within its segment (one segment: ``arange(L)``)."""
        self.plan_length(plan)
        return torch.cat([torch.arange(self.length(f)) for f in plan])

    # -- positions (``local``: positions within a segment) -------------------------------------
    def is_slot(self, local: torch.Tensor) -> torch.Tensor:
        """bool: which local positions are [S2] slots (where actions are added)."""
        off = local - self.context_length
        return (off >= 0) & (off % self.frame_length == 0)

    def is_future_code(self, local: torch.Tensor) -> torch.Tensor:
        off = local - self.context_length
        return (off >= 0) & (off % self.frame_length != 0)

    def is_frame_end(self, local: torch.Tensor) -> torch.Tensor:
        """bool: last token of a future frame (where the reward into that frame is read)."""
        off = local - self.context_length
        return (off >= 0) & (off % self.frame_length == self.future_tokens)

    def action_positions(self, num_frames: int) -> torch.Tensor:
        """``[F]``: the [S2] slot in front of each future frame (where its action is added)."""
        return self.is_slot(torch.arange(self.length(num_frames))).nonzero().squeeze(-1)

    def reward_positions(self, num_frames: int) -> torch.Tensor:
        """``[F]``: last token of each future frame (where the reward into that frame is read)."""
        return self.action_positions(num_frames) + self.future_tokens

    def target_mask(self, num_frames: int) -> torch.Tensor:
        """bool ``[L]``: True at i when token i+1 is a future code (the only tokens we train on).

        That is every [S2] slot and every future token but the last of its frame; slots themselves
        are forced, never predicted, and context frames are given.
        """
        return self.target_mask_at(torch.arange(self.length(num_frames)))

    def target_mask_at(self, local: torch.Tensor) -> torch.Tensor:
        """:meth:`target_mask` of the sequence with local positions ``local [L]`` (any plan)."""
        nxt = self.is_future_code(local[1:])
        return torch.cat([nxt, nxt.new_zeros(1)])

    def slot_mask(self, start: int, stop: int) -> torch.Tensor:
        """bool ``[stop-start]``: which absolute positions in ``[start, stop)`` are [S2] slots (one segment)."""
        return self.is_slot(torch.arange(start, stop))

    def future_frame_at(self, position: int) -> int:
        """Index (0-based among its segment's future frames) of the frame whose [S2] slot is at local
        ``position``."""
        off = position - self.context_length
        if off < 0 or off % self.frame_length:
            raise ValueError(f"position {position} is not an [S2] slot (context length {self.context_length})")
        return off // self.frame_length

    def frame_index(self, local: torch.Tensor) -> torch.Tensor:
        """``[L]``: the index within its segment of the frame each local position belongs to (context frames
        0..T0-1, then the future frames; a slot belongs to the frame it opens)."""
        ctx = (local + (0 if self.first_slot else 1)) // (self.context_tokens + 1)
        fut = self.context_frames + (local - self.context_length).clamp(min=0) // self.frame_length
        return torch.where(local < self.context_length, ctx, fut)

    def spatial_coords(self, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`spatial_coords_at` of the absolute positions ``[start, stop)`` of one segment."""
        return self.spatial_coords_at(torch.arange(start, stop))

    def spatial_coords_at(self, local: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cell centres ``xy [L, 2]`` (x = column, y = row, in (0, 1)) of the code tokens at local positions
        ``local [L]``, and ``valid [L]`` (False at slots, whose xy is 0)."""
        gc, gf = self.grid_side(self.context_tokens), self.grid_side(self.future_tokens)
        pos = local
        in_ctx = pos < self.context_length
        k_ctx = (pos + (0 if self.first_slot else 1)) % (self.context_tokens + 1) - 1  # in its frame (-1: slot)
        k_fut = (pos - self.context_length) % self.frame_length - 1
        k = torch.where(in_ctx, k_ctx, k_fut)
        g = torch.where(in_ctx, gc, gf)
        valid = k >= 0
        k = k.clamp(min=0)
        xy = torch.stack([(k % g + 0.5) / g, (k // g + 0.5) / g], dim=-1)
        return torch.where(valid[:, None], xy, torch.zeros_like(xy)), valid

    @staticmethod
    def grid_side(tokens: int) -> int:
        g = math.isqrt(tokens)
        if g * g != tokens:
            raise ValueError(f"spatial coordinates need square token grids, got {tokens} tokens per frame")
        return g

    # -- goal-conditioned variant ---------------------------------------------------------------
    @staticmethod
    def goal_reorder(frames):
        """``frames [B,T,...] -> (o_T, o_1, ..., o_{T-1})``: the goal becomes the first context frame.

        Works on tensors and numpy arrays; a model trained this way has ``context_frames = T0 + 1``.
        """
        if isinstance(frames, torch.Tensor):
            return torch.cat([frames[:, -1:], frames[:, :-1]], dim=1)
        import numpy as np

        return np.concatenate([frames[:, -1:], frames[:, :-1]], axis=1)
