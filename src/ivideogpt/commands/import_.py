"""``ivideogpt import --format video|lerobot SRC --out DIR``: bring outside data into the episode format.

``video``: every MP4/WebM/MOV/MKV/AVI/GIF under SRC becomes one action-free episode. ``lerobot``: a local
LeRobot dataset directory (v2.0/v2.1 or v3.0) with its actions and rewards.
"""

from __future__ import annotations

HELP = "import videos (MP4/GIF/WebM) or a LeRobot dataset into the episode format"


def add_arguments(p) -> None:
    p.add_argument("src", help="a folder of videos or one video (video), or a LeRobot dataset directory (lerobot)")
    p.add_argument("--format", required=True, choices=["video", "lerobot"], help="what SRC is")
    p.add_argument("--out", required=True, help="episode dataset directory to create")
    p.add_argument("--size", type=int, default=None,
                   help="centre-crop frames to a square and resize to SIZE x SIZE (default: keep the size)")
    p.add_argument("--frame-step", type=int, default=1, help="video: keep every k-th frame (default 1)")
    p.add_argument("--fps", type=float, default=None, help="video: frame rate to record (default: from the file)")
    p.add_argument("--camera", default=None, help="lerobot: video/image feature (default: the first one)")
    p.add_argument("--action-key", default="action", help="lerobot: action feature (default: action)")
    p.add_argument("--reward-key", default=None,
                   help="lerobot: reward feature (default: next.reward when present, else zero rewards)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted import into --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    from ..errors import ConfigError

    if args.format == "lerobot" and (args.frame_step != 1 or args.fps is not None):
        raise ConfigError("--frame-step and --fps apply to --format video only (LeRobot datasets keep their rate)")
    if args.format == "video":
        from ..data.video_import import VideoImportConfig, import_videos

        import_videos(args.src, args.out, VideoImportConfig(frame_step=args.frame_step, size=args.size),
                      resume=args.resume, progress=not args.no_progress, fps=args.fps)
    else:
        from ..data.lerobot import LeRobotImportConfig, import_lerobot

        cfg = LeRobotImportConfig(camera=args.camera, action_key=args.action_key, reward_key=args.reward_key,
                                  size=args.size)
        import_lerobot(args.src, args.out, cfg, resume=args.resume, progress=not args.no_progress)
    return 0
