"""The sharded episode store: many episodes per file, for datasets of 10^5..10^6+ episodes.

Layout::

    DIR/meta.json                  # dataset constants, written once when the dataset is created
    DIR/shards/000000.json         # shard 0's index: episode lengths, byte offsets, stats, checksum (written once)
    DIR/shards/000000-001000.bin   # shard 0's data: its 1000 episodes' arrays back to back (raw, uncompressed)
    DIR/shards/000001.json ...

``meta.json`` holds ``format`` ("ivideogpt-shards"), ``version`` (1), ``source``, ``image_size`` [H, W], ``fps``,
``action_dim``, ``shard_size`` (episodes per shard), ``extra``, ``val_fraction`` and ``split_seed``; it never
changes after creation, so several writer processes can share it. Everything per episode lives in the shard
indexes. An index lists ``num_episodes``, ``first_episode`` (shard * shard_size), ``lengths`` (frames per
episode), ``offsets`` (byte offset of each episode in the data file), ``split_keys``, ``episode_info`` (one dict
per episode or null), ``has_success``, ``stats_state`` (the exact running count/mean/M2/min/max of the shard's
actions and rewards, merged over shards with Chan's formula), ``data`` (the data file's name), ``data_bytes``
and ``crc32`` (zlib CRC-32 of the whole data file).

An episode of T frames is stored as frames uint8 [T, H, W, 3], then actions float32 [T-1, A], rewards float32
[T-1] and, when the dataset has them, success bool [T-1], each starting on an 8-byte boundary
(:func:`episode_layout`). A clip is therefore one positioned read from one open file, as in the
per-episode format, and an episode's arrays are the same arrays :class:`~.episodes.EpisodeDataset` returns for
either format (same splits, same statistics: training on either gives the same batches).

Atomicity: a shard in flight is written to ``shards/.NNNNNN.bin.tmp`` and committed by renaming the data file
into place and then replacing its index (the commit point), so a crash loses at most the shard in flight.
``--resume`` deletes leftovers and, if the last shard was committed part-full, copies it into a new in-flight
shard (its data are checked against its checksum on the way) so it fills up; the old data file stays valid
until the new index replaces the old one. Writer w of n (``writer=w, num_writers=n``) writes shards
w, w+n, w+2n, ... holding episodes [k * shard_size, (k + 1) * shard_size) of shard k, so several processes fill
disjoint shards of one dataset, and the result is the dataset one writer would have written.

Reading checks each shard's index fields and that its data file has the size the index says (cheap, at open);
:meth:`ShardIndex.verify` (``ivideogpt info --verify``, ``ivideogpt convert-data``) reads every byte and checks
the CRCs.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import warnings
import zlib
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..fileio import atomic_write_json
from .episodes import (
    META,
    SHARD_FORMAT,
    VERSION,
    _empty_state,
    _merge_state,
    _public_stats,
    _read_json_object,
    _read_meta_header,
    assign_splits,
    check_episode,
    split_key,
)

SHARDS = "shards"
INDEX_FORMAT = "ivideogpt-shard-index"
DEFAULT_SHARD_SIZE = 1000
CONST_FIELDS = ("format", "version", "source", "image_size", "fps", "action_dim", "shard_size", "extra",
                "val_fraction", "split_seed")
INDEX_FIELDS = ("format", "shard", "first_episode", "num_episodes", "lengths", "offsets", "split_keys",
                "episode_info", "has_success", "stats_state", "data", "data_bytes", "crc32")
_INDEX_RE = re.compile(r"^(\d{6})\.json$")
_DATA_RE = re.compile(r"^(\d{6})-(\d{6})\.bin$")
_CHUNK = 1 << 24  # bytes per read when checksumming


def index_path(root: Path, k: int) -> Path:
    return Path(root) / SHARDS / f"{k:06d}.json"


def data_name(k: int, n: int) -> str:
    return f"{k:06d}-{n:06d}.bin"


def _align(n: int) -> int:
    return (n + 7) // 8 * 8


@functools.lru_cache(maxsize=4096)  # keyed by length: bounded by the distinct lengths, not the episode count
def _layout(t: int, h: int, w: int, action_dim: int, has_success: bool) -> tuple[dict, int]:
    arrays = [("frames", (t, h, w, 3), np.dtype(np.uint8)), ("actions", (t - 1, action_dim), np.dtype(np.float32)),
              ("rewards", (t - 1,), np.dtype(np.float32))]
    if has_success:
        arrays.append(("success", (t - 1,), np.dtype(bool)))
    out, pos = {}, 0
    for name, shape, dtype in arrays:
        out[name] = (shape, dtype, pos)
        pos = _align(pos + math.prod(shape) * dtype.itemsize)
    return out, pos


def episode_layout(t: int, image_size, action_dim: int, has_success: bool) -> tuple[dict, int]:
    """{name: (shape, dtype, offset from the episode's start)} and the episode's size in bytes (8-aligned)."""
    h, w = image_size
    return _layout(int(t), int(h), int(w), int(action_dim), bool(has_success))


def episode_nbytes(lengths: np.ndarray, image_size, action_dim: int, has_success: bool) -> np.ndarray:
    """Sizes in bytes of episodes of the given lengths (vectorised :func:`episode_layout`)."""
    t = np.asarray(lengths, np.int64)
    h, w = image_size
    al = lambda n: (n + 7) // 8 * 8  # noqa: E731
    out = al(t * h * w * 3) + al((t - 1) * action_dim * 4) + al((t - 1) * 4)
    return out + al(t - 1) if has_success else out


def file_crc32(path: Path) -> int:
    crc = 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            crc = zlib.crc32(chunk, crc)
    return crc


# ---------------------------------------------------------------------------------------------
# Reading


def _read_constants(root: Path) -> dict:
    path = root / META
    meta = _read_meta_header(path, CONST_FIELDS, SHARD_FORMAT)
    if not (isinstance(meta["shard_size"], int) and meta["shard_size"] >= 1):
        raise DataError(f"{path}: shard_size must be an integer >= 1, got {meta['shard_size']!r}")
    return meta


def _scan(root: Path) -> tuple[set[int], dict[int, list[str]]]:
    """Shard numbers with an index, and the data file names per shard number."""
    d = root / SHARDS
    if not d.is_dir():
        raise DataError(f"{d}: not found; {root} is not a sharded episode dataset")
    indexes, data = set(), {}
    for p in d.iterdir():
        if m := _INDEX_RE.match(p.name):
            indexes.add(int(m.group(1)))
        elif m := _DATA_RE.match(p.name):
            data.setdefault(int(m.group(1)), []).append(p.name)
    return indexes, data


def read_index(root: Path, k: int, const: dict) -> dict:
    """Shard k's index, checked against the dataset constants and its data file's size."""
    path = index_path(root, k)
    idx = _read_json_object(path)
    missing = [f for f in INDEX_FIELDS if f not in idx]
    if missing:
        raise DataError(f"{path}: missing field(s) {missing}")
    if idx["format"] != INDEX_FORMAT or idx["shard"] != k:
        raise DataError(f"{path}: not the index of shard {k} (format {idx['format']!r}, shard {idx['shard']!r})")
    n = idx["num_episodes"]
    for key in ("lengths", "offsets", "split_keys"):
        if not isinstance(idx[key], list) or len(idx[key]) != n:
            raise DataError(f"{path}: {key} must list one value per episode ({n})")
    if idx["episode_info"] is not None and (not isinstance(idx["episode_info"], list) or len(idx["episode_info"]) != n):
        raise DataError(f"{path}: episode_info must be null or list one dict per episode ({n})")
    if n < 1 or n > const["shard_size"] or idx["first_episode"] != k * const["shard_size"]:
        raise DataError(f"{path}: {n} episodes from episode {idx['first_episode']} do not fit shard {k} of "
                        f"{const['shard_size']} episodes")
    data = root / SHARDS / str(idx["data"])
    if not data.is_file():
        raise DataError(f"{data}: data file of shard {k} not found (named by {path})")
    size = data.stat().st_size
    if size != idx["data_bytes"]:
        raise DataError(f"{data}: truncated or overwritten: {size} bytes, its index {path.name} says "
                        f"{idx['data_bytes']}")
    # Every record must fit its file at the shape the dataset declares ("wrong-shape record").
    lengths, offsets = np.asarray(idx["lengths"], np.int64), np.asarray(idx["offsets"], np.int64)
    if len(lengths) and lengths.min() < 2:
        raise DataError(f"{path}: episode {int(np.argmin(lengths)) + idx['first_episode']} has "
                        f"{int(lengths.min())} frame(s); need at least 2")
    ends = offsets + episode_nbytes(lengths, const["image_size"], const["action_dim"], idx["has_success"])
    bad = (offsets < 0) | (ends > size)
    bad[:-1] |= offsets[1:] < ends[:-1]
    if bad.any():
        j = int(np.flatnonzero(bad)[0])
        h, w = const["image_size"]
        raise DataError(f"{path}: episode {idx['first_episode'] + j} ({int(lengths[j])} frames of "
                        f"{h}x{w}, action_dim {const['action_dim']}) does not fit bytes {int(offsets[j])}.."
                        f"{int(ends[j])} of {data.name} ({size} bytes): wrong-shape record")
    return idx


class ShardIndex:
    """The episodes of a sharded store: its index arrays and a ``meta`` dict with the same fields as the
    per-episode format's ``meta.json`` (counts, lengths, statistics, splits), built from the shard indexes."""

    def __init__(self, root):
        self.root = Path(root)
        const = _read_constants(self.root)
        self.const = const
        indexes, data = _scan(self.root)
        last = max(indexes | set(data), default=-1)
        for k in range(last + 1):
            if k not in indexes:
                if k in data:
                    raise DataError(f"{index_path(self.root, k)}: index missing for data file {data[k][0]} "
                                    "(a writer crashed before committing it: --resume drops it; or the index "
                                    "was deleted)")
                raise DataError(f"{index_path(self.root, k)}: shard {k} missing (shards up to {last} exist; "
                                "a writer is still running or stopped early: run it again with --resume)")
        self.indexes = [read_index(self.root, k, const) for k in range(last + 1)]
        for k, idx in enumerate(self.indexes[:-1]):
            if idx["num_episodes"] != const["shard_size"]:
                raise DataError(f"{index_path(self.root, k)}: {idx['num_episodes']} episodes, but every shard "
                                f"except the last holds {const['shard_size']} (a writer stopped early: --resume)")
        succ = {idx["has_success"] for idx in self.indexes}
        if len(succ) > 1:
            raise DataError(f"{self.root / SHARDS}: some shards have success flags and some do not")
        self.has_success = bool(succ.pop()) if succ else None
        # Compact per-episode arrays (about 20 bytes per episode): the only state that grows with the dataset.
        self.lengths = np.concatenate([np.asarray(i["lengths"], np.int64) for i in self.indexes] or [np.zeros(0, int)])
        self.offsets = np.concatenate([np.asarray(i["offsets"], np.int64) for i in self.indexes] or [np.zeros(0, int)])
        self.data_paths = [self.root / SHARDS / i["data"] for i in self.indexes]
        self._hw = tuple(int(x) for x in const["image_size"])
        self.meta = self._meta()
        for idx in self.indexes:  # per-episode lists now live in the arrays and meta: keep one copy
            for key in ("lengths", "offsets", "split_keys", "episode_info", "stats_state"):
                idx.pop(key, None)

    def _meta(self) -> dict:
        c, n = self.const, len(self.lengths)
        st = {"actions": _empty_state(c["action_dim"]), "rewards": _empty_state(1)}
        for idx in self.indexes:
            for key in st:
                st[key] = merge_states(st[key], idx["stats_state"][key])
        keys = [k for idx in self.indexes for k in idx["split_keys"]]
        meta = {**{k: c[k] for k in CONST_FIELDS}, "num_episodes": n, "episode_lengths": self.lengths.tolist(),
                "num_frames": int(self.lengths.sum()), "action_stats": _public_stats(st["actions"], scalar=False),
                "reward_stats": _public_stats(st["rewards"], scalar=True), "has_success": self.has_success,
                "splits": assign_splits(n, c["val_fraction"], c["split_seed"], keys), "stats_state": st,
                "num_shards": len(self.indexes)}
        if any(idx["episode_info"] is not None for idx in self.indexes):
            meta["episode_info"] = [dict(info) for idx in self.indexes
                                    for info in (idx["episode_info"] or [{}] * idx["num_episodes"])]
        return meta

    def shard_of(self, i: int) -> int:
        return i // self.const["shard_size"]

    def data_path(self, i: int) -> Path:
        return self.data_paths[self.shard_of(i)]

    def headers(self, i: int) -> dict:
        """{name: (shape, dtype, absolute offset in the shard's data file)} of episode i."""
        layout, _ = _layout(int(self.lengths[i]), *self._hw, self.const["action_dim"], bool(self.has_success))
        base = int(self.offsets[i])
        return {name: (shape, dtype, base + off) for name, (shape, dtype, off) in layout.items()}

    def verify(self, progress: bool = False) -> None:
        """Read every shard and compare its CRC-32 with its index; DataError naming the first bad file."""
        for k, (idx, path) in enumerate(zip(self.indexes, self.data_paths)):
            crc = file_crc32(path)
            if crc != idx["crc32"]:
                raise DataError(f"{path}: checksum mismatch (crc32 {crc:08x}, its index {index_path(self.root, k).name}"
                                f" says {idx['crc32']:08x}): the file is corrupt")


def merge_states(a: dict, b: dict) -> dict:
    """Chan's formula for two running-statistics states (see episodes._merge_state)."""
    if b["count"] == 0:
        return a
    if a["count"] == 0:
        return b
    n_a, n_b = a["count"], b["count"]
    mean_a, mean_b = np.array(a["mean"], np.float64), np.array(b["mean"], np.float64)
    n = n_a + n_b
    delta = mean_b - mean_a
    mean = mean_a + delta * (n_b / n)
    m2 = np.array(a["m2"], np.float64) + np.array(b["m2"], np.float64) + delta**2 * (n_a * n_b / n)
    lo = np.minimum(np.array(a["min"], np.float64), np.array(b["min"], np.float64))
    hi = np.maximum(np.array(a["max"], np.float64), np.array(b["max"], np.float64))
    return {"count": n, "mean": mean.tolist(), "m2": m2.tolist(), "min": lo.tolist(), "max": hi.tolist()}


# ---------------------------------------------------------------------------------------------
# Writing


class ShardWriter:
    """Append episodes to a sharded store (same ``add_episode`` / ``close`` as :class:`~.episodes.EpisodeWriter`).

    ``writer``/``num_writers``: this process writes shards writer, writer + num_writers, ... (see the module
    docstring); :attr:`next_episode` is the dataset index the next ``add_episode`` gets.
    """

    def __init__(self, path, *, image_size: tuple[int, int], action_dim: int, fps: float = 10.0,
                 source: str = "unknown", extra: dict | None = None, resume: bool = False,
                 val_fraction: float = 0.1, seed: int = 0, shard_size: int = DEFAULT_SHARD_SIZE,
                 writer: int = 0, num_writers: int = 1):
        self.path = Path(path)
        image_size = [int(s) for s in image_size]
        if len(image_size) != 2 or min(image_size) < 1:
            raise DataError(f"{self.path}: image_size must be [H, W] with positive sizes, got {image_size}")
        if action_dim < 0 or not 0 <= val_fraction < 1 or shard_size < 1:
            raise DataError(f"{self.path}: need action_dim >= 0, 0 <= val_fraction < 1 and shard_size >= 1, got "
                            f"{action_dim}, {val_fraction}, {shard_size}")
        if not 0 <= writer < num_writers:
            raise DataError(f"{self.path}: writer must be in [0, {num_writers}), got {writer}")
        self.writer, self.num_writers = int(writer), int(num_writers)
        try:
            extra = json.loads(json.dumps(extra or {}))
        except (TypeError, ValueError) as e:
            raise DataError(f"{self.path}: extra must be JSON-serialisable ({e})") from None
        want = {"format": SHARD_FORMAT, "version": VERSION, "source": source, "image_size": image_size,
                "fps": float(fps), "action_dim": int(action_dim), "shard_size": int(shard_size), "extra": extra,
                "val_fraction": float(val_fraction), "split_seed": int(seed)}
        if self.path.exists() and not self.path.is_dir():
            raise DataError(f"{self.path}: exists and is not a directory; choose another --out")
        meta_path = self.path / META
        nonempty = self.path.exists() and any(self.path.iterdir())
        if nonempty and not meta_path.exists():
            raise DataError(f"{meta_path}: not found; {self.path} is not a sharded dataset to write into")
        if nonempty:
            on_disk = _read_constants(self.path)
            if not resume and num_writers == 1:
                raise DataError(f"{self.path} exists; pass --resume to continue or choose another --out")
            for field in ("image_size", "action_dim", "source", "shard_size"):
                if on_disk[field] != want[field]:
                    raise DataError(f"{meta_path}: cannot resume: {field} is {on_disk[field]!r} on disk, "
                                    f"got {want[field]!r}")
            self.const = on_disk
        else:
            atomic_write_json(meta_path, want)  # first: a second writer starting now finds it
            (self.path / SHARDS).mkdir(parents=True, exist_ok=True)
            self.const = want
        self.shard_size = self.const["shard_size"]
        self.has_success: bool | None = None
        self._closed = False
        self._done_infos: list[dict] = []  # episode_info of this writer's committed episodes
        self._shard = self.writer  # the shard in flight
        self._reset_flight()
        self._recover(resume)

    # ---- state of the shard in flight -----------------------------------------------------------

    def _reset_flight(self) -> None:
        self._f = None
        self._lengths: list[int] = []
        self._offsets: list[int] = []
        self._infos: list[dict | None] = []
        self._pos = 0
        self._crc = 0
        self._stats = {"actions": _empty_state(self.const["action_dim"]), "rewards": _empty_state(1)}

    def _tmp_path(self) -> Path:
        return self.path / SHARDS / f".{self._shard:06d}.bin.tmp"

    def _open_flight(self) -> None:
        self._f = open(self._tmp_path(), "wb")

    def _recover(self, resume: bool) -> None:
        d = self.path / SHARDS
        d.mkdir(exist_ok=True)
        mine = lambda k: k % self.num_writers == self.writer  # noqa: E731
        for p in d.iterdir():  # temporaries of this writer's shards in flight: never committed
            m = re.match(r"^\.(\d{6})\.", p.name)
            if m and mine(int(m.group(1))):
                p.unlink(missing_ok=True)
        indexes, data = _scan(self.path)
        done = sorted(k for k in indexes if mine(k))
        if done and not resume:
            raise DataError(f"{index_path(self.path, done[0])}: this writer's shards exist; pass --resume")
        for k in done:
            idx = read_index(self.path, k, self.const)
            for name in data.get(k, []):  # data files left by a crash before their index was replaced
                if name != idx["data"]:
                    (d / name).unlink(missing_ok=True)
            if self.has_success is None:
                self.has_success = idx["has_success"]
            self._done_infos += [dict(x) for x in (idx["episode_info"] or [{}] * idx["num_episodes"])]
        for k, names in data.items():
            if mine(k) and k not in indexes:
                for name in names:
                    warnings.warn(f"resume: dropping uncommitted shard data {d / name}", stacklevel=3)
                    (d / name).unlink(missing_ok=True)
        if not done:
            return
        expected = list(range(self.writer, done[-1] + 1, self.num_writers))
        if done != expected:
            gap = sorted(set(expected) - set(done))
            raise DataError(f"{index_path(self.path, gap[0])}: missing, but this writer's later shards exist")
        last = read_index(self.path, done[-1], self.const)
        if last["num_episodes"] < self.shard_size:
            self._reopen(last)
        else:
            self._shard = done[-1] + self.num_writers

    def _reopen(self, idx: dict) -> None:
        """Continue a part-full committed shard: copy its data (checking its CRC) into a new shard in flight."""
        self._shard = idx["shard"]
        src = self.path / SHARDS / idx["data"]
        self._open_flight()
        with open(src, "rb") as f:
            while chunk := f.read(_CHUNK):
                self._crc = zlib.crc32(chunk, self._crc)
                self._f.write(chunk)
        if self._crc != idx["crc32"]:
            self._f.close()
            self._tmp_path().unlink(missing_ok=True)
            raise DataError(f"{src}: checksum mismatch: cannot resume into a corrupt shard")
        self._pos = idx["data_bytes"]
        self._lengths, self._offsets = list(idx["lengths"]), list(idx["offsets"])
        self._infos = list(idx["episode_info"] or [None] * idx["num_episodes"])
        self._stats = idx["stats_state"]
        n = idx["num_episodes"]
        self._done_infos = self._done_infos[:-n]  # they are in flight again

    # ---- public ---------------------------------------------------------------------------------

    @property
    def next_episode(self) -> int:
        """The dataset index of the next episode this writer adds."""
        return self._shard * self.shard_size + len(self._lengths)

    @property
    def num_episodes(self) -> int:
        """Episodes this writer has added (with one writer: the dataset's size, committed or in flight)."""
        return len(self._done_infos) + len(self._lengths)

    @property
    def meta(self) -> dict:
        infos = self._done_infos + [dict(x or {}) for x in self._infos]
        return {**self.const, "num_episodes": self.num_episodes, "has_success": self.has_success,
                "episode_info": infos}

    def add_episode(self, frames, actions=None, rewards=None, success=None, info: dict | None = None) -> int:
        if self._closed:
            raise RuntimeError("ShardWriter is closed")
        i = self.next_episode
        c = self.const
        frames, actions, rewards, success, _ = check_episode(
            f"episode {i}", c["image_size"], c["action_dim"], self.has_success, frames, actions, rewards, success,
            info)
        if self.has_success is None:
            self.has_success = success is not None
        t = len(frames)
        layout, size = episode_layout(t, c["image_size"], c["action_dim"], self.has_success)
        buf = bytearray(size)
        arrays = {"frames": frames, "actions": actions, "rewards": rewards, "success": success}
        for name, (_, dtype, off) in layout.items():
            raw = np.ascontiguousarray(arrays[name], dtype=dtype).tobytes()
            buf[off:off + len(raw)] = raw
        if self._f is None:
            self._open_flight()
        self._f.write(buf)
        self._crc = zlib.crc32(buf, self._crc)
        self._offsets.append(self._pos)
        self._pos += size
        self._lengths.append(t)
        self._infos.append(dict(info) if info is not None else None)
        self._stats["actions"] = _merge_state(self._stats["actions"], actions.reshape(t - 1, c["action_dim"]))
        self._stats["rewards"] = _merge_state(self._stats["rewards"], rewards.reshape(t - 1, 1))
        if len(self._lengths) == self.shard_size:
            self._commit()
        return i

    def _commit(self) -> None:
        if not self._lengths:
            return
        k, n = self._shard, len(self._lengths)
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()
        first = k * self.shard_size
        name = data_name(k, n)
        infos = None if all(x is None for x in self._infos) else [dict(x or {}) for x in self._infos]
        idx = {"format": INDEX_FORMAT, "shard": k, "first_episode": first, "num_episodes": n,
               "lengths": self._lengths, "offsets": self._offsets,
               "split_keys": [split_key(self.const["split_seed"], first + j) for j in range(n)],
               "episode_info": infos, "has_success": bool(self.has_success), "stats_state": self._stats,
               "data": name, "data_bytes": self._pos, "crc32": self._crc}
        old = index_path(self.path, k)
        old_data = _read_json_object(old).get("data") if old.exists() else None
        os.replace(self._tmp_path(), self.path / SHARDS / name)
        atomic_write_json(old, idx)  # the commit point
        if old_data and old_data != name:
            (self.path / SHARDS / old_data).unlink(missing_ok=True)
        self._done_infos += [dict(x or {}) for x in self._infos]
        self._shard += self.num_writers
        self._reset_flight()

    def close(self) -> dict:
        """Commit the shard in flight (possibly part-full)."""
        if not self._closed:
            if self._f is not None:
                self._commit()
            self._closed = True
        return self.meta

    def abort(self) -> None:
        """Drop the shard in flight (what a crash would do)."""
        if self._f is not None:
            self._f.close()
            self._tmp_path().unlink(missing_ok=True)
        self._reset_flight()
        self._closed = True

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        if exc_type is not None and self._f is not None and self._f.tell() != self._pos:
            self.abort()  # the error came mid-write: the shard in flight is not whole
        else:
            self.close()  # every episode added so far is whole and validated: keep it
        return False


def open_writer(path, *, shard_size: int | None = None, resume: bool = False, writer: int = 0,
                num_writers: int = 1, **kw):
    """An :class:`~.episodes.EpisodeWriter` or, with ``shard_size`` (or when resuming a sharded store), a
    :class:`ShardWriter`. On resume the format on disk decides; a ``shard_size`` that disagrees is an error."""
    from .episodes import EpisodeWriter

    path = Path(path)
    on_disk = None
    if (path / META).exists():
        on_disk = _read_json_object(path / META).get("format")
    if resume and on_disk is not None:
        sharded = on_disk == SHARD_FORMAT
        if not sharded and shard_size is not None:
            raise DataError(f"{path / META}: the dataset on disk is in the per-episode format; resume it without "
                            "--shard-size (or convert it with `ivideogpt convert-data`)")
    else:
        sharded = shard_size is not None or num_writers > 1
    if not sharded:
        return EpisodeWriter(path, resume=resume, **kw)
    if shard_size is None:
        shard_size = _read_json_object(path / META).get("shard_size") if on_disk else DEFAULT_SHARD_SIZE
    return ShardWriter(path, shard_size=int(shard_size), resume=resume, writer=writer, num_writers=num_writers,
                       **kw)


def convert_dataset(src, out, *, shard_size: int | None = None, resume: bool = False, progress: bool = True) -> Path:
    """Rewrite the dataset ``src`` (either format) into ``out``: the sharded store with ``shard_size`` episodes per
    shard, or the per-episode format when ``shard_size`` is None. Episode order, frames, actions, rewards,
    success flags, per-episode info, splits and statistics are kept. A sharded source is checksummed first."""
    from tqdm import tqdm

    from .episodes import EpisodeDataset

    ds = EpisodeDataset(src)
    if Path(out).resolve() == ds.path.resolve():
        raise DataError(f"{out}: the output must be a new directory, not the source")
    if ds.sharded:
        ds.validate()
    m = ds.meta
    kw = {"image_size": ds.image_size, "action_dim": ds.action_dim, "fps": m["fps"], "source": m["source"],
          "extra": m["extra"], "val_fraction": m.get("val_fraction", 0.1), "seed": m.get("split_seed", 0)}
    with open_writer(out, shard_size=shard_size, resume=resume, **kw) as w:
        start = w.next_episode
        for i in tqdm(range(start, len(ds)), initial=start, total=len(ds), unit="ep", desc="convert",
                      disable=not progress):
            ep = ds.episode(i)
            w.add_episode(ep["frames"], ep["actions"], ep["rewards"], ep.get("success"),
                          info=ds.episode_info(i) if "episode_info" in m else None)
    return Path(out)
