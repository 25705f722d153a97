"""Does FVD behave? A set of videos against itself (~0), against another sample of the same
distribution, and against copies degraded by noise, blur (3 levels each) or shuffled frame order.

    .venv/bin/python benchmarks/fvd_sanity.py [--videos 16] [--frames 16]

Videos: episodes of the built-in pusher environment (scripted expert with noise), 64x64; if
`ivideogpt.envs` is unavailable, smooth synthetic moving shapes. Features: our PyTorch port of the
TF-Hub I3D. FVD is biased upwards with few videos (the covariances have rank <= N - 1): compare the
rows with each other, not with published numbers (computed on 256+ videos).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import scipy.ndimage

from ivideogpt.errors import CheckpointError
from ivideogpt.eval.frechet import feature_stats, frechet_distance
from ivideogpt.eval.i3d import load_i3d


def pusher_videos(n: int, t: int, seed: int) -> np.ndarray:
    from ivideogpt.envs import make, make_expert

    env, expert = make("pusher", n_blocks=2), make_expert("pusher", noise=0.3, epsilon=0.3, seed=seed)
    out = []
    for i in range(n):
        obs, info = env.reset(seed=seed * 100_000 + i)
        expert.reset(seed * 100_000 + i)
        frames = [obs]
        for _ in range(t - 1):
            obs, _, _, _, info = env.step(expert.act(obs, info))
            frames.append(obs)
        out.append(np.stack(frames))
    return np.stack(out)


def make_videos(n: int, t: int, seed: int) -> tuple[np.ndarray, str]:
    try:
        return pusher_videos(n, t, seed), "pusher episodes (2 blocks, noisy expert)"
    except ImportError:
        from i3d_parity import smooth_videos

        return smooth_videos(n, t, seed=seed), "synthetic moving shapes"


def add_noise(v: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(v + rng.normal(0, sigma, v.shape), 0, 255).round().astype(np.uint8)


def blur(v: np.ndarray, sigma: float) -> np.ndarray:
    # Spatial Gaussian blur of every frame (not across time or channels).
    out = scipy.ndimage.gaussian_filter(v.astype(np.float32), sigma=(0, 0, sigma, sigma, 0))
    return np.clip(out, 0, 255).round().astype(np.uint8)


def shuffle_time(v: np.ndarray, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([x[rng.permutation(len(x))] for x in v])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=16, help="videos per set")
    ap.add_argument("--frames", type=int, default=16)
    args = ap.parse_args()
    try:
        model = load_i3d()
    except CheckpointError as e:
        print(f"FVD not computed: {e}")
        return 1

    n, t = args.videos, args.frames
    real, source = make_videos(n, t, seed=1)
    other, _ = make_videos(n, t, seed=2)
    print(f"{n} videos x {t} frames of {source}, {real.shape[2]}x{real.shape[3]}; I3D port features")
    cases = [("same videos", real), ("another sample, same distribution", other)]
    cases += [(f"Gaussian noise sigma={s} (of 255)", add_noise(real, s)) for s in (4, 16, 64)]
    cases += [(f"spatial blur sigma={s} px", blur(real, s)) for s in (0.5, 1.0, 2.0)]
    cases += [("frames shuffled in time", shuffle_time(real))]

    t0 = time.time()
    stats_real = feature_stats(model.features(real))
    print(f"{'fake side':<36} {'FVD':>10}")
    for name, fake in cases:
        value = frechet_distance(*stats_real, *feature_stats(model.features(fake)))
        print(f"{name:<36} {value:>10.2f}", flush=True)
    print(f"({(len(cases) + 1) * n} videos through the I3D in {time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
