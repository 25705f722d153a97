"""Do the tiny-cpu transformer's embedding extras help? Codebook-vector and spatial embeddings on and off.

Each variant trains the tiny-cpu transformer (actions + rewards) for ``--minutes`` on the same tokens of a
finished demo (its frozen tokenizer and data, the same seed and batches), then prints, on held-out clips:

* teacher-forced cross-entropy per predicted frame with the true actions and with zero actions (the gap is what
  the model takes from the actions; frame 1 is the one read off the context tokens alone),
* rollout PSNR over ``--horizon`` steps: the model, copy-last, and the model fed shuffled actions (the demo's
  bar (b) is the second-half gap), sampled (temperature 1, top-k 100) and greedy.

    python benchmarks/transformer_embeddings.py --demo demo --minutes 12 --out /tmp/emb

Variants run one after the other (``--only NAME`` runs one; start two processes pinned to different cores to
use both). Results go to ``OUT/<variant>/result.json`` as well as stdout.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F

VARIANTS = {
    "plain": {"code_embedding": False, "spatial_frequencies": 0},
    "code": {"code_embedding": True, "spatial_frequencies": 0},
    "code+spatial": {"code_embedding": True, "spatial_frequencies": 4},  # = the tiny-cpu preset
}


def train(demo: Path, out: Path, overrides: dict, minutes: float, stride: int):
    from ivideogpt.config import from_dict, load_preset
    from ivideogpt.data.clips import MixtureSource
    from ivideogpt.train.config import TrainConfig
    from ivideogpt.train.engine import Trainer
    from ivideogpt.train.transformer_task import TransformerTask

    pp = load_preset("transformer", "tiny-cpu")
    cfg = from_dict(TrainConfig, {**pp["train"], "max_minutes": minutes, "seed": 0, "use_actions": True,
                                  "use_rewards": True, "token_cache_stride": stride})
    task = TransformerTask({**pp["model"], **overrides}, cfg, [MixtureSource(str(demo / "data"))],
                           tokenizer=str(demo / "tokenizer"), out=out, progress=False)
    summary = Trainer(task, cfg, out, resume=out.exists(), run_info={"overrides": overrides}).fit()
    return task.trainable().wm.eval(), summary


@torch.no_grad()
def per_frame_ce(wm, clips, actions):
    from ivideogpt.train.transformer_task import future_slice, tokenize_clips

    tr, lay = wm.transformer, wm.transformer.config.layout
    ctx, fut = tokenize_clips(wm.tokenizer, clips)
    tokens = lay.build(ctx, fut)
    a = actions[:, future_slice(wm.tokenizer.context_frames, clips.shape[1], False)]
    where = lay.target_mask(lay.num_frames(tokens.shape[1])).nonzero().squeeze(-1)
    out = {}
    for name, acts in (("true", a), ("zero", torch.zeros_like(a))):
        logits = tr.lm_head(tr._hidden(tokens, acts)[:, where]).float()
        ce = F.cross_entropy(logits.transpose(1, 2), tokens[:, where + 1], reduction="none")
        out[name] = [round(v, 3) for v in ce.reshape(len(a), -1, fut.shape[-1]).mean((0, 2)).tolist()]
    return out


@torch.no_grad()
def rollout_gaps(wm, items, seed=0):
    from ivideogpt.eval.prediction import predict_clips, summarize
    from ivideogpt.frames import to_uint8

    frames = to_uint8(torch.stack([c["frames"] for c in items]))
    acts, rews = torch.stack([c["actions"] for c in items]), torch.stack([c["rewards"] for c in items])
    res = {}
    for name, kw in (("sampled", {"temperature": 1.0, "top_k": 100}), ("greedy", {"temperature": 0.0})):
        s = summarize([predict_clips(wm, frames[b:b + 16], acts[b:b + 16], rews[b:b + 16], seed=seed + b, **kw)
                       for b in range(0, len(items), 16)])
        res[name] = {"model": s["psnr_model"]["mean"], "copy_last": s["psnr_copy_last"]["mean"],
                     "shuffled": s["psnr_shuffled"]["mean"],
                     "gap_second_half": round(s["psnr_model"]["second_half"] - s["psnr_shuffled"]["second_half"], 3)}
    return res


def main():
    from ivideogpt.data.clips import ClipDataset, MixtureSource

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--demo", default="demo", help="a finished demo directory (data/ + tokenizer/)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--minutes", type=float, default=12.0, help="training budget per variant")
    ap.add_argument("--stride", type=int, default=4, help="token-cache clip stride")
    ap.add_argument("--clips", type=int, default=64, help="held-out clips (multiple of 16)")
    ap.add_argument("--horizon", type=int, default=10)
    ap.add_argument("--only", choices=sorted(VARIANTS), default=None)
    args = ap.parse_args()
    demo, out = Path(args.demo), Path(args.out)
    src = [MixtureSource(str(demo / "data"))]
    for name, ov in VARIANTS.items():
        if args.only and name != args.only:
            continue
        wm, summary = train(demo, out / name, ov, args.minutes, args.stride)
        ce_val = ClipDataset(src, 10, split="val", resolution=wm.tokenizer.config.resolution, val_clips_per_episode=4)
        items = [ce_val[i] for i in range(min(2 * args.clips, len(ce_val)))]
        ce = per_frame_ce(wm, torch.stack([c["frames"] for c in items]), torch.stack([c["actions"] for c in items]))
        ro_val = ClipDataset(src, wm.context_frames + args.horizon, split="val",
                             resolution=wm.tokenizer.config.resolution, val_clips_per_episode=2)
        gaps = rollout_gaps(wm, [ro_val[i] for i in range(min(args.clips, len(ro_val)))])
        result = {"variant": name, "overrides": ov, "steps": summary.get("step"), "ce_per_frame": ce, "rollouts": gaps}
        (out / name / "result.json").write_text(json.dumps(result, indent=2) + "\n")
        mean = {k: sum(v) / len(v) for k, v in ce.items()}
        smp, grd = gaps["sampled"], gaps["greedy"]
        print(f"{name:13s} steps {result['steps']}  CE true {mean['true']:.3f} / zero actions {mean['zero']:.3f}  "
              f"frame 1: {ce['true'][0]:.2f} / {ce['zero'][0]:.2f}  |  sampled: model {smp['model']:.2f} "
              f"copy-last {smp['copy_last']:.2f} shuffled {smp['shuffled']:.2f} "
              f"gap(2nd half) {smp['gap_second_half']:+.2f}  greedy gap {grd['gap_second_half']:+.2f}", flush=True)


if __name__ == "__main__":
    main()
