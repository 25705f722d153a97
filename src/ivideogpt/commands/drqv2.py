"""``ivideogpt drqv2``: the model-free DrQ-v2 baseline on a pixel environment.

Writes OUT/curve.csv (env steps, eval success rate, eval return), OUT/curve.png, OUT/timing.json and an
atomic checkpoint (agent + replay) that ``--resume`` continues exactly.
"""

from __future__ import annotations

import json

HELP = "model-free DrQ-v2 baseline"


def add_rl_arguments(p) -> None:
    """Arguments shared by ``drqv2`` and ``mbrl``."""
    p.add_argument("--env", required=True,
                   help="environment: 'pusher' or 'metaworld:<task>' (e.g. metaworld:hammer-v3)")
    p.add_argument("--steps", type=int, required=True, help="env steps to train for (action repeats count)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--preset", default="cpu", help="RL preset (configs/rl/: cpu, paper) or a YAML path")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="override a config field, e.g. --set agent.batch_size=64 --set run.eval_episodes=5")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_arguments(p) -> None:
    add_rl_arguments(p)


def run_rl(args, world_model: str | None) -> int:
    from pathlib import Path

    import torch

    from ..errors import ConfigError
    from ..rl.config import RLConfig, load_rl_config
    from ..rl.loop import RLTrainer

    if args.steps < 1:
        raise ConfigError(f"--steps must be >= 1, got {args.steps}")
    if args.threads:
        torch.set_num_threads(args.threads)
    run_json = Path(args.out) / "run.json"
    if args.resume and run_json.exists():
        from ..config import from_dict

        # A resumed run keeps its saved configuration: it cannot silently change mid-run.
        cfg = from_dict(RLConfig, json.loads(run_json.read_text())["config"], where=str(run_json))
    else:
        cfg = load_rl_config(args.preset, args.set)
    trainer = RLTrainer(cfg, args.env, args.out, seed=args.seed, world_model=world_model, resume=args.resume,
                        progress=not args.no_progress)
    summary = trainer.train(args.steps)
    timing = json.loads((Path(args.out) / "timing.json").read_text())
    print(f"where the time went ({timing['env_steps']} env steps; CPU time of this process, wall in brackets):")
    for name, t in timing["sections"].items():
        print(f"  {name:<15} {t['cpu_seconds']:>9.1f} s ({t['seconds']:>8.1f})  "
              f"{t['cpu_ms_per_env_step']:>8.1f} ms/env step  {100 * t['cpu_fraction']:>5.1f} %")
    print(json.dumps({"out": args.out, **summary}))
    return 0


def run(args) -> int:
    return run_rl(args, world_model=None)
