"""Import RLDS datasets (the TFDS layout Open X-Embodiment ships) without TensorFlow.

Layout of one dataset version directory::

    DIR/dataset_info.json                      name, splits (shard lengths), ...
    DIR/features.json                          the TFDS feature tree (steps/observation/image: Image, ...)
    DIR/<name>-<split>.tfrecord-00000-of-01024 TFRecord files, one record = one episode

TFRecord framing, per record: uint64 length, uint32 masked CRC-32C of those 8 bytes, ``length`` bytes of data,
uint32 masked CRC-32C of the data (mask: ``((crc >> 15) | (crc << 17)) + 0xa282ead8``); both CRCs are checked.
The data is a ``tf.train.Example`` protobuf, decoded here by :func:`parse_example` (the wire format of
Example/Features/Feature/BytesList/FloatList/Int64List: a few dozen lines, no protobuf runtime needed).
Steps are flattened by TFDS: ``steps/observation/image`` is a bytes list with one JPEG/PNG per step,
``steps/action`` a float list of T * A values, ``steps/reward`` T floats, ``steps/is_first`` ... T ints.

An RLDS episode of T steps becomes T frames, the first T-1 actions and rewards (step t's action is taken after
seeing frame t; the last step's action has no next frame), as in the LeRobot importer.

Keys: ``camera`` (default: the first image feature under ``steps/observation``), ``action_keys`` (default
``steps/action``), ``reward_key`` (default ``steps/reward`` when present, else zero rewards). Keys may omit the
``steps/`` prefix (and a camera the ``steps/observation/`` prefix). An action key naming a nested dict (e.g.
``steps/action`` of fractal: world_vector, rotation_delta, gripper_closedness_action, ...) expands to its leaves
in **sorted key order**, each flattened per step in C order and concatenated; pass several comma-separated
action keys to choose another order. The dimensions of each key are recorded in ``extra.action_layout``.

Records are parsed in parallel over TFRecord files (``workers`` processes); the parent writes episodes in file
order then record order, so the dataset does not depend on the worker count and ``resume`` continues exactly.
"""

from __future__ import annotations

import io
import json
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import DataError
from .video_import import square_resize

_MASK_DELTA = 0xA282EAD8
TFRECORD_RE = re.compile(r"^(?P<name>.+)-(?P<split>[^-]+)\.tfrecord-(?P<i>\d{5})-of-(?P<n>\d{5})$")


def _crc32c():
    try:
        import google_crc32c
    except ImportError:
        raise DataError("reading TFRecord files needs google-crc32c: pip install 'ivideogpt[rlds]'") from None
    return google_crc32c.value


def masked_crc32c(data: bytes) -> int:
    return _mask(_crc32c()(data))


# ---------------------------------------------------------------------------------------------
# TFRecord framing


def iter_records(path, start: int = 0):
    """Yield (record number, bytes) of a TFRecord file from record ``start``, checking both CRCs of each
    record read; records before ``start`` are skipped by their length without reading their data."""
    path = Path(path)
    crc = _crc32c()
    with open(path, "rb") as f:
        k = 0
        while True:
            head = f.read(12)
            if not head:
                return
            if len(head) < 12:
                raise DataError(f"{path}: truncated record {k} header ({len(head)} of 12 bytes)")
            (length,) = struct.unpack("<Q", head[:8])
            if k < start:
                f.seek(length + 4, 1)
                k += 1
                continue
            if _mask(crc(head[:8])) != struct.unpack("<I", head[8:])[0]:
                raise DataError(f"{path}: record {k}: length CRC mismatch (corrupt file or not a TFRecord file)")
            data = f.read(length)
            tail = f.read(4)
            if len(data) < length or len(tail) < 4:
                raise DataError(f"{path}: truncated record {k} ({len(data)} of {length} data bytes)")
            if _mask(crc(data)) != struct.unpack("<I", tail)[0]:
                raise DataError(f"{path}: record {k}: data CRC mismatch (corrupt file)")
            yield k, data
            k += 1


def count_records(path) -> int:
    """Records in a TFRecord file, from the length headers alone."""
    path = Path(path)
    n, size = 0, path.stat().st_size
    with open(path, "rb") as f:
        while (head := f.read(12)):
            if len(head) < 12:
                raise DataError(f"{path}: truncated record {n} header")
            f.seek(struct.unpack("<Q", head[:8])[0] + 4, 1)
            if f.tell() > size:
                raise DataError(f"{path}: truncated record {n}")
            n += 1
    return n


