"""Video in-context imitation on dataset episodes: pieces of episodes as demonstrations and queries, the
simulator's counterfactual (the demonstration's actions replayed from the query's start state), and the GIF
``ivideogpt imitate`` writes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.episodes import EpisodeDataset
from ..errors import ConfigError, DataError


@dataclass(frozen=True)
class EpisodeSpan:
    """Frames ``start .. start + length - 1`` of episode ``index`` of the dataset at ``data``."""

    data: str
    index: int
    start: int = 0

    @classmethod
    def parse(cls, text: str, flag: str) -> EpisodeSpan:
        """'DATA:I' or 'DATA:I:START' (DATA may itself contain ':')."""
        parts = text.rsplit(":", 2)
        nums = []
        while len(parts) > 1 and parts[-1].lstrip("-").isdigit() and len(nums) < 2:
            nums.insert(0, int(parts.pop()))
        if not nums:
            raise ConfigError(f"{flag} {text}: expected DATA_DIR:EPISODE or DATA_DIR:EPISODE:START_FRAME")
        data = ":".join(parts)
        return cls(data, nums[0], nums[1] if len(nums) > 1 else 0)

    def read(self, length: int, flag: str) -> tuple[np.ndarray, np.ndarray, EpisodeDataset]:
        """(frames uint8 [length, H, W, 3], the actions between them [length - 1, A], the dataset)."""
        ds = EpisodeDataset(self.data)
        if not 0 <= self.index < len(ds):
            raise DataError(f"{flag}: {self.data} has {len(ds)} episodes, got episode {self.index}")
        n = ds.length(self.index)
        if self.start < 0 or self.start + length > n:
            raise DataError(f"{flag}: episode {self.index} of {self.data} has {n} frames; frames {self.start} .. "
                            f"{self.start + length - 1} were asked for")
        ep = ds.episode(self.index)
        return (ds.frames(self.index, self.start, self.start + length),
                ep["actions"][self.start:self.start + length - 1], ds)


def replay_from(query: EpisodeSpan, actions: np.ndarray) -> tuple[np.ndarray | None, str | None]:
    """The simulator restored at the query's first frame, then stepped with ``actions`` [K, A]: frames
    [K + 1, H, W, 3] (the first is the query's own), or (None, why not)."""
    from ..serve.ground_truth import GroundTruth

    gt = GroundTruth(EpisodeDataset(query.data), query.index, query.start + 1)
    if gt.env is None:
        return None, gt.reason
    frames = [gt.frame]
    for a in actions:
        frames.append(gt.step(a)[0])
    return np.stack(frames), None


def write_imitation_gif(path, rows: list[dict], *, query_frames: int, scale: int = 3, fps: int = 3) -> None:
    """Animated GIF, one row per demonstration: demo | query continued by the model | simulator replaying the
    demo's actions from the query's start. Each row: ``demo`` [T, H, W, 3], ``imitation`` [T, H, W, 3] (the query
    then the generated frames), ``replay`` [T, H, W, 3] or None, ``label`` (text). Given frames have a green border,
    generated ones red, the simulator's grey."""
    import imageio.v2 as imageio
    from PIL import Image, ImageDraw

    titles = ["demonstration", "query -> model", "simulator: demo's actions"]
    T = max(len(r["imitation"]) for r in rows)
    h, w = rows[0]["imitation"].shape[1:3]
    cell_h, cell_w, pad, head, label_w = h * scale + 4, w * scale + 4, 4, 14, 110
    W = label_w + 3 * (cell_w + pad) + pad
    H = head + len(rows) * (cell_h + pad) + pad
    out = []
    for t in range(T):
        canvas = Image.new("RGB", (W, H), (255, 255, 255))
        draw = ImageDraw.Draw(canvas)
        for c, title in enumerate(titles):
            draw.text((label_w + pad + c * (cell_w + pad) + 2, 1), title, fill=(0, 0, 0))
        for i, r in enumerate(rows):
            y0 = head + pad + i * (cell_h + pad)
            draw.text((4, y0 + cell_h // 2 - 6), r.get("label", ""), fill=(0, 0, 0))
            cols = [(r["demo"], (40, 170, 60)),
                    (r["imitation"], (40, 170, 60) if t < query_frames else (210, 50, 50)),
                    (r["replay"], (150, 150, 150))]
            for c, (clip, colour) in enumerate(cols):
                x0 = label_w + pad + c * (cell_w + pad)
                if clip is None:
                    draw.text((x0 + 4, y0 + cell_h // 2 - 6), "no simulator", fill=(0, 0, 0))
                    continue
                draw.rectangle([x0, y0, x0 + cell_w - 1, y0 + cell_h - 1], fill=colour)
                tile = Image.fromarray(np.asarray(clip[min(t, len(clip) - 1)])).resize((w * scale, h * scale),
                                                                                     Image.NEAREST)
                canvas.paste(tile, (x0 + 2, y0 + 2))
        out.append(np.asarray(canvas))
    imageio.mimsave(path, out, duration=1000 / fps, loop=0)
