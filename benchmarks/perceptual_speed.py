"""ST-LPIPS cost as a metric (forward, no grad) and as a loss (forward + backward w.r.t. the input).

    .venv/bin/python benchmarks/perceptual_speed.py [--batch 32] [--repeats 5] [--device cpu]

Each configuration is timed in turn within every repeat (interleaved, so load from other processes
hits all of them alike); the median over repeats is printed, with ratios to the 64x64 distance.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from ivideogpt.eval import STLPIPS


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 32])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    net = STLPIPS().to(device)
    g = torch.Generator().manual_seed(0)
    inputs = {s: [(torch.rand(args.batch, 3, s, s, generator=g) * 2 - 1).to(device) for _ in range(2)]
              for s in args.sizes}

    def distance(s):
        with torch.no_grad():
            net(*inputs[s])

    def loss(s):
        x = inputs[s][0].clone().requires_grad_()
        net(x, inputs[s][1]).mean().backward()

    cases = [(f"{kind} {s}x{s}", fn, s) for s in args.sizes for kind, fn in (("distance", distance), ("loss", loss))]
    times = {name: [] for name, _, _ in cases}
    for _name, fn, s in cases:  # warm-up (allocator, kernel selection)
        fn(s)
    for _ in range(args.repeats):
        for name, fn, s in cases:
            sync(device)
            t = time.perf_counter()
            fn(s)
            sync(device)
            times[name].append(time.perf_counter() - t)

    print(f"ST-LPIPS, {args.batch} image pairs, device {device}, torch threads {torch.get_num_threads()}, "
          f"median of {args.repeats}")
    base = statistics.median(times[cases[0][0]])
    for name, _, _ in cases:
        med = statistics.median(times[name])
        print(f"  {name:<18} {med * 1000:9.1f} ms   {med / base:5.2f}x   "
              f"(min {min(times[name]) * 1000:.1f} ms)")


if __name__ == "__main__":
    main()
