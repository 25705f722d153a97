"""Steps per second of the built-in pusher env (physics + rendering), one process, pure numpy.

    .venv/bin/python benchmarks/pusher_speed.py [--steps 5000] [--sizes 32 64 128] [--blocks 1 3]

Random actions with episodes reset every 100 steps (the reset cost, which renders the textured
background, is included). The issue asks for >= 1000 steps/s at 64x64 on one core.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from ivideogpt.envs import make, make_expert


def steps_per_second(size: int, n_blocks: int, steps: int, expert: bool = False, episode: int = 100) -> float:
    env = make("pusher", size=size, n_blocks=n_blocks, max_episode_steps=episode)
    policy = make_expert("pusher", noise=0.1, seed=0) if expert else None
    rng = np.random.default_rng(0)
    obs, info = env.reset(seed=0)
    start = time.perf_counter()
    for t in range(1, steps + 1):
        action = policy.act(obs, info) if policy else rng.uniform(-1, 1, 2)
        obs, _, _, truncated, info = env.step(action)
        if truncated:
            obs, info = env.reset(seed=t)
    return steps / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=5000)
    p.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 128])
    p.add_argument("--blocks", type=int, nargs="+", default=[1, 3])
    args = p.parse_args()
    print(f"{'size':>5} {'blocks':>6} {'policy':>7} {'steps/s':>9}")
    for size in args.sizes:
        for n in args.blocks:
            for expert in (False, True):
                sps = steps_per_second(size, n, args.steps, expert)
                print(f"{size:>5} {n:>6} {'expert' if expert else 'random':>7} {sps:>9.0f}")


if __name__ == "__main__":
    main()
