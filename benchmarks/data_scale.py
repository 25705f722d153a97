"""Episode storage at pre-training scale: the per-episode format vs the sharded store, side by side in one run.

Writes N synthetic episodes (T frames of SxS) in both formats into a temporary directory and measures:
  - write time: the sharded store through ``ShardWriter`` (what ``collect/import --shard-size`` use); the
    per-episode format through a bulk path that writes the same files and one ``meta.json`` at the end, because
    ``EpisodeWriter`` rewrites ``meta.json`` (and re-sorts the splits) after every episode: its cost per episode
    is measured at a small count and, for the meta rewrite, at the full size N (whence the extrapolated total),
  - open time: ``EpisodeDataset(path)`` in a fresh process (cold Python objects; files in the page cache),
  - random clip reads per second through ``ClipDataset`` + ``DataLoader`` with 0, 2 and 4 workers (the training
    read path: uint8 -> float, no augmentation), both formats interleaved,
  - peak RSS per worker (ru_maxrss, and its growth while reading: the per-episode reader caches each touched
    episode's .npy headers; the sharded reader caches nothing per episode),
  - files and bytes on disk.
Then the sharded store alone at a larger count (default 100 000: the per-episode format's 300 000 files take
too long to write on a loaded 2-core machine), and the RLDS import speed on a TFRecord fixture (JPEG frames,
nested actions) of realistic size.
Everything written is deleted at the end.

    .venv/bin/python benchmarks/data_scale.py [--episodes 10000] [--shards-only-episodes 100000] [--frames 16]
        [--size 32] [--items 400]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ivideogpt.data import ClipDataset, EpisodeDataset, EpisodeWriter
from ivideogpt.data.episodes import (
    EPISODES,
    FORMAT,
    META,
    VERSION,
    _empty_state,
    _merge_state,
    _public_stats,
    assign_splits,
    episode_dir,
    split_key,
)
from ivideogpt.data.shards import ShardWriter
from ivideogpt.fileio import atomic_write_json

A = 7


def pool(frames: int, size: int, k: int = 32):
    rng = np.random.default_rng(0)
    return ([rng.integers(0, 256, (frames, size, size, 3), dtype=np.uint8) for _ in range(k)],
            [rng.normal(size=(frames - 1, A)).astype(np.float32) for _ in range(k)],
            [rng.uniform(size=frames - 1).astype(np.float32) for _ in range(k)])


def write_shards(path: Path, n: int, data, shard_size: int) -> float:
    fr, ac, rw = data
    t0 = time.perf_counter()
    with ShardWriter(path, image_size=fr[0].shape[1:3], action_dim=A, source="bench", shard_size=shard_size) as w:
        for i in range(n):
            w.add_episode(fr[i % len(fr)], ac[i % len(ac)], rw[i % len(rw)])
    return time.perf_counter() - t0


def replicate_shards(path: Path, n: int, data, shard_size: int) -> tuple[float, int, float]:
    """A sharded store of n episodes: shard 0 written by ShardWriter, the others copies of its data file (the
    episodes cycle through a pool whose size divides shard_size, so every full shard holds the same bytes) with
    their own indexes (first_episode, split keys); the last shard is written by ShardWriter too. Returns (seconds
    for shard 0, its episodes, seconds for the rest)."""
    from ivideogpt.data.shards import SHARDS, data_name, index_path

    fr = data[0]
    assert shard_size % len(fr) == 0, "shard_size must be a multiple of the pool size"
    t_w = write_shards(path, min(n, shard_size), data, shard_size)
    t0 = time.perf_counter()
    idx0 = json.loads(index_path(path, 0).read_text())
    full, rest = divmod(n, shard_size)
    for k in range(1, full):
        shutil.copyfile(path / SHARDS / idx0["data"], path / SHARDS / data_name(k, shard_size))
        first = k * shard_size
        idx = {**idx0, "shard": k, "first_episode": first, "data": data_name(k, shard_size),
               "split_keys": [split_key(0, first + j) for j in range(shard_size)]}
        atomic_write_json(index_path(path, k), idx)
    if rest:
        fr_, ac, rw = data
        with ShardWriter(path, image_size=fr[0].shape[1:3], action_dim=A, source="bench", shard_size=shard_size,
                         resume=True) as w:
            while w.next_episode < n:
                i = w.next_episode
                w.add_episode(fr_[i % len(fr_)], ac[i % len(ac)], rw[i % len(rw)])
    return t_w, min(n, shard_size), time.perf_counter() - t0


def write_old_bulk(path: Path, n: int, data) -> float:
    """The per-episode format's files (no fsync) and one meta.json, as EpisodeWriter would leave them."""
    fr, ac, rw = data
    t0 = time.perf_counter()
    (path / EPISODES).mkdir(parents=True)
    st = {"actions": _empty_state(A), "rewards": _empty_state(1)}
    lengths = []
    for i in range(n):
        d = episode_dir(path, i)
        d.mkdir()
        f, a, r = fr[i % len(fr)], ac[i % len(ac)], rw[i % len(rw)]
        np.save(d / "frames.npy", f)
        np.save(d / "actions.npy", a)
        np.save(d / "rewards.npy", r)
        st["actions"] = _merge_state(st["actions"], a)
        st["rewards"] = _merge_state(st["rewards"], r.reshape(-1, 1))
        lengths.append(len(f))
    meta = {"format": FORMAT, "version": VERSION, "source": "bench", "image_size": list(fr[0].shape[1:3]),
            "fps": 10.0, "action_dim": A, "num_episodes": n, "episode_lengths": lengths,
            "num_frames": int(sum(lengths)), "action_stats": _public_stats(st["actions"], False),
            "reward_stats": _public_stats(st["rewards"], True), "has_success": False,
            "splits": assign_splits(n, 0.1, 0), "extra": {}, "val_fraction": 0.1, "split_seed": 0,
            "stats_state": st}
    atomic_write_json(path / META, meta)
    return time.perf_counter() - t0


