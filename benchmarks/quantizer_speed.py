"""Quantizer cost, side by side in one run: our VQ (matmul + argmin), a cdist-based VQ, and FSQ.

Shapes follow paper-facts.md: 32 x 256 vectors (dim 64) against 8192 codes, forward + backward (a training
step's share). Also times one tiny-cpu tokenizer training step to show the quantizer does not dominate it.

    .venv/bin/python benchmarks/quantizer_speed.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import time

import torch

from ivideogpt.tokenizer import Tokenizer
from ivideogpt.tokenizer.quantizer import FSQuantizer, VectorQuantizer


def best_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--vectors", type=int, default=32 * 256)
    ap.add_argument("--codes", type=int, default=8192)
    ap.add_argument("--dim", type=int, default=64)
    args = ap.parse_args()
    torch.manual_seed(0)
    z = torch.randn(args.vectors, args.dim)
    vq = VectorQuantizer(args.codes, args.dim, dead_code_steps=0).train()
    vq.embedding.weight.data.normal_()
    fsq = FSQuantizer([8, 5, 5, 5]).train()
    z_fsq = torch.randn(args.vectors, 4)

    def run_vq():
        x = z.clone().requires_grad_()
        out = vq(x)
        (out.z_q.sum() + out.loss).backward()

    def run_cdist():  # the textbook formulation, for comparison
        x = z.clone().requires_grad_()
        ids = torch.cdist(x.detach(), vq.embedding.weight.detach()).argmin(1)
        q = vq.embedding(ids)
        loss = ((q - x.detach()) ** 2).mean() + ((x - q.detach()) ** 2).mean()
        ((x + (q - x).detach()).sum() + loss).backward()

    def run_fsq():
        x = z_fsq.clone().requires_grad_()
        fsq(x).z_q.sum().backward()

    t_vq, t_cd, t_fsq = (best_time(f, args.repeats) for f in (run_vq, run_cdist, run_fsq))
    print(f"threads={torch.get_num_threads()}  {args.vectors} vectors, dim {args.dim}, {args.codes} codes "
          f"(forward + backward, best of {args.repeats})")
    print(f"  vq (matmul + argmin) : {t_vq * 1e3:8.1f} ms")
    print(f"  vq (cdist + argmin)  : {t_cd * 1e3:8.1f} ms   ratio cdist / ours = {t_cd / t_vq:.2f}")
    print(f"  fsq [8,5,5,5]        : {t_fsq * 1e3:8.1f} ms   ratio vq / fsq = {t_vq / t_fsq:.2f}")

    # Share of one tiny-cpu training step (batch 8 clips: 2 context + 4 future frames).
    tok = Tokenizer.from_preset("tiny-cpu").train()
    clip = torch.rand(8, 6, 3, tok.resolution, tok.resolution) * 2 - 1
    qtime = [0.0]

    def timed(mod):
        def pre(m, inp):
            qtime.append(time.perf_counter())

        def post(m, inp, out):
            qtime[0] += time.perf_counter() - qtime.pop()

        mod.register_forward_pre_hook(pre)
        mod.register_forward_hook(post)

    timed(tok.quantize)
    timed(tok.dynamics_quantize)

    def step():
        loss, _, _ = tok.training_losses(clip, n_context=tok.context_frames)
        loss.backward()

    step()
    qtime[0] = 0.0
    t_step = best_time(step, args.repeats)
    q_share = qtime[0] / (args.repeats + 1)
    print(f"tiny-cpu training step: {t_step * 1e3:.0f} ms; quantizer forward {q_share * 1e3:.1f} ms per step "
          f"({100 * q_share / t_step:.1f} %)")


if __name__ == "__main__":
    main()
