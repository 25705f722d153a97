"""Mixture files: a list of datasets with sampling weights and frame steps, as ``--data`` accepts them.

A mixture file is YAML::

    root: /data/oxe            # optional; directory holding one episode dataset per name (relative: to the file)
    datasets:
      - {name: fractal20220817_data, weight: 0.15, step: 1}
      - {name: bridge, weight: 0.15, step: 2}
      - {path: /elsewhere/my_robot, weight: 0.1}      # or an explicit path

``--data oxe,root=DIR`` uses the preset ``configs/mixtures/oxe.yaml`` (the paper's Open X-Embodiment mixture;
``oxe-sthsth`` adds Something-Something v2), ``--data my_mix.yaml[,root=DIR]`` a file of one's own. Every
dataset must exist before training starts: one error lists all that are missing.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from ..errors import ConfigError

PRESETS = Path(__file__).resolve().parent.parent / "configs" / "mixtures"


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESETS.glob("*.yaml"))


def is_mixture(spec: str) -> bool:
    """Whether a ``--data`` path names a mixture file or preset (not a dataset directory)."""
    p = Path(spec)
    if p.suffix in (".yaml", ".yml"):
        return True
    return not p.exists() and (PRESETS / f"{spec}.yaml").exists()


def load_mixture(spec: str, root: str | None = None) -> list[tuple[Path, float, int]]:
    """(dataset path, weight, frame step) of every entry of a mixture file or preset; ConfigError listing every
    dataset missing on disk."""
    path = Path(spec) if Path(spec).suffix in (".yaml", ".yml") else PRESETS / f"{spec}.yaml"
    if not path.exists():
        raise ConfigError(f"--data {spec}: mixture file not found (presets: {preset_names()})")
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from None
    entries = doc.get("datasets") if isinstance(doc, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{path}: expected a 'datasets:' list of {{name|path, weight, step}}")
    base = root if root is not None else doc.get("root")
    if base is not None:
        base = Path(base) if Path(base).is_absolute() or root is not None else path.parent / base
    out, missing = [], []
    for j, e in enumerate(entries):
        if not isinstance(e, dict) or not ({"name", "path"} & set(e)) or set(e) - {"name", "path", "weight", "step"}:
            raise ConfigError(f"{path}: datasets[{j}]: expected {{name or path, weight, step}}, got {e!r}")
        if "path" in e:
            d = Path(e["path"])
        elif base is None:
            raise ConfigError(f"--data {spec}: the datasets are named, not located: add ,root=DIR (the directory "
                              "holding one episode dataset per name)")
        else:
            d = base / str(e["name"])
        try:
            weight, step = float(e.get("weight", 1.0)), int(e.get("step", 1))
        except (TypeError, ValueError):
            raise ConfigError(f"{path}: datasets[{j}]: weight and step must be numbers, got {e!r}") from None
        if not (d / "meta.json").exists():
            missing.append(str(e.get("name", d)))
        out.append((d, weight, step))
    if missing:
        where = f"under {base}" if base is not None else "on disk"
        raise ConfigError(f"--data {spec}: {len(missing)} of {len(entries)} datasets missing {where}: "
                          f"{', '.join(missing)} (import each with `ivideogpt import --format rlds ... --out "
                          f"{base or 'ROOT'}/<name>`)")
    return out
