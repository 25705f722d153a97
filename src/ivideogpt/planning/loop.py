"""Closed-loop visual MPC in the real environment, with the baselines VP2 reports beside a model.

Episode i (seed from ``(seed, i)``, as ``ivideogpt collect`` does): reset the env with the episode's seed, run
the scripted expert (noise-free) for ``steps`` actions and keep its last frame as the goal image; reset again
with the same seed and let each method act for ``steps`` actions, re-planning every step:

- ``random``: uniform random actions in the action box (the floor);
- ``world_model``: the planner with the world model predicting the futures;
- ``oracle``: the *same* planner, cost, samples, iterations and horizon with the real simulator restored to the
  current state predicting them (VP2's "simulator" row: the ceiling this planner and cost reach with a
  perfect model).

Success is the environment's ``info['success']`` after the last action (VP2 scores the final state).
Results go to ``results.jsonl`` (one row per episode and method, rewritten atomically after each, so an
interrupted run resumes where it stopped), ``summary.json`` / ``summary.csv`` and, for the first
``gif_episodes`` episodes, GIFs of real vs imagined futures.
"""

from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..commands.collect import episode_seeds
from ..errors import ConfigError
from ..fileio import atomic_write_bytes, atomic_write_json
from .costs import goal_cost
from .planners import make_planner
from .predictors import SimulatorPredictor, WorldModelPredictor

METHODS = ("random", "world_model", "oracle")


@dataclass
class PlanRunConfig:
    env: str = "pusher"
    env_kwargs: dict = field(default_factory=dict)
    planner: str = "mppi"
    methods: tuple[str, ...] = METHODS
    episodes: int = 20
    steps: int = 30  # real actions per episode (the expert gets the same number to make the goal)
    seed: int = 0
    cost: str = "mse"  # see costs.goal_cost: mse / perceptual / reward, or weighted sums 'mse:1,perceptual:0.5'
    cost_frames: str = "last"  # which predicted frames the goal cost looks at: last / all / sum / discounted
    blur: float = 0.0  # Gaussian sigma (pixels) of the mse cost (see costs.PixelMSE)
    # Planner settings; None keeps the planner's paper default (planners.py).
    horizon: int | None = None
    samples: int | None = None
    iterations: int | None = None
    max_batch: int | None = None
    temperature: float = 1.0  # world-model sampling
    top_k: int | None = 100
    context: int | None = None  # real frames the world model is given (default: its tokenizer's; see WorldModel.reset)
    require_expert_success: bool = True  # skip instances whose expert demo fails (its goal image shows no success)
    max_skips: int = 100  # give up if this many instances in a row have failing expert demos
    gif_episodes: int = 4

    def check(self) -> None:
        unknown = sorted(set(self.methods) - set(METHODS))
        if unknown or not self.methods:
            raise ConfigError(f"methods: unknown {unknown}; choose from {list(METHODS)}")
        if self.episodes < 1 or self.steps < 1:
            raise ConfigError(f"need episodes >= 1 and steps >= 1, got {self.episodes} and {self.steps}")


def expert_goal(env, env_name: str, env_seed: int, expert_seed: int, steps: int):
    """Run the noise-free scripted expert from ``reset(seed=env_seed)`` for ``steps`` actions:
    (its last frame, whether it succeeded at the end, its frames)."""
    from ..envs import make_expert

    expert = make_expert(env_name, noise=0.0, seed=expert_seed)
    obs, info = env.reset(seed=env_seed)
    frames = [obs]
    for _ in range(steps):
        obs, _, _, _, info = env.step(expert.act(obs, info))
        frames.append(obs)
    return obs, bool(info["success"]), np.stack(frames)


def run_episode(env, method: str, goal, env_seed: int, steps: int, planner=None, predictor=None, cost=None,
                rng: np.random.Generator | None = None, record: bool = False, progress=None) -> dict:
    """One closed-loop episode; returns its result row (and, with ``record``, real and imagined frames)."""
    t0 = time.perf_counter()
    obs, info = env.reset(seed=env_seed)
    if planner is not None:
        planner.reset()
        predictor.reset(env, obs, env_seed)
    low, high = env.action_space.low, env.action_space.high
    real, imagined, ok_any, ret = [obs], [], bool(info.get("success", False)), 0.0
    for _ in range(steps):
        if planner is None:
            a = rng.uniform(low, high).astype(np.float32)
        else:
            a = planner.act(predictor, cost)
            if record:
                imagined.append(np.asarray(planner.last_best_frames))
        obs, r, _, _, info = env.step(a)
        ret += float(r)
        ok_any = ok_any or bool(info["success"])
        if planner is not None:
            predictor.observe(env, obs, a)
        real.append(obs)
        if progress is not None:
            progress.update(1)
    row = {"method": method, "success": bool(info["success"]), "success_any_step": ok_any, "return": ret,
           "wall_s": round(time.perf_counter() - t0, 3)}
    if cost is not None and "reward" not in cost_names(cost):
        # The goal cost of the real final frame: whether the planner optimised its objective at all, even where
        # the objective does not lead to success.
        row["final_cost"] = float(cost(obs[None, None], None, np.zeros((1, 1, len(low)), np.float32))[0])
    if "distance" in info:
        row["final_distance"] = float(info["distance"])
    if record:
        row["_real"], row["_imagined"] = np.stack(real), imagined
    return row


