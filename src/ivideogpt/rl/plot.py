"""Learning curves: overlay ``curve.csv`` files (success rate and return vs env steps) in one PNG."""

from __future__ import annotations

import csv
from pathlib import Path

from ..errors import DataError


def read_curve(path) -> dict[str, list[float]]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such curve file")
    with path.open() as f:
        rows = list(csv.DictReader(f))
    cols = ("env_steps", "success_rate", "return")
    if rows and not set(cols) <= set(rows[0]):
        raise DataError(f"{path}: expected columns {list(cols)}, got {list(rows[0])}")
    return {c: [float(r[c]) for r in rows] for c in cols}


def plot_curves(curves: dict[str, str | Path], out, title: str = "") -> None:
    """``curves``: label -> curve.csv path. Writes ``out`` (PNG): success rate (left), return (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for label, path in curves.items():
        c = read_curve(path)
        axes[0].plot(c["env_steps"], c["success_rate"], marker="o", ms=3, label=label)
        axes[1].plot(c["env_steps"], c["return"], marker="o", ms=3, label=label)
    axes[0].set_ylabel("eval success rate")
    axes[0].set_ylim(-0.05, 1.05)
    axes[1].set_ylabel("eval return")
    for ax in axes:
        ax.set_xlabel("env steps")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
