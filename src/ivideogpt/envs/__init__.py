"""Environments: the built-in procedural ``pusher`` (pure numpy) and scripted experts for collecting data."""

from .experts import PusherExpert
from .pusher import PusherEnv
from .registry import make, make_expert

__all__ = ["PusherEnv", "PusherExpert", "make", "make_expert"]
