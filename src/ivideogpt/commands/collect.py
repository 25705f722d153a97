"""``ivideogpt collect``: run a scripted expert in an environment and write an episode dataset.

Episode i is seeded from (seed, i) alone, so an interrupted collection resumed with ``--resume``
produces exactly the data of an uninterrupted one.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ..config import parse_override
from ..errors import ConfigError, DataError


def add_arguments(p) -> None:
    p.add_argument("--env", default="pusher", help="environment name (default: pusher)")
    p.add_argument("--episodes", type=int, required=True, help="number of episodes in the dataset")
    p.add_argument("--steps", type=int, required=True, help="frames per episode (T frames, T-1 actions)")
    p.add_argument("--noise", type=float, default=0.1, help="std of Gaussian noise on expert actions")
    p.add_argument("--epsilon", type=float, default=0.0,
                   help="probability of starting a burst of random actions (default 0)")
    p.add_argument("--size", type=int, default=64, help="frame size in pixels (default 64)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue an interrupted collection in --out")
    p.add_argument("--out", required=True, help="dataset directory to create")
    p.add_argument("--env-kwargs", nargs="*", default=[], metavar="KEY=VALUE",
                   help="extra environment arguments, e.g. n_blocks=2 (values parsed as YAML)")
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


def run(args) -> int:
    collect(args.env, args.out, episodes=args.episodes, steps=args.steps, noise=args.noise, epsilon=args.epsilon,
            size=args.size, seed=args.seed, resume=args.resume, env_kwargs=_env_kwargs(args.env_kwargs),
            progress=not args.no_progress)
    return 0


def collect(env_name: str, out, *, episodes: int, steps: int, noise: float = 0.1, epsilon: float = 0.0,
            size: int = 64, seed: int = 0, resume: bool = False, env_kwargs: dict | None = None,
            progress: bool = True) -> Path:
    """Collect ``episodes`` expert episodes of ``steps`` frames into the dataset directory ``out``."""
    from tqdm import tqdm

    from ..data.episodes import EpisodeWriter, episode_dir
    from ..envs import make, make_expert

    if episodes < 1 or steps < 2:
        raise ConfigError(f"need --episodes >= 1 and --steps >= 2, got {episodes} and {steps}")
    kwargs = {"size": size, "max_episode_steps": steps - 1, **(env_kwargs or {})}
    env = make(env_name, **kwargs)
    expert = make_expert(env_name, noise=noise, epsilon=epsilon)
    # JSON round trip so the comparison on --resume sees what is on disk (tuples become lists).
    extra = json.loads(json.dumps({"env": env_name, "env_kwargs": kwargs, "noise": noise,
                                   "epsilon": epsilon, "steps": steps, "seed": seed}))
    out = Path(out)
    if resume:
        _check_resume(out, extra)
    h, w = env.observation_space.shape[:2]
    t0 = time.perf_counter()
    with EpisodeWriter(out, image_size=(h, w), action_dim=env.action_space.shape[0],
                       fps=env.metadata.get("render_fps", 10), source=env_name, extra=extra,
                       resume=resume, seed=seed) as writer:
        start = writer.num_episodes
        for i in tqdm(range(start, episodes), initial=start, total=episodes, unit="ep",
                      desc=f"collect {env_name}", disable=not progress):
            env_seed, expert_seed = episode_seeds(seed, i)
            frames, actions, rewards, success = _episode(env, expert, steps, env_seed, expert_seed)
            writer.add_episode(frames, actions, rewards, success)
        n = writer.num_episodes
    # Success rate over the whole dataset (resumed parts included): read back the small files.
    ok = [np.load(episode_dir(out, i) / "success.npy")[-1] for i in range(n)]
    print(f"collected {n} episodes ({n - start} new), {n * steps} frames, "
          f"success {np.mean(ok):.0%} (at the last step), {time.perf_counter() - t0:.1f} s -> {out}")
    return out


def _episode(env, expert, steps: int, env_seed: int, expert_seed: int):
    """One episode: ``steps`` frames (frame 0 from reset), ``steps - 1`` actions, rewards, successes."""
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
    return frames, actions, rewards, success
