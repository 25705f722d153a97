"""``ivideogpt plan``: closed-loop visual MPC (CEM/MPPI) in the real environment with a world model, beside the
random-action and oracle (real simulator as the model) baselines; goal images from expert demonstrations.

Writes ``results.jsonl`` (resumable with ``--resume``), ``summary.json``, ``summary.csv`` and GIFs of real vs
imagined futures into ``--out``, and prints the success table. See ``ivideogpt.planning.loop``.
"""

from __future__ import annotations

import json

HELP = "model-predictive control (CEM/MPPI) with a world model"


def add_arguments(p) -> None:
    p.add_argument("--model", default=None, help="world model directory or transformer run directory "
                   "(needed for the world_model method)")
    p.add_argument("--env", default="pusher", help="'pusher' or 'metaworld:<task>' (default: pusher)")
    p.add_argument("--data", default=None, help="the model's training dataset: plan in the environment settings it "
                   "was collected with (meta.json extra.env_kwargs) and default --steps to its episode length")
    p.add_argument("--env-kwargs", nargs="*", default=[], metavar="KEY=VALUE",
                   help="environment arguments (override --data's), e.g. n_blocks=2 (values parsed as YAML)")
    p.add_argument("--planner", default="mppi", choices=["mppi", "cem"])
    p.add_argument("--methods", default="random,world_model,oracle",
                   help="comma-separated subset of random,world_model,oracle (default: all three)")
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--steps", type=int, default=None, help="actions per episode (default: --data's episode "
                   "length - 1, else 30)")
    p.add_argument("--horizon", type=int, default=None, help="planning horizon (default 10, the paper's)")
    p.add_argument("--samples", type=int, default=None, help="candidates per iteration (default 200, the paper's)")
    p.add_argument("--iterations", type=int, default=None, help="planner iterations per step (default: CEM 3, MPPI 1)")
    p.add_argument("--max-batch", type=int, default=None, help="candidates per model call (memory bound; default 200)")
    p.add_argument("--cost", default="mse", help="mse, perceptual, keypoints (pusher: object-aware, from the pixels), "
                   "reward or a weighted sum such as 'mse:1,reward:0.1'")
    p.add_argument("--cost-frames", default="last", choices=["last", "all", "sum", "discounted"],
                   help="which predicted frames the goal-image cost counts (default: last, as VP2)")
    p.add_argument("--blur", type=float, default=0.0, help="Gaussian blur sigma in pixels for the mse cost "
                   "(default 0; plain MSE gives no signal while objects and their goal places do not overlap)")
    p.add_argument("--temperature", type=float, default=1.0, help="world-model sampling temperature")
    p.add_argument("--top-k", type=int, default=100)
    p.add_argument("--context", type=int, default=None,
                   help="real frames the world model is given (default: its tokenizer's context frames; the "
                        "demo's model: 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--gif-episodes", type=int, default=4, help="write GIFs for the first N episodes")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def env_settings(data, env_kwargs: list[str], steps: int | None) -> tuple[dict, int]:
    """(environment kwargs, actions per episode) from the dataset's collection settings and the overrides."""
    from pathlib import Path

    from ..commands.collect import _env_kwargs
    from ..errors import DataError

    kwargs, default_steps = {}, 30
    if data is not None:
        meta_path = Path(data) / "meta.json"
        try:
            extra = json.loads(meta_path.read_text()).get("extra", {})
        except (OSError, ValueError) as e:
            raise DataError(f"{meta_path}: cannot read the dataset's metadata ({e})") from None
        kwargs = dict(extra.get("env_kwargs", {}))
        if "steps" in extra:
            default_steps = int(extra["steps"]) - 1  # frames per episode -> actions
    kwargs.update(_env_kwargs(env_kwargs))
    return kwargs, steps if steps is not None else default_steps


def run(args) -> int:
    import torch

    from ..errors import ConfigError
    from ..planning.loop import PlanRunConfig, format_table, run_plan

    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    env_kwargs, steps = env_settings(args.data, args.env_kwargs, args.steps)
    wm = None
    if "world_model" in methods:
        if args.model is None:
            raise ConfigError("--model is needed for the world_model method (or leave it out of --methods)")
        from ..world_model import WorldModel

        wm = WorldModel.from_pretrained(args.model)
        env_kwargs.setdefault("size", wm.tokenizer.config.resolution)
    cfg = PlanRunConfig(env=args.env, env_kwargs=env_kwargs, planner=args.planner, methods=methods,
                        episodes=args.episodes, steps=steps, seed=args.seed, cost=args.cost,
                        cost_frames=args.cost_frames, blur=args.blur, horizon=args.horizon, samples=args.samples,
                        iterations=args.iterations, max_batch=args.max_batch, temperature=args.temperature,
                        top_k=args.top_k, context=args.context, gif_episodes=args.gif_episodes)
    with torch.inference_mode():
        summary = run_plan(cfg, args.out, world_model=wm, resume=args.resume, progress=not args.no_progress)
    print(format_table(summary))
    print(f"results: {args.out}/summary.json, summary.csv, results.jsonl")
    return 0
