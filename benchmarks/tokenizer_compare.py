"""Compressive vs per-frame tokenizers: tokens per clip, step time, peak memory and held-out quality.

Three tokenizers share the backbone of one tokenizer preset (default `tiny-cpu`), the data, the number of
steps, the batches, the seed and the optimizer (AdamW, lr schedule and grad clip of the preset's `train:`):

  compressive        Tokenizer: T0 context frames x N tokens, every later frame n tokens (conditioned)
  per-frame GxG      BaselineTokenizer, every frame G*G tokens, at the compressive model's future grid and
                     at its context grid (4x4 and 16x16 at tiny-cpu / paper-64)

Trainings are interleaved step by step (the order rotates every step) so machine noise hits all three alike;
each step sees the same clips and encodes the same frames (the T0 context frames and the same random subset of
`n_future` later frames). Step time = forward + backward + clip + optimizer step (median over steps).
The per-frame tokenizers have no counterpart of the compressive loss's motion-weighted L1 term (`motion_weight`,
10 in tiny-cpu); `--set motion_weight=0` trains all three on the same loss.
Peak memory = growth of the process's peak resident set (getrusage ru_maxrss) over its resident set before
the model is built, while building it and running `--probe-steps` training steps, one fresh subprocess per
tokenizer (same batch): parameters, gradients, AdamW state and the activations of one step. A warm-up step on
one clip (then malloc_trim) runs before the baseline so that library code mapped by the first calls, the same
for every model, is not counted. tracemalloc does not see torch's allocations, hence RSS.
Quality: PSNR / SSIM / ST-LPIPS of reconstructions of held-out (val split) clips, on the future frames
(every frame after the first T0; the same frames for the per-frame tokenizers) and on all frames.
Swap test (compressive only): future frames decoded with the future tokens of another frame of the same clip,
or of the same frame index of another clip, against the true frames; if the future code carried nothing,
these would score as well as the true tokens.

    .venv/bin/python benchmarks/tokenizer_compare.py [--data DIR] [--steps 300] [--json out.json]

Without --data, 200 pusher episodes x 32 frames are collected into a temporary directory first.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import torch

from ivideogpt.config import apply_overrides, from_dict, load_preset
from ivideogpt.data.clips import ClipDataset
from ivideogpt.errors import DataError, IVideoGPTError
from ivideogpt.eval import perceptual, psnr, ssim
from ivideogpt.frames import to_uint8
from ivideogpt.tokenizer import BaselineTokenizer, Tokenizer
from ivideogpt.train.config import TrainConfig
from ivideogpt.train.engine import lr_lambda, make_optimizer
from ivideogpt.train.tokenizer_task import reconstruct

COMPRESSIVE = "compressive"


# ---- models -----------------------------------------------------------------------------------------
def compressive_config(preset: str, overrides: list[str]):
    data = load_preset("tokenizer", preset)
    return from_dict(Tokenizer.CONFIG, apply_overrides(data.get("model") or {}, overrides),
                     where=f"{data['_source']}: model")


def model_specs(preset: str, overrides: list[str]) -> list[str]:
    """'compressive', then 'per-frame:G' at the compressive model's future grid and at its context grid."""
    cfg = compressive_config(preset, overrides)
    return [COMPRESSIVE, f"per-frame:{cfg.future_grid}", f"per-frame:{cfg.latent_grid}"]


def build(spec: str, preset: str, overrides: list[str], seed: int):
    torch.manual_seed(seed)  # the same initial weights for the shared parts, run after run
    if spec == COMPRESSIVE:
        return Tokenizer.from_preset(preset, overrides=overrides)
    return BaselineTokenizer.from_preset(preset, token_grid=int(spec.split(":")[1]), overrides=overrides)


def label(model) -> str:
    if isinstance(model, Tokenizer):
        return f"compressive ({model.context_frames}x{model.n_context_tokens} + {model.n_future_tokens}/frame)"
    g = model.config.token_grid
    return f"per-frame {g}x{g}"


def tokens_per_clip(model, clip_frames: int) -> int:
    if isinstance(model, Tokenizer):
        t0 = model.context_frames
        return model.n_context_tokens * t0 + model.n_future_tokens * (clip_frames - t0)
    return model.n_tokens * clip_frames


def perceptual_net(model):
    if getattr(model.config, "perceptual_weight", 0) > 0:
        from ivideogpt.eval.stlpips import STLPIPS

        return STLPIPS()
    return None


