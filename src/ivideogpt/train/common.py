"""What every ``ivideogpt train <stage>`` command shares: arguments, config resolution, data sources."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..config import apply_overrides, from_dict, load_preset
from ..errors import ConfigError
from .config import TrainConfig


def add_common_arguments(p: argparse.ArgumentParser, kind: str) -> None:
    p.add_argument("--preset", default="tiny-cpu", help=f"{kind} preset name (configs/{kind}/) or a YAML path")
    p.add_argument("--data", action="append", required=True, metavar="DIR[,weight=W][,step=S]",
                   help="episode dataset (either format); repeat to train on a mixture with per-dataset weight and "
                        "frame step; or a mixture file/preset: MIX.yaml or oxe, with ,root=DIR")
    p.add_argument("--out", required=True, help="run directory (checkpoints, metrics.jsonl, samples/)")
    p.add_argument("--max-steps", type=int, default=None, help="override train.max_steps")
    p.add_argument("--minutes", type=float, default=None, help="wall-clock budget; stops, saves and reports")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set train.lr=5e-4 --set model.embed_dim=32")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs still go to metrics.jsonl)")


def parse_sources(items: list[str]):
    """``DIR[,weight=W][,step=S]`` or ``MIXTURE[,root=DIR][,weight=W]`` strings -> MixtureSource list. A mixture
    (a .yaml file or a preset name such as ``oxe``) expands to its datasets; its weight scales theirs."""
    from ..data.clips import MixtureSource
    from ..data.mixtures import is_mixture, load_mixture

    sources = []
    for item in items:
        parts = item.split(",")
        mixture = is_mixture(parts[0])
        kw, root = {}, None
        for extra in parts[1:]:
            if "=" not in extra:
                raise ConfigError(f"--data {item}: expected DIR[,weight=W][,step=S], got '{extra}'")
            k, v = extra.split("=", 1)
            if k == "root" and mixture:
                root = v
                continue
            try:
                if k == "weight":
                    kw["weight"] = float(v)
                elif k == "step" and not mixture:
                    kw["frame_step"] = int(v)
                else:
                    raise ConfigError(f"--data {item}: unknown option '{k}' "
                                      f"({'root, weight' if mixture else 'weight, step'})")
            except ValueError:
                raise ConfigError(f"--data {item}: '{k}' needs a number, got '{v}'") from None
        if mixture:
            scale = kw.get("weight", 1.0)
            sources += [MixtureSource(str(d), w * scale, s) for d, w, s in load_mixture(parts[0], root)]
            continue
        if not Path(parts[0]).exists():
            raise ConfigError(f"--data {parts[0]}: no such dataset directory")
        sources.append(MixtureSource(parts[0], **kw))
    return sources


def resolve_config(args, kind: str) -> tuple[dict, TrainConfig, dict]:
    """Preset (+ --set, --max-steps, --minutes) -> (model config dict, TrainConfig, run info).

    On --resume the run's saved configuration is used, so a resumed run cannot silently change its model.
    """
    run_json = Path(args.out) / "run.json"
    if args.resume and run_json.exists():
        saved = json.loads(run_json.read_text())
        data = {"model": saved["model"], "train": saved["train"]}
        preset = saved.get("preset", args.preset)
    else:
        data = load_preset(kind, args.preset)
        preset = args.preset
    data = apply_overrides(data, args.set)
    train = data.get("train") or {}
    if args.max_steps is not None:
        train["max_steps"] = args.max_steps
    if args.minutes is not None:
        train["max_minutes"] = args.minutes
    unknown = set(data) - {"model", "train", "_source"}
    if unknown:
        raise ConfigError(f"{kind} preset {preset}: unknown section(s) {sorted(unknown)} (expected model, train)")
    cfg = from_dict(TrainConfig, train, where=f"{kind} preset {preset}: train")
    info = {"preset": preset, "overrides": list(args.set), "data": list(args.data)}
    return dict(data.get("model") or {}), cfg, info
