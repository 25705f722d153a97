"""``ivideogpt predict``: roll a world model out on dataset episodes from their context frames (and real actions)
and write a GIF/MP4: truth | prediction | prediction with shuffled actions."""

from __future__ import annotations

import json


def add_arguments(p):
    p.add_argument("--model", required=True, help="world model directory or transformer run directory")
    p.add_argument("--data", required=True, help="episode dataset directory")
    p.add_argument("--episodes", type=int, default=4, help="how many held-out episodes to show")
    p.add_argument("--split", default="val", choices=["train", "val"])
    p.add_argument("--context", type=int, default=None,
                   help="real frames the model is given (default: its tokenizer's context frames; more are "
                        "tokenized as observed future frames, e.g. 2 for the demo's model)")
    p.add_argument("--horizon", type=int, default=None, help="predicted frames (default: as many as the model can)")
    p.add_argument("--out", default="predict.gif", help="output .gif or .mp4")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)


def run(args) -> int:
    from pathlib import Path

    import numpy as np
    import torch

    from ..data.clips import ClipDataset
    from ..errors import ConfigError, DataError
    from ..eval.prediction import check_context, predict_clips, write_rollout_gif
    from ..frames import to_uint8
    from ..world_model import WorldModel

    out = Path(args.out)
    if out.suffix.lower() not in (".gif", ".mp4"):
        raise ConfigError(f"--out {out}: expected a .gif or .mp4 file name")
    wm = WorldModel.from_pretrained(args.model)
    context = wm.context_frames if args.context is None else args.context
    horizon = args.horizon or wm.max_steps - max(0, context - wm.context_frames)
    observed = check_context(wm, context, horizon)
    ds = ClipDataset(args.data, context + horizon, split=args.split,
                     resolution=wm.tokenizer.config.resolution, action_dim=wm.action_dim or None)
    if len(ds) == 0:
        raise DataError(f"{args.data}: no '{args.split}' episode is long enough for {context + horizon} frames")
    items = [ds[i] for i in range(min(args.episodes, len(ds)))]
    frames = to_uint8(torch.stack([it["frames"] for it in items]))
    r = predict_clips(wm, frames, torch.stack([it["actions"] for it in items]),
                      torch.stack([it["rewards"] for it in items]), seed=args.seed, temperature=args.temperature,
                      top_k=args.top_k, observed=observed)
    gif = out if out.suffix.lower() == ".gif" else out.with_suffix(".tmp.gif")
    write_rollout_gif(gif, r["context"], r["target"], r["pred"], r.get("pred_shuffled"))
    if out.suffix.lower() == ".mp4":
        import imageio.v2 as imageio

        frames_gif = imageio.mimread(gif)
        # H.264 wants even sizes; pad by one pixel where needed.
        h, w = frames_gif[0].shape[:2]
        pad = [(0, h % 2), (0, w % 2), (0, 0)]
        imageio.mimsave(out, [np.pad(f[..., :3], pad, mode="edge") for f in frames_gif], fps=4,
                        macro_block_size=1)
        gif.unlink()
    print(json.dumps({"out": str(out), "episodes": len(items), "horizon": horizon,
                      "psnr_model": round(float(np.mean(r["psnr_model"])), 3),
                      "psnr_copy_last": round(float(np.mean(r["psnr_copy_last"])), 3),
                      **({"psnr_shuffled": round(float(np.mean(r["psnr_shuffled"])), 3)} if "psnr_shuffled" in r
                         else {})}))
    return 0
