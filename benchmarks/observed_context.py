"""How much does giving the world model real frames after its tokenizer's context help? Rollout PSNR on held-out
clips when the model starts from T0 real frames (everything after is predicted) vs T0 + 1 (the next real frame is
tokenized as a future frame and given with its action), greedy and sampled, with the copy-last and
shuffled-action controls of the demo.

    python benchmarks/observed_context.py --model demo/world_model --data demo/data --clips 64
"""

from __future__ import annotations

import argparse

import torch

from ivideogpt.data.clips import ClipDataset, MixtureSource
from ivideogpt.eval.prediction import predict_clips, summarize
from ivideogpt.frames import to_uint8
from ivideogpt.world_model import WorldModel


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--clips", type=int, default=64, help="held-out clips (2 per val episode, in order)")
    ap.add_argument("--horizon", type=int, default=10)
    ap.add_argument("--max-observed", type=int, default=1)
    args = ap.parse_args()
    wm = WorldModel.from_pretrained(args.model)
    src = [MixtureSource(args.data)]
    for observed in range(args.max_observed + 1):
        val = ClipDataset(src, wm.context_frames + observed + args.horizon, split="val",
                          resolution=wm.tokenizer.config.resolution, val_clips_per_episode=2)
        items = [val[i] for i in range(min(args.clips, len(val)))]
        frames = to_uint8(torch.stack([c["frames"] for c in items]))
        acts, rews = torch.stack([c["actions"] for c in items]), torch.stack([c["rewards"] for c in items])
        for name, kw in (("greedy", {"temperature": 0.0}), ("sampled", {"temperature": 1.0, "top_k": 100})):
            s = summarize([predict_clips(wm, frames[b:b + 16], acts[b:b + 16], rews[b:b + 16], seed=b,
                                         observed=observed, **kw) for b in range(0, len(items), 16)])
            m, c, sh = s["psnr_model"], s["psnr_copy_last"], s["psnr_shuffled"]
            print(f"context {wm.context_frames + observed} ({observed} observed), {name:7s} {len(items)} clips: "
                  f"PSNR model {m['mean']:.2f} copy-last {c['mean']:.2f} shuffled {sh['mean']:.2f} | second half "
                  f"model {m['second_half']:.2f} shuffled {sh['second_half']:.2f} gap "
                  f"{m['second_half'] - sh['second_half']:+.2f} dB | per step {[round(v, 2) for v in m['per_step']]}",
                  flush=True)


if __name__ == "__main__":
    main()
