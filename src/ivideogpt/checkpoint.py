"""Model directories (``config.json`` + ``model.safetensors``) and run directories.

A *model directory* is loadable without the training code. A *run directory* (written by the training
engine) holds ``checkpoints/step_XXXXXXXX/model`` plus the training state beside it; anywhere a model path
is accepted, a run directory means its latest complete checkpoint. A world-model directory holds
``tokenizer/`` and ``transformer/`` sub-folders, so a tokenizer or transformer can be loaded from it too.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from . import __version__
from .errors import CheckpointError
from .fileio import atomic_dir

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
_STEP_DIR = re.compile(r"^step_(\d+)$")


def _contiguous(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # safetensors refuses shared/non-contiguous storage; copies are cheap next to a disk write.
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in state_dict.items()}


def write_model_dir(path: Path, *, kind: str, config: dict, state_dict: dict | None) -> None:
    """Write into an existing (temporary) directory; callers make it atomic."""
    path.mkdir(parents=True, exist_ok=True)
    meta = {"kind": kind, "config": config, "ivideogpt_version": __version__}
    (path / CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    if state_dict is not None:
        save_file(_contiguous(state_dict), str(path / WEIGHTS_FILE), metadata={"kind": kind})


def save_pretrained(path, *, kind: str, config: dict, state_dict: dict[str, torch.Tensor]) -> None:
    with atomic_dir(path) as tmp:
        write_model_dir(tmp, kind=kind, config=config, state_dict=state_dict)


def latest_checkpoint(run_dir) -> Path | None:
    """The newest complete ``checkpoints/step_*`` directory of a run, or None."""
    ckdir = Path(run_dir) / "checkpoints"
    if not ckdir.is_dir():
        return None
    steps = []
    for p in ckdir.iterdir():
        m = _STEP_DIR.match(p.name)
        if m and (p / "model").is_dir():
            steps.append((int(m.group(1)), p))
    return max(steps)[1] if steps else None


def read_kind(path: Path) -> str | None:
    f = path / CONFIG_FILE
    if not f.is_file():
        return None
    try:
        return json.loads(f.read_text()).get("kind")
    except (json.JSONDecodeError, OSError) as e:
        raise CheckpointError(f"{f}: unreadable ({e})") from None


def resolve_model_dir(path, kind: str) -> Path:
    """Find the directory holding a ``kind`` model at ``path`` (model dir, world-model dir or run dir)."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"{p}: no such model or run directory")
    if (p / CONFIG_FILE).is_file():
        found = read_kind(p)
        if found == kind:
            return p
        if (p / kind / CONFIG_FILE).is_file():
            return resolve_model_dir(p / kind, kind)
        raise CheckpointError(f"{p}: holds a '{found}' model, expected a '{kind}'")
    ck = latest_checkpoint(p)
    if ck is not None:
        return resolve_model_dir(ck / "model", kind)
    raise CheckpointError(
        f"{p}: not a model directory (no {CONFIG_FILE}) and not a run directory (no complete checkpoints/step_*)"
    )


def load_pretrained_dir(path, kind: str) -> tuple[dict, dict[str, torch.Tensor]]:
    d = resolve_model_dir(path, kind)
    meta = json.loads((d / CONFIG_FILE).read_text())
    weights = d / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"{weights}: missing (incomplete checkpoint)")
    try:
        state = load_file(str(weights))
    except Exception as e:  # safetensors raises several types for a truncated/corrupt file
        raise CheckpointError(f"{weights}: unreadable ({e})") from None
    return meta["config"], state


def load_state_dict_strict(module: torch.nn.Module, state: dict, where: str) -> None:
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{where}: weights do not match the model config ({str(e).splitlines()[0]})") from None