def _mask(crc: int) -> int:
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _MASK_DELTA) & 0xFFFFFFFF


# ---------------------------------------------------------------------------------------------
# tf.train.Example wire format


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes):
    """(field number, wire type, value) of a protobuf message: value is an int (varint, fixed) or bytes."""
    pos, n = 0, len(buf)
    while pos < n:
        key, pos = _varint(buf, pos)
        num, wire = key >> 3, key & 7
        if wire == 0:
            val, pos = _varint(buf, pos)
        elif wire == 2:
            size, pos = _varint(buf, pos)
            if pos + size > n:
                raise ValueError("truncated length-delimited field")
            val, pos = buf[pos:pos + size], pos + size
        elif wire == 5:
            val, pos = buf[pos:pos + 4], pos + 4
        elif wire == 1:
            val, pos = buf[pos:pos + 8], pos + 8
        else:
            raise ValueError(f"unsupported wire type {wire}")
        yield num, wire, val


def _int64s(wire: int, val) -> list[int]:
    if wire == 0:
        vals = [val]
    else:
        vals, pos = [], 0
        while pos < len(val):
            v, pos = _varint(val, pos)
            vals.append(v)
    return [v - (1 << 64) if v >= 1 << 63 else v for v in vals]


def parse_example(data: bytes) -> dict[str, list | np.ndarray]:
    """A serialized ``tf.train.Example`` -> {key: list of bytes | float32 array | int64 array}."""
    out: dict = {}
    for num, _, features in _fields(data):
        if num != 1:
            continue
        for fnum, _, entry in _fields(features):
            if fnum != 1:
                continue
            key, feature = None, b""
            for enum, _, v in _fields(entry):
                if enum == 1:
                    key = bytes(v).decode()
                elif enum == 2:
                    feature = v
            value = []
            for kind, _, lst in _fields(feature):
                if kind == 1:  # BytesList: repeated bytes value = 1
                    value = [bytes(v) for n_, _, v in _fields(lst) if n_ == 1]
                elif kind == 2:  # FloatList: repeated float value = 1 (packed or not)
                    parts = [np.frombuffer(v, "<f4") for n_, _, v in _fields(lst) if n_ == 1]
                    value = np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)
                elif kind == 3:  # Int64List
                    ints = [x for n_, w, v in _fields(lst) if n_ == 1 for x in _int64s(w, v)]
                    value = np.array(ints, np.int64)
            out[key] = value
    return out


# ---------------------------------------------------------------------------------------------
# The TFDS directory


def feature_tree(root: Path) -> dict[str, str]:
    """{flattened key: kind} from features.json ('image', 'tensor', 'text', ...); {} when absent."""
    path = root / "features.json"
    if not path.exists():
        return {}
    try:
        tree = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: not valid JSON ({e})") from None
    out: dict[str, str] = {}

    def walk(node, prefix: str):
        if not isinstance(node, dict):
            return
        if "featuresDict" in node:
            for k, v in node["featuresDict"].get("features", {}).items():
                walk(v, f"{prefix}/{k}" if prefix else k)
        elif "sequence" in node:
            walk(node["sequence"].get("feature"), prefix)
        elif "image" in node:
            out[prefix] = "image"
        elif "text" in node:
            out[prefix] = "text"
        elif "tensor" in node:
            out[prefix] = "tensor"
        else:
            out[prefix] = str(node.get("pythonClassName", "?")).rsplit(".", 1)[-1].lower()

    walk(tree, "")
    return out


def find_tfrecords(root: Path, split: str) -> list[Path]:
    files = sorted(p for p in root.iterdir() if (m := TFRECORD_RE.match(p.name)) and m["split"] == split)
    if not files:
        found = sorted({m["split"] for p in root.iterdir() if (m := TFRECORD_RE.match(p.name))})
        raise DataError(f"{root}: no '*-{split}.tfrecord-NNNNN-of-MMMMM' files"
                        + (f"; splits here: {found}" if found else " (is this a TFDS dataset version directory?)"))
    return files


@dataclass
class RLDSImportConfig:
    camera: str | None = None  # default: the first image feature under steps/observation
    action_keys: list[str] = field(default_factory=lambda: ["steps/action"])  # [] for action-free
    reward_key: str | None = None  # default: steps/reward when present, else zero rewards
    size: int | None = None  # centre-crop to a square and resize; None: native size
    split: str = "train"


