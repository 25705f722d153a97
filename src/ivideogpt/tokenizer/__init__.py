"""Compressive VQ tokenizer (context + conditional future pairs) and a per-frame baseline."""

from .baseline import BaselineTokenizer
from .config import BaselineConfig, TokenizerConfig
from .model import ContextState, Tokenizer

__all__ = ["Tokenizer", "TokenizerConfig", "ContextState", "BaselineTokenizer", "BaselineConfig"]
