"""A static, pre-allocated KV cache (gpt-fast style).

One key and one value tensor ``[n_layer, B, H, max_len, head_dim]`` allocated once, and a position
counter. Nothing is concatenated or re-allocated while decoding, so a rollout of many frames costs
only the new tokens. Batch re-indexing (``index_select`` / ``repeat_interleave``) lets a world
model encode one context once and expand it to K samples, or keep the survivors of a planner.
"""

from __future__ import annotations

import torch

from ..errors import ConfigError


class KVCache:
    def __init__(self, k: torch.Tensor, v: torch.Tensor, pos: int = 0, segment_start: int = 0):
        self.k = k
        self.v = v
        self.pos = pos
        # Where the segment the cache stands in began (layout.py, several segments): positions within it decide
        # slots and spatial features; rotary positions use ``pos``.
        self.segment_start = segment_start

    @classmethod
    def empty(cls, n_layer, batch, n_head, max_len, head_dim, device=None, dtype=None) -> KVCache:
        shape = (n_layer, batch, n_head, max_len, head_dim)
        return cls(torch.zeros(shape, device=device, dtype=dtype), torch.zeros(shape, device=device, dtype=dtype))

    @property
    def batch_size(self) -> int:
        return self.k.shape[1]

    @property
    def max_len(self) -> int:
        return self.k.shape[3]

    def reset(self) -> KVCache:
        self.pos = self.segment_start = 0
        return self

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write ``k, v [B,H,l,hd]`` at the current position; return all keys/values so far.

        The position counter is advanced once per chunk by :meth:`advance`, after the last layer.
        """
        end = self.pos + k.shape[2]
        if end > self.max_len:
            raise ConfigError(
                f"KV cache full: {end} tokens needed, the cache holds {self.max_len} "
                "(pass a larger max_len to new_cache, or raise the transformer's max_frames)"
            )
        self.k[layer, :, :, self.pos : end] = k
        self.v[layer, :, :, self.pos : end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]

    def advance(self, n: int) -> None:
        self.pos += n

    # -- batch re-indexing (new cache; the old one is left as it was) ---------------------------
    def index_select(self, index: torch.Tensor) -> KVCache:
        """Keep/reorder/duplicate batch rows: row i of the result is row ``index[i]`` of this cache."""
        index = torch.as_tensor(index, device=self.k.device, dtype=torch.long)
        return KVCache(self.k.index_select(1, index), self.v.index_select(1, index), self.pos, self.segment_start)

    def repeat_interleave(self, repeats: int) -> KVCache:
        """``[B, ...] -> [B*repeats, ...]``, each row repeated in place (b0 b0 b0 b1 b1 b1 ...)."""
        return KVCache(self.k.repeat_interleave(repeats, dim=1), self.v.repeat_interleave(repeats, dim=1), self.pos,
                       self.segment_start)

    def clone(self) -> KVCache:
        return KVCache(self.k.clone(), self.v.clone(), self.pos, self.segment_start)