class Trainer:
    """One tokenizer with its own optimizer and schedule; ``step`` returns its wall time."""

    def __init__(self, model, cfg: TrainConfig, n_context: int):
        self.model, self.cfg, self.n_context = model.train(), cfg, n_context
        self.opt = make_optimizer(model, cfg)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lr_lambda(cfg))
        self.perceptual = perceptual_net(model)
        self.times: list[float] = []
        self.logs: list[dict] = []

    def step(self, frames: torch.Tensor, step: int) -> float:
        # The random subset of future frames is a function of (seed, step), identical for all three models.
        gen = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + step)
        t = time.perf_counter()
        loss, logs, _ = self.model.training_losses(frames, n_context=self.n_context, n_future=self.cfg.n_future,
                                                   perceptual=self.perceptual, generator=gen)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.grad_clip and self.cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.opt.step()
        self.sched.step()
        dt = time.perf_counter() - t
        if not torch.isfinite(loss.detach()):
            raise RuntimeError(f"{label(self.model)}: loss became {loss.item()} at step {step}")
        self.times.append(dt)
        self.logs.append(logs)
        return dt


# ---- data -------------------------------------------------------------------------------------------
def train_config(preset: str, steps: int) -> TrainConfig:
    data = load_preset("tokenizer", preset)
    cfg = from_dict(TrainConfig, data.get("train") or {}, where=f"{data['_source']}: train")
    cfg.max_steps = steps  # the cosine schedule spans this run
    return cfg


def batch(ds: ClipDataset, indices) -> torch.Tensor:
    return torch.stack([ds[i]["frames"] for i in indices]).contiguous()


def train_batch(ds: ClipDataset, step: int, size: int) -> torch.Tensor:
    return batch(ds, [(step * size + i) % len(ds) for i in range(size)])  # the training engine's order


# ---- memory probe (runs in a fresh subprocess per model) --------------------------------------------
def rss_kb() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def probe(args) -> None:
    cfg = train_config(args.preset, args.steps)
    tok_cfg = compressive_config(args.preset, args.set)  # a config only: no weights allocated yet
    ds = ClipDataset(args.data, cfg.clip_len, split="train", resolution=tok_cfg.resolution, seed=cfg.seed)
    frames = train_batch(ds, 0, cfg.batch_size)
    # Warm-up on one clip first: the first conv/attention/AdamW calls map a few hundred MB of library code
    # and kernels, the same for every model; then hand the freed heap back so the baseline is what stays.
    warm = Trainer(build(args.probe, args.preset, args.set, cfg.seed), cfg, tok_cfg.context_frames)
    warm.step(frames[:1], 0)
    del warm
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    before_kb, peak_before_kb = rss_kb(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    model = build(args.probe, args.preset, args.set, cfg.seed)
    tr = Trainer(model, cfg, tok_cfg.context_frames)
    for s in range(args.probe_steps):
        tr.step(frames, s)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    n_params = sum(p.numel() for p in model.parameters())
    # If the step never rose above the warm-up's peak, ru_maxrss hides the real peak: the delta is a lower bound.
    print(json.dumps({"spec": args.probe, "rss_before_kb": before_kb, "peak_before_kb": peak_before_kb,
                      "peak_kb": peak_kb, "delta_kb": peak_kb - before_kb, "lower_bound": peak_kb <= peak_before_kb,
                      "params": n_params}))


def measure_memory(spec: str, args, data: str) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--probe", spec, "--data", data, "--preset", args.preset,
           "--steps", str(args.steps), "--probe-steps", str(args.probe_steps)]
    for item in args.set:
        cmd += ["--set", item]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"memory probe for {spec} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---- evaluation -------------------------------------------------------------------------------------
def frame_metrics(real_u8: torch.Tensor, fake_u8: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"psnr": psnr(real_u8, fake_u8), "ssim": ssim(real_u8, fake_u8), "st_lpips": perceptual(real_u8, fake_u8)}


@torch.no_grad()
def evaluate(model, val: ClipDataset, t0: int, batch_size: int, n_clips: int) -> dict:
    """Per-frame metrics [clips, T] of the reconstructions, averaged over future frames and all frames."""
    model.eval()
    per = {"psnr": [], "ssim": [], "st_lpips": []}
    for start in range(0, n_clips, batch_size):
        frames = batch(val, range(start, min(start + batch_size, n_clips)))
        if isinstance(model, Tokenizer):
            rec = reconstruct(model, frames)[0]  # (reconstruction, context ids, future ids)
        else:
            rec = model.decode(model.encode(frames))
        for k, v in frame_metrics(to_uint8(frames), to_uint8(rec)).items():
            per[k].append(v)
    model.train()
    out = {}
    for k, parts in per.items():
        v = torch.cat(parts)
        out[f"{k}_future"], out[f"{k}_all"] = float(v[:, t0:].mean()), float(v.mean())
    return out


