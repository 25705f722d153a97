"""``ivideogpt demo``: the whole pipeline on the built-in ``pusher`` env with the ``tiny-cpu`` presets.

collect episodes -> train the tokenizer -> train the action-conditioned transformer with rewards -> roll out on
held-out episodes from the context frames and the real actions -> ``rollout.gif`` + ``metrics.json``.
Each stage is resumable: re-running the command continues where it stopped (finished stages are skipped).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

# Share of the --minutes budget per training stage; collection, the token cache and evaluation take the rest
# (about 3 minutes on 2 cores). The tiny-cpu tokenizer reaches ~33 dB future PSNR in ~1000 steps; the
# transformer is what needs the time (it learns the copy/erase structure first and the actions last).
TOKENIZER_SHARE = 0.25
TRANSFORMER_SHARE = 0.62
# Headline: greedy decoding (the model's most likely future; PSNR scores a point estimate against one real
# future). Rollouts sampled like the world model's defaults (what FVD, MBPO and planning use) are reported beside.
GREEDY = {"temperature": 0.0}
SAMPLED = {"temperature": 1.0, "top_k": 100}


def add_arguments(p):
    p.add_argument("--out", default="demo", help="output directory (data, runs, rollout.gif, metrics.json)")
    p.add_argument("--minutes", type=float, default=25.0,
                   help=f"total budget; training stages get {TOKENIZER_SHARE:.0%} / {TRANSFORMER_SHARE:.0%} of it")
    p.add_argument("--episodes", type=int, default=1200,
                   help="pusher episodes to collect (cheap: ~20 s per 1000; more data delays the transformer's "
                        "overfitting)")
    p.add_argument("--steps", type=int, default=32, help="frames per episode")
    p.add_argument("--context", type=int, default=2,
                   help="real frames each rollout starts from: the tokenizer's context frame, then observed frames "
                        "tokenized as future frames (with 1, the arm's first move is predicted from the context "
                        "tokens alone and comes out misplaced; benchmarks/RESULTS.md, session 3)")
    p.add_argument("--horizon", type=int, default=10, help="predicted frames per held-out rollout")
    p.add_argument("--eval-clips", type=int, default=32, help="held-out clips to evaluate")
    p.add_argument("--tokenizer-preset", default="tiny-cpu")
    p.add_argument("--transformer-preset", default="tiny-cpu")
    p.add_argument("--seed", type=int, default=0)


def _done(run: Path) -> bool:
    m = run / "metrics.jsonl"
    return m.exists() and any('"event": "end"' in line for line in m.read_text().splitlines())


def _train(task, cfg, run: Path, info: dict) -> dict:
    from ..train.engine import Trainer

    if _done(run):
        print(f"[demo] {run} already trained: skipping")
        return {}
    return Trainer(task, cfg, run, resume=run.exists(), run_info=info).fit()


def run(args) -> int:
    import torch

    from ..config import from_dict, load_preset, to_dict
    from ..data.clips import ClipDataset, MixtureSource
    from ..eval.prediction import check_context, predict_clips, summarize, write_rollout_gif
    from ..frames import to_uint8
    from ..train.config import TrainConfig
    from ..train.tokenizer_task import TokenizerTask
    from ..train.transformer_task import TransformerTask
    from ..world_model import WorldModel
    from .collect import collect

    t_start = time.time()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = out / "data"
    print(f"[demo] 1/4 collecting {args.episodes} pusher episodes x {args.steps} frames -> {data}")
    collect("pusher", data, episodes=args.episodes, steps=args.steps, noise=0.1, epsilon=0.2, seed=args.seed,
            resume=data.exists())
    sources = [MixtureSource(str(data))]

    print(f"[demo] 2/4 training the tokenizer ({args.tokenizer_preset}) for at most "
          f"{args.minutes * TOKENIZER_SHARE:.1f} min")
    tp = load_preset("tokenizer", args.tokenizer_preset)
    tcfg = from_dict(TrainConfig, {**tp.get("train", {}), "max_minutes": args.minutes * TOKENIZER_SHARE,
                                   "seed": args.seed})
    ttask = TokenizerTask(tp["model"], tcfg, sources)
    tok_run = out / "tokenizer"
    _train(ttask, tcfg, tok_run, {"preset": args.tokenizer_preset, "model": to_dict(ttask.trainable().tokenizer.config),
                                  "data": [str(data)]})

    print(f"[demo] 3/4 training the action-conditioned transformer ({args.transformer_preset}) with rewards for at "
          f"most {args.minutes * TRANSFORMER_SHARE:.1f} min")
    pp = load_preset("transformer", args.transformer_preset)
    pcfg = from_dict(TrainConfig, {**pp.get("train", {}), "max_minutes": args.minutes * TRANSFORMER_SHARE,
                                   "seed": args.seed, "use_actions": True, "use_rewards": True})
    wm_run = out / "world_model"
    ptask = TransformerTask(pp["model"], pcfg, sources, tokenizer=str(tok_run), out=wm_run)
    pm = ptask.trainable()
    observed = check_context(pm.wm, args.context, args.horizon)  # before training, not after
    _train(ptask, pcfg, wm_run, {"preset": args.transformer_preset, "model": to_dict(pm.wm.transformer.config),
                                 "tokenizer": str(tok_run), "data": [str(data)]})

    print(f"[demo] 4/4 rolling out on held-out episodes (horizon {args.horizon})")
    wm = WorldModel.from_pretrained(wm_run)
    n_frames = args.context + args.horizon
    val = ClipDataset(sources, n_frames, split="val", resolution=wm.tokenizer.config.resolution,
                      val_clips_per_episode=2)
    items = [val[i] for i in range(min(args.eval_clips, len(val)))]
    frames = to_uint8(torch.stack([c["frames"] for c in items]))
    acts = torch.stack([c["actions"] for c in items])
    rews = torch.stack([c["rewards"] for c in items])

    def evaluate(**sampling):
        return [predict_clips(wm, frames[b:b + 16], acts[b:b + 16], rews[b:b + 16], seed=args.seed + b,
                              observed=observed, **sampling) for b in range(0, len(items), 16)]

    results = evaluate(**GREEDY)
    s = summarize(results)
    sampled = evaluate(**SAMPLED)
    g = summarize(sampled)
    first = results[0]
    n_show = min(6, first["target"].shape[0])
    write_rollout_gif(out / "rollout.gif", first["context"][:n_show], first["target"][:n_show],
                      first["pred"][:n_show], first["pred_shuffled"][:n_show])
    write_rollout_gif(out / "rollout_sampled.gif", first["context"][:n_show], first["target"][:n_show],
                      sampled[0]["pred"][:n_show], sampled[0]["pred_shuffled"][:n_show])

    def gaps(x):
        return {"model_minus_copy_last_psnr_db": round(x["psnr_model"]["mean"] - x["psnr_copy_last"]["mean"], 3),
                "model_minus_shuffled_psnr_db_second_half": round(
                    x["psnr_model"]["second_half"] - x["psnr_shuffled"]["second_half"], 3)}

    metrics = {
        "clips": len(items), "horizon": args.horizon, "context_frames": args.context,
        "tokenizer_context_frames": wm.context_frames, "decoding": GREEDY, **s, **gaps(s),
        "sampled": {"decoding": SAMPLED, **{k: g[k] for k in ("psnr_model", "ssim_model", "psnr_shuffled",
                                                               "ssim_shuffled", "reward_mae") if k in g}, **gaps(g)},
        "val_episodes": len(val.datasets[0].split("val")),
        "minutes_total": round((time.time() - t_start) / 60, 2),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"[demo] greedy decoding, PSNR over {args.horizon} predicted steps: model {s['psnr_model']['mean']:.2f} dB, "
          f"copy-last {s['psnr_copy_last']['mean']:.2f} dB, shuffled actions {s['psnr_shuffled']['mean']:.2f} dB; "
          f"second half: model {s['psnr_model']['second_half']:.2f} vs shuffled "
          f"{s['psnr_shuffled']['second_half']:.2f} dB")
    print(f"[demo] sampled {SAMPLED}: model {g['psnr_model']['mean']:.2f} dB, shuffled actions "
          f"{g['psnr_shuffled']['mean']:.2f} dB; second half: model {g['psnr_model']['second_half']:.2f} vs shuffled "
          f"{g['psnr_shuffled']['second_half']:.2f} dB")
    if "reward_mae" in s:
        print(f"[demo] reward MAE {s['reward_mae']:.4f} (predicting the mean: {s['reward_mae_mean_baseline']:.4f})")
    print(f"[demo] wrote {out / 'rollout.gif'} and {out / 'metrics.json'} in {metrics['minutes_total']:.1f} min; "
          f"the world model is {wm_run} (WorldModel.from_pretrained)")
    return 0
