"""``ivideogpt reconstruct``: tokenize held-out clips and decode them again; print PSNR/SSIM, write a PNG."""

from __future__ import annotations

import json


def add_arguments(p):
    p.add_argument("--tokenizer", required=True, help="tokenizer model dir, tokenizer run dir, or world model")
    p.add_argument("--data", required=True, help="episode dataset directory")
    p.add_argument("--out", default="recon.png", help="PNG to write (rows: truth, reconstruction)")
    p.add_argument("--split", default="val", choices=["train", "val"])
    p.add_argument("--clips", type=int, default=6, help="clips to show and measure")
    p.add_argument("--frames", type=int, default=None, help="frames per clip (default: context + 6)")


def run(args) -> int:
    import torch

    from ..data.clips import ClipDataset
    from ..errors import DataError
    from ..tokenizer import Tokenizer
    from ..train.tokenizer_task import recon_report

    tok = Tokenizer.from_pretrained(args.tokenizer).eval()
    n = args.frames or tok.context_frames + 6
    ds = ClipDataset(args.data, n, split=args.split, resolution=tok.config.resolution)
    if len(ds) == 0:
        raise DataError(f"{args.data}: no '{args.split}' clips of {n} frames")
    items = [ds[i] for i in range(min(args.clips, len(ds)))]
    frames = torch.stack([it["frames"] for it in items])
    logs, image, _ = recon_report(tok, frames, n_show=len(items))
    from PIL import Image

    Image.fromarray(image).save(args.out)
    print(json.dumps({"clips": len(items), "frames": n, **{k: round(v, 3) for k, v in logs.items()},
                      "png": args.out}))
    return 0
