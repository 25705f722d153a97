"""Reinforcement learning with the world model: DrQ-v2 (model-free) and MBPO (imagined rollouts)."""

from .config import MBPOConfig, RLConfig, RunConfig, load_rl_config
from .drqv2 import DrQV2Agent, DrQV2Config
from .replay import ReplayBuffer

__all__ = ["DrQV2Agent", "DrQV2Config", "MBPOConfig", "RLConfig", "ReplayBuffer", "RunConfig", "load_rl_config"]
