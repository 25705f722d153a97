"""Reading 16-frame clips: memory-mapped slices vs loading whole episodes.

Builds two datasets like the real ones in a temporary directory -- many short episodes (200 x 32
frames, 64x64) and a few long ones (10 x 500 frames, 128x128) -- then times, side by side in
interleaved rounds, random 16-frame clips read as
  - ``ClipDataset`` items (float [-1, 1] tensors, actions, rewards; no augmentation),
  - raw ``EpisodeDataset.frames`` slices (uint8, memory-mapped),
  - the whole episode with ``np.load`` (no mmap), then sliced (what a naive loader does), raw and
    converted with ``to_model`` like a ClipDataset item.
Files are in the page cache (just written), so this measures CPU/memory cost, not the disk.
Torch runs single-threaded, as in DataLoader workers (on a loaded 2-core machine two intra-op
threads made the uint8 -> float conversion ~30x slower).

    .venv/bin/python benchmarks/clip_read.py [--rounds 5] [--clips 200]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ivideogpt.data import ClipDataset, EpisodeDataset, EpisodeWriter
from ivideogpt.data.episodes import episode_dir
from ivideogpt.frames import to_model

CLIP = 16


def build(path: Path, episodes: int, length: int, size: int, seed: int) -> EpisodeDataset:
    rng = np.random.default_rng(seed)
    with EpisodeWriter(path, image_size=(size, size), action_dim=4, source="bench") as w:
        for _ in range(episodes):
            w.add_episode(rng.integers(0, 256, (length, size, size, 3), dtype=np.uint8),
                          rng.normal(size=(length - 1, 4)), rng.normal(size=length - 1))
    return EpisodeDataset(path)


def load_whole(ds: EpisodeDataset, ep: int) -> np.ndarray:
    return np.load(episode_dir(ds.path, ep) / "frames.npy")


def bench(ds: EpisodeDataset, clips: int, rounds: int, seed: int) -> dict[str, float]:
    cd = ClipDataset(ds, CLIP, split="train", seed=seed)
    picks = [cd.locate(k)[:3] for k in range(clips)]  # same (episode, start) for every method
    methods = {
        "ClipDataset item": lambda k, ep, st: cd[k],
        "EpisodeDataset.frames": lambda k, ep, st: ds.frames(ep, st, st + CLIP),
        "np.load whole episode": lambda k, ep, st: load_whole(ds, ep)[st:st + CLIP],
        "np.load whole + to_model": lambda k, ep, st: to_model(load_whole(ds, ep)[st:st + CLIP]).contiguous(),
    }
    times = {name: [] for name in methods}
    for _ in range(rounds):
        for name, fn in methods.items():  # interleaved so machine noise hits every method alike
            t0 = time.perf_counter()
            for k, (_, ep, st) in enumerate(picks):
                fn(k, ep, st)
            times[name].append(time.perf_counter() - t0)
    return {name: clips / statistics.median(ts) for name, ts in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--clips", type=int, default=200)
    args = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        sets = {
            "200 x 32 frames, 64x64": build(Path(tmp) / "short", 200, 32, 64, 0),
            "10 x 500 frames, 128x128": build(Path(tmp) / "long", 10, 500, 128, 1),
        }
        print(f"built datasets in {time.perf_counter() - t0:.1f} s; {args.clips} random {CLIP}-frame clips, "
              f"median of {args.rounds} interleaved rounds")
        for label, ds in sets.items():
            rates = bench(ds, args.clips, args.rounds, seed=0)
            base = rates["np.load whole episode"]
            print(f"\n{label}")
            for name, r in rates.items():
                print(f"  {name:<24} {r:9.0f} clips/s   {r / base:6.2f}x vs whole-episode np.load")


if __name__ == "__main__":
    main()
