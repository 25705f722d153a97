"""Importers of other projects' checkpoints: the reference implementation's releases (reference.py)."""

from .reference import is_release, load_release, read_release

__all__ = ["is_release", "load_release", "read_release"]
