"""Meta-World (``sim`` extra) as a Gymnasium pixel environment, plus its scripted experts.

``make('metaworld:hammer')`` (or ``'metaworld:hammer-v3'``) gives :class:`MetaWorldEnv`: 64x64 frames from
the ``corner4`` camera turned upright, action repeat and frame stack options, reward = Meta-World's reward
summed over the repeated steps plus ``success_bonus`` when the task is solved (as in the paper's MBRL code),
``info['success']`` and the low-dimensional state in ``info['state']`` (what the scripted experts read).

Reproducible instances. Meta-World's own ``MT1`` benchmark samples a list of 50 goal vectors with the
*global* ``np.random`` (seeded only while the list is made) and a wrapper picks one of them at every reset
with its own generator. Here there is no list: ``reset(seed=s)`` derives a seed for the Meta-World env's
generator from ``s`` and draws the instance vector (object and goal positions) from the same
``_random_reset_space`` MT1 samples from, so seed s always gives the same instance and different seeds give
different instances, with nothing global involved.

Rendering. ``MUJOCO_GL`` must be set before ``mujoco`` is first imported, so this module chooses it at
import: a value the user set is kept; otherwise EGL, then OSMesa, each tried by creating a GL context in a
subprocess. Frames are drawn with our own ``mujoco.Renderer`` with shadows, multisampling and reflections
off (measured ~13x faster on CPU than Meta-World's defaults, see paper-facts.md).
"""

from __future__ import annotations

import atexit
import copy
import difflib
import os
import subprocess
import sys
import warnings
import weakref
from collections import deque
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np

from ..errors import ConfigError
from .experts import NoisyExpert

GL_BACKENDS = ("egl", "osmesa")
GL_PACKAGES = "libegl1 libegl-mesa0 libgl1-mesa-dri (EGL) or libosmesa6 (OSMesa)"
GL_PROBE_TIMEOUT_S = 60
_GL_PROBE = "import mujoco; c = mujoco.GLContext(8, 8); c.make_current(); c.free()"


def _choose_gl(backends: tuple[str, ...] = GL_BACKENDS) -> str | None:
    """Set ``MUJOCO_GL`` to the first of ``backends`` that can create a context; return an error text or None."""
    if os.environ.get("MUJOCO_GL") or "mujoco" in sys.modules:
        return None  # the user's choice, or too late to change it: rendering will tell if it works
    tried = []
    # PyOpenGL's platform must agree with MuJoCo's backend: a user-set PYOPENGL_PLATFORM decides it.
    user_platform = os.environ.get("PYOPENGL_PLATFORM")
    for backend in (user_platform,) if user_platform in backends else backends:
        env = {**os.environ, "MUJOCO_GL": backend, "PYOPENGL_PLATFORM": backend}
        try:
            r = subprocess.run([sys.executable, "-c", _GL_PROBE], env=env, capture_output=True, text=True,
                               timeout=GL_PROBE_TIMEOUT_S)
            ok, why = r.returncode == 0, (r.stderr.strip().splitlines() or ["no output"])[-1]
        except (OSError, subprocess.TimeoutExpired) as e:
            ok, why = False, str(e)
        if ok:
            os.environ["MUJOCO_GL"] = backend
            return None
        tried.append(f"{backend}: {why}")
    return (f"no offscreen OpenGL for MuJoCo ({'; '.join(tried)}); install {GL_PACKAGES} "
            "(`make setup` does it on Debian/Ubuntu) or set MUJOCO_GL yourself")


_GL_ERROR = _choose_gl()

import mujoco  # noqa: E402  (after MUJOCO_GL is set)
from metaworld.env_dict import ALL_V3_ENVIRONMENTS, ML1_ARGS_KWARGS, MT10_V3  # noqa: E402
from metaworld.policies import ENV_POLICY_MAP  # noqa: E402

TASKS = list(ALL_V3_ENVIRONMENTS)
# Multi-task names (for `ivideogpt collect`): the standard Meta-World benchmark lists.
TASK_GROUPS = {"mt10": list(MT10_V3), "mt50": list(ALL_V3_ENVIRONMENTS)}
# The paper's six model-based RL tasks (Meta-World), handy for collecting its pre-training mix.
TASK_GROUPS["mbrl6"] = ["button-press-topdown-wall-v3", "plate-slide-v3", "hammer-v3", "door-lock-v3",
                        "handle-pull-side-v3", "coffee-push-v3"]
