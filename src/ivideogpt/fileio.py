"""Atomic file and directory writes: a crash never leaves a half-written file under its final name."""

from __future__ import annotations

import glob
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .faults import fault_point


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give them the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


@contextmanager
def atomic_dir(path: str | os.PathLike):
    """Yield a temporary sibling directory; on success it replaces ``path`` in one rename.

    An existing ``path`` is moved aside first and deleted only after the new one is in place,
    so at every instant either the old or the new complete directory exists.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700 directories
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if path.exists():
        old = path.parent / f".{path.name}.old-{os.getpid()}"
        os.replace(path, old)
        fault_point("atomic_dir.swapped")
    os.replace(tmp, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def recover_interrupted(path: str | os.PathLike) -> None:
    """Undo what a killed :func:`atomic_dir` / :func:`atomic_write_bytes` left beside ``path``.

    Killed between its two renames, ``atomic_dir`` leaves ``path`` missing and its previous complete version
    under ``.NAME.old-PID``: move it back. Half-written temporaries (``.NAME.*.tmp``) and old versions whose
    deletion was cut short are removed (they can be large: a replay buffer, a token cache).
    """
    path = Path(path)
    if not path.parent.is_dir():
        return
    stem = glob.escape(path.name)
    olds = sorted(path.parent.glob(f".{stem}.old-*"), key=lambda p: p.stat().st_mtime)
    if olds and not os.path.lexists(path):
        os.replace(olds.pop(), path)
    for p in olds + sorted(path.parent.glob(f".{stem}.*.tmp")):
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
