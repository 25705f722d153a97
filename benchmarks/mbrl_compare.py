"""MBPO vs model-free DrQ-v2 on one environment at equal env steps (same seeds, same preset).

Runs ``ivideogpt drqv2`` and ``ivideogpt mbrl`` for each seed (resuming runs already in OUT), overlays the
curves in OUT/curves.png and prints the time-budget table of each run. Run it pinned to one core:

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 taskset -c 1 python benchmarks/mbrl_compare.py --env pusher --steps 3000 \
        --world-model demo/world_model --seeds 0
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="pusher", help="pusher or metaworld:<task>")
    p.add_argument("--steps", type=int, default=3000, help="env steps per run")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--world-model", required=True, help="world model run/directory, or scratch")
    p.add_argument("--out", default="benchmarks/out/mbrl")
    p.add_argument("--preset", default="cpu")
    p.add_argument("--set", action="append", default=[], help="extra config overrides for both runs")
    p.add_argument("--only", choices=["drqv2", "mbrl"], default=None)
    args = p.parse_args()

    from ivideogpt.rl.plot import plot_curves

    out = Path(args.out)
    curves = {}
    for seed in args.seeds:
        for algo in ("drqv2", "mbrl"):
            if args.only and algo != args.only:
                continue
            run = out / f"{algo}_seed{seed}"
            cmd = [sys.executable, "-m", "ivideogpt.cli", algo, "--env", args.env, "--steps", str(args.steps),
                   "--seed", str(seed), "--out", str(run), "--preset", args.preset, "--threads", "1", "--no-progress"]
            cmd += [x for s in args.set for x in ("--set", s)]
            if algo == "mbrl":
                cmd += ["--world-model", args.world_model]
            if (run / "checkpoint" / "state.json").exists():
                cmd.append("--resume")
            print(" ".join(cmd), flush=True)
            subprocess.run(cmd, check=True)
            curves[f"{'MBPO' if algo == 'mbrl' else 'DrQ-v2'} seed {seed}"] = run / "curve.csv"
    plot_curves(curves, out / "curves.png", title=f"{args.env}, {args.steps} env steps, preset {args.preset}")
    for label, path in curves.items():
        t = json.loads((path.parent / "timing.json").read_text())
        print(label, {k: v["cpu_seconds"] for k, v in t["sections"].items()}, "total CPU s", t["timed_cpu_seconds"])
    print(f"plot: {out / 'curves.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
