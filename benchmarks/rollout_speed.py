"""Frames/s of action-conditioned rollouts (horizon 10, batch 16, 2 context frames), measured side by side:

  cached      this project's WorldModel path: one KV cache kept across frames (prefix never recomputed)
  recompute   the reference implementation's way: the whole prefix re-run for every new frame
  per-frame   a per-frame tokenizer: every frame N tokens like a context frame (256 at paper size), KV-cached

at the `tiny-cpu` and `paper-small` transformer sizes (random weights: speed does not depend on them).
Transformer generation is timed on its own (the tokenizer decode is the same for cached and recompute);
`--end-to-end` also times the tiny WorldModel including the tokenizer decode.

    .venv/bin/python benchmarks/rollout_speed.py [--sizes tiny-cpu paper-small] [--batch 16] [--horizon 10]

Slow variants at paper size are timed on the first `--slow-frames` frames and reported per frame
(their per-frame cost only grows with the horizon, so the ratio is a lower bound).
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from ivideogpt.config import load_preset
from ivideogpt.transformer import Transformer


def build(preset: str, action_dim: int, horizon: int, per_frame: bool = False) -> Transformer:
    base = load_preset("transformer", preset)["model"]
    over = {"action_dim": action_dim, "action_mean": [0.0] * action_dim, "action_std": [1.0] * action_dim,
            "use_reward": True, "dropout": 0.0, "max_frames": base["context_frames"] + horizon}
    if per_frame:  # a per-frame tokenizer: every frame as many tokens as a context frame
        over.update(future_tokens=base["context_tokens"], future_vocab_size=base["context_vocab_size"])
    torch.manual_seed(0)
    return Transformer.from_preset(preset, **over).eval()


def context_tokens(m: Transformer, batch: int) -> torch.Tensor:
    lay = m.config.layout
    ctx = torch.randint(0, lay.context_vocab, (batch, lay.context_frames, lay.context_tokens))
    return lay.build(ctx, ctx.new_zeros(batch, 0, lay.future_tokens))


@torch.no_grad()
def cached(m, batch, frames, actions, gen):
    cache = m.new_cache(batch)
    m.prefill(context_tokens(m, batch), cache)
    for i in range(frames):
        m.generate_frame(cache, actions[:, i], generator=gen, top_k=100)


@torch.no_grad()
def recompute(m, batch, frames, actions, gen):
    lay = m.config.layout
    tokens = context_tokens(m, batch)
    for i in range(frames):
        ids, _ = m.generate_frame_recompute(tokens, actions[:, : i + 1], generator=gen, top_k=100)
        slot = torch.full((batch, 1), lay.slot_future, dtype=torch.long)
        tokens = torch.cat([tokens, slot, ids + lay.context_vocab], dim=1)


def timed(fn, *args) -> float:
    t = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", nargs="+", default=["tiny-cpu", "paper-small"])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--horizon", type=int, default=10)
    p.add_argument("--slow-frames", type=int, default=3, help="frames timed for the slow variants at paper size")
    p.add_argument("--end-to-end", action="store_true", help="also time the tiny WorldModel incl. decoding")
    args = p.parse_args()
    rows = []
    for size in args.sizes:
        a_dim = 4 if size.startswith("paper") else 2
        actions = torch.randn(args.batch, args.horizon, a_dim)
        m = build(size, a_dim, args.horizon)
        per = build(size, a_dim, args.horizon, per_frame=True)
        slow = args.horizon if size == "tiny-cpu" else min(args.horizon, args.slow_frames)
        gen = torch.Generator().manual_seed(0)
        cached(m, args.batch, 1, actions, gen)  # warm-up
        t_c = timed(cached, m, args.batch, args.horizon, actions, gen)
        t_r = timed(recompute, m, args.batch, slow, actions, gen)
        t_p = timed(cached, per, args.batch, slow, actions, gen)
        fps = {"cached": args.batch * args.horizon / t_c, "recompute": args.batch * slow / t_r,
               "per_frame": args.batch * slow / t_p}
        row = {"size": size, "params_M": round(m.num_params() / 1e6, 1), "batch": args.batch,
               "horizon": args.horizon, "frames_timed_slow": slow,
               **{f"fps_{k}": round(v, 2) for k, v in fps.items()},
               "speedup_vs_recompute": round(fps["cached"] / fps["recompute"], 2),
               "speedup_vs_per_frame": round(fps["cached"] / fps["per_frame"], 2)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.end_to_end:
        from ivideogpt.world_model import WorldModel

        wm = WorldModel.from_preset("tiny-cpu", action_dim=2, action_mean=[0.0, 0.0], action_std=[1.0, 1.0],
                                    use_reward=True).eval()
        r = wm.tokenizer.config.resolution
        ctx = torch.randint(0, 255, (args.batch, wm.context_frames, r, r, 3), dtype=torch.uint8)
        acts = torch.randn(args.batch, min(args.horizon, wm.max_steps), 2)
        wm.rollout(ctx, acts[:, :1], seed=0)
        t = timed(lambda: wm.rollout(ctx, acts, seed=0))
        print(json.dumps({"end_to_end_tiny_worldmodel_fps": round(acts.shape[0] * acts.shape[1] / t, 2)}))
    print("\n| size | params | cached fps | recompute fps | per-frame N fps | cached/recompute | cached/per-frame |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['size']} | {r['params_M']}M | {r['fps_cached']} | {r['fps_recompute']} | {r['fps_per_frame']}"
              f" | {r['speedup_vs_recompute']}x | {r['speedup_vs_per_frame']}x |")


if __name__ == "__main__":
    main()
