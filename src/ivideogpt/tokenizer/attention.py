"""Attention blocks: mid-block self-attention and the context -> future cross-attention.

Both keep the reference checkpoint's parameter names and shapes (diffusers ``Attention`` and the
reference ``CrossAttentionBlock``) so that released weights map one to one.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class SelfAttention2d(nn.Module):
    """Single-head self-attention over the positions of one frame's map, residual."""

    def __init__(self, channels: int, norm_groups: int):
        super().__init__()
        self.group_norm = nn.GroupNorm(max(norm_groups, 1), channels, eps=1e-6)
        self.to_q = nn.Linear(channels, channels)
        self.to_k = nn.Linear(channels, channels)
        self.to_v = nn.Linear(channels, channels)
        self.to_out = nn.ModuleList([nn.Linear(channels, channels), nn.Dropout(0.0)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        y = self.group_norm(x).flatten(2).transpose(1, 2)  # [B, HW, C]
        q, k, v = self.to_q(y), self.to_k(y), self.to_v(y)
        y = F.scaled_dot_product_attention(q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1)).squeeze(1)
        y = self.to_out[1](self.to_out[0](y))
        return x + y.transpose(1, 2).reshape(b, c, h, w)


class CrossAttention(nn.Module):
    """Future-frame map (queries) attends to the maps of all T0 context frames (keys/values).

    Queries of different future frames never attend to each other: each query row only sees context
    positions, so the T future frames of a clip can share one attention call (their queries are
    concatenated along positions) and one K/V projection of the context, computed once per
    ContextState by ``context_kv`` and reused for every future frame of a rollout.
    """

    def __init__(self, channels: int, q_len: int, kv_len: int, heads: int, dropout: float, norm_groups: int,
                 context_skip: bool = False):
        super().__init__()
        # Optional aligned path (not in the reference): the last context frame's map, 1x1-projected and added
        # at the same positions. Attention with zero-initialised position embeddings needs many steps before
        # it can copy the scene to the right place; this path gives small CPU-trained models that from step 0.
        self.skip = nn.Conv2d(channels, channels, 1) if context_skip else None
        if self.skip is not None:
            nn.init.zeros_(self.skip.weight)
            nn.init.zeros_(self.skip.bias)
        # Holds in_proj/out_proj weights under the reference names; called functionally (see forward).
        self.att = nn.MultiheadAttention(channels, heads, dropout=dropout, batch_first=True)
        self.resid_dropout = nn.Dropout(dropout)
        self.kv_norm = nn.GroupNorm(max(norm_groups, 1), channels)  # attention inputs stay normalised
        self.q_norm = nn.GroupNorm(max(norm_groups, 1), channels)
        self.kv_pos_emb = nn.Parameter(torch.zeros(kv_len, channels))
        self.q_pos_emb = nn.Parameter(torch.zeros(q_len, channels))
        self.heads, self.dropout = heads, dropout

    def _split(self, x: torch.Tensor) -> torch.Tensor:  # [B, L, C] -> [B, heads, L, C/heads]
        b, n, c = x.shape
        return x.view(b, n, self.heads, c // self.heads).transpose(1, 2)

    def context_kv(self, feats: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """feats [B, T0, C, h, w] -> keys, values [B, heads, T0*h*w, C/heads] (+ the last context map
        [B, C, h, w] when the block has the aligned skip path)."""
        b, t, c, h, w = feats.shape
        # One GroupNorm over all context frames together (as the reference: [B, C, T0*h, w]).
        kv = self.kv_norm(feats.transpose(1, 2).reshape(b, c, t * h, w))
        kv = kv.flatten(2).transpose(1, 2) + self.kv_pos_emb  # positions ordered (t, y, x)
        wq, wk, wv = self.att.in_proj_weight.chunk(3)
        bq, bk, bv = self.att.in_proj_bias.chunk(3)
        k, v = self._split(F.linear(kv, wk, bk)), self._split(F.linear(kv, wv, bv))
        return (k, v) if self.skip is None else (k, v, feats[:, -1])

    def forward(self, z: torch.Tensor, kv: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """z [B*T, C, h, w] (T future frames per context sample), kv from ``context_kv`` (batch B)."""
        k, v = kv[0], kv[1]
        bt, c, h, w = z.shape
        b = k.shape[0]
        if bt % b:
            raise ValueError(f"cross-attention: {bt} future maps for a context batch of {b}")
        q = self.q_norm(z).flatten(2).transpose(1, 2) + self.q_pos_emb  # per-frame norm: no cross-frame stats
        wq = self.att.in_proj_weight[:c]
        bq = self.att.in_proj_bias[:c]
        q = self._split(F.linear(q, wq, bq).reshape(b, (bt // b) * h * w, c))
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).reshape(bt, h * w, c)
        y = self.resid_dropout(self.att.out_proj(y))
        out = z + y.transpose(1, 2).reshape(bt, c, h, w)
        if self.skip is not None:
            out = out + self.skip(kv[2]).repeat_interleave(bt // b, dim=0)
        # SiLU after the residual add, as in the reference block (keeps imported weights exact).
        return F.silu(out)