# MuJoCo state that fully determines the next physics step (positions, velocities, actuator state, time,
# mocap targets, solver warm start).
PHYSICS_STATE = mujoco.mjtState.mjSTATE_INTEGRATION
# Model arrays Meta-World rewrites at reset (object/goal placement) or that hold the mocap weld.
MODEL_FIELDS = ("body_pos", "body_quat", "site_pos", "site_quat", "eq_data")


def resolve_task(name: str) -> str:
    """'hammer' or 'hammer-v3' -> 'hammer-v3'; ConfigError naming close matches for anything else."""
    task = name if name.endswith("-v3") else f"{name}-v3"
    if task not in ALL_V3_ENVIRONMENTS:
        close = difflib.get_close_matches(task, TASKS, n=3)
        hint = f"; did you mean {close}?" if close else f"; tasks: {TASKS}"
        raise ConfigError(f"unknown Meta-World task '{name}'{hint}")
    return task


def expand_tasks(spec: str) -> list[str]:
    """'hammer' -> ['hammer-v3']; 'mt10' / 'mt50' / 'mbrl6' -> the group; 'a,b' -> [a-v3, b-v3]."""
    names = [s.strip() for s in spec.split(",") if s.strip()]
    if not names:
        raise ConfigError(f"Meta-World task list '{spec}' is empty; e.g. 'metaworld:hammer'")
    out = []
    for n in names:
        out += TASK_GROUPS[n.lower()] if n.lower() in TASK_GROUPS else [resolve_task(n)]
    return out


@dataclass
class MetaWorldState:
    """Everything ``step`` depends on, from :meth:`MetaWorldEnv.get_state` (restorable many times)."""

    task: str
    physics: np.ndarray
    model: dict
    python: dict
    frames: list
    t: int
    success: bool = False
    extra: dict = field(default_factory=dict)


def _plain(v) -> bool:
    """Values kept in a Meta-World env's ``__dict__`` that are episode state (not models, spaces, renderers)."""
    if v is None or isinstance(v, (bool, int, float, str, np.ndarray, np.generic)):
        return True
    if isinstance(v, (list, tuple)):
        return all(_plain(x) for x in v)
    if isinstance(v, dict):
        return all(isinstance(k, str) and _plain(x) for k, x in v.items())
    return False


def _live_view(v) -> bool:
    """True for an array that is a view into MuJoCo's own memory (e.g. Meta-World keeps ``init_left_pad =
    data.body('leftpad').xpos``, which then follows the simulation): such attributes must stay views, so
    they are neither saved nor overwritten; restoring the physics restores what they show."""
    if not isinstance(v, np.ndarray):
        return False
    while isinstance(v, np.ndarray) and v.base is not None:
        v = v.base
    return not isinstance(v, np.ndarray)