@torch.no_grad()
def swap_test(model: Tokenizer, val: ClipDataset, batch_size: int, n_clips: int) -> dict:
    """Future PSNR with the true future tokens, another frame's tokens, and copying the last context frame."""
    model.eval()
    t0 = model.context_frames
    sums = {"true_tokens": [], "other_frame_tokens": [], "other_clip_tokens": [], "copy_last_context": []}
    for start in range(0, n_clips, batch_size):
        frames = batch(val, range(start, min(start + batch_size, n_clips)))
        real = to_uint8(frames[:, t0:])
        ctx = model.encode_context_state(frames[:, :t0])
        ids = model.encode_future(frames[:, t0:], ctx)
        # Half the future away in time (wrapping): a different frame of the same clip, same context.
        shift = max(1, ids.shape[1] // 2)
        sums["true_tokens"].append(psnr(real, to_uint8(model.decode_future(ids, ctx))))
        sums["other_frame_tokens"].append(psnr(real, to_uint8(model.decode_future(ids.roll(shift, 1), ctx))))
        if frames.shape[0] > 1:  # the same frame index of the next clip in the batch
            sums["other_clip_tokens"].append(psnr(real, to_uint8(model.decode_future(ids.roll(1, 0), ctx))))
        last = frames[:, t0 - 1 : t0].expand_as(frames[:, t0:])
        sums["copy_last_context"].append(psnr(real, to_uint8(last)))
    model.train()
    return {k: float(torch.cat(v).mean()) if v else float("nan") for k, v in sums.items()}


# ---- report -----------------------------------------------------------------------------------------
def markdown(rows: list[dict], swap: dict, clip_frames: int) -> str:
    base = rows[0]
    lines = [f"| tokenizer | tokens / {clip_frames}-frame clip | params | median step (ms) | vs compressive "
             "| peak RSS growth (MB) | vs compressive |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        mem = r.get("peak_mb")
        bound = ">= " if r.get("memory_probe", {}).get("lower_bound") else ""
        mem_s = f"{bound}{mem:.0f} | {mem / base['peak_mb']:.2f}x" if mem is not None else "n/a | n/a"
        lines.append(f"| {r['name']} | {r['tokens_per_clip']} ({r['tokens_per_clip'] / base['tokens_per_clip']:.2f}x) "
                     f"| {r['params'] / 1e6:.2f}M | {r['step_ms']:.0f} | {r['step_ms'] / base['step_ms']:.2f}x "
                     f"| {mem_s} |")
    lines += ["", "| tokenizer | PSNR future | SSIM future | ST-LPIPS future | PSNR all | SSIM all | ST-LPIPS all "
              "| train PSNR future (last 10 steps) |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        q = r["val"]
        lines.append(f"| {r['name']} | {q['psnr_future']:.2f} | {q['ssim_future']:.4f} | {q['st_lpips_future']:.4f} "
                     f"| {q['psnr_all']:.2f} | {q['ssim_all']:.4f} | {q['st_lpips_all']:.4f} "
                     f"| {r['train_psnr_future']:.2f} |")
    lines += ["", "| compressive, future frames decoded with | PSNR |", "|---|---|"]
    lines += [f"| {k.replace('_', ' ')} | {v:.2f} |" for k, v in swap.items()]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="tiny-cpu", help="tokenizer preset (its model: and train: sections)")
    p.add_argument("--data", default=None, help="episode dataset (default: collect pusher episodes to a temp dir)")
    p.add_argument("--episodes", type=int, default=200, help="episodes to collect when --data is not given")
    p.add_argument("--episode-len", type=int, default=32, help="frames per collected episode")
    p.add_argument("--steps", type=int, default=300, help="training steps per tokenizer")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a model field for all three, e.g. --set motion_weight=0")
    p.add_argument("--clip-frames", type=int, default=16, help="clip length for the tokens-per-clip column")
    p.add_argument("--val-clips-per-episode", type=int, default=2)
    p.add_argument("--max-val-clips", type=int, default=None, help="evaluate on at most this many val clips")
    p.add_argument("--probe-steps", type=int, default=3, help="training steps per memory probe")
    p.add_argument("--no-memory", action="store_true", help="skip the memory probes (subprocesses)")
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument("--probe", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    try:
        if args.probe:
            probe(args)
            return 0
        if args.data:
            return run(args, args.data)
        with tempfile.TemporaryDirectory(prefix="tokcompare-") as tmp:
            from ivideogpt.commands.collect import collect

            data = os.path.join(tmp, "pusher")
            collect("pusher", data, episodes=args.episodes, steps=args.episode_len, progress=False)
            return run(args, data)
    except IVideoGPTError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def run(args, data: str) -> int:
    cfg = train_config(args.preset, args.steps)
    specs = model_specs(args.preset, args.set)
    models = [build(s, args.preset, args.set, cfg.seed) for s in specs]
    t0 = models[0].context_frames
    res = models[0].resolution
    train_ds = ClipDataset(data, cfg.clip_len, split="train", resolution=res, seed=cfg.seed)
    val_ds = ClipDataset(data, cfg.clip_len, split="val", resolution=res, seed=cfg.seed,
                         val_clips_per_episode=args.val_clips_per_episode)
    n_val = len(val_ds) if args.max_val_clips is None else min(len(val_ds), args.max_val_clips)
    if n_val == 0:
        raise DataError(f"{data}: no val clips of {cfg.clip_len} frames (the val split is empty)")

    memory = {} if args.no_memory else {s: measure_memory(s, args, data) for s in specs}

    trainers = [Trainer(m, cfg, t0) for m in models]
    print(f"training {len(trainers)} tokenizers x {args.steps} steps, batch {cfg.batch_size} x {cfg.clip_len} "
          f"frames ({t0} context + {cfg.n_future} future encoded), lr {cfg.lr}, torch threads "
          f"{torch.get_num_threads()}", file=sys.stderr)
    start = time.time()
    for step in range(args.steps):
        frames = train_batch(train_ds, step, cfg.batch_size)
        k = step % len(trainers)  # rotate the order so no model always runs first (warm caches, turbo)
        for tr in trainers[k:] + trainers[:k]:
            tr.step(frames, step)
        if (step + 1) % args.log_every == 0 or step + 1 == args.steps:
            parts = [f"{label(tr.model)} {statistics.median(tr.times) * 1e3:.0f} ms "
                     f"psnr_f {tr.logs[-1]['psnr_future']:.2f}" for tr in trainers]
            print(f"step {step + 1} ({time.time() - start:.0f} s): " + "; ".join(parts), file=sys.stderr)

    rows = []
    for spec, tr in zip(specs, trainers):
        m = tr.model
        row = {"spec": spec, "name": label(m), "tokens_per_clip": tokens_per_clip(m, args.clip_frames),
               "params": sum(p.numel() for p in m.parameters()), "step_ms": statistics.median(tr.times) * 1e3,
               "train_psnr_future": statistics.fmean(lg["psnr_future"] for lg in tr.logs[-10:]),
               "val": evaluate(m, val_ds, t0, cfg.batch_size, n_val)}
        if spec in memory:
            row["peak_mb"] = memory[spec]["delta_kb"] / 1024
            row["memory_probe"] = memory[spec]
        rows.append(row)
    swap = swap_test(models[0], val_ds, cfg.batch_size, n_val)

    print(f"\n{args.steps} steps each, interleaved; held-out: {n_val} val clips x {cfg.clip_len} frames "
          f"(future = frames {t0 + 1}..{cfg.clip_len}); preset {args.preset}"
          + (f", --set {' '.join(args.set)}" if args.set else "") + "\n")
    print(markdown(rows, swap, args.clip_frames))
    if args.json:
        result = {"command": " ".join(sys.argv), "preset": args.preset, "overrides": args.set, "data": data,
                  "steps": args.steps, "train": {"batch_size": cfg.batch_size, "clip_len": cfg.clip_len,
                                                 "n_future": cfg.n_future, "lr": cfg.lr, "seed": cfg.seed},
                  "val_clips": n_val, "torch_threads": torch.get_num_threads(),
                  "memory_method": "fresh subprocess per model: warm-up step on 1 clip, malloc_trim, then "
                                   "ru_maxrss after build + probe steps minus RSS before the build",
                  "rows": rows, "swap_test_psnr_future": swap}
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
