"""Visual MPC success rates measured side by side in one run: random actions / world-model MPC / oracle MPC.

The oracle is the same planner, cost, samples, iterations, horizon and planner seed with the real simulator
(restored to the current state) predicting the futures: VP2's "simulator" row, the ceiling of this planner and
cost. Goal images are the last frames of noise-free expert demonstrations of the same instances.

    OMP_NUM_THREADS=1 taskset -c 1 .venv/bin/python benchmarks/planning.py \\
        --model demo/world_model --data demo/data --episodes 10 --out /tmp/plan-pusher

Every ``ivideogpt plan`` option is accepted (this script is that command with CPU-budget defaults and a
one-thread torch). The defaults below are reduced from the paper's (MPPI 200 samples, horizon 10; CEM
200 x 3) so a 10-episode pusher table fits in ~20 minutes of one CPU core with the tiny-cpu model. Measured on
one core: a world-model rollout of 200 x 10 frames took 28 s (50 x 10: 5.8 s), so one paper-size MPPI step
would cost ~30 s and a 31-step episode ~15 min; at 32 x 8 a planning step cost ~3.6 s of CPU (the 10-episode
table: 18.5 CPU minutes). Pass ``--samples 200 --horizon 10`` for the paper's settings. Resumable with
``--resume`` (results.jsonl in ``--out``).
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from ivideogpt.commands import plan

# CPU-budget settings (see the docstring); any of them can be overridden on the command line.
DEFAULTS = ["--model", "demo/world_model", "--data", "demo/data", "--out", "/tmp/ivideogpt-planning",
            "--planner", "mppi", "--episodes", "10", "--samples", "32", "--horizon", "8",
            "--cost", "mse", "--cost-frames", "all", "--blur", "8", "--gif-episodes", "2"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    plan.add_arguments(p)
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: one pinned core)")
    args = p.parse_args(DEFAULTS + list(sys.argv[1:] if argv is None else argv))  # later values win
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    rc = plan.run(args)
    print(f"wall time {time.perf_counter() - t0:.0f} s on {args.threads} thread(s)")
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
