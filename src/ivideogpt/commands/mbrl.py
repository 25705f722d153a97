"""``ivideogpt mbrl``: MBPO on DrQ-v2 with an iVideoGPT world model (pre-trained or from scratch),
trained online on its schedule, with interactive imagined rollouts mixed into every actor-critic batch.

Writes the same files as ``ivideogpt drqv2`` (curve.csv, curve.png, timing.json, checkpoint/ with the world
model and both replays).
"""

from __future__ import annotations

HELP = "model-based RL: MBPO with DrQ-v2 and the world model"


def add_arguments(p) -> None:
    from .drqv2 import add_rl_arguments

    add_rl_arguments(p)
    p.add_argument("--world-model", required=True, metavar="RUN|scratch",
                   help="world model or transformer run directory (action-free models gain an action head), or "
                        "'scratch' for an untrained model from mbpo.tokenizer_preset / mbpo.transformer_preset")


def run(args) -> int:
    from pathlib import Path

    from ..errors import ConfigError
    from .drqv2 import run_rl

    if args.world_model != "scratch" and not Path(args.world_model).exists():
        raise ConfigError(f"--world-model {args.world_model}: no such directory (or pass 'scratch')")
    return run_rl(args, world_model=args.world_model)
