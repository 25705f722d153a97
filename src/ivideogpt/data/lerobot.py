"""Read a local LeRobot dataset directory (format v2.0/v2.1 or v3.0) into the episode format.

LeRobot v2.x (one episode per file)::

    meta/info.json        codebase_version, fps, features, chunks_size, data_path, video_path
    meta/episodes.jsonl   {"episode_index": 0, "tasks": [...], "length": 50} per line
    data/chunk-000/episode_000000.parquet                     data_path.format(episode_chunk=, episode_index=)
    videos/chunk-000/<video_key>/episode_000000.mp4           video_path.format(episode_chunk=, video_key=, ...)

LeRobot v3.0 (many episodes per file)::

    meta/info.json                         data_path "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
                                           video_path "videos/{video_key}/chunk-{chunk_index:03d}/file-....mp4"
    meta/episodes/chunk-000/file-000.parquet   one row per episode: episode_index, length, tasks,
                                           data/chunk_index, data/file_index, dataset_from_index, dataset_to_index,
                                           videos/<key>/chunk_index, videos/<key>/file_index,
                                           videos/<key>/from_timestamp, videos/<key>/to_timestamp
    data/chunk-000/file-000.parquet        rows of several episodes (columns: features + episode_index,
                                           frame_index, index, timestamp, task_index)
    videos/<key>/chunk-000/file-000.mp4    the episodes' frames one after another

LeRobot row t holds observation t and the action taken at t; ``next.reward`` is the reward that follows it.
An episode of T frames becomes T frames, the first T-1 actions and rewards (the last action has no next frame).
Camera features may be videos (decoded with imageio-ffmpeg) or images stored in the parquet files.

:func:`write_lerobot_fixture` writes small datasets in both layouts (for tests and examples).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import DataError
from .video_import import iter_video_frames, square_resize

INFO = "meta/info.json"
EPISODES_V2 = "meta/episodes.jsonl"
TASKS_V2 = "meta/tasks.jsonl"
EPISODES_V3 = "meta/episodes"
TASKS_V3 = "meta/tasks.parquet"
DEFAULT_REWARD_KEY = "next.reward"
SUCCESS_KEY = "next.success"
V2_DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
V2_VIDEO_PATH = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
V3_DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
V3_VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
# Timestamps are floats: a frame's index in a multi-episode video is round(timestamp * fps).


@dataclass
class LeRobotImportConfig:
    camera: str | None = None  # video/image feature to import; None: the first one in info.json
    action_key: str = "action"
    reward_key: str | None = None  # None: 'next.reward' when the dataset has it, else zero rewards
    size: int | None = None  # centre-crop to a square and resize; None: native size


@dataclass
class EpisodeRef:
    """Where one episode's rows and frames are."""

    index: int
    length: int
    tasks: list
    data_path: Path
    video_path: Path | None
    video_start: int  # first frame of the episode in its video file


def _pyarrow():
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError("reading LeRobot datasets needs pyarrow: pip install 'ivideogpt[lerobot]'") from None
    return pq