def episode_writer_costs(tmp: Path, n_small: int, n_full: int, data) -> dict:
    """EpisodeWriter's seconds per episode at a small count, and its per-episode meta cost at n_full episodes."""
    fr, ac, rw = data
    t0 = time.perf_counter()
    with EpisodeWriter(tmp / "ew", image_size=fr[0].shape[1:3], action_dim=A, source="bench") as w:
        for i in range(n_small):
            w.add_episode(fr[i % len(fr)], ac[i % len(ac)], rw[i % len(rw)])
    per_ep_small = (time.perf_counter() - t0) / n_small
    meta = json.loads((tmp / "ew" / META).read_text())
    # What add_episode redoes after every episode once the dataset has n_full episodes.
    meta["episode_lengths"] = [len(fr[0])] * n_full
    keys = [split_key(0, i) for i in range(n_full)]
    reps = 3
    t0 = time.perf_counter()
    for _ in range(reps):
        meta["splits"] = assign_splits(n_full, 0.1, 0, keys)
        atomic_write_json(tmp / "meta_probe.json", meta)
    per_ep_meta_full = (time.perf_counter() - t0) / reps
    shutil.rmtree(tmp / "ew")
    # Meta cost grows ~linearly with n: total over n_full episodes ~ n_full * (fixed part + meta(n_full) / 2).
    est = n_full * (per_ep_small + per_ep_meta_full / 2)
    return {"per_episode_small_s": per_ep_small, "meta_per_episode_at_full_s": per_ep_meta_full,
            "estimated_total_s": est}


