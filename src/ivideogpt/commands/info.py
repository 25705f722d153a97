"""``ivideogpt info DIR``: print a dataset's metadata and write a PNG contact sheet of some episodes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..data.contact_sheet import contact_sheet, frame_indices, save_png
from ..data.episodes import EpisodeDataset


def add_arguments(parser) -> None:
    parser.add_argument("dir", help="episode dataset directory (contains meta.json)")
    parser.add_argument("--out", help="contact sheet PNG (default: DIR/contact_sheet.png)")
    parser.add_argument("--episodes", type=int, default=6, help="rows: evenly spaced episodes (default 6)")
    parser.add_argument("--frames", type=int, default=8, help="columns: evenly spaced frames (default 8)")
    parser.add_argument("--no-sheet", action="store_true", help="print the metadata only")
    parser.add_argument("--verify", action="store_true",
                        help="sharded store: also check every shard's CRC-32 (reads every byte; sizes and indexes "
                             "are always checked)")


def _fmt(values) -> str:
    if values is None:
        return "-"
    values = values if isinstance(values, list) else [values]
    return " ".join(f"{v: .4g}" for v in values)


def describe(ds: EpisodeDataset) -> str:
    """The dataset's metadata as readable lines."""
    m = ds.meta
    lengths = np.array(m["episode_lengths"]) if m["episode_lengths"] else np.zeros(1, int)
    h, w = m["image_size"]
    lines = [
        f"dataset    {ds.path}",
        f"format     {m['format']} v{m['version']}, source: {m['source']}",
        f"episodes   {m['num_episodes']}  (train {len(m['splits']['train'])}, val {len(m['splits']['val'])})",
        f"frames     {m['num_frames']}  (per episode min {lengths.min()}, mean {lengths.mean():.1f}, "
        f"max {lengths.max()})",
        f"image      {h}x{w} RGB uint8, {m['fps']:g} fps",
        f"actions    dim {m['action_dim']}",
    ]
    if m["action_stats"] and m["action_dim"]:
        for key in ("mean", "std", "min", "max"):
            lines.append(f"  {key:<5}    {_fmt(m['action_stats'][key])}")
    rs = m["reward_stats"] or {}
    lines.append("rewards    " + ", ".join(f"{k} {rs.get(k, 0):.4g}" for k in ("mean", "std", "min", "max"))
                 if rs else "rewards    -")
    lines.append(f"success    {'yes' if m['has_success'] else 'no'}")
    val = m["splits"]["val"]
    lines.append(f"val split  episodes {val[:12]}{' ...' if len(val) > 12 else ''}")
    if m["extra"]:
        lines.append(f"extra      {json.dumps(m['extra'], sort_keys=True)}")
    return "\n".join(lines)


def run(args) -> int:
    ds = EpisodeDataset(args.dir)  # a sharded store's indexes and data sizes are checked on open
    if not ds.sharded or args.verify:
        ds.validate()  # an integrity check of every episode (every shard's checksum), before anything is printed
    print(describe(ds))
    if args.no_sheet or len(ds) == 0:
        return 0
    rows = sorted(set(frame_indices(len(ds), max(1, args.episodes))))
    videos = [ds.frames_at(i, frame_indices(ds.length(i), max(1, args.frames))) for i in rows]
    out = Path(args.out) if args.out else ds.path / "contact_sheet.png"
    sheet = contact_sheet(videos, num_frames=args.frames, pick=False)
    save_png(sheet, out)
    print(f"contact sheet {out}  (rows: episodes {rows}; columns: {args.frames} evenly spaced frames)")
    return 0
