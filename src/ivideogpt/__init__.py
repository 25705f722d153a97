"""iVideoGPT: an interactive video world model (compressive tokenizer + LLaMA-style transformer)."""

from __future__ import annotations

__version__ = "0.1.0"

# Heavy submodules load on first use so that `import ivideogpt` and `ivideogpt --help` stay fast.
_LAZY = {"WorldModel": "ivideogpt.world_model", "StepResult": "ivideogpt.world_model"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ivideogpt' has no attribute {name!r}")


__all__ = ["WorldModel", "StepResult", "__version__"]