OPEN_SNIPPET = """
import sys, time, resource
t0 = time.perf_counter()
from ivideogpt.data import EpisodeDataset
t_imp = time.perf_counter()
ds = EpisodeDataset(sys.argv[1])
t1 = time.perf_counter()
print(t1 - t_imp, len(ds), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def open_time(path: Path) -> tuple[float, int]:
    out = subprocess.run([sys.executable, "-c", OPEN_SNIPPET, str(path)], capture_output=True, text=True,
                         check=True, env={**os.environ, "OMP_NUM_THREADS": "1"}).stdout.split()
    return float(out[0]), int(out[2])


class Probe(torch.utils.data.Dataset):
    """A ClipDataset item plus the reading process's RSS figures (kB)."""

    def __init__(self, clips: ClipDataset):
        self.clips = clips

    def __len__(self):
        return len(self.clips)

    def __getitem__(self, k):
        item = self.clips[k]
        info = torch.utils.data.get_worker_info()
        with open("/proc/self/statm") as f:
            rss_kb = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
        return {"frames": item["frames"], "actions": item["actions"], "worker": -1 if info is None else info.id,
                "maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "rss": rss_kb}


def read_rate(path: Path, workers: int, items: int, clip_len: int, batch: int, seed: int) -> dict:
    clips = ClipDataset(EpisodeDataset(path), clip_len, seed=seed)
    loader = torch.utils.data.DataLoader(Probe(clips), batch_size=batch, num_workers=workers,
                                         sampler=range(seed * 10**7, seed * 10**7 + items), drop_last=True,
                                         persistent_workers=False)
    first: dict[int, int] = {}
    peak: dict[int, int] = {}
    t0 = time.perf_counter()
    n = 0
    for b in loader:
        for w, m, r in zip(b["worker"].tolist(), b["maxrss"].tolist(), b["rss"].tolist()):
            first.setdefault(w, r)
            peak[w] = max(peak.get(w, 0), m)
        n += len(b["frames"])
    dt = time.perf_counter() - t0
    return {"clips_per_s": n / dt, "peak_rss_mb": max(peak.values()) / 1024,
            "rss_growth_mb": max(peak[w] - first[w] for w in peak) / 1024}


def disk_usage(path: Path) -> tuple[int, int]:
    files = size = 0
    for root, _, names in os.walk(path):
        for nm in names:
            files += 1
            size += os.stat(os.path.join(root, nm)).st_blocks * 512
    return files, size


# ---- RLDS fixture (a compact TFRecord/Example encoder; the tests have their own independent one) ----


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _ld(num: int, payload: bytes) -> bytes:
    return _varint(num << 3 | 2) + _varint(len(payload)) + payload


def _example(feats: dict) -> bytes:
    body = b""
    for k, v in feats.items():
        f = _ld(1, b"".join(_ld(1, x) for x in v)) if isinstance(v, list) else _ld(2, _ld(1, v.astype("<f4").tobytes()))
        body += _ld(1, _ld(1, k.encode()) + _ld(2, f))
    return _ld(1, body)


def write_rlds_fixture(root: Path, files: int, per_file: int, steps: int, size: int) -> int:
    import google_crc32c
    from PIL import Image

    def masked(b):
        c = google_crc32c.value(b)
        return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF

    rng = np.random.default_rng(0)
    # Smooth images (JPEG of noise is unrealistically large): gradients plus a moving square.
    yy, xx = np.mgrid[0:size, 0:size]
    jpgs = []
    for t in range(steps):
        img = np.stack([(xx + 3 * t) % 256, (yy * 2) % 256, (xx + yy) % 256], -1).astype(np.uint8)
        img[20 + t % 40:60 + t % 40, 30:70] = (200, 50, 50)
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=90)
        jpgs.append(buf.getvalue())
    root.mkdir(parents=True)
    (root / "dataset_info.json").write_text(json.dumps({"name": "bench"}))
    total = 0
    for f in range(files):
        with open(root / f"bench-train.tfrecord-{f:05d}-of-{files:05d}", "wb") as out:
            for _ in range(per_file):
                rec = _example({"steps/observation/image": jpgs, "steps/action/world_vector":
                                rng.normal(size=steps * 3).astype(np.float32), "steps/action/gripper":
                                rng.normal(size=steps).astype(np.float32), "steps/reward":
                                np.zeros(steps, np.float32)})
                head = struct.pack("<Q", len(rec))
                out.write(head + struct.pack("<I", masked(head)) + rec + struct.pack("<I", masked(rec)))
                total += 1
    return total