class MetaWorldEnv(gym.Env):
    """One Meta-World v3 task as a pixel environment (see the module docstring).

    ``size``: frame height and width; ``camera``: a Meta-World camera name; ``rotate180``: turn frames upright
    (the corner cameras render upside down); ``action_repeat``: Meta-World steps per action (reward summed,
    success if any of them succeeds); ``frame_stack``: observations are the last k frames [k, H, W, 3] (k=1:
    [H, W, 3]); ``max_episode_steps``: truncation, in actions; ``success_bonus``: added to the reward of a
    successful step; ``fast_render``: no shadows, multisampling or reflections.
    """

    def __init__(self, task: str, size: int = 64, camera: str = "corner4", rotate180: bool = True,
                 action_repeat: int = 2, frame_stack: int = 1, max_episode_steps: int = 100,
                 success_bonus: float = 10.0, fast_render: bool = True, render_mode: str | None = "rgb_array"):
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be 'rgb_array' or None, got {render_mode!r}")
        if int(size) < 8 or int(action_repeat) < 1 or int(frame_stack) < 1 or int(max_episode_steps) < 1:
            raise ValueError(f"need size >= 8, action_repeat >= 1, frame_stack >= 1, max_episode_steps >= 1; got "
                             f"size={size}, action_repeat={action_repeat}, frame_stack={frame_stack}, "
                             f"max_episode_steps={max_episode_steps}")
        if _GL_ERROR:
            raise ConfigError(_GL_ERROR)
        self.task = resolve_task(task)
        self.size, self.camera, self.rotate180 = int(size), str(camera), bool(rotate180)
        self.action_repeat, self.frame_stack = int(action_repeat), int(frame_stack)
        self.max_episode_steps, self.success_bonus = int(max_episode_steps), float(success_bonus)
        self.render_mode = render_mode
        self._mw = _make_task_env(self.task)
        model = self._mw.model
        if mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, self.camera) < 0:
            cams = [mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_CAMERA, i) for i in range(model.ncam)]
            raise ValueError(f"camera {camera!r} not in {self.task}; cameras: {cams}")
        if fast_render:
            model.vis.quality.shadowsize = 0
            model.vis.quality.offsamples = 0
        model.vis.global_.offwidth = max(model.vis.global_.offwidth, self.size)
        model.vis.global_.offheight = max(model.vis.global_.offheight, self.size)
        try:
            self._renderer = mujoco.Renderer(model, self.size, self.size)
        except Exception as e:  # GL errors come in many types, all mean "cannot render here"
            hint = "" if os.environ.get("MUJOCO_GL") else (
                " (mujoco was imported before ivideogpt.envs.metaworld, so MUJOCO_GL could not be chosen: "
                "set MUJOCO_GL=egl or osmesa)")
            raise ConfigError(f"MuJoCo cannot render offscreen with MUJOCO_GL={os.environ.get('MUJOCO_GL')!r}"
                              f"{hint} ({e}); install {GL_PACKAGES} or choose another MUJOCO_GL") from None
        _close_at_exit(self)
        if fast_render:
            self._renderer.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
        frame_shape = (self.size, self.size, 3)
        shape = frame_shape if self.frame_stack == 1 else (self.frame_stack, *frame_shape)
        self.observation_space = gym.spaces.Box(0, 255, shape, np.uint8)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
        dt = float(model.opt.timestep) * self._mw.frame_skip * self.action_repeat
        self.metadata = {"render_modes": ["rgb_array"], "render_fps": round(1.0 / dt)}
        self._frames: deque = deque(maxlen=self.frame_stack)
        self._state, self._success, self.t = None, False, 0

    # ---- gymnasium API ----------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if options:
            raise ValueError(f"reset options are not supported by {self.task}, got {sorted(options)}")
        # The instance (object/goal placement) comes from the Meta-World env's generator, seeded from ours.
        self._mw.seed(int(self.np_random.integers(2**31 - 1)))
        state, _ = self._mw.reset()
        self._state, self._success, self.t = state, False, 0
        frame = self._render_frame()
        self._frames.clear()
        self._frames.extend([frame] * self.frame_stack)
        return self._obs(), self._info()

    def step(self, action):
        if self._state is None:
            raise RuntimeError("call reset() before step()")
        a = np.asarray(action, np.float32).reshape(-1)
        if a.shape != (4,) or not np.isfinite(a).all():
            raise ValueError(f"action must be 4 finite numbers, got {np.asarray(action).tolist()}")
        a = np.clip(a, -1.0, 1.0)
        reward, success = 0.0, False
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # gymnasium's passive checker warns about float64 state obs
            for _ in range(self.action_repeat):
                self._state, r, _, _, info = self._mw.step(a)
                reward += float(r)
                success = success or bool(info["success"])
        self._success = success
        if success:
            reward += self.success_bonus
        self.t += 1
        self._frames.append(self._render_frame())
        return self._obs(), reward, False, self.t >= self.max_episode_steps, self._info()

    def render(self):
        return self._frames[-1].copy() if self._frames else None

    def close(self):
        if getattr(self, "_renderer", None) is not None:
            self._renderer.close()
            self._renderer = None
        if getattr(self, "_mw", None) is not None:
            self._mw.close()

    def config(self) -> dict:
        """The settings that shape the data (recorded in collected datasets)."""
        return {"task": self.task, "size": self.size, "camera": self.camera, "rotate180": self.rotate180,
                "action_repeat": self.action_repeat, "frame_stack": self.frame_stack,
                "max_episode_steps": self.max_episode_steps, "success_bonus": self.success_bonus}

    # ---- state save / restore (for planners that branch from the real state) -------------------------

    def get_state(self) -> MetaWorldState:
        """A snapshot of everything the next ``step`` depends on (physics, Meta-World's Python-side episode
        state, our frame stack and step counter)."""
        if self._state is None:
            raise RuntimeError("call reset() before get_state()")
        mw = self._mw
        physics = np.empty(mujoco.mj_stateSize(mw.model, PHYSICS_STATE))
        mujoco.mj_getState(mw.model, mw.data, physics, PHYSICS_STATE)
        python = {k: copy.deepcopy(v) for k, v in vars(mw).items() if _plain(v) and not _live_view(v)}
        return MetaWorldState(task=self.task, physics=physics,
                              model={f: getattr(mw.model, f).copy() for f in MODEL_FIELDS}, python=python,
                              frames=[f.copy() for f in self._frames], t=self.t, success=self._success,
                              extra={"state": self._state.copy()})

    def set_state(self, state: MetaWorldState) -> None:
        """Restore a :meth:`get_state` snapshot of this env or of another env of the same task."""
        if not isinstance(state, MetaWorldState) or state.task != self.task:
            got = state.task if isinstance(state, MetaWorldState) else type(state).__name__
            raise ValueError(f"set_state: expected a MetaWorldState of {self.task}, got {got}")
        if len(state.frames) != self.frame_stack:
            raise ValueError(f"set_state: state has {len(state.frames)} stacked frames, env uses {self.frame_stack}")
        mw = self._mw
        for f in MODEL_FIELDS:
            getattr(mw.model, f)[:] = state.model[f]
        for k, v in state.python.items():
            setattr(mw, k, copy.deepcopy(v))
        mujoco.mj_setState(mw.model, mw.data, state.physics, PHYSICS_STATE)
        mujoco.mj_forward(mw.model, mw.data)  # derived quantities (positions, contacts) for rendering
        # mj_forward rewrites the solver warm start, which changes the next step in the last bits: put it back.
        mujoco.mj_setState(mw.model, mw.data, state.physics, PHYSICS_STATE)
        self._frames.clear()
        self._frames.extend(f.copy() for f in state.frames)
        self.t, self._success, self._state = state.t, state.success, state.extra["state"].copy()

    # ---- helpers ----------------------------------------------------------------------------------

    def _render_frame(self) -> np.ndarray:
        self._renderer.update_scene(self._mw.data, camera=self.camera)
        frame = self._renderer.render()
        return np.ascontiguousarray(frame[::-1, ::-1] if self.rotate180 else frame)

    def _obs(self) -> np.ndarray:
        if self.frame_stack == 1:
            return self._frames[-1].copy()
        return np.stack(self._frames)

    def _info(self) -> dict:
        return {"success": self._success, "state": self._state.copy(), "task": self.task}


