"""``make(name)``: environments by name ('pusher' now, 'metaworld:<task>' with the ``sim`` extra later)."""

from __future__ import annotations

import inspect

import gymnasium as gym

from ..errors import ConfigError, IVideoGPTError
from .experts import PusherExpert
from .pusher import PusherEnv


def _world_model_env(path, dataset=None, split="val", horizon=None, temperature=1.0, top_k=100,
                     render_mode="rgb_array", device=None) -> gym.Env:
    """``make('world_model', path=MODEL_OR_RUN_DIR, dataset=DATA_DIR, ...)``: see envs/world_model_env.py."""
    from .world_model_env import WorldModelEnv  # imports torch: only when asked for

    return WorldModelEnv(path, dataset, split=split, horizon=horizon, temperature=temperature, top_k=top_k,
                         render_mode=render_mode, device=device)


ENVS = {"pusher": PusherEnv, "world_model": _world_model_env}
EXPERTS = {"pusher": PusherExpert}
GYM_ID = "ivideogpt/Pusher-v0"


def _split(name: str) -> tuple[str, str | None]:
    base, _, task = name.partition(":")
    if base == "metaworld":
        raise IVideoGPTError(
            f"environment '{name}': Meta-World needs the `sim` extra (pip install 'ivideogpt[sim]') and its "
            "collector, which is not part of this version yet; use 'pusher'"
        )
    if name not in ENVS:
        raise ConfigError(f"unknown environment '{name}'; known: {sorted(ENVS)} and 'metaworld:<task>'")
    return base, task or None


def _build(cls, what: str, kwargs: dict):
    params = inspect.signature(cls).parameters
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise ConfigError(f"{what}: unknown argument(s) {unknown}; valid: {sorted(params)}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{what}: {e}") from None


def make(name: str, **kwargs) -> gym.Env:
    """An environment by name, e.g. ``make('pusher', size=64, n_blocks=2)``."""
    base, _ = _split(name)
    return _build(ENVS[base], f"environment '{name}'", kwargs)


def make_expert(name: str, **kwargs):
    """The scripted expert for environment ``name``, e.g. ``make_expert('pusher', noise=0.1, seed=0)``."""
    base, _ = _split(name)
    if base not in EXPERTS:
        raise ConfigError(f"environment '{name}' has no scripted expert; experts exist for {sorted(EXPERTS)}")
    return _build(EXPERTS[base], f"expert for '{name}'", kwargs)


if GYM_ID not in gym.registry:
    gym.register(GYM_ID, entry_point="ivideogpt.envs.pusher:PusherEnv")
