"""LLaMA-style interactive transformer over compressive video tokens (layout, model, KV cache, sampling)."""

from .cache import KVCache
from .config import TransformerConfig
from .layout import SequenceLayout
from .model import Transformer, symexp, symlog
from .sampling import make_generator, sample_logits

__all__ = [
    "KVCache",
    "SequenceLayout",
    "Transformer",
    "TransformerConfig",
    "make_generator",
    "sample_logits",
    "symexp",
    "symlog",
]
