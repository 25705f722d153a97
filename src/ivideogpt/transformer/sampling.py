"""Sampling from next-token logits: temperature, top-k, and an explicit torch.Generator.

Everything random goes through ``generator`` so a rollout is reproducible from a seed.
"""

from __future__ import annotations

import torch


def sample_logits(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``logits [B, V] -> ids [B]``. Greedy (argmax) when ``temperature == 0``."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    if top_k is not None:
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1 or None, got {top_k}")
        if top_k < logits.shape[-1]:
            kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if generator is not None and generator.device != probs.device:
        raise ValueError(f"generator is on {generator.device}, logits on {probs.device}")
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def make_generator(seed: int | None, device=None) -> torch.Generator | None:
    """A generator seeded with ``seed`` on ``device`` (None -> None: use the global RNG)."""
    if seed is None:
        return None
    g = torch.Generator(device=device if device is not None else "cpu")
    g.manual_seed(int(seed))
    return g
