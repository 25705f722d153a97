"""``make(name)``: environments by name: 'pusher', 'pusher-behaviours', 'world_model', and 'metaworld:<task>' with
the ``sim`` extra.

Meta-World is imported only when asked for, so ``import ivideogpt`` and ``make('pusher')`` never load MuJoCo.
"""

from __future__ import annotations

import inspect
from functools import partial

import gymnasium as gym

from ..errors import ConfigError
from .behaviours import BehaviourExpert, BehaviourPusherEnv
from .experts import PusherExpert
from .pusher import PusherEnv


def _world_model_env(path, dataset=None, split="val", horizon=None, temperature=1.0, top_k=100,
                     render_mode="rgb_array", device=None) -> gym.Env:
    """``make('world_model', path=MODEL_OR_RUN_DIR, dataset=DATA_DIR, ...)``: see envs/world_model_env.py."""
    from .world_model_env import WorldModelEnv  # imports torch: only when asked for

    return WorldModelEnv(path, dataset, split=split, horizon=horizon, temperature=temperature, top_k=top_k,
                         render_mode=render_mode, device=device)


ENVS = {"pusher": PusherEnv, "pusher-behaviours": BehaviourPusherEnv, "world_model": _world_model_env}
EXPERTS = {"pusher": PusherExpert, "pusher-behaviours": BehaviourExpert}
GYM_ID = "ivideogpt/Pusher-v0"


def _metaworld():
    """The Meta-World module, or a ConfigError saying how to get it."""
    try:
        from . import metaworld
    except ImportError as e:  # metaworld or mujoco missing
        raise ConfigError(
            f"Meta-World environments need the `sim` extra: pip install 'ivideogpt[sim]' ({e})"
        ) from None
    return metaworld


def _split(name: str) -> tuple[str, str | None]:
    base, _, task = name.partition(":")
    if base == "metaworld":
        if not task:
            raise ConfigError(f"environment '{name}': name a task, e.g. 'metaworld:hammer' or 'metaworld:hammer-v3'")
        return base, task
    if name not in ENVS:
        raise ConfigError(f"unknown environment '{name}'; known: {sorted(ENVS)} and 'metaworld:<task>'")
    return base, task or None


def _metaworld_task(name: str, task: str) -> str:
    tasks = _metaworld().expand_tasks(task)
    if len(tasks) != 1:
        raise ConfigError(f"environment '{name}' names {len(tasks)} tasks; make() builds one task at a time "
                          "(multi-task names are for `ivideogpt collect`)")
    return tasks[0]


def expand(name: str) -> list[str]:
    """The single-task environment names of ``name``: 'metaworld:mt10' -> ten 'metaworld:<task>-v3' names,
    'metaworld:hammer,plate-slide' -> two; any other name -> [name]."""
    base, task = _split(name)
    if base != "metaworld":
        return [name]
    return [f"metaworld:{t}" for t in _metaworld().expand_tasks(task)]


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
    """An environment by name, e.g. ``make('pusher', size=64, n_blocks=2)`` or ``make('metaworld:hammer')``."""
    base, task = _split(name)
    if base == "metaworld":
        return _build(partial(_metaworld().MetaWorldEnv, _metaworld_task(name, task)),
                      f"environment '{name}'", kwargs)
    return _build(ENVS[base], f"environment '{name}'", kwargs)


def make_expert(name: str, **kwargs):
    """The scripted expert for environment ``name``, e.g. ``make_expert('pusher', noise=0.1, seed=0)``."""
    base, task = _split(name)
    if base == "metaworld":
        return _build(partial(_metaworld().MetaWorldExpert, _metaworld_task(name, task)),
                      f"expert for '{name}'", kwargs)
    if base not in EXPERTS:
        raise ConfigError(f"environment '{name}' has no scripted expert; experts exist for {sorted(EXPERTS)}")
    return _build(EXPERTS[base], f"expert for '{name}'", kwargs)


if GYM_ID not in gym.registry:
    gym.register(GYM_ID, entry_point="ivideogpt.envs.pusher:PusherEnv")
