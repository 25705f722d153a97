"""A test hook for the kill/resume tests: stop the process at a named point so a test can SIGKILL it there.

Inert unless ``IVIDEOGPT_FAULT=POINT:N`` is set in the environment: then the N-th time this process reaches
``fault_point(POINT)`` it writes ``IVIDEOGPT_FAULT_MARK`` (a file path, if set) and stops itself with SIGSTOP.
The test waits for the mark and kills the process (group) with SIGKILL, which is exactly ``kill -9`` at that
instant, but at a reproducible place: a given training step, or the middle of a checkpoint write.

Points: ``train.step`` (top of every engine step), ``rl.step`` (before every agent step), ``checkpoint.partial``
(a checkpoint's temporary directory half written), ``atomic_dir.swapped`` (an existing directory moved aside,
its replacement not yet renamed into place).
"""

from __future__ import annotations

import os
import signal

_SPEC = os.environ.get("IVIDEOGPT_FAULT")
_counts: dict[str, int] = {}


def fault_point(name: str) -> None:
    if not _SPEC:
        return
    point, _, n = _SPEC.rpartition(":")
    if point != name:
        return
    _counts[name] = _counts.get(name, 0) + 1
    if _counts[name] != int(n):
        return
    mark = os.environ.get("IVIDEOGPT_FAULT_MARK")
    if mark:
        with open(mark, "w") as f:
            f.write(f"{name}:{n} pid {os.getpid()}\n")
    os.kill(os.getpid(), signal.SIGSTOP)