class LeRobotReader:
    """Episodes of a local LeRobot dataset (see the module docstring)."""

    def __init__(self, root, cfg: LeRobotImportConfig | None = None):
        self.root = Path(root)
        self.cfg = cfg or LeRobotImportConfig()
        info_path = self.root / INFO
        if not info_path.exists():
            raise DataError(f"{info_path}: not found; expected a LeRobot dataset directory (meta/info.json)")
        try:
            self.info = json.loads(info_path.read_text())
        except (OSError, ValueError) as e:
            raise DataError(f"{info_path}: not valid JSON ({e})") from None
        for key in ("codebase_version", "fps", "features", "data_path"):
            if key not in self.info:
                raise DataError(f"{info_path}: missing field '{key}'")
        version = str(self.info["codebase_version"])
        self.major = version.lstrip("v").split(".")[0]
        if self.major not in ("2", "3"):
            raise DataError(f"{info_path}: codebase_version {version!r} is not supported (v2.0, v2.1 or v3.0)")
        self.version, self.fps = version, float(self.info["fps"])
        feats = self.info["features"]
        cams = [k for k, f in feats.items() if f.get("dtype") in ("video", "image")]
        self.camera = self.cfg.camera or (cams[0] if cams else None)
        if self.camera not in feats or feats[self.camera].get("dtype") not in ("video", "image"):
            raise DataError(f"{info_path}: camera {self.camera!r} is not a video/image feature; cameras: {cams}")
        self.is_video = feats[self.camera]["dtype"] == "video"
        if self.is_video and not self.info.get("video_path"):
            raise DataError(f"{info_path}: feature {self.camera!r} is a video but 'video_path' is missing")
        if self.cfg.action_key not in feats:
            raise DataError(f"{info_path}: no action feature {self.cfg.action_key!r}; features: {sorted(feats)} "
                            "(choose one with --action-key)")
        shape = feats[self.cfg.action_key].get("shape") or [1]
        self.action_dim = int(np.prod(shape))
        if self.cfg.reward_key is not None and self.cfg.reward_key not in feats:
            raise DataError(f"{info_path}: no reward feature {self.cfg.reward_key!r}; features: {sorted(feats)}")
        self.reward_key = self.cfg.reward_key or (DEFAULT_REWARD_KEY if DEFAULT_REWARD_KEY in feats else None)
        self.has_success = SUCCESS_KEY in feats
        self.episodes = self._episodes_v2() if self.major == "2" else self._episodes_v3()
        self._table_path, self._table = None, None
        self._video = None

    # ---- episode index --------------------------------------------------------------------------

    def _episodes_v2(self) -> list[EpisodeRef]:
        path = self.root / EPISODES_V2
        if not path.exists():
            raise DataError(f"{path}: not found (LeRobot {self.version} lists its episodes there)")
        chunks = int(self.info.get("chunks_size", 1000))
        refs = []
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                i, length = int(row["episode_index"]), int(row["length"])
            except (ValueError, KeyError, TypeError) as e:
                raise DataError(f"{path}:{n}: expected {{'episode_index', 'length', ...}} ({e})") from None
            fields = {"episode_chunk": i // chunks, "episode_index": i}
            video = (self.root / self.info["video_path"].format(video_key=self.camera, **fields)
                     if self.is_video else None)
            refs.append(EpisodeRef(i, length, list(row.get("tasks", [])),
                                   self.root / self.info["data_path"].format(**fields), video, 0))
        return sorted(refs, key=lambda r: r.index)

    def _episodes_v3(self) -> list[EpisodeRef]:
        pq = _pyarrow()
        files = sorted((self.root / EPISODES_V3).glob("chunk-*/file-*.parquet"))
        if not files:
            raise DataError(f"{self.root / EPISODES_V3}: no chunk-*/file-*.parquet (LeRobot {self.version} "
                            "lists its episodes there)")
        need = ["episode_index", "length", "data/chunk_index", "data/file_index"]
        vkey = f"videos/{self.camera}/"
        if self.is_video:
            need += [vkey + "chunk_index", vkey + "file_index", vkey + "from_timestamp"]
        refs = []
        for f in files:
            cols = pq.read_schema(f).names
            missing = [c for c in need if c not in cols]
            if missing:
                raise DataError(f"{f}: missing column(s) {missing}")
            rows = pq.read_table(f, columns=[c for c in need + ["tasks"] if c in cols]).to_pydict()
            task_lists = rows.get("tasks") or [[]] * len(rows["episode_index"])
            for j in range(len(rows["episode_index"])):
                data = self.root / self.info["data_path"].format(chunk_index=int(rows["data/chunk_index"][j]),
                                                                 file_index=int(rows["data/file_index"][j]))
                video, start = None, 0
                if self.is_video:
                    video = self.root / self.info["video_path"].format(
                        video_key=self.camera, chunk_index=int(rows[vkey + "chunk_index"][j]),
                        file_index=int(rows[vkey + "file_index"][j]))
                    start = int(round(float(rows[vkey + "from_timestamp"][j]) * self.fps))
                refs.append(EpisodeRef(int(rows["episode_index"][j]), int(rows["length"][j]),
                                       list(task_lists[j] or []), data, video, start))
        return sorted(refs, key=lambda r: r.index)

    # ---- reading ----------------------------------------------------------------------------------

    def _rows(self, ref: EpisodeRef) -> dict:
        """The episode's parquet rows, ordered by frame_index, as numpy columns."""
        if self._table_path != ref.data_path:  # consecutive episodes usually share a v3 file
            if not ref.data_path.exists():
                raise DataError(f"{ref.data_path}: not found (episode {ref.index})")
            try:
                self._table = _pyarrow().read_table(ref.data_path)
            except Exception as e:  # pyarrow raises its own error types for corrupt files
                raise DataError(f"{ref.data_path}: cannot read parquet ({e})") from None
            self._table_path = ref.data_path
        t = self._table
        for c in ("episode_index", self.cfg.action_key):
            if c not in t.column_names:
                raise DataError(f"{ref.data_path}: missing column {c!r}")
        ep = t.column("episode_index").to_numpy()
        pick = np.flatnonzero(ep == ref.index)
        if "frame_index" in t.column_names:
            pick = pick[np.argsort(t.column("frame_index").to_numpy()[pick], kind="stable")]
        if len(pick) != ref.length:
            raise DataError(f"{ref.data_path}: episode {ref.index} has {len(pick)} rows, the episode index says "
                            f"{ref.length}")
        sub = t.take(pick)
        out = {"action": _stack(sub.column(self.cfg.action_key).to_pylist(), ref, self.cfg.action_key)}
        out["action"] = out["action"].reshape(ref.length, self.action_dim)
        if self.reward_key:
            out["reward"] = _stack(sub.column(self.reward_key).to_pylist(), ref, self.reward_key).reshape(-1)
        if self.has_success:
            out["success"] = np.asarray(sub.column(SUCCESS_KEY).to_pylist(), bool).reshape(-1)
        if not self.is_video:
            out["images"] = sub.column(self.camera).to_pylist()
        return out

    def _frames(self, ref: EpisodeRef, rows: dict) -> np.ndarray:
        if not self.is_video:
            frames = [_decode_image(v, ref, self.camera) for v in rows["images"]]
        else:
            if not ref.video_path.exists():
                raise DataError(f"{ref.video_path}: not found (episode {ref.index}, camera {self.camera})")
            if self._video is None or self._video.path != ref.video_path or self._video.pos > ref.video_start:
                self.close()
                self._video = _SequentialVideo(ref.video_path)
            frames = self._video.read(ref.video_start, ref.length)
            if len(frames) != ref.length:
                raise DataError(f"{ref.video_path}: episode {ref.index} needs frames {ref.video_start}.."
                                f"{ref.video_start + ref.length - 1}, the video has {self._video.pos}")
        if self.cfg.size is not None:
            frames = [square_resize(f, self.cfg.size) for f in frames]
        return np.stack(frames)

    def episode(self, ref: EpisodeRef) -> dict:
        """frames uint8 [T, H, W, 3], actions [T-1, A], rewards [T-1] (or None), success [T-1] (or None)."""
        rows = self._rows(ref)
        frames = self._frames(ref, rows)
        n = ref.length - 1
        return {"frames": frames, "actions": rows["action"][:n],
                "rewards": rows["reward"][:n] if "reward" in rows else None,
                "success": rows["success"][:n] if "success" in rows else None}


    def close(self) -> None:
        if self._video is not None:
            self._video.close()
            self._video = None


def _stack(values, ref: EpisodeRef, key: str) -> np.ndarray:
    try:
        return np.asarray(values, np.float32)
    except (TypeError, ValueError) as e:
        raise DataError(f"{ref.data_path}: column {key!r} of episode {ref.index} is not numeric ({e})") from None


def _decode_image(value, ref: EpisodeRef, key: str) -> np.ndarray:
    """A LeRobot image cell ({'bytes': PNG/JPEG, 'path': ...}) -> uint8 [H, W, 3]."""
    data = value.get("bytes") if isinstance(value, dict) else None
    if not data:
        raise DataError(f"{ref.data_path}: image column {key!r} of episode {ref.index} has no embedded bytes")
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


class _SequentialVideo:
    """Decode one video file front to back, handing out frame ranges (episodes of a v3 file come in order)."""

    def __init__(self, path: Path):
        self.path, self.pos = path, 0
        self._frames = iter_video_frames(path)

    def read(self, start: int, count: int) -> list[np.ndarray]:
        out = []
        for f in self._frames:
            self.pos += 1
            if self.pos - 1 >= start:
                out.append(f.copy())
                if len(out) == count:
                    break
        return out

    def close(self) -> None:
        self._frames.close()  # stops the ffmpeg subprocess


def import_lerobot(src, out, cfg: LeRobotImportConfig | None = None, *, resume: bool = False,
                   progress: bool = True, shard_size: int | None = None) -> Path:
    """Write every episode of the LeRobot dataset ``src`` into the episode dataset ``out``."""
    from tqdm import tqdm

    from .shards import open_writer

    reader = LeRobotReader(src, cfg)
    if not reader.episodes:
        raise DataError(f"{reader.root / 'meta'}: the dataset lists no episodes")
    first = reader.episode(reader.episodes[0])
    extra = {"importer": "lerobot", "src": str(Path(src).resolve()), "codebase_version": reader.version,
             "camera": reader.camera, "action_key": reader.cfg.action_key, "reward_key": reader.reward_key,
             "size": reader.cfg.size}
    with open_writer(out, image_size=first["frames"].shape[1:3], action_dim=reader.action_dim, fps=reader.fps,
                     source=f"lerobot:{Path(src).name}", extra=extra, resume=resume, shard_size=shard_size) as writer:
        start = writer.num_episodes
        for k, ref in enumerate(tqdm(reader.episodes[start:], unit="ep", desc="import lerobot",
                                     disable=not progress)):
            if ref.length < 2:
                raise DataError(f"{reader.root}: episode {ref.index} has {ref.length} frame(s); need at least 2")
            ep = first if k + start == 0 else reader.episode(ref)
            writer.add_episode(ep["frames"], ep["actions"], ep["rewards"], ep["success"],
                               info={"episode_index": ref.index, "tasks": ref.tasks})
        n = writer.num_episodes
    reader.close()
    print(f"imported {n} episodes ({n - start} new) from LeRobot {reader.version} '{reader.camera}' -> {out}")
    return Path(out)


# ---------------------------------------------------------------------------------------------
# A small LeRobot-layout writer, for tests and examples (not a replacement for LeRobot's own).


def write_lerobot_fixture(root, episodes: list[dict], *, version: str = "v3.0", fps: int = 10,
                          camera: str = "observation.images.top", episodes_per_file: int = 2,
                          chunks_size: int = 1000, video: bool = True) -> Path:
    """Write ``episodes`` (dicts: frames uint8 [T, H, W, 3], actions [T, A], rewards [T], optional task str)
    as a LeRobot dataset of ``version`` 'v2.1' or 'v3.0'. v3.0 packs ``episodes_per_file`` episodes per data
    and video file. ``video=False`` stores frames as PNG image cells in the parquet files instead."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = Path(root)
    if version not in ("v2.1", "v3.0"):
        raise ValueError(f"version must be 'v2.1' or 'v3.0', got {version!r}")
    h, w = episodes[0]["frames"].shape[1:3]
    a_dim = int(np.asarray(episodes[0]["actions"]).shape[1])
    tasks = sorted({ep.get("task", "task") for ep in episodes})
    features = {
        camera: {"dtype": "video" if video else "image", "shape": [h, w, 3], "names": ["height", "width", "channels"]},
        "action": {"dtype": "float32", "shape": [a_dim], "names": None},
        "next.reward": {"dtype": "float32", "shape": [1], "names": None},
        "timestamp": {"dtype": "float32", "shape": [1], "names": None},
        "frame_index": {"dtype": "int64", "shape": [1], "names": None},
        "episode_index": {"dtype": "int64", "shape": [1], "names": None},
        "index": {"dtype": "int64", "shape": [1], "names": None},
        "task_index": {"dtype": "int64", "shape": [1], "names": None},
    }
    v3 = version == "v3.0"
    info = {"codebase_version": version, "robot_type": "fixture", "total_episodes": len(episodes),
            "total_frames": int(sum(len(ep["frames"]) for ep in episodes)), "total_tasks": len(tasks),
            "chunks_size": chunks_size, "fps": fps, "splits": {"train": f"0:{len(episodes)}"},
            "data_path": V3_DATA_PATH if v3 else V2_DATA_PATH,
            "video_path": (V3_VIDEO_PATH if v3 else V2_VIDEO_PATH) if video else None, "features": features}
    (root / "meta").mkdir(parents=True, exist_ok=True)
    (root / INFO).write_text(json.dumps(info, indent=4))

    def rows_of(i: int, ep: dict, first_index: int) -> dict:
        t = len(ep["frames"])
        cols = {"action": [list(map(float, a)) for a in np.asarray(ep["actions"], np.float32)],
                "next.reward": np.asarray(ep["rewards"], np.float32).tolist(),
                "timestamp": (np.arange(t) / fps).astype(np.float32).tolist(), "frame_index": list(range(t)),
                "episode_index": [i] * t, "index": list(range(first_index, first_index + t)),
                "task_index": [tasks.index(ep.get("task", "task"))] * t}
        if not video:
            cols[camera] = [{"bytes": _png(f), "path": None} for f in ep["frames"]]
        return cols

    def write_video(path: Path, frames) -> None:
        import imageio_ffmpeg

        path.parent.mkdir(parents=True, exist_ok=True)
        writer = imageio_ffmpeg.write_frames(str(path), (w, h), fps=fps, codec="libx264", quality=None,
                                             output_params=["-crf", "10"], macro_block_size=1,
                                             ffmpeg_log_level="error")
        writer.send(None)
        for f in frames:
            writer.send(np.ascontiguousarray(f))
        writer.close()

    index = 0
    if not v3:
        lines = []
        for i, ep in enumerate(episodes):
            fields = {"episode_chunk": i // chunks_size, "episode_index": i}
            path = root / V2_DATA_PATH.format(**fields)
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.table(rows_of(i, ep, index)), path)
            if video:
                write_video(root / V2_VIDEO_PATH.format(video_key=camera, **fields), ep["frames"])
            index += len(ep["frames"])
            lines.append(json.dumps({"episode_index": i, "tasks": [ep.get("task", "task")],
                                     "length": len(ep["frames"])}))
        (root / EPISODES_V2).write_text("\n".join(lines) + "\n")
        (root / TASKS_V2).write_text("".join(json.dumps({"task_index": k, "task": t}) + "\n"
                                             for k, t in enumerate(tasks)))
        return root
    meta = {k: [] for k in ("episode_index", "tasks", "length", "data/chunk_index", "data/file_index",
                            "dataset_from_index", "dataset_to_index", f"videos/{camera}/chunk_index",
                            f"videos/{camera}/file_index", f"videos/{camera}/from_timestamp",
                            f"videos/{camera}/to_timestamp")}
    for file_no, lo in enumerate(range(0, len(episodes), episodes_per_file)):
        chunk, file_index = divmod(file_no, chunks_size)
        group = list(range(lo, min(lo + episodes_per_file, len(episodes))))
        cols: dict = {}
        offset = 0  # frames before this episode in the file
        for i in group:
            ep = episodes[i]
            t = len(ep["frames"])
            for k, v in rows_of(i, ep, index).items():
                cols.setdefault(k, []).extend(v)
            for k, v in (("episode_index", i), ("tasks", [ep.get("task", "task")]), ("length", t),
                         ("data/chunk_index", chunk), ("data/file_index", file_index),
                         ("dataset_from_index", index), ("dataset_to_index", index + t),
                         (f"videos/{camera}/chunk_index", chunk), (f"videos/{camera}/file_index", file_index),
                         (f"videos/{camera}/from_timestamp", offset / fps),
                         (f"videos/{camera}/to_timestamp", (offset + t) / fps)):
                meta[k].append(v)
            index += t
            offset += t
        path = root / V3_DATA_PATH.format(chunk_index=chunk, file_index=file_index)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(cols), path)
        if video:
            write_video(root / V3_VIDEO_PATH.format(video_key=camera, chunk_index=chunk, file_index=file_index),
                        [f for i in group for f in episodes[i]["frames"]])
    if not video:
        meta = {k: v for k, v in meta.items() if not k.startswith("videos/")}
    ep_path = root / EPISODES_V3 / "chunk-000" / "file-000.parquet"
    ep_path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(meta), ep_path)
    pq.write_table(pa.table({"task_index": list(range(len(tasks))), "task": tasks}), root / TASKS_V3)
    return root


def _png(frame: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.asarray(frame, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()
