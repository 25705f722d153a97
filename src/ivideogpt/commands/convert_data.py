"""``ivideogpt convert-data SRC --out DIR [--shard-size N]``: rewrite an episode dataset between the per-episode
format and the sharded store (either way), or ``--verify`` one in place (every shard's checksum)."""

from __future__ import annotations

HELP = "convert an episode dataset to the sharded store (--shard-size N) or back; --verify checks checksums"


def add_arguments(p) -> None:
    p.add_argument("src", help="episode dataset directory (either format)")
    p.add_argument("--out", default=None, help="dataset directory to create")
    p.add_argument("--shard-size", type=int, default=None, metavar="N",
                   help="write the sharded store with N episodes per shard (default: the per-episode format)")
    p.add_argument("--verify", action="store_true",
                   help="only check SRC: every shard's size and CRC-32 (sharded) or every file header")
    p.add_argument("--resume", action="store_true", help="continue an interrupted conversion into --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    import time

    from ..data.episodes import EpisodeDataset
    from ..data.shards import convert_dataset
    from ..errors import ConfigError

    if args.verify:
        t0 = time.perf_counter()
        ds = EpisodeDataset(args.src)
        ds.validate()
        kind = f"{ds.meta['num_shards']} shard checksums" if ds.sharded else "episode file headers"
        print(f"ok: {len(ds)} episodes, {kind} verified in {time.perf_counter() - t0:.1f} s ({args.src})")
        return 0
    if args.out is None:
        raise ConfigError("convert-data: --out is required (or pass --verify)")
    if args.shard_size is not None and args.shard_size < 1:
        raise ConfigError(f"--shard-size must be >= 1, got {args.shard_size}")
    t0 = time.perf_counter()
    out = convert_dataset(args.src, args.out, shard_size=args.shard_size, resume=args.resume,
                          progress=not args.no_progress)
    ds = EpisodeDataset(out)
    what = f"{ds.meta['num_shards']} shard(s) of {args.shard_size}" if ds.sharded else "one directory per episode"
    print(f"converted {len(ds)} episodes -> {out} ({what}), {time.perf_counter() - t0:.1f} s")
    return 0
