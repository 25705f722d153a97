"""``ivideogpt collect``: run a scripted expert in an environment and write an episode dataset.

Episode i is seeded from (seed, i) alone, and in a multi-task collection (``--env metaworld:mt10`` or
``metaworld:hammer,plate-slide``) its task is task ``i % n_tasks``, so an interrupted collection resumed with
``--resume``, or one run with any ``--workers``, produces exactly the data of an uninterrupted one. Worker
processes only produce episodes; the parent process writes them in episode order through one
:class:`EpisodeWriter`, so ``meta.json`` stays consistent. Each episode records its task in its info.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ..config import parse_override
from ..errors import ConfigError, DataError

# Episodes a worker is handed at a time: small, so the writer is never far behind and progress stays smooth.
WORKER_CHUNKSIZE = 1


def add_arguments(p) -> None:
    p.add_argument("--env", default="pusher",
                   help="environment name (default: pusher); 'metaworld:<task>' (sim extra), or several Meta-World "
                        "tasks: 'metaworld:mt10', 'metaworld:mbrl6', 'metaworld:hammer,plate-slide' (round robin)")
    p.add_argument("--episodes", type=int, required=True, help="number of episodes in the dataset")
    p.add_argument("--steps", type=int, required=True, help="frames per episode (T frames, T-1 actions)")
    p.add_argument("--noise", type=float, default=0.1, help="std of Gaussian noise on expert actions")
    p.add_argument("--epsilon", type=float, default=0.0,
                   help="probability of starting a burst of random actions (default 0)")
    p.add_argument("--size", type=int, default=64, help="frame size in pixels (default 64)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1,
                   help="worker processes producing episodes (default 1: in this process); the data does not "
                        "depend on it")
    p.add_argument("--resume", action="store_true", help="continue an interrupted collection in --out")
    p.add_argument("--shard-size", type=int, default=None, metavar="N",
                   help="write the sharded store with N episodes per shard file (default: one directory per episode)")
    p.add_argument("--writer", default=None, metavar="I/N",
                   help="sharded store: this process writes shards I, I+N, I+2N, ... of the collection (run N "
                        "processes with I = 0..N-1 into the same --out; the result equals one writer's)")
    p.add_argument("--out", required=True, help="dataset directory to create")
    p.add_argument("--env-kwargs", nargs="*", default=[], metavar="KEY=VALUE",
                   help="extra environment arguments, e.g. n_blocks=2 or action_repeat=2 (values parsed as YAML)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def episode_seeds(seed: int, i: int) -> tuple[int, int]:
    """(environment reset seed, expert seed) of episode i: depends on (seed, i) only."""
    env_seed, expert_seed = np.random.SeedSequence([seed, i]).generate_state(2)
    return int(env_seed), int(expert_seed)


def _env_kwargs(items: list[str]) -> dict:
    kwargs = {}
    for item in items:
        keys, value = parse_override(item)
        if len(keys) != 1:
            raise ConfigError(f"--env-kwargs {item}: expected key=value with a plain key")
        kwargs[keys[0]] = value
    return kwargs


def _check_resume(out: Path, extra: dict) -> None:
    """Refuse to append episodes collected with different settings to an existing dataset."""
    meta_path = out / "meta.json"
    if not meta_path.exists():
        return  # EpisodeWriter says what is wrong with the directory
    try:
        old = json.loads(meta_path.read_text()).get("extra", {})
    except (OSError, ValueError, AttributeError):
        return
    for key, new in extra.items():
        if key in old and old[key] != new:
            raise DataError(f"{meta_path}: cannot resume: {key} is {old[key]!r} on disk, got {new!r}")


def parse_writer(text: str | None) -> tuple[int, int]:
    """'I/N' -> (I, N); None -> (0, 1)."""
    if text is None:
        return 0, 1
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ConfigError(f"--writer {text}: expected I/N with integers, e.g. 0/4") from None
    if not 0 <= i < n:
        raise ConfigError(f"--writer {text}: need 0 <= I < N")
    return i, n


def run(args) -> int:
    writer, num_writers = parse_writer(args.writer)
    if num_writers > 1 and args.shard_size is None:
        raise ConfigError("--writer needs --shard-size (several writers fill disjoint shards of a sharded store)")
    collect(args.env, args.out, episodes=args.episodes, steps=args.steps, noise=args.noise, epsilon=args.epsilon,
            size=args.size, seed=args.seed, resume=args.resume, env_kwargs=_env_kwargs(args.env_kwargs),
            progress=not args.no_progress, workers=args.workers, shard_size=args.shard_size, writer=writer,
            num_writers=num_writers)
    return 0


class EpisodeMaker:
    """Makes episode i of a collection: a pure function of (settings, i). One per process; environments
    and experts are built on first use and reused (reset(seed) makes every episode independent)."""

    def __init__(self, tasks: list[str], env_kwargs: dict, noise: float, epsilon: float, steps: int, seed: int):
        self.tasks, self.env_kwargs = list(tasks), dict(env_kwargs)
        self.noise, self.epsilon, self.steps, self.seed = float(noise), float(epsilon), int(steps), int(seed)
        self._built: dict = {}

    def __getstate__(self):  # sent to worker processes without the environments built here
        return {**self.__dict__, "_built": {}}

    def task(self, i: int) -> str:
        return self.tasks[i % len(self.tasks)]

    def env(self, name: str):
        from ..envs import make, make_expert

        if name not in self._built:
            self._built[name] = (make(name, **self.env_kwargs),
                                 make_expert(name, noise=self.noise, epsilon=self.epsilon))
        return self._built[name]

    def __call__(self, i: int) -> tuple[int, dict]:
        name = self.task(i)
        env, expert = self.env(name)
        env_seed, expert_seed = episode_seeds(self.seed, i)
        frames, actions, rewards, success, labels = _episode(env, expert, self.steps, env_seed, expert_seed)
        return i, {"frames": frames, "actions": actions, "rewards": rewards, "success": success,
                   "info": {"task": name, **labels}}


_WORKER_MAKER: EpisodeMaker | None = None


def _init_worker(maker: EpisodeMaker) -> None:
    global _WORKER_MAKER
    _WORKER_MAKER = maker


def _worker_episode(i: int):
    return _WORKER_MAKER(i)


def collect(env_name: str, out, *, episodes: int, steps: int, noise: float = 0.1, epsilon: float = 0.0,
            size: int = 64, seed: int = 0, resume: bool = False, env_kwargs: dict | None = None,
            progress: bool = True, workers: int = 1, shard_size: int | None = None, writer: int = 0,
            num_writers: int = 1) -> Path:
    """Collect ``episodes`` expert episodes of ``steps`` frames into the dataset directory ``out`` (the sharded
    store with ``shard_size``; ``writer``/``num_writers``: this process's share of its shards)."""
    from tqdm import tqdm

    from ..data.episodes import EpisodeDataset
    from ..data.shards import open_writer
    from ..envs.registry import expand

    if episodes < 1 or steps < 2:
        raise ConfigError(f"need --episodes >= 1 and --steps >= 2, got {episodes} and {steps}")
    if workers < 1:
        raise ConfigError(f"need --workers >= 1, got {workers}")
    tasks = expand(env_name)
    kwargs = {"size": size, "max_episode_steps": steps - 1, **(env_kwargs or {})}
    maker = EpisodeMaker(tasks, kwargs, noise, epsilon, steps, seed)
    env, _ = maker.env(tasks[0])  # built here too: it checks the arguments and gives the frame size
    if env.observation_space.shape[-1:] != (3,) or len(env.observation_space.shape) != 3:
        raise ConfigError(f"environment '{tasks[0]}': collect needs single RGB frames [H, W, 3], got observations "
                          f"of shape {list(env.observation_space.shape)} (frame_stack must be 1)")
    # JSON round trip so the comparison on --resume sees what is on disk (tuples become lists).
    extra = json.loads(json.dumps({"env": env_name, "env_kwargs": kwargs, "noise": noise,
                                   "epsilon": epsilon, "steps": steps, "seed": seed}))
    if len(tasks) > 1:
        extra["tasks"] = tasks
    if callable(getattr(env, "config", None)):  # the effective settings, defaults included
        extra["env_config"] = {k: v for k, v in json.loads(json.dumps(env.config())).items() if k != "task"}
    out = Path(out)
    if resume:
        _check_resume(out, extra)
    h, w = env.observation_space.shape[:2]
    t0 = time.perf_counter()
    with open_writer(out, image_size=(h, w), action_dim=env.action_space.shape[0],
                     fps=env.metadata.get("render_fps", 10), source=env_name, extra=extra,
                     resume=resume, seed=seed, shard_size=shard_size, writer=writer,
                     num_writers=num_writers) as w:
        start = w.num_episodes
        # This process's episodes: all of them, or those of its shards (shard k holds [k*S, (k+1)*S)).
        todo = [i for i in range(w.next_episode, episodes)
                if num_writers == 1 or (i // shard_size) % num_writers == writer]
        bar = tqdm(total=start + len(todo), initial=start, unit="ep", desc=f"collect {env_name}",
                   disable=not progress)
        if workers == 1 or len(todo) <= 1:
            results = map(maker, todo)
            pool = None
        else:
            import multiprocessing as mp

            # spawn, not fork: a forked child would share the parent's GL context and MuJoCo state.
            pool = mp.get_context("spawn").Pool(min(workers, len(todo)), initializer=_init_worker,
                                                initargs=(maker,))
            results = pool.imap(_worker_episode, todo, chunksize=WORKER_CHUNKSIZE)
        try:
            for i, ep in results:  # in episode order whatever the worker count
                assert i == w.next_episode, (i, w.next_episode)
                w.add_episode(ep["frames"], ep["actions"], ep["rewards"], ep["success"], info=ep["info"])
                bar.update(1)
        finally:
            bar.close()
            if pool is not None:
                pool.terminate()
                pool.join()
        n = w.num_episodes
    if num_writers > 1:
        print(f"writer {writer}/{num_writers}: collected {n} episodes ({n - start} new) -> {out}")
        return out
    elapsed = time.perf_counter() - t0
    new_steps = (n - start) * (steps - 1)
    # Success over the whole dataset (resumed parts included): read back the small files.
    ds = EpisodeDataset(out)
    n = len(ds)
    ok = [bool(ds.rows(i, "success", -1)[0]) if ds.has_success else False for i in range(n)]
    print(f"collected {n} episodes ({n - start} new), {n * steps} frames, "
          f"success {np.mean(ok):.0%} (at the last step), {elapsed:.1f} s "
          f"({new_steps / max(elapsed, 1e-9):.1f} env steps/s, {workers} worker(s)) -> {out}")
    if len(tasks) > 1:
        per_task: dict[str, list[bool]] = {}
        for i in range(n):
            per_task.setdefault(ds.episode_info(i).get("task", "?"), []).append(ok[i])
        print("success by task: " + ", ".join(f"{t.partition(':')[2] or t} {np.mean(v):.0%} ({len(v)})"
                                               for t, v in per_task.items()))
    return out


def _episode(env, expert, steps: int, env_seed: int, expert_seed: int):
    """One episode: ``steps`` frames (frame 0 from reset), ``steps - 1`` actions, rewards, successes, and the
    labels the environment gives the episode (``info["labels"]``, e.g. a hidden behaviour; for evaluation)."""
    obs, info = env.reset(seed=env_seed)
    expert.reset(expert_seed)
    frames = np.empty((steps, *obs.shape), np.uint8)
    actions = np.empty((steps - 1, env.action_space.shape[0]), np.float32)
    rewards = np.empty(steps - 1, np.float32)
    success = np.empty(steps - 1, bool)
    frames[0] = obs
    for t in range(steps - 1):
        actions[t] = expert.act(obs, info)
        obs, rewards[t], _, _, info = env.step(actions[t])
        frames[t + 1] = obs
        success[t] = info["success"]
    return frames, actions, rewards, success, dict(info.get("labels") or {})
