"""Small Gymnasium wrappers for pixel RL: action repeat, success bonus, and a frame stack.

Frame stacks are observations ``uint8 [S, H, W, 3]`` (oldest first); at reset the first frame is
repeated, as in drqv2. The replay stores single frames, never these stacks.
"""

from __future__ import annotations

from collections import deque

import gymnasium as gym
import numpy as np


class ActionRepeat(gym.Wrapper):
    """Repeat each action ``repeat`` times; rewards are summed, ``info`` is the last step's, with
    ``success`` true if any inner step succeeded."""

    def __init__(self, env: gym.Env, repeat: int):
        super().__init__(env)
        if repeat < 1:
            raise ValueError(f"action repeat must be >= 1, got {repeat}")
        self.repeat = int(repeat)

    def step(self, action):
        total, success = 0.0, False
        for _ in range(self.repeat):
            obs, reward, terminated, truncated, info = self.env.step(action)
            total += float(reward)
            success = success or bool(info.get("success", False))
            if terminated or truncated:
                break
        info = dict(info, success=success)
        return obs, total, terminated, truncated, info


class SuccessBonus(gym.Wrapper):
    """Add ``bonus`` to the reward of every step where ``info['success']`` is true (the paper's r + bonus)."""

    def __init__(self, env: gym.Env, bonus: float):
        super().__init__(env)
        self.bonus = float(bonus)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, float(reward) + self.bonus * bool(info.get("success", False)), terminated, truncated, info


class FrameStack(gym.Wrapper):
    def __init__(self, env: gym.Env, num_stack: int):
        super().__init__(env)
        if num_stack < 1:
            raise ValueError(f"frame stack must be >= 1, got {num_stack}")
        self.num_stack = int(num_stack)
        space = env.observation_space
        if not (isinstance(space, gym.spaces.Box) and space.dtype == np.uint8 and len(space.shape) == 3
                and space.shape[-1] == 3):
            raise ValueError(f"FrameStack needs uint8 [H, W, 3] frame observations, got {space}")
        self.observation_space = gym.spaces.Box(0, 255, (self.num_stack, *space.shape), np.uint8)
        self._frames: deque = deque(maxlen=self.num_stack)

    def _obs(self):
        return np.stack(self._frames)

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        for _ in range(self.num_stack):
            self._frames.append(obs)
        return self._obs(), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._frames.append(obs)
        return self._obs(), reward, terminated, truncated, info


def make_pixel_env(name: str, *, action_repeat: int, frame_stack: int, episode_length: int,
                   success_bonus: float = 0.0, env_kwargs: dict | None = None) -> gym.Env:
    """``ivideogpt.envs.make(name)`` wrapped for pixel RL: success bonus, action repeat, a time limit of
    ``episode_length`` agent steps, frame stack.

    Meta-World envs do action repeat, the time limit and the success bonus themselves (rendering only the
    last frame of a repeated action), so they get those as constructor options instead of wrappers.
    """
    from ..envs import make

    if name.startswith("metaworld:"):
        native = dict(action_repeat=int(action_repeat), max_episode_steps=int(episode_length),
                      success_bonus=float(success_bonus))
        env = make(name, **{**native, **(env_kwargs or {})})
        return FrameStack(env, frame_stack)
    kwargs = dict(env_kwargs or {})
    if name == "pusher":  # its own limit (100 env steps by default) must not end episodes before ours
        kwargs.setdefault("max_episode_steps", int(episode_length) * int(action_repeat))
    env = make(name, **kwargs)
    if success_bonus:
        env = SuccessBonus(env, success_bonus)
    env = ActionRepeat(env, action_repeat)
    env = gym.wrappers.TimeLimit(env, max_episode_steps=int(episode_length))
    return FrameStack(env, frame_stack)