def _full(key: str, prefix: str) -> str:
    return key if key.startswith("steps/") else prefix + key


class EpisodeParser:
    """Turns one RLDS record into an episode: picklable, used in worker processes."""

    def __init__(self, keys: list[str], cfg: RLDSImportConfig, camera: str, action_keys: list[str],
                 reward_key: str | None):
        self.keys, self.cfg, self.camera = keys, cfg, camera
        self.action_keys, self.reward_key = action_keys, reward_key

    def __call__(self, ex: dict, where: str) -> dict:
        images = ex.get(self.camera)
        if not isinstance(images, list) or len(images) < 2:
            got = "missing" if images is None else f"{len(images)} value(s)" if isinstance(images, list) else "numbers"
            raise DataError(f"{where}: camera {self.camera!r} is {got}; need one encoded image per step (>= 2)")
        t = len(images)
        frames = []
        for j, b in enumerate(images):
            try:
                with Image.open(io.BytesIO(b)) as im:
                    f = np.asarray(im.convert("RGB"))
            except OSError as e:
                raise DataError(f"{where}: step {j} of {self.camera!r} is not a JPEG/PNG image ({e})") from None
            if self.cfg.size is not None:
                f = square_resize(f, self.cfg.size)
            if frames and f.shape != frames[0].shape:
                raise DataError(f"{where}: step {j} image is {f.shape[1]}x{f.shape[0]}, step 0's is "
                                f"{frames[0].shape[1]}x{frames[0].shape[0]} (pass --size)")
            frames.append(f)
        parts = []
        for k in self.action_keys:
            v = np.asarray(ex[k], np.float32) if k in ex else None
            if v is None or isinstance(ex[k], list) or len(v) % t:
                got = "missing" if k not in ex else "bytes" if isinstance(ex[k], list) else f"{len(v)} values"
                raise DataError(f"{where}: action key {k!r} is {got}; expected a multiple of the {t} steps: "
                                "wrong-shape record")
            parts.append(v.reshape(t, -1))
        actions = np.concatenate(parts, 1) if parts else np.zeros((t, 0), np.float32)
        rewards = None
        if self.reward_key:
            r = ex.get(self.reward_key)
            if r is None or isinstance(r, list) or len(r) != t:
                got = "missing" if r is None else "bytes" if isinstance(r, list) else f"{len(r)} values"
                raise DataError(f"{where}: reward key {self.reward_key!r} is {got}; expected {t}: wrong-shape record")
            rewards = np.asarray(r, np.float32)[: t - 1]
        return {"frames": np.stack(frames), "actions": actions[: t - 1], "rewards": rewards,
                "dims": [p.shape[1] for p in parts]}


class RLDSReader:
    """The episodes of one split of an RLDS dataset directory (see the module docstring)."""

    def __init__(self, root, cfg: RLDSImportConfig | None = None):
        self.root = Path(root)
        self.cfg = cfg or RLDSImportConfig()
        if not self.root.is_dir():
            raise DataError(f"{self.root}: not a directory (expected a TFDS dataset version directory)")
        self.name = self.root.parent.name if re.match(r"^\d+\.\d+\.\d+$", self.root.name) else self.root.name
        info = self.root / "dataset_info.json"
        if info.exists():
            try:
                self.name = json.loads(info.read_text()).get("name", self.name)
            except (OSError, ValueError) as e:
                raise DataError(f"{info}: not valid JSON ({e})") from None
        self.files = find_tfrecords(self.root, self.cfg.split)
        self.features = feature_tree(self.root)
        first = next(iter_records(self.files[0]), None)
        if first is None:
            raise DataError(f"{self.files[0]}: no records")
        try:
            ex = parse_example(first[1])
        except ValueError as e:
            raise DataError(f"{self.files[0]}: record 0 is not a tf.train.Example ({e})") from None
        keys = sorted(set(ex) | set(self.features))
        self.keys = keys
        step_keys = [k for k in keys if k.startswith("steps/")]
        images = [k for k in step_keys if self.features.get(k) == "image"
                  or (k not in self.features and isinstance(ex.get(k), list) and ex[k][:1]
                      and ex[k][0][:4] in (b"\xff\xd8\xff\xe0", b"\x89PNG", b"\xff\xd8\xff\xe1", b"\xff\xd8\xff\xdb"))]
        cams = [k for k in images if k.startswith("steps/observation/")] or images
        camera = _full(self.cfg.camera, "steps/observation/") if self.cfg.camera else (cams[0] if cams else None)
        if camera not in images:
            raise DataError(f"{self.root}: camera {self.cfg.camera or camera!r} is not an image feature; image "
                            f"features: {images} (choose one with --camera)")
        action_keys = []
        for k in self.cfg.action_keys:
            full = _full(k, "steps/")
            leaves = [x for x in step_keys if x == full or x.startswith(full + "/")]
            leaves = [x for x in leaves if not isinstance(ex.get(x), list) and self.features.get(x) != "text"]
            if not leaves:
                raise DataError(f"{self.root}: no numeric action key {k!r}; step keys: {step_keys} "
                                "(choose with --action-key, comma-separated for several)")
            action_keys += sorted(leaves)
        reward = self.cfg.reward_key
        if reward is not None:
            reward = _full(reward, "steps/")
            if reward not in step_keys:
                raise DataError(f"{self.root}: no reward key {self.cfg.reward_key!r}; step keys: {step_keys}")
        elif "steps/reward" in step_keys:
            reward = "steps/reward"
        self.camera, self.action_keys, self.reward_key = camera, action_keys, reward
        self.parser = EpisodeParser(keys, self.cfg, camera, action_keys, reward)
        self.first = self.parser(ex, f"{self.files[0]} record 0")
        self.action_dim = int(self.first["actions"].shape[1])
        self.action_layout = dict(zip(action_keys, self.first["dims"]))