def designation(env) -> dict | None:
    """The episode's designated object and effector for the ``keypoints`` cost, where the env has them."""
    fn = getattr(env.unwrapped, "designation", None)
    return fn() if fn is not None else None


def cost_names(cost) -> list[str]:
    return [t.name for t in getattr(cost, "terms", [])]


def _load_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _save_rows(path: Path, rows: list[dict]) -> None:
    atomic_write_bytes(path, "".join(json.dumps(r) + "\n" for r in rows).encode())


def summarize(rows: list[dict], methods) -> dict:
    out = {}
    for m in methods:
        rs = [r for r in rows if r["method"] == m]
        if not rs:
            continue
        out[m] = {"episodes": len(rs), "success_rate": float(np.mean([r["success"] for r in rs])),
                  "success_any_step": float(np.mean([r["success_any_step"] for r in rs])),
                  "mean_return": float(np.mean([r["return"] for r in rs])),
                  "wall_s_per_episode": float(np.mean([r["wall_s"] for r in rs]))}
        for key in ("final_distance", "final_cost"):
            if all(key in r for r in rs):
                out[m][f"mean_{key}"] = float(np.mean([r[key] for r in rs]))
    return out


def write_episode_gif(path: Path, goal, real, imagined, *, scale: int = 2, fps: int = 4) -> None:
    """Per step t: goal | real t | real t+1 | imagined t+1 | imagined t+H (the best plan's predicted frames)."""
    import imageio.v2 as imageio
    from PIL import Image, ImageDraw

    titles = ["goal", "real t", "real t+1", "imag. t+1", "imag. t+H"]
    h, w = goal.shape[:2]
    cw, pad, head = w * scale, 4, 14
    frames = []
    for t, imag in enumerate(imagined):
        canvas = Image.new("RGB", (len(titles) * (cw + pad) + pad, head + h * scale + 2 * pad), (255, 255, 255))
        draw = ImageDraw.Draw(canvas)
        tiles = [goal, real[t], real[t + 1], imag[0], imag[-1]]
        for c, (title, img) in enumerate(zip(titles, tiles)):
            x0 = pad + c * (cw + pad)
            draw.text((x0, 1), title, fill=(0, 0, 0))
            canvas.paste(Image.fromarray(np.asarray(img, np.uint8)).resize((cw, h * scale), Image.NEAREST),
                         (x0, head + pad))
        frames.append(np.asarray(canvas))
    buf = io.BytesIO()
    imageio.mimsave(buf, frames, format="GIF", duration=1000 / fps, loop=0)
    atomic_write_bytes(path, buf.getvalue())