_LIVE_ENVS: weakref.WeakSet = weakref.WeakSet()


def _close_at_exit(env: MetaWorldEnv) -> None:
    """Free GL contexts before MuJoCo's own exit hook terminates the EGL display (registered when the first
    context is made, so a hook registered after it runs before it); otherwise every live renderer prints an
    EGLError from ``__del__`` at interpreter exit."""
    if not _LIVE_ENVS and not getattr(_close_at_exit, "registered", False):
        atexit.register(lambda: [e.close() for e in list(_LIVE_ENVS)])
        _close_at_exit.registered = True
    _LIVE_ENVS.add(env)


def _make_task_env(task: str):
    """A Meta-World env of ``task`` with the goal in its state vector and a fresh instance per seeded reset."""
    env = ALL_V3_ENVIRONMENTS[task](render_mode=None)
    kwargs = {k: v for k, v in ML1_ARGS_KWARGS[task]["kwargs"].items() if k != "task_id"}
    env._set_task_inner(**kwargs)
    env._set_task_called = True
    # As in the multi-task benchmarks: the goal is part of the state (the scripted policies read it).
    env._partially_observable = False
    del env.sawyer_observation_space  # a cached property: recomputed for the new observability
    # Draw each instance from the env's own (seeded) generator instead of a frozen vector.
    env._freeze_rand_vec = False
    env.seeded_rand_vec = True
    # Our wrapper truncates episodes; Meta-World's own limit (500 steps) would raise instead.
    env.max_path_length = np.iinfo(np.int64).max
    return env


class MetaWorldExpert(NoisyExpert):
    """Meta-World's scripted policy for ``task`` (``metaworld.policies``) with Gaussian noise and
    epsilon-random bursts (see :class:`NoisyExpert`). Reads ``info['state']``."""

    def __init__(self, task: str, noise: float = 0.1, epsilon: float = 0.0, seed: int | None = None,
                 burst: tuple[int, int] = (2, 6)):
        self.task = resolve_task(task)
        self.policy = ENV_POLICY_MAP[self.task]()
        super().__init__(action_dim=4, noise=noise, epsilon=epsilon, seed=seed, burst=burst)

    def scripted(self, info: dict) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Constant(s) may be too high": the env clips actions anyway
            return np.asarray(self.policy.get_action(np.asarray(info["state"], np.float64)), np.float64)


__all__ = ["MetaWorldEnv", "MetaWorldExpert", "MetaWorldState", "TASKS", "TASK_GROUPS", "expand_tasks",
           "resolve_task"]
