"""One training engine for every stage (tokenizer, transformer).

The same code runs single-process on a CPU and under ``accelerate launch`` on many GPUs/nodes. A stage is a
:class:`Task` (model, datasets, loss, validation picture, how to save/load its model directory); the engine
owns everything else: optimizer, warm-up + schedule, clipping, mixed precision, sharded data, progress,
``metrics.jsonl``, validation PNGs, atomic checkpoints and exact resume.

Run directory::

    RUN/run.json                      what was run (task, preset, overrides, data)
    RUN/metrics.jsonl                 one JSON line per log/validation event
    RUN/samples/step_XXXXXXXX.png     validation: ground truth vs model
    RUN/checkpoints/step_XXXXXXXX/    model/ (loadable without the engine) + train_state.pt

Resume is exact because item k of a training dataset is a pure function of (seed, k): the data position is
just the step, and everything else that shapes later steps is restored from ``train_state.pt``: optimizer,
scheduler, step, every process's RNG streams, the quantizers' usage bookkeeping (it decides when dead codes
restart), the training clock of a ``--minutes`` budget and how much of ``metrics.jsonl`` belongs to the
checkpoint (rows written after it are dropped, so the resumed run writes them again exactly once).
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..checkpoint import latest_checkpoint
from ..errors import IVideoGPTError
from ..faults import fault_point
from ..fileio import atomic_dir, atomic_write_json, recover_interrupted
from ..rng import capture_rng, restore_rng
from ..tokenizer.quantizer import load_usage_state, usage_state
from .config import TrainConfig


class TrainingError(IVideoGPTError):
    pass


class Task(Protocol):
    """A training stage. ``trainable()`` returns a module whose ``forward(batch, step)`` returns
    ``(loss, logs)``: the loss goes through ``forward`` so that DDP/FSDP wrappers see it."""

    name: str

    def trainable(self) -> torch.nn.Module: ...
    def train_dataset(self) -> Dataset: ...
    def val_dataset(self) -> Dataset | None: ...
    def validate(self, model: torch.nn.Module, batches: list[dict]) -> tuple[dict, np.ndarray | None]: ...
    def save_model(self, model: torch.nn.Module, path: Path) -> None: ...
    def load_model(self, model: torch.nn.Module, path: Path) -> None: ...


class StreamSampler(Sampler):
    """Global item indices start, start+1, ...; each process takes its own slice of every global batch."""

    def __init__(self, start_step: int, batch_size: int, rank: int, world: int, length: int):
        self.start, self.batch, self.rank, self.world, self.length = start_step, batch_size, rank, world, length

    def __iter__(self):
        step = self.start
        while True:
            base = (step * self.world + self.rank) * self.batch
            for i in range(self.batch):
                yield (base + i) % self.length
            step += 1

    def __len__(self):  # DataLoader asks; the stream is effectively endless
        return self.length


def lr_lambda(cfg: TrainConfig, time_fraction=lambda: 0.0):
    """Warm-up, then constant or cosine. With a wall-clock budget (``max_minutes``) the cosine follows
    whichever runs out first, steps or time, so a time-limited run still anneals."""

    def f(step: int) -> float:
        if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.schedule == "constant":
            return 1.0
        progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps))
        progress = max(progress, min(1.0, time_fraction()))
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return f


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    # Norm gains, biases and embeddings-as-vectors get no weight decay (standard for transformers/VQGANs).
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas))


def _to_device(batch, device):
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


def _save_png(img: np.ndarray, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    Image.fromarray(img).save(tmp)
    os.replace(tmp, path)


class Trainer:
    def __init__(self, task: Task, cfg: TrainConfig, out: str | os.PathLike, *, resume: bool = False,
                 run_info: dict | None = None, progress: bool = True):
        from accelerate import Accelerator

        self.task, self.cfg, self.out = task, cfg, Path(out)
        self.resume, self.run_info, self.progress = resume, dict(run_info or {}), progress
        mp = cfg.mixed_precision
        if mp == "auto":
            mp = "bf16" if torch.cuda.is_available() else "no"
        self.accelerator = Accelerator(mixed_precision=mp, cpu=not torch.cuda.is_available())

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    def _check_out_dir(self) -> Path | None:
        ck = latest_checkpoint(self.out)
        if self.resume:
            if ck is None and (self.out / "run.json").exists():
                self._log("no checkpoint found in the run yet: starting from step 0")
            return ck
        if self.out.exists() and any(self.out.iterdir()):
            raise TrainingError(
                f"{self.out} already exists and is not empty; "
                "pass --resume to continue that run or choose another --out"
            )
        return None

    def _clear_interrupted_writes(self) -> None:
        """What a killed run left half-written (main process, before the latest checkpoint is looked up)."""
        ckdir = self.out / "checkpoints"
        if ckdir.is_dir():
            for p in ckdir.glob(".step_*"):
                recover_interrupted(ckdir / p.name[1:].split(".")[0])
        recover_interrupted(self.out / "token_cache.pt")

    def _truncate_metrics(self, state: dict | None) -> None:
        """Drop the metrics rows a killed run wrote after its checkpoint (all of them if it had none): the
        resumed run writes them again, once, as an unbroken run would have."""
        metrics = self.out / "metrics.jsonl"
        keep = 0 if state is None else state.get("metrics_bytes")
        if keep is not None and metrics.exists() and metrics.stat().st_size > keep:
            with open(metrics, "r+b") as f:
                f.truncate(keep)

    def _log(self, msg: str) -> None:
        if self.is_main:
            from tqdm import tqdm

            tqdm.write(f"[{self.task.name}] {msg}")

    def fit(self) -> dict:
        cfg, acc = self.cfg, self.accelerator
        if self.resume and self.is_main:
            self._clear_interrupted_writes()
        acc.wait_for_everyone()
        ck = self._check_out_dir()
        torch.manual_seed(cfg.seed + acc.process_index)
        np.random.seed((cfg.seed + acc.process_index) % 2**32)
        random.seed(cfg.seed + acc.process_index)

        model = self.task.trainable()
        optimizer = make_optimizer(model, cfg)
        self._elapsed_s = 0.0
        budget_s = cfg.max_minutes * 60 if cfg.max_minutes else None
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lr_lambda(cfg, lambda: self._elapsed_s / budget_s if budget_s else 0.0))
        step = 0
        elapsed0 = 0.0
        state = None
        if ck is not None:
            self.task.load_model(model, ck / "model")
            state = torch.load(ck / "train_state.pt", map_location="cpu", weights_only=True)
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            step = int(state["step"])
            if "quantizer_usage" in state:
                load_usage_state(model, state["quantizer_usage"])
            else:
                self._log(f"{ck}: no quantizer usage state (an older checkpoint): dead-code restarts start afresh")
            elapsed0 = float(state.get("elapsed_s", 0.0))
            self._log(f"resumed from {ck} at step {step}")
        if self.resume and self.is_main:
            self._truncate_metrics(state)
        model, optimizer = acc.prepare(model, optimizer)

        if self.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            info = {"task": self.task.name, "train": asdict(cfg), "num_processes": acc.num_processes,
                    "mixed_precision": acc.mixed_precision, **self.run_info}
            if not (self.out / "run.json").exists() or ck is None:
                atomic_write_json(self.out / "run.json", info)

        train_ds = self.task.train_dataset()
        loader = DataLoader(
            train_ds,
            batch_size=cfg.batch_size,
            sampler=StreamSampler(step, cfg.batch_size, acc.process_index, acc.num_processes, len(train_ds)),
            num_workers=cfg.num_workers,
            drop_last=True,
        )
        val_ds = self.task.val_dataset()

        from tqdm import tqdm

        # Under a time budget the run stops when the budget is spent, usually long before max_steps: the bar
        # then counts seconds of the budget, so its ETA is the real one, and shows the step beside them.
        timed = cfg.max_minutes is not None
        bar = tqdm(total=cfg.max_minutes * 60 if timed else cfg.max_steps,
                   initial=min(elapsed0, cfg.max_minutes * 60) if timed else step,
                   disable=not (self.is_main and self.progress), desc=f"train {self.task.name}", dynamic_ncols=True,
                   bar_format=("{l_bar}{bar}| {elapsed} of the " + f"{cfg.max_minutes:g} min" + " budget, "
                               "{remaining} left{postfix}") if timed else None)
        # The clock of a --minutes budget continues from the checkpoint: a resumed run counts the training time
        # before it (the time a killed run spent past its last checkpoint is lost, that work is redone).
        t0 = self._t0 = time.time() - elapsed0
        self._elapsed_s = elapsed0
        # What the end-of-run summary reports, as of the checkpoint (a run resumed after its last step has no step
        # of its own to report).
        self._last_logs: dict = dict(state.get("last_logs", {})) if state is not None else {}
        self._last_val: dict = dict(state.get("last_val", {})) if state is not None else {}
        stopped_by = "max_steps"
        it = iter(loader)  # creating the iterator draws from the torch RNG: restore RNG after it
        if state is not None:
            rng = state["rng"]
            if isinstance(rng, dict):  # written before every process's streams were saved: rank 0's only
                rng = [rng]
            if acc.process_index < len(rng):
                restore_rng(rng[acc.process_index])
        model.train()
        while step < cfg.max_steps:
            fault_point("train.step")
            if cfg.max_minutes is not None and (time.time() - t0) / 60 >= cfg.max_minutes:
                stopped_by = "max_minutes"
                break
            batch = _to_device(next(it), acc.device)
            with acc.autocast():
                loss, logs = model(batch, step)
            finite = torch.isfinite(loss.detach()).float()
            if acc.num_processes > 1:
                finite = acc.reduce(finite, reduction="min")
            if finite.item() < 1:
                raise TrainingError(
                    f"loss became {loss.item()} at step {step}; stopped without saving it. The last good checkpoint "
                    f"is {latest_checkpoint(self.out) or '(none yet)'}; try a lower learning rate (--set train.lr=...)"
                )
            optimizer.zero_grad(set_to_none=True)
            acc.backward(loss)
            if cfg.grad_clip and cfg.grad_clip > 0:
                gnorm = acc.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                logs["grad_norm"] = float(gnorm)
            optimizer.step()
            self._elapsed_s = time.time() - t0
            scheduler.step()
            step += 1
            logs = {"loss": float(loss.detach()), **{k: float(v) for k, v in logs.items()}}
            self._last_logs = logs
            bar.update(min(bar.total, time.time() - t0) - bar.n if timed else 1)
            bar.set_postfix(loss=f"{logs['loss']:.4f}", **({"step": step} if timed else {}))
            if self.is_main and (step % cfg.log_every == 0 or step == 1):
                self._write_metrics({"step": step, "lr": scheduler.get_last_lr()[0],
                                     "elapsed_s": round(time.time() - t0, 2), **logs})
            if val_ds is not None and cfg.val_every > 0 and step % cfg.val_every == 0:
                self._last_val = self._validate(model, val_ds, step)
            if cfg.save_every > 0 and step % cfg.save_every == 0:
                self._save(model, optimizer, scheduler, step)
        bar.close()
        if val_ds is not None and (cfg.val_every <= 0 or step % cfg.val_every != 0):
            self._last_val = self._validate(model, val_ds, step)
        if not self._checkpoint_dir(step).exists():
            self._save(model, optimizer, scheduler, step)
        acc.wait_for_everyone()
        summary = {"step": step, "stopped_by": stopped_by, "seconds": round(time.time() - t0, 1),
                   "train": self._last_logs, "val": self._last_val, "checkpoint": str(latest_checkpoint(self.out))}
        if self.is_main:
            self._write_metrics({"event": "end", **summary})
        return summary

    def _write_metrics(self, row: dict) -> None:
        with open(self.out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")

    @torch.no_grad()
    def _validate(self, model, val_ds, step: int) -> dict:
        loader = DataLoader(val_ds, batch_size=self.cfg.batch_size, shuffle=False, num_workers=0)
        batches = []
        for i, b in enumerate(loader):
            if i >= self.cfg.val_batches:
                break
            batches.append(_to_device(b, self.accelerator.device))
        if not batches:
            return {}
        model.eval()
        unwrapped = self.accelerator.unwrap_model(model)
        with self.accelerator.autocast():
            logs, image = self.task.validate(unwrapped, batches)
        model.train()
        if self.is_main:
            logs = {k: float(v) for k, v in logs.items()}
            self._write_metrics({"step": step, "event": "val", **logs})
            if image is not None:
                _save_png(image, self.out / "samples" / f"step_{step:08d}.png")
            self._log(f"val @ {step}: " + ", ".join(f"{k}={v:.4g}" for k, v in logs.items()))
        return logs

    def _checkpoint_dir(self, step: int) -> Path:
        return self.out / "checkpoints" / f"step_{step:08d}"

    def _save(self, model, optimizer, scheduler, step: int) -> None:
        acc = self.accelerator
        acc.wait_for_everyone()
        rng = [capture_rng()]
        if acc.num_processes > 1:  # every process's streams: each resumes its own
            import torch.distributed as dist

            rng = [None] * acc.num_processes
            dist.all_gather_object(rng, capture_rng())
        if self.is_main:
            metrics = self.out / "metrics.jsonl"
            with atomic_dir(self._checkpoint_dir(step)) as tmp:
                unwrapped = acc.unwrap_model(model)
                self.task.save_model(unwrapped, tmp / "model")
                fault_point("checkpoint.partial")
                torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                            "step": step, "rng": rng, "quantizer_usage": usage_state(unwrapped),
                            "last_logs": self._last_logs, "last_val": self._last_val,
                            "elapsed_s": time.time() - self._t0,
                            "metrics_bytes": metrics.stat().st_size if metrics.exists() else 0},
                           tmp / "train_state.pt")
            self._prune()
        acc.wait_for_everyone()

    def _prune(self) -> None:
        cks = sorted(p for p in (self.out / "checkpoints").iterdir() if p.name.startswith("step_"))
        for p in cks[: max(0, len(cks) - self.cfg.keep_last)]:
            shutil.rmtree(p, ignore_errors=True)
