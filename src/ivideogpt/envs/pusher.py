"""The built-in ``pusher`` environment: a round end-effector pushes blocks on a top-down table.

Pure numpy, quasi-static (no momentum), fast (thousands of steps/s at 64x64 on one core) and
randomised per episode (table colour and texture, block shapes, colours and sizes, goal, start), so
that context frames carry information a world model has to keep. Observations are rendered frames.
"""

from __future__ import annotations

import copy
import math

import gymnasium as gym
import numpy as np

from .render import BOUND, SHAPES, Canvas, distinct_colour, outline, sdf, table_background

EFFECTOR_FILL = np.array([0.93, 0.93, 0.93], np.float32)
EFFECTOR_RIM = np.array([0.12, 0.12, 0.12], np.float32)


class PusherEnv(gym.Env):
    """Push block 0 onto the goal ring (drawn in block 0's colour and shape).

    Action: 2-D in [-1, 1], the effector moves by ``action * max_step`` (world units; the table is
    [0, 1]^2). Reward: ``-distance(block 0, goal) + success_bonus * success`` (~[-1, 0] plus bonus).
    Episodes never terminate; they are truncated after ``max_episode_steps`` steps.
    ``info``: ``success`` (bool), ``state`` (float32: effector xy, block xys, goal xy), ``distance``,
    and the geometry a scripted policy needs (``effector_radius``, ``block_radii``, ``max_step``).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, size: int = 64, n_blocks: int = 1, max_episode_steps: int = 100,
                 max_step: float = 0.05, effector_radius: float = 0.07,
                 block_size: tuple[float, float] = (0.07, 0.1), success_threshold: float = 0.05,
                 success_bonus: float = 1.0, substeps: int = 4, render_mode: str | None = "rgb_array"):
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be 'rgb_array' or None, got {render_mode!r}")
        if int(size) < 8 or int(n_blocks) < 1 or int(max_episode_steps) < 1 or int(substeps) < 1:
            raise ValueError(f"need size >= 8, n_blocks >= 1, max_episode_steps >= 1, substeps >= 1; got "
                             f"size={size}, n_blocks={n_blocks}, max_episode_steps={max_episode_steps}, "
                             f"substeps={substeps}")
        self.size, self.n_blocks = int(size), int(n_blocks)
        self.max_episode_steps, self.substeps = int(max_episode_steps), int(substeps)
        self.max_step, self.effector_radius = float(max_step), float(effector_radius)
        self.block_size = (float(block_size[0]), float(block_size[1]))
        self.success_threshold, self.success_bonus = float(success_threshold), float(success_bonus)
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(0, 255, (self.size, self.size, 3), np.uint8)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.canvas = Canvas(self.size)
        self._frame = None

    # ---- episode set-up -------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        rng = self.np_random
        self.background = table_background(rng, self.canvas)
        table_rgb = self.background.reshape(-1, 3).mean(0) / 255.0
        self.kinds, self.sizes, self.colours = [], [], []
        for _ in range(self.n_blocks):
            self.kinds.append(SHAPES[int(rng.integers(len(SHAPES)))])
            self.sizes.append(float(rng.uniform(*self.block_size)))
            self.colours.append(distinct_colour(rng, [table_rgb, *self.colours]))
        self.bounds = np.array([BOUND[k] * s for k, s in zip(self.kinds, self.sizes)])
        self._bounds = [float(r) for r in self.bounds]
        self.outlines = [outline(k, s) for k, s in zip(self.kinds, self.sizes)]
        self._place(rng)
        self._apply_options(options or {})
        # The goal never moves: draw it once into the cached background.
        self.canvas.draw(self.background, self.kinds[0], *self.goal, self.sizes[0], self.colours[0],
                         ring=0.02)
        self.t = 0
        self._frame = self._render_frame()
        return self._frame, self._info()

    def _place(self, rng) -> None:
        """Blocks, goal and effector at random, not overlapping; blocks and goal away from the walls."""
        re, gap = self.effector_radius, 0.03
        for _ in range(1000):
            blocks = np.array([rng.uniform(0.12 + r, 0.88 - r, 2) for r in self.bounds])
            goal = rng.uniform(0.2, 0.8, 2)
            eff = rng.uniform(re, 1 - re, 2)
            ok = np.linalg.norm(goal - blocks[0]) > 0.25
            ok &= all(np.linalg.norm(eff - b) > r + re + gap for b, r in zip(blocks, self.bounds))
            for i in range(self.n_blocks):
                for j in range(i):
                    ok &= np.linalg.norm(blocks[i] - blocks[j]) > self.bounds[i] + self.bounds[j] + gap
            if ok:
                break
        else:
            raise ValueError(f"could not place {self.n_blocks} blocks without overlap; use fewer/smaller blocks")
        self.blocks = [[float(x), float(y)] for x, y in blocks]
        self.goal, self.effector = (float(goal[0]), float(goal[1])), [float(eff[0]), float(eff[1])]

    def _apply_options(self, options: dict) -> None:
        """``reset(options=...)`` may fix ``effector`` (x, y), ``blocks`` [[x, y], ...] and ``goal`` (x, y)
        (world units) instead of drawing them at random: for tests, demos and planning from a set state."""
        unknown = sorted(set(options) - {"effector", "blocks", "goal"})
        if unknown:
            raise ValueError(f"reset options: unknown key(s) {unknown}; valid: ['blocks', 'effector', 'goal']")
        if "effector" in options:
            self.effector = [float(v) for v in np.asarray(options["effector"], np.float64).reshape(2)]
        if "blocks" in options:
            blocks = np.asarray(options["blocks"], np.float64).reshape(-1, 2)
            if len(blocks) != self.n_blocks:
                raise ValueError(f"reset options: expected {self.n_blocks} block positions, got {len(blocks)}")
            self.blocks = [[float(x), float(y)] for x, y in blocks]
        if "goal" in options:
            self.goal = tuple(float(v) for v in np.asarray(options["goal"], np.float64).reshape(2))

    # ---- dynamics -------------------------------------------------------------------------------

    def step(self, action):
        a = np.clip(np.asarray(action, np.float64).reshape(2), -1.0, 1.0)
        dx, dy = (float(v) * self.max_step / self.substeps for v in a)
        for _ in range(self.substeps):
            self._substep(dx, dy)
        self.t += 1
        self._frame = self._render_frame()
        info = self._info()
        reward = -info["distance"] + self.success_bonus * info["success"]
        return self._frame, float(reward), False, self.t >= self.max_episode_steps, info

    # Positions are plain [x, y] lists of floats: per-step numpy calls on 2-vectors would cost more
    # than all the arithmetic they do.
    def _substep(self, dx: float, dy: float) -> None:
        re = self.effector_radius
        e = [_clip(self.effector[0] + dx, re, 1 - re), _clip(self.effector[1] + dy, re, 1 - re)]
        # 1) the effector pushes every block it penetrates out along the contact normal
        for i, b in enumerate(self.blocks):
            d, nx, ny = self._contact(i, e)
            if d < re:
                b[0] -= nx * (re - d)
                b[1] -= ny * (re - d)
        # 2) blocks push each other apart (the one being hit moves), then stay on the table
        for _ in range(2 if self.n_blocks > 1 else 1):
            for i in range(self.n_blocks):
                for j in range(self.n_blocks):
                    if i != j:
                        self._separate(i, j)
            for b, r in zip(self.blocks, self._bounds):
                b[0], b[1] = _clip(b[0], r, 1 - r), _clip(b[1], r, 1 - r)
        # 3) whatever cannot move (a block against a wall) pushes the effector back instead
        for i in range(self.n_blocks):
            d, nx, ny = self._contact(i, e)
            if d < re:
                e[0] += nx * (re - d)
                e[1] += ny * (re - d)
        self.effector = [_clip(e[0], re, 1 - re), _clip(e[1], re, 1 - re)]

    def _contact(self, i: int, point) -> tuple[float, float, float]:
        """Distance from ``point`` to block i's surface and the outward unit normal there."""
        rx, ry = point[0] - self.blocks[i][0], point[1] - self.blocks[i][1]
        if math.hypot(rx, ry) > self._bounds[i] + self.effector_radius:
            return math.inf, 0.0, 0.0  # far away: skip the SDF
        h = 1e-5
        d = sdf(self.kinds[i], np.array([rx, rx + h, rx]), np.array([ry, ry, ry + h]), self.sizes[i])
        nx, ny = float(d[1] - d[0]), float(d[2] - d[0])
        norm = max(math.hypot(nx, ny), 1e-12)
        return float(d[0]), nx / norm, ny / norm

    def _separate(self, i: int, j: int) -> None:
        """Move block j out of block i, using i's SDF at points on j's outline."""
        bi, bj = self.blocks[i], self.blocks[j]
        rx, ry = bj[0] - bi[0], bj[1] - bi[1]
        if math.hypot(rx, ry) > self._bounds[i] + self._bounds[j]:
            return
        pts = self.outlines[j] + np.array([rx, ry])
        d = sdf(self.kinds[i], pts[:, 0], pts[:, 1], self.sizes[i])
        k = int(np.argmin(d))
        if d[k] >= 0:
            return
        _, nx, ny = self._contact(i, (pts[k, 0] + bi[0], pts[k, 1] + bi[1]))
        bj[0] -= nx * float(d[k])
        bj[1] -= ny * float(d[k])

    # ---- observation, info, rendering ------------------------------------------------------------

    def _info(self) -> dict:
        dist = math.hypot(self.blocks[0][0] - self.goal[0], self.blocks[0][1] - self.goal[1])
        state = np.array([*self.effector, *(v for b in self.blocks for v in b), *self.goal], np.float32)
        return {"success": dist < self.success_threshold, "state": state, "distance": dist,
                "effector_radius": self.effector_radius, "block_radii": self.bounds.copy(),
                "max_step": self.max_step}

    def _render_frame(self) -> np.ndarray:
        frame = self.background.copy()
        for i in range(self.n_blocks):
            self.canvas.draw(frame, self.kinds[i], *self.blocks[i], self.sizes[i], self.colours[i])
        rim = max(0.02, 1.5 / self.size)  # at least ~1.5 px so the edge survives small renders
        self.canvas.draw(frame, "circle", *self.effector, self.effector_radius, EFFECTOR_FILL,
                         rim=rim, rim_colour=EFFECTOR_RIM)
        return frame

    def render(self):
        if self.render_mode != "rgb_array" or self._frame is None:
            return None
        return self._frame.copy()

    def designation(self) -> dict:
        """What an object-aware planning cost needs to find block 0 and the effector in this episode's frames
        (``planning.costs.ObjectKeypoints``): their colours, the table's mean colour, and the centre distance
        at which the effector touches block 0 (world units = frame widths: the table fills the frame)."""
        if self._frame is None:
            raise RuntimeError("designation() before reset(): there is no episode yet")
        return {"object_colour": self.colours[0].astype(np.float32), "effector_colour": EFFECTOR_FILL.copy(),
                "background_colour": self.background.reshape(-1, 3).mean(0).astype(np.float32) / 255.0,
                "reach": float(self.bounds[0]) + self.effector_radius}

    # ---- state save / restore (planning with the simulator as the model) -------------------------

    # Everything reset() draws or step() changes. The episode's scene (background with the goal drawn
    # in, shapes, colours) is part of the state so that a fresh env of the same size restores exactly.
    _STATE_FIELDS = ("background", "kinds", "sizes", "colours", "bounds", "_bounds", "outlines", "blocks", "goal",
                     "effector", "t", "_frame")

    def get_state(self) -> dict:
        """A deep copy of the episode state; ``set_state`` on this or another env of the same ``size`` and
        ``n_blocks`` makes the following ``step(a)`` give identical frames, rewards and infos."""
        if self._frame is None:
            raise RuntimeError("get_state() before reset(): there is no episode state yet")
        state = {k: copy.deepcopy(getattr(self, k)) for k in self._STATE_FIELDS}
        state["np_random"] = copy.deepcopy(self.np_random.bit_generator.state)
        state["size"], state["n_blocks"] = self.size, self.n_blocks
        return state

    def set_state(self, state: dict) -> None:
        """Restore a state from ``get_state`` (copied in, so the saved state stays reusable)."""
        missing = sorted(set(self._STATE_FIELDS) - set(state))
        if missing:
            raise ValueError(f"set_state: state misses {missing}; pass what get_state() returned")
        if (state["size"], state["n_blocks"]) != (self.size, self.n_blocks):
            raise ValueError(f"set_state: state is for size={state['size']}, n_blocks={state['n_blocks']}; this env "
                             f"has size={self.size}, n_blocks={self.n_blocks}")
        for k in self._STATE_FIELDS:
            setattr(self, k, copy.deepcopy(state[k]))
        self.np_random.bit_generator.state = copy.deepcopy(state["np_random"])


def _clip(v: float, lo: float, hi: float) -> float:
    return lo if v < lo else hi if v > hi else v