def rlds_speed(tmp: Path, workers_list, files: int, per_file: int, steps: int, size: int) -> list[dict]:
    from ivideogpt.data.rlds import RLDSImportConfig, import_rlds

    src = tmp / "rlds" / "bench" / "1.0.0"
    n = write_rlds_fixture(src, files, per_file, steps, size)
    mb = sum(p.stat().st_size for p in src.iterdir()) / 2**20
    rows = []
    for workers in workers_list:
        out = tmp / f"rlds_out_{workers}"
        t0 = time.perf_counter()
        import_rlds(src, out, RLDSImportConfig(size=64), progress=False, shard_size=1000, workers=workers)
        dt = time.perf_counter() - t0
        rows.append({"workers": workers, "episodes": n, "steps": steps, "size": size, "tfrecord_mb": mb,
                     "episodes_per_s": n / dt, "seconds": dt})
        shutil.rmtree(out)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--episodes", type=int, default=10_000, help="episodes in both formats, side by side")
    ap.add_argument("--shards-only-episodes", type=int, default=100_000,
                    help="then the sharded store alone at this count (skipped when not larger than --episodes)")
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--shard-size", type=int, default=1024)
    ap.add_argument("--clip-len", type=int, default=8)
    ap.add_argument("--items", type=int, default=400, help="clips read per (format, workers) setting")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--writer-episodes", type=int, default=300, help="episodes written with EpisodeWriter")
    ap.add_argument("--rlds-files", type=int, default=4)
    ap.add_argument("--rlds-per-file", type=int, default=25)
    ap.add_argument("--rlds-steps", type=int, default=40)
    ap.add_argument("--rlds-image", type=int, default=256)
    ap.add_argument("--dir", default=None, help="where to write (default: a temporary directory); deleted after")
    args = ap.parse_args()
    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp(prefix="data_scale_", dir=args.dir))
    try:
        data = pool(args.frames, args.size)
        n = args.episodes
        print(f"episodes of {args.frames} frames of {args.size}x{args.size} (+{A}-dim actions, rewards); "
              f"{n} in both formats, then {args.shards_only_episodes} sharded; shards of {args.shard_size}; "
              f"clips of {args.clip_len}, batches of {args.batch}, {args.items} clips per reading; in {tmp}",
              flush=True)
        if n > 0:  # both formats side by side
            t_sh = write_shards(tmp / "shards", n, data, args.shard_size)
            print(f"write  shards  {t_sh:8.1f} s  ({n / t_sh:.0f} episodes/s)", flush=True)
            t_old = write_old_bulk(tmp / "old", n, data)
            print(f"write  per-ep  {t_old:8.1f} s  ({n / t_old:.0f} episodes/s, bulk: no fsync, meta.json once)",
                  flush=True)
            est_n = max(n, args.shards_only_episodes)
            ew = episode_writer_costs(tmp, args.writer_episodes, est_n, data)
            print(f"EpisodeWriter: {ew['per_episode_small_s'] * 1e3:.1f} ms/episode at {args.writer_episodes} "
                  f"episodes; meta.json rewrite + splits at {est_n} episodes: "
                  f"{ew['meta_per_episode_at_full_s'] * 1e3:.0f} ms per episode -> "
                  f"~{ew['estimated_total_s'] / 3600:.1f} h to write {est_n} episodes", flush=True)
            for name in ("old", "shards"):
                files, size = disk_usage(tmp / name)
                t_open, rss = open_time(tmp / name)
                print(f"disk   {name:7s} {files:8d} files {size / 2**30:7.2f} GiB   open {t_open:6.2f} s "
                      f"(process peak RSS {rss / 1024:.0f} MB)", flush=True)
            for workers in (0, 2, 4):
                for name in ("old", "shards"):
                    r = read_rate(tmp / name, workers, args.items, args.clip_len, args.batch, seed=workers + 1)
                    print(f"read   {name:7s} workers={workers}  {r['clips_per_s']:7.0f} clips/s   peak RSS per "
                          f"reader {r['peak_rss_mb']:6.0f} MB (+{r['rss_growth_mb']:.1f} MB while reading)", flush=True)
            shutil.rmtree(tmp / "old")
        big = args.shards_only_episodes
        if big > n:  # the sharded store alone at the full count (the per-episode format cannot be written here)
            shutil.rmtree(tmp / "shards", ignore_errors=True)
            t_w, n_w, t_big = replicate_shards(tmp / "shards", big, data, args.shard_size)
            files, size = disk_usage(tmp / "shards")
            t_open, rss = open_time(tmp / "shards")
            print(f"{big} episodes, shards only: ShardWriter wrote shard 0 ({n_w} episodes) in {t_w:.1f} s "
                  f"({n_w / t_w:.0f} episodes/s; {big / (n_w / t_w) / 60:.0f} min at that rate for {big}); the other "
                  f"shards are its copies with their own indexes ({t_big:.1f} s); {files} files {size / 2**30:.2f} GiB;"
                  f" open {t_open:.2f} s (process peak RSS {rss / 1024:.0f} MB)", flush=True)
            t0 = time.perf_counter()
            EpisodeDataset(tmp / "shards").validate()
            print(f"verify shards (every CRC-32): {time.perf_counter() - t0:.1f} s", flush=True)
            for workers in (0, 2, 4):
                r = read_rate(tmp / "shards", workers, args.items, args.clip_len, args.batch, seed=workers + 11)
                print(f"read   shards  workers={workers}  {r['clips_per_s']:7.0f} clips/s   peak RSS per reader "
                      f"{r['peak_rss_mb']:6.0f} MB (+{r['rss_growth_mb']:.1f} MB while reading)", flush=True)
        shutil.rmtree(tmp / "shards", ignore_errors=True)
        for row in rlds_speed(tmp, (1, 2), args.rlds_files, args.rlds_per_file, args.rlds_steps, args.rlds_image):
            print(f"rlds   import workers={row['workers']}: {row['episodes']} episodes x {row['steps']} steps "
                  f"{row['size']}x{row['size']} JPEG ({row['tfrecord_mb']:.0f} MB TFRecord) -> 64x64 shards: "
                  f"{row['episodes_per_s']:.1f} episodes/s ({row['seconds']:.1f} s)", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
