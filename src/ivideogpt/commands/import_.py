"""``ivideogpt import --format video|lerobot|rlds SRC --out DIR``: bring outside data into the episode format.

``video``: every MP4/WebM/MOV/MKV/AVI/GIF under SRC becomes one action-free episode. ``lerobot``: a local
LeRobot dataset directory (v2.0/v2.1 or v3.0) with its actions and rewards. ``rlds``: a TFDS/RLDS dataset
version directory (Open X-Embodiment), one TFRecord record per episode, read without TensorFlow.
``--shard-size N`` writes the sharded store.
"""

from __future__ import annotations

HELP = "import videos (MP4/GIF/WebM), a LeRobot dataset or an RLDS (Open X-Embodiment) dataset"


def add_arguments(p) -> None:
    p.add_argument("src", help="a folder of videos or one video (video), a LeRobot dataset directory (lerobot), or "
                               "a TFDS dataset version directory with *.tfrecord-NNNNN-of-MMMMM files (rlds)")
    p.add_argument("--format", required=True, choices=["video", "lerobot", "rlds"], help="what SRC is")
    p.add_argument("--out", required=True, help="episode dataset directory to create")
    p.add_argument("--size", type=int, default=None,
                   help="centre-crop frames to a square and resize to SIZE x SIZE (default: keep the size)")
    p.add_argument("--frame-step", type=int, default=1, help="video: keep every k-th frame (default 1)")
    p.add_argument("--fps", type=float, default=None,
                   help="video: frame rate to record (default: from the file); rlds: (default 10)")
    p.add_argument("--camera", default=None,
                   help="lerobot/rlds: video/image feature (default: the first one; rlds: e.g. image or "
                        "steps/observation/image)")
    p.add_argument("--action-key", default=None,
                   help="lerobot: action feature (default: action); rlds: comma-separated step keys, a nested dict "
                        "expands to its leaves in sorted order (default: steps/action); 'none' for action-free")
    p.add_argument("--reward-key", default=None,
                   help="lerobot: reward feature (default: next.reward when present); rlds: step key (default: "
                        "steps/reward when present); else zero rewards")
    p.add_argument("--split", default="train", help="rlds: which split's TFRecord files (default train)")
    p.add_argument("--workers", type=int, default=1, help="rlds: processes parsing TFRecord files in parallel")
    p.add_argument("--shard-size", type=int, default=None, metavar="N",
                   help="write the sharded store with N episodes per shard file (default: one directory per episode)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted import into --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    from ..errors import ConfigError

    if args.format != "video" and args.frame_step != 1:
        raise ConfigError("--frame-step applies to --format video only")
    if args.format == "lerobot" and args.fps is not None:
        raise ConfigError("--fps applies to --format video and rlds only (LeRobot datasets keep their rate)")
    if args.shard_size is not None and args.shard_size < 1:
        raise ConfigError(f"--shard-size must be >= 1, got {args.shard_size}")
    common = {"resume": args.resume, "progress": not args.no_progress, "shard_size": args.shard_size}
    if args.format == "video":
        from ..data.video_import import VideoImportConfig, import_videos

        import_videos(args.src, args.out, VideoImportConfig(frame_step=args.frame_step, size=args.size),
                      fps=args.fps, **common)
    elif args.format == "lerobot":
        from ..data.lerobot import LeRobotImportConfig, import_lerobot

        cfg = LeRobotImportConfig(camera=args.camera, action_key=args.action_key or "action",
                                  reward_key=args.reward_key, size=args.size)
        import_lerobot(args.src, args.out, cfg, **common)
    else:
        from ..data.rlds import RLDSImportConfig, import_rlds

        keys = args.action_key or "steps/action"
        action_keys = [] if keys == "none" else [k.strip() for k in keys.split(",") if k.strip()]
        cfg = RLDSImportConfig(camera=args.camera, action_keys=action_keys, reward_key=args.reward_key,
                               size=args.size, split=args.split)
        import_rlds(args.src, args.out, cfg, workers=args.workers, fps=args.fps, **common)
    return 0
