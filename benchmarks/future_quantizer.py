"""Does the prediction path learn to carry the moving arm? VQ vs FSQ vs no quantizer on the future codes.

Same tokenizer preset (default tiny-cpu), same seed, same batches, same optimizer for every variant; only the
future codebook's quantizer differs ("none" passes the continuous latent through: the ceiling). Every
``--every`` steps it prints, on a fixed held-out batch, the L1 of the future reconstruction on the pixels that
moved since the context frame (copy-last's value is the reference) and the future PSNR.

    python benchmarks/future_quantizer.py --data demo/data --steps 300

Needs an episode dataset (e.g. the demo's, or `ivideogpt collect --env pusher --episodes 200 --steps 32`).
"""

from __future__ import annotations

import argparse
import time

import torch

from ivideogpt.data.clips import ClipDataset, MixtureSource
from ivideogpt.tokenizer import Tokenizer
from ivideogpt.tokenizer.losses import moving_pixels
from ivideogpt.tokenizer.quantizer import QuantOut


def passthrough(z: torch.Tensor) -> QuantOut:
    return QuantOut(z, torch.zeros(z.shape[:-1], dtype=torch.long), z.new_zeros(()), float("nan"), float("nan"))


@torch.no_grad()
def measure(tok: Tokenizer, clips: torch.Tensor, continuous: bool) -> tuple[float, float, float]:
    tok.eval()
    state = tok.encode_context_state(clips[:, :1])
    fut = clips[:, 1:]
    if continuous:  # encode_future returns ids; without a quantizer decode the latent itself
        q = tok._encode_fut(fut, state)
        rec = tok._decode_fut(q.z_q, state, fut.shape[0], fut.shape[1])
    else:
        rec = tok.decode_future(tok.encode_future(fut, state), state)
    moving = moving_pixels(fut, clips[:, :1], tok.config.motion_threshold)
    denom = moving.sum() * 3
    l1 = float(((rec - fut).abs() * moving).sum() / denom)
    copy = float(((clips[:, :1] - fut).abs() * moving).sum() / denom)
    mse = ((rec.clamp(-1, 1) - fut) / 2).pow(2).mean((2, 3, 4))
    tok.train()
    return l1, copy, float((10 * torch.log10(1 / mse)).mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--preset", default="tiny-cpu")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--every", type=int, default=100)
    p.add_argument("--variants", default="fsq,vq,none")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    src = [MixtureSource(args.data)]
    train = ClipDataset(src, 8, split="train", resolution=64, seed=0)
    val = ClipDataset(src, 8, split="val", resolution=64, seed=0, val_clips_per_episode=2)
    held = torch.stack([val[i]["frames"] for i in range(16)])
    rows = []
    for variant in args.variants.split(","):
        torch.manual_seed(0)
        kind = "vq" if variant == "none" else variant
        tok = Tokenizer.from_preset(args.preset, [f"future_quantizer={kind}"])
        if variant == "none":
            tok.dynamics_quantize.forward = passthrough
        opt = torch.optim.AdamW(tok.parameters(), lr=1e-3, weight_decay=0.0)
        t0 = time.time()
        for s in range(1, args.steps + 1):
            batch = torch.stack([train[(s - 1) * 8 + i]["frames"] for i in range(8)])
            loss, _, _ = tok.training_losses(batch, n_context=1, n_future=4,
                                             generator=torch.Generator().manual_seed(s))
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(tok.parameters(), 1.0)
            opt.step()
            if s % args.every == 0:
                l1, copy, psnr = measure(tok, held, variant == "none")
                rows.append((variant, s, l1, copy, psnr))
                print(f"{variant:5s} step {s:5d}  moving-pixel L1 {l1:.3f} (copy-last {copy:.3f})  "
                      f"future PSNR {psnr:.2f} dB  [{time.time() - t0:.0f} s]", flush=True)
    print("\n| future quantizer | step | moving-pixel L1 (copy-last) | future PSNR dB |\n|---|---|---|---|")
    for v, s, l1, copy, psnr in rows:
        print(f"| {v} | {s} | {l1:.3f} ({copy:.3f}) | {psnr:.2f} |")


if __name__ == "__main__":
    main()
