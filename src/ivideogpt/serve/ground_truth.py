"""The real simulator beside the dream: a dataset episode's environment, restarted from the same state.

A collected dataset records its environment, its settings (``meta.json`` ``extra``) and the seed each episode was
reset with (``episode_seeds``). Re-running that reset and the episode's recorded actions restores the simulator at
any frame of the episode; every restored frame is compared with the stored one, pixel for pixel, so a simulator
that does not reproduce the data (another version, other settings) is reported, never shown as the truth.
Imported data (videos, LeRobot) has no simulator: there is no ground truth for it.
"""

from __future__ import annotations

import numpy as np

from ..commands.collect import episode_seeds
from ..commands.plan import env_settings
from ..data.episodes import EpisodeDataset


class GroundTruth:
    """The environment of episode ``i`` (``env``: another name than the dataset records, or "none"), stepped to
    its frame ``n - 1``; ``env`` is None and ``reason`` says why when it cannot be restored."""

    def __init__(self, data: EpisodeDataset, i: int, n: int, env: str | None = None):
        self.env, self.reason = None, None
        if env == "none":
            self.reason = "no ground truth: turned off (--env none)"
            return
        extra = data.meta.get("extra") or {}
        name = env or data.episode_info(i).get("task") or extra.get("env")
        if name is None or "seed" not in extra:
            self.reason = (f"no ground truth: {data.path} does not record the simulator and seed it was collected "
                           f"with (source: {data.meta.get('source', 'unknown')})")
            return
        try:
            from ..envs import make

            env = make(name, **env_settings(data.path, [], None)[0])
            obs, _ = env.reset(seed=episode_seeds(int(extra["seed"]), i)[0])
        except Exception as e:  # a missing extra (MuJoCo) or a changed environment: say so, play on without it
            self.reason = f"no ground truth: cannot build the simulator '{name}' ({type(e).__name__}: {e})"
            return
        frames, actions = data.frames(i, 0, n), data.episode(i)["actions"]
        for t in range(n):
            if t:
                obs = env.step(actions[t - 1])[0]
            if obs.shape != frames[t].shape or not np.array_equal(obs, frames[t]):
                diff = np.abs(obs.astype(int) - frames[t].astype(int)).max() if obs.shape == frames[t].shape else "?"
                self.reason = (f"no ground truth: the simulator '{name}' restarted from episode {i}'s seed does not "
                               f"reproduce its frame {t} (max pixel difference {diff})")
                return
        self.env, self.frame, self._start = env, obs, env.get_state()

    def restart(self) -> np.ndarray:
        """Back to the restored state (without replaying the episode)."""
        self.env.set_state(self._start)
        self.frame = self.env.render()
        return self.frame

    def step(self, action) -> tuple[np.ndarray, float]:
        obs, reward, *_ = self.env.step(np.asarray(action, np.float32))
        self.frame = obs
        return obs, float(reward)