def run_plan(cfg: PlanRunConfig, out, *, world_model=None, resume: bool = False, progress: bool = True,
             log=print) -> dict:
    """Run every method on ``cfg.episodes`` instances; write results under ``out``; return the summary."""
    from tqdm import tqdm

    from ..envs import make

    cfg.check()
    if "world_model" in cfg.methods and world_model is None:
        raise ConfigError("method 'world_model' needs a world model (--model)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config_path, rows_path = out / "config.json", out / "results.jsonl"
    config = asdict(cfg)
    if resume and config_path.exists():
        old = json.loads(config_path.read_text())
        if old != json.loads(json.dumps(config)):
            diff = sorted(k for k in config if old.get(k) != json.loads(json.dumps(config))[k])
            raise ConfigError(f"{config_path}: cannot resume with different settings ({diff})")
    elif not resume and rows_path.exists():
        raise ConfigError(f"{out} already holds results; pass --resume to continue it or choose another --out")
    atomic_write_json(config_path, config)
    rows = _load_rows(rows_path) if resume else []
    done = {(r["episode"], r["method"]) for r in rows}

    env = make(cfg.env, **cfg.env_kwargs)
    if cfg.steps > getattr(env, "max_episode_steps", cfg.steps):
        raise ConfigError(f"--steps {cfg.steps} exceeds the environment's max_episode_steps {env.max_episode_steps}")
    low, high = env.action_space.low, env.action_space.high
    overrides = {k: getattr(cfg, k) for k in ("horizon", "samples", "iterations", "max_batch")}
    # Build the planner and the cost once before any work: bad settings fail here, not after the first episode.
    horizon = make_planner(cfg.planner, low, high, **overrides).cfg.horizon
    if "world_model" in cfg.methods:
        _check_world_model(world_model, env, horizon)
    env.reset(seed=episode_seeds(cfg.seed, 0)[0])
    goal_cost(cfg.cost, np.zeros(env.observation_space.shape[-3:], np.uint8), frames=cfg.cost_frames, blur=cfg.blur,
              designation=designation(env))
    # One private simulator copy for the oracle, restored per candidate (a Meta-World env holds a GL renderer).
    sim = make(cfg.env, **cfg.env_kwargs) if "oracle" in cfg.methods else None
    bar = tqdm(total=cfg.episodes * cfg.steps * len(cfg.methods), unit="step", desc=f"plan {cfg.env}",
               disable=not progress, initial=len(done) * cfg.steps)
    instance, skipped_in_a_row, skipped = 0, 0, []
    for ep in range(cfg.episodes):
        # Find the next instance whose expert demonstration succeeds (deterministic given the seed).
        while True:
            env_seed, expert_seed = episode_seeds(cfg.seed, instance)
            goal, expert_ok, _ = expert_goal(env, cfg.env, env_seed, expert_seed, cfg.steps)
            instance += 1
            if expert_ok or not cfg.require_expert_success:
                skipped_in_a_row = 0
                break
            skipped.append(instance - 1)
            skipped_in_a_row += 1
            if skipped_in_a_row >= cfg.max_skips:
                raise ConfigError(f"the scripted expert failed on {cfg.max_skips} instances in a row in {cfg.steps} "
                                  f"steps: give more --steps")
        cost = goal_cost(cfg.cost, goal, frames=cfg.cost_frames, blur=cfg.blur, designation=designation(env))
        for method in cfg.methods:
            if (ep, method) in done:
                continue
            planner = predictor = None
            plan_seed = int(np.random.SeedSequence([cfg.seed, instance - 1, 1]).generate_state(1)[0])
            if method != "random":
                # Same planner seed for both planning methods: the same candidate noise, only the model differs.
                planner = make_planner(cfg.planner, low, high, seed=plan_seed, **overrides)
                if method == "world_model":
                    observed = 0 if cfg.context is None else cfg.context - world_model.context_frames
                    predictor = WorldModelPredictor(world_model, temperature=cfg.temperature, top_k=cfg.top_k,
                                                    observed=observed)
                else:
                    predictor = SimulatorPredictor(sim)
            record = ep < cfg.gif_episodes and method != "random"
            row = run_episode(env, method, goal, env_seed, cfg.steps, planner, predictor, cost,
                              rng=np.random.default_rng(plan_seed), record=record, progress=bar)
            if record:
                write_episode_gif(out / f"episode{ep:03d}_{method}.gif", goal, row.pop("_real"), row.pop("_imagined"))
            row.update(episode=ep, instance=instance - 1, env_seed=env_seed, expert_success=expert_ok)
            rows.append(row)
            _save_rows(rows_path, rows)
    bar.close()
    for e in (env, sim):
        if e is not None:
            e.close()
    summary = {"config": config, "skipped_instances_expert_failed": skipped,
               "planner_settings": asdict(make_planner(cfg.planner, low, high, **overrides).cfg),
               "methods": summarize(rows, cfg.methods)}
    atomic_write_json(out / "summary.json", summary)
    buf = io.StringIO()
    writer = csv.writer(buf)
    keys = ["method", "episodes", "success_rate", "success_any_step", "mean_return", "mean_final_distance",
            "mean_final_cost", "wall_s_per_episode"]
    writer.writerow(keys)
    for m, s in summary["methods"].items():
        writer.writerow([m] + [s.get(k, "") for k in keys[1:]])
    atomic_write_bytes(out / "summary.csv", buf.getvalue().encode())
    return summary


def _check_world_model(wm, env, horizon: int) -> None:
    shape = env.observation_space.shape
    r = wm.tokenizer.config.resolution
    if shape != (r, r, 3):
        raise ConfigError(f"the environment renders {shape} frames, the world model takes ({r}, {r}, 3): set the "
                          f"environment's size (--env-kwargs size={r})")
    if env.action_space.shape != (wm.action_dim,):
        raise ConfigError(f"the environment's actions are {env.action_space.shape}, the world model takes "
                          f"({wm.action_dim},)")
    if horizon > wm.max_steps:
        raise ConfigError(f"horizon {horizon} exceeds the world model's longest rollout ({wm.max_steps} frames)")


def format_table(summary: dict) -> str:
    cfg, ps = summary["config"], summary["planner_settings"]
    lines = [f"env {cfg['env']}, planner {cfg['planner']} (horizon {ps['horizon']}, samples {ps['samples']}, "
             f"iterations {ps['iterations']}), cost {cfg['cost']} ({cfg['cost_frames']}, blur {cfg['blur']}), "
             f"{cfg['steps']} steps/episode, seed {cfg['seed']}",
             "| method | episodes | success | success any step | final distance | final goal cost | s/episode |",
             "|---|---|---|---|---|---|---|"]
    for m, s in summary["methods"].items():
        dist = f"{s['mean_final_distance']:.3f}" if "mean_final_distance" in s else "-"
        fc = f"{s['mean_final_cost']:.3g}" if "mean_final_cost" in s else "-"
        lines.append(f"| {m} | {s['episodes']} | {s['success_rate']:.2f} | {s['success_any_step']:.2f} | {dist} | "
                     f"{fc} | {s['wall_s_per_episode']:.1f} |")
    return "\n".join(lines)
