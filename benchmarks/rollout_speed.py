"""Frames/s of action-conditioned rollouts (horizon 10, batch 16, 2 context frames), measured side by side:

  cached      this project's WorldModel path: one KV cache kept across frames (prefix never recomputed)
  recompute   the reference implementation's way: the whole prefix re-run for every new frame
  per-frame   a per-frame tokenizer: every frame N tokens like a context frame (256 at paper size), KV-cached

at the `tiny-cpu` and `paper-small` transformer sizes (random weights: speed does not depend on them).
Transformer generation is timed on its own (the tokenizer decode is the same for cached and recompute);
`--end-to-end` also times a whole WorldModel including the tokenizer decode (`--model RUN`, or an untrained
`tiny-cpu` one), and a planner's call with and without `samples=`.

Two speed-ups are printed, because a world model is used two ways:
  rollout   reset (encode the context) + `horizon` steps: what a planner or an MBPO rollout pays
  step      the steps after reset only: what an env pays per `step()` once it has been reset
The recompute baseline has no reset work (it re-runs the context inside every step), so its two rates are one.
A third, `one context`, is a planner's case: B candidate action sequences from the same frames, which the cache
encodes once (`WorldModel.rollout(..., samples=B)`) and the reference re-runs for every row.
Each is printed next to its ceiling: how many more token positions recompute runs through the transformer than
the cache does. A position in a one-token decoding step costs at least what it costs inside a long prefill (that
is dense matrix work), so the measured speed-up stays below the ceiling on any hardware.

    .venv/bin/python benchmarks/rollout_speed.py [--sizes tiny-cpu paper-small] [--batch 16] [--horizon 10]

Slow variants at paper size are timed on the first `--slow-frames` frames and extrapolated linearly to the
horizon (their per-frame cost only grows with the horizon, so the speed-ups against them are lower bounds).
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


def positions(m: Transformer, horizon: int) -> dict[str, int]:
    """Token positions each variant runs through the transformer for one rollout (one batch row)."""
    lay = m.config.layout
    steps = horizon * lay.frame_length  # [S2] + n codes per frame (the last fed for its reward)
    prefixes = sum(lay.length(lay.context_frames + k) for k in range(horizon))
    return {"cached_reset": lay.context_length, "cached_steps": steps, "recompute": prefixes + steps}


@torch.no_grad()
def cached(m, batch, frames, actions, gen, one_context: bool = False) -> tuple[float, float]:
    """-> (seconds to reset = prefill the context, seconds for ``frames`` steps).

    ``one_context``: all rows start from the same context, prefilled once and repeated (what
    ``WorldModel.reset(..., samples=batch)`` does)."""
    rows = 1 if one_context else batch
    cache = m.new_cache(rows)
    tokens = context_tokens(m, rows)
    t0 = time.perf_counter()
    m.prefill(tokens, cache)
    if one_context:
        cache = cache.repeat_interleave(batch)
    t1 = time.perf_counter()
    for i in range(frames):
        m.generate_frame(cache, actions[:, i], generator=gen, top_k=100)
    return t1 - t0, time.perf_counter() - t1


@torch.no_grad()
def recompute(m, batch, frames, actions, gen):
    lay = m.config.layout
    tokens = context_tokens(m, batch)
    for i in range(frames):
        ids, _ = m.generate_frame_recompute(tokens, actions[:, : i + 1], generator=gen, top_k=100)
        slot = torch.full((batch, 1), lay.slot_future, dtype=torch.long)
        tokens = torch.cat([tokens, slot, ids + lay.context_vocab], dim=1)


def end_to_end_model(path: str | None):
    from ivideogpt.errors import IVideoGPTError
    from ivideogpt.world_model import WorldModel

    if path is None:
        return WorldModel.from_preset("tiny-cpu", action_dim=2, action_mean=[0.0, 0.0], action_std=[1.0, 1.0],
                                      use_reward=True).eval()
    try:
        return WorldModel.from_pretrained(path).eval()
    except IVideoGPTError as e:
        raise SystemExit(f"error: {e}") from None


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
    p.add_argument("--end-to-end", action="store_true", help="also time a whole WorldModel incl. decoding (--model)")
    p.add_argument("--model", help="the WorldModel --end-to-end times (default: an untrained tiny-cpu one)")
    args = p.parse_args()
    wm = end_to_end_model(args.model) if args.end_to_end else None  # a bad --model fails before the long part
    rows = []
    for size in args.sizes:
        a_dim = 4 if size.startswith("paper") else 2
        actions = torch.randn(args.batch, args.horizon, a_dim)
        m = build(size, a_dim, args.horizon)
        per = build(size, a_dim, args.horizon, per_frame=True)
        slow = args.horizon if size == "tiny-cpu" else min(args.horizon, args.slow_frames)
        gen = torch.Generator().manual_seed(0)
        cached(m, args.batch, 1, actions, gen)  # warm-up
        reset_c, steps_c = cached(m, args.batch, args.horizon, actions, gen)
        t_r = timed(recompute, m, args.batch, slow, actions, gen) * args.horizon / slow
        reset_1, steps_1 = cached(m, args.batch, args.horizon, actions, gen, one_context=True)
        reset_p, steps_p = cached(per, args.batch, slow, actions, gen)
        steps_p *= args.horizon / slow
        n = args.batch * args.horizon
        fps = {"cached": n / (reset_c + steps_c), "cached_steps": n / steps_c,
               "cached_one_context": n / (reset_1 + steps_1), "recompute": n / t_r,
               "per_frame": n / (reset_p + steps_p)}
        pos = positions(m, args.horizon)
        row = {"size": size, "params_M": round(m.num_params() / 1e6, 1), "batch": args.batch,
               "horizon": args.horizon, "frames_timed_slow": slow,
               **{f"fps_{k}": round(v, 2) for k, v in fps.items()},
               "reset_s": round(reset_c, 2),
               "speedup_vs_recompute": round(fps["cached"] / fps["recompute"], 2),
               "ceiling_vs_recompute": round(pos["recompute"] / (pos["cached_reset"] + pos["cached_steps"]), 2),
               "step_speedup_vs_recompute": round(fps["cached_steps"] / fps["recompute"], 2),
               "step_ceiling_vs_recompute": round(pos["recompute"] / pos["cached_steps"], 2),
               "one_context_speedup_vs_recompute": round(fps["cached_one_context"] / fps["recompute"], 2),
               "one_context_ceiling_vs_recompute": round(
                   pos["recompute"] / (pos["cached_reset"] / args.batch + pos["cached_steps"]), 2),
               "speedup_vs_per_frame": round(fps["cached"] / fps["per_frame"], 2)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    if wm is not None:
        r = wm.tokenizer.config.resolution
        ctx = torch.randint(0, 255, (args.batch, wm.context_frames, r, r, 3), dtype=torch.uint8)
        acts = torch.randn(args.batch, min(args.horizon, wm.max_steps), wm.action_dim)
        wm.rollout(ctx, acts[:, :1], seed=0)
        n = acts.shape[0] * acts.shape[1]
        t = timed(lambda: wm.rollout(ctx, acts, seed=0))
        # A planner's call: every row from the same frames, given repeated vs encoded once (samples=B).
        same = ctx[:1].expand(args.batch, -1, -1, -1, -1).contiguous()
        t_rep = timed(lambda: wm.rollout(same, acts, seed=0))
        t_one = timed(lambda: wm.rollout(ctx[:1], acts, samples=args.batch, seed=0))
        print(json.dumps({"end_to_end_worldmodel_fps": round(n / t, 2),
                          "one_context_repeated_fps": round(n / t_rep, 2),
                          "one_context_samples_fps": round(n / t_one, 2),
                          "samples_speedup": round(t_rep / t_one, 2)}))
    print("\n| size | params | cached fps (rollout / steps / one context) | recompute fps | per-frame N fps "
          "| cached/recompute (ceiling): rollout | steps | one context | cached/per-frame |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['size']} | {r['params_M']}M | {r['fps_cached']} / {r['fps_cached_steps']} / "
              f"{r['fps_cached_one_context']} | {r['fps_recompute']} | {r['fps_per_frame']}"
              f" | {r['speedup_vs_recompute']}x ({r['ceiling_vs_recompute']}x)"
              f" | {r['step_speedup_vs_recompute']}x ({r['step_ceiling_vs_recompute']}x)"
              f" | {r['one_context_speedup_vs_recompute']}x ({r['one_context_ceiling_vs_recompute']}x)"
              f" | {r['speedup_vs_per_frame']}x |")


if __name__ == "__main__":
    main()