def _file_episodes(args) -> list[tuple[int, dict]]:
    """Worker: (record number, episode) of every record of one file from ``start``."""
    parser, path, start = args
    out = []
    for k, data in iter_records(path, start):
        where = f"{path} record {k}"
        try:
            ex = parse_example(data)
        except ValueError as e:
            raise DataError(f"{where}: not a tf.train.Example ({e})") from None
        out.append((k, parser(ex, where)))
    return out


def import_rlds(src, out, cfg: RLDSImportConfig | None = None, *, resume: bool = False, progress: bool = True,
                shard_size: int | None = None, workers: int = 1, fps: float | None = None) -> Path:
    """Write every episode of an RLDS split into the episode dataset ``out``; return ``out``."""
    from tqdm import tqdm

    from .shards import open_writer

    reader = RLDSReader(src, cfg)
    cfg = reader.cfg
    first = reader.first
    extra = {"importer": "rlds", "src": str(Path(src).resolve()), "dataset": reader.name, "split": cfg.split,
             "camera": reader.camera, "action_keys": reader.action_keys, "action_layout": reader.action_layout,
             "reward_key": reader.reward_key, "size": cfg.size}
    with open_writer(out, image_size=first["frames"].shape[1:3], action_dim=reader.action_dim,
                     fps=10.0 if fps is None else fps, source=f"rlds:{reader.name}", extra=extra, resume=resume,
                     shard_size=shard_size) as w:
        done = w.next_episode
        tasks, skip = [], done
        for path in reader.files:  # skip whole files already written, then records within the next one
            n = count_records(path) if skip else None
            if n is not None and skip >= n:
                skip -= n
                continue
            tasks.append((reader.parser, path, skip))
            skip = 0
        bar = tqdm(total=None, initial=done, unit="ep", desc=f"import rlds {reader.name}", disable=not progress)
        pool = None
        if workers > 1 and len(tasks) > 1:
            import multiprocessing as mp

            pool = mp.get_context("spawn").Pool(min(workers, len(tasks)))
            results = pool.imap(_file_episodes, tasks)  # in file order
        else:
            results = map(_file_episodes, tasks)
        try:
            for (_, path, _), eps in zip(tasks, results):
                for k, ep in eps:
                    if ep["frames"].shape[1:3] != first["frames"].shape[1:3] or ep["dims"] != first["dims"]:
                        raise DataError(f"{path} record {k}: frames {list(ep['frames'].shape[1:3])} and action "
                                        f"dims {ep['dims']}, the first record's are {list(first['frames'].shape[1:3])}"
                                        f" and {first['dims']}: wrong-shape record")
                    w.add_episode(ep["frames"], ep["actions"], ep["rewards"],
                                  info={"file": path.name, "record": k})
                    bar.update(1)
        finally:
            bar.close()
            if pool is not None:
                pool.terminate()
                pool.join()
        n = w.next_episode
    print(f"imported {n} episodes ({n - done} new) from RLDS {reader.name} ({len(reader.files)} file(s), camera "
          f"{reader.camera}, action_dim {reader.action_dim}) -> {out}")
    return Path(out)
