"""Import a folder of videos (MP4 / WebM / MOV / MKV / AVI / GIF) as action-free episodes.

Each video becomes one episode (``action_dim`` 0, zero rewards) whose info records the file it came from.
Videos are decoded with imageio-ffmpeg (GIFs with Pillow): no PyAV or torchvision. ``frame_step`` keeps every
k-th frame; ``size`` centre-crops each frame to a square and resizes it to ``size`` x ``size``; without it
every video must already have the same frame size.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import DataError

VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".mkv", ".avi", ".gif")


@dataclass
class VideoImportConfig:
    frame_step: int = 1  # keep every k-th frame
    size: int | None = None  # centre-crop to a square and resize; None: keep the native size
    min_frames: int = 2  # shorter videos (after frame_step) are skipped with a warning


def square_resize(frame: np.ndarray, size: int) -> np.ndarray:
    """uint8 [H, W, 3] -> uint8 [size, size, 3]: centre crop to a square, then a bicubic (antialiased) resize."""
    h, w = frame.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    crop = frame[top:top + s, left:left + s]
    if s == size:
        return np.ascontiguousarray(crop)
    return np.asarray(Image.fromarray(crop).resize((size, size), Image.BICUBIC))


def iter_video_frames(path: Path) -> Iterator[np.ndarray]:
    """Every frame of a video file as uint8 [H, W, 3], in order (decoded one at a time)."""
    path = Path(path)
    if path.suffix.lower() == ".gif":
        try:
            with Image.open(path) as im:
                for i in range(getattr(im, "n_frames", 1)):
                    im.seek(i)
                    yield np.asarray(im.convert("RGB"))
        except (OSError, ValueError) as e:
            raise DataError(f"{path}: cannot read GIF ({e})") from None
        return
    import imageio_ffmpeg

    try:
        gen = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
        meta = next(gen)
        w, h = meta["size"]
        for raw in gen:
            yield np.frombuffer(raw, np.uint8).reshape(h, w, 3)
    except (OSError, RuntimeError, StopIteration) as e:
        raise DataError(f"{path}: cannot decode video ({e})") from None


def find_videos(src: Path) -> list[Path]:
    """Video files under ``src`` (recursively, sorted), or [src] for a single file."""
    src = Path(src)
    if src.is_file():
        return [src]
    if not src.is_dir():
        raise DataError(f"{src}: no such file or directory")
    videos = sorted(p for p in src.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
    if not videos:
        raise DataError(f"{src}: no video files ({', '.join(VIDEO_SUFFIXES)})")
    return videos


def load_video(path: Path, cfg: VideoImportConfig) -> np.ndarray:
    """uint8 [T, H, W, 3] of one video after frame_step and resizing."""
    frames = [f for i, f in enumerate(iter_video_frames(path)) if i % cfg.frame_step == 0]
    if cfg.size is not None:
        frames = [square_resize(f, cfg.size) for f in frames]
    if not frames:
        return np.zeros((0, 1, 1, 3), np.uint8)
    shapes = {f.shape for f in frames}
    if len(shapes) != 1:
        raise DataError(f"{path}: frame size changes within the video ({sorted(shapes)}); pass --size")
    return np.stack(frames)


def import_videos(src, out, cfg: VideoImportConfig | None = None, *, resume: bool = False,
                  progress: bool = True, fps: float | None = None, shard_size: int | None = None) -> Path:
    """Write every video under ``src`` as one action-free episode of the dataset ``out``."""
    import warnings

    from tqdm import tqdm

    from .shards import open_writer

    cfg = cfg or VideoImportConfig()
    if cfg.frame_step < 1 or (cfg.size is not None and cfg.size < 8):
        raise DataError(f"need frame_step >= 1 and size >= 8, got frame_step={cfg.frame_step}, size={cfg.size}")
    src = Path(src)
    videos = find_videos(src)
    root = src if src.is_dir() else src.parent
    first = load_video(videos[0], cfg)
    if len(first) == 0:
        raise DataError(f"{videos[0]}: no frames")
    if fps is None:
        fps = _video_fps(videos[0]) / cfg.frame_step
    extra = {"importer": "video", "src": str(src.resolve()), "frame_step": cfg.frame_step, "size": cfg.size}
    with open_writer(out, image_size=first.shape[1:3], action_dim=0, fps=fps, source=f"video:{src.name}",
                     extra=extra, resume=resume, shard_size=shard_size) as writer:
        done = {info.get("source") for info in writer.meta.get("episode_info", [])}
        for path in tqdm(videos, unit="video", desc="import videos", disable=not progress):
            rel = str(path.relative_to(root))
            if rel in done:
                continue
            frames = first if path == videos[0] else load_video(path, cfg)
            if len(frames) < cfg.min_frames:
                warnings.warn(f"{path}: {len(frames)} frame(s) after frame_step {cfg.frame_step}; skipped",
                              stacklevel=2)
                continue
            if frames.shape[1:3] != first.shape[1:3]:
                raise DataError(f"{path}: frames are {frames.shape[2]}x{frames.shape[1]}, the first video's are "
                                f"{first.shape[2]}x{first.shape[1]}; pass --size to resize all videos")
            writer.add_episode(frames, info={"source": rel})
        n = writer.num_episodes
    print(f"imported {n} episodes from {len(videos)} video(s) -> {out}")
    return Path(out)


def _video_fps(path: Path) -> float:
    """Frames per second from the container (10 for GIFs and when unknown)."""
    if path.suffix.lower() == ".gif":
        with Image.open(path) as im:
            ms = im.info.get("duration") or 100
        return 1000.0 / float(ms)
    import imageio_ffmpeg

    gen = imageio_ffmpeg.read_frames(str(path))
    try:
        return float(next(gen).get("fps") or 10.0)
    finally:
        gen.close()
