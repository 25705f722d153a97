"""In-memory replay of whole episodes: every frame is stored once (uint8), frame stacks and n-step
returns are assembled at sampling time by index arithmetic.

Layout: one flat frame array; an episode of T transitions occupies ``history + T + 1`` consecutive
frames, where the first ``history`` frames are earlier observations that only fill the first frame
stacks (0 for real episodes, whose first stack repeats the first frame as in drqv2; S-1 for imagined
rollouts, which start from a real frame stack). Transition k of an episode goes from its frame
``history + k`` to ``history + k + 1`` and stores the action and reward between them.
"""

from __future__ import annotations

import numpy as np

from ..errors import DataError


class ReplayBuffer:
    def __init__(self, capacity: int, frame_shape: tuple[int, int, int], action_dim: int, *, frame_stack: int,
                 nstep: int, discount: float):
        if capacity < 1 or frame_stack < 1 or nstep < 1:
            raise ValueError(f"need capacity, frame_stack, nstep >= 1; got {capacity}, {frame_stack}, {nstep}")
        self.capacity, self.frame_shape, self.action_dim = int(capacity), tuple(frame_shape), int(action_dim)
        self.frame_stack, self.nstep, self.discount = int(frame_stack), int(nstep), float(discount)
        self.frames = np.zeros((self.capacity, *self.frame_shape), np.uint8)
        # Per frame slot: the action/reward/terminal of the transition leaving it, the first frame slot of its
        # episode (frame stacks never reach before it) and the last frame slot of its episode.
        self.actions = np.zeros((self.capacity, self.action_dim), np.float32)
        self.rewards = np.zeros(self.capacity, np.float32)
        self.terminal = np.zeros(self.capacity, bool)  # True: the state after this transition is terminal
        self.ep_start = np.zeros(self.capacity, np.int64)
        self.ep_end = np.zeros(self.capacity, np.int64)
        self.is_step = np.zeros(self.capacity, bool)  # a transition starts here (not a history/last frame)
        self.size = 0  # frames used
        self.num_episodes = 0

    def __len__(self) -> int:
        """Number of stored transitions."""
        return int(self.is_step[:self.size].sum())

    def add_episode(self, frames, actions, rewards, terminal: bool = False, history: int = 0) -> None:
        """``frames`` uint8 [history + T + 1, H, W, 3], ``actions`` [T, A], ``rewards`` [T]."""
        frames = np.asarray(frames)
        actions = np.asarray(actions, np.float32).reshape(len(actions), -1)
        rewards = np.asarray(rewards, np.float32).reshape(-1)
        t = len(actions)
        if frames.dtype != np.uint8 or frames.shape[1:] != self.frame_shape:
            raise DataError(f"replay: frames must be uint8 [N, {', '.join(map(str, self.frame_shape))}], "
                            f"got {frames.dtype} {frames.shape}")
        if len(frames) != history + t + 1 or len(rewards) != t or actions.shape[1] != self.action_dim:
            raise DataError(f"replay: expected {history} + T + 1 frames, T actions of dim {self.action_dim} and T "
                            f"rewards; got {len(frames)} frames, actions {actions.shape}, {len(rewards)} rewards")
        if t < 1:
            raise DataError("replay: an episode needs at least one transition")
        n = len(frames)
        if n > self.capacity:
            raise DataError(f"replay: an episode of {n} frames does not fit a capacity of {self.capacity} frames")
        if self.size + n > self.capacity:
            self._drop_oldest(self.size + n - self.capacity)
        s = self.size
        self.frames[s:s + n] = frames
        self.actions[s:s + n] = 0.0
        self.rewards[s:s + n] = 0.0
        self.terminal[s:s + n] = False
        self.is_step[s:s + n] = False
        self.actions[s + history:s + history + t] = actions
        self.rewards[s + history:s + history + t] = rewards
        self.is_step[s + history:s + history + t] = True
        self.terminal[s + n - 2] = bool(terminal) and t > 0
        self.ep_start[s:s + n] = s
        self.ep_end[s:s + n] = s + n - 1
        self.size += n
        self.num_episodes += 1

    def _drop_oldest(self, need: int) -> None:
        """Free at least ``need`` frame slots by dropping whole episodes from the front (FIFO)."""
        cut = 0
        while cut < need:
            cut = int(self.ep_end[cut]) + 1
            self.num_episodes -= 1
        keep = slice(cut, self.size)
        n = self.size - cut
        for arr in (self.frames, self.actions, self.rewards, self.terminal, self.is_step):
            arr[:n] = arr[keep]
        self.ep_start[:n] = self.ep_start[keep] - cut
        self.ep_end[:n] = self.ep_end[keep] - cut
        self.size = n

    # ------------------------------------------------------------------------------------ sampling
    def valid_starts(self) -> np.ndarray:
        """Frame slots where a full n-step transition starts: n transitions left in the episode, or any step
        of an episode that ends in a terminal state (its return stops there)."""
        n = self.size
        i = np.arange(n)
        ok = self.is_step[:n] & ((i + self.nstep <= self.ep_end[:n]) | self.terminal[self.ep_end[:n] - 1])
        return np.nonzero(ok)[0]

    def stack(self, idx: np.ndarray) -> np.ndarray:
        """Frame stacks ending at frame slots ``idx``: uint8 [B, S, H, W, 3] (clamped at episode start)."""
        offs = np.arange(-self.frame_stack + 1, 1)
        j = np.maximum(idx[:, None] + offs[None, :], self.ep_start[idx][:, None])
        return self.frames[j]

    def nstep_targets(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For transitions starting at ``idx``: (n-step discounted reward, bootstrap discount, next frame slot).

        reward = sum_k gamma^k r_{t+k} over k < n (stopping at a terminal), discount = gamma^n (0 after a
        terminal), next = t + n (or the terminal frame).
        """
        reward = np.zeros(len(idx), np.float64)
        disc = np.ones(len(idx), np.float64)
        alive = np.ones(len(idx), bool)
        nxt = idx.copy()
        for k in range(self.nstep):
            j = idx + k
            step = alive & (j < self.ep_end[idx])
            reward += np.where(step, disc * self.rewards[np.minimum(j, self.size - 1)], 0.0)
            disc = np.where(step, disc * self.discount, disc)
            nxt = np.where(step, j + 1, nxt)
            ended = step & self.terminal[np.minimum(j, self.size - 1)]
            disc = np.where(ended, 0.0, disc)
            alive &= step & ~ended
        return reward.astype(np.float32), disc.astype(np.float32), nxt

    def sample(self, batch_size: int, rng: np.random.Generator) -> dict:
        """A batch of uniformly drawn n-step transitions: obs/next_obs uint8 [B, S, H, W, 3], action [B, A],
        reward [B] (n-step return), discount [B]."""
        starts = self.valid_starts()
        if len(starts) == 0:
            raise DataError("replay: no complete n-step transition stored yet")
        idx = starts[rng.integers(len(starts), size=batch_size)]
        reward, disc, nxt = self.nstep_targets(idx)
        return {"obs": self.stack(idx), "action": self.actions[idx], "reward": reward, "discount": disc,
                "next_obs": self.stack(nxt)}

    def sample_clips(self, batch_size: int, length: int, rng: np.random.Generator) -> dict:
        """World-model training clips: ``length`` consecutive frames of one real episode (history frames
        excluded) with the actions/rewards leaving each frame: frames [B, L, H, W, 3], actions [B, L, A],
        rewards [B, L] (the last action/reward of a clip leads out of it and is unused)."""
        i = np.arange(self.size)
        # frame i can start a clip if frames i .. i+length-1 are in its episode and i is a real step
        ok = self.is_step[:self.size] & (i + length - 1 <= self.ep_end[:self.size])
        starts = np.nonzero(ok)[0]
        if len(starts) == 0:
            raise DataError(f"replay: no episode holds a {length}-frame clip yet")
        s = starts[rng.integers(len(starts), size=batch_size)]
        j = s[:, None] + np.arange(length)[None]
        return {"frames": self.frames[j], "actions": self.actions[j], "rewards": self.rewards[j]}

    # --------------------------------------------------------------------------------- save / load
    def state_dict(self) -> dict:
        n = self.size
        return {"frames": self.frames[:n], "actions": self.actions[:n], "rewards": self.rewards[:n],
                "terminal": self.terminal[:n], "ep_start": self.ep_start[:n], "ep_end": self.ep_end[:n],
                "is_step": self.is_step[:n], "num_episodes": np.array(self.num_episodes)}

    def load_state_dict(self, state: dict) -> None:
        n = len(state["frames"])
        if n > self.capacity or tuple(state["frames"].shape[1:]) != self.frame_shape:
            raise DataError(f"replay checkpoint: {n} frames of shape {state['frames'].shape[1:]} do not fit this "
                            f"buffer ({self.capacity} x {self.frame_shape})")
        for k in ("frames", "actions", "rewards", "terminal", "ep_start", "ep_end", "is_step"):
            getattr(self, k)[:n] = state[k]
        self.size, self.num_episodes = n, int(state["num_episodes"])
