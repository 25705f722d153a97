"""Contact sheets: a grid of frames (rows = episodes or videos, columns = evenly spaced frames)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from ..fileio import atomic_write_bytes


def frame_indices(length: int, count: int) -> list[int]:
    """``count`` evenly spaced indices into ``length`` frames, first and last included."""
    count = min(count, length)
    return np.linspace(0, length - 1, count).round().astype(int).tolist() if count > 0 else []


def contact_sheet(videos, num_frames: int = 8, scale: int | None = None, gap: int = 2,
                  background: int = 255, pick: bool = True) -> np.ndarray:
    """Tile videos (each uint8 [T, H, W, 3], same H and W) into one uint8 image [H', W', 3].

    Each row is one video; with ``pick`` its ``num_frames`` evenly spaced frames are shown (all of
    them otherwise). Frames are upscaled by an integer ``scale`` with nearest-neighbour (default:
    about 128 px tall, so 64x64 frames stay readable) and separated by ``gap`` pixels of
    ``background``. Shorter rows leave blank cells.
    """
    videos = [np.asarray(v) for v in videos]
    if not videos:
        raise ValueError("contact_sheet needs at least one video")
    h, w = videos[0].shape[1:3]
    for v in videos:
        if v.dtype != np.uint8 or v.ndim != 4 or v.shape[1:] != (h, w, 3):
            raise ValueError(f"every video must be uint8 [T, {h}, {w}, 3], got {v.dtype} {list(v.shape)}")
    rows = [v[frame_indices(len(v), num_frames)] if pick else v for v in videos]
    scale = max(1, round(128 / h)) if scale is None else int(scale)
    ch, cw = h * scale, w * scale
    cols = max(len(r) for r in rows)
    sheet = np.full((gap + len(rows) * (ch + gap), gap + cols * (cw + gap), 3), background, np.uint8)
    for r, frames in enumerate(rows):
        for c, f in enumerate(frames):
            y, x = gap + r * (ch + gap), gap + c * (cw + gap)
            sheet[y:y + ch, x:x + cw] = f.repeat(scale, 0).repeat(scale, 1)
    return sheet


def save_png(image: np.ndarray, path) -> Path:
    """Write a uint8 [H, W, 3] image as PNG, atomically."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)
