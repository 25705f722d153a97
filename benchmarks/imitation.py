"""Video in-context imitation (VidIT on compressive tokens), measured in pixel space.

An action-free world model trained only on plain clips of `pusher-behaviours` episodes (one episode per sequence:
two consecutive 8-frame trials, each tokenized against its own first frame) is shown a demonstration trial from
*another* episode and scene, then the held start of a query trial, and generates the query's next 4 frames. A
pixel classifier (`ivideogpt.eval.behaviour`: the effector's colour centroid, the direction it moved) names the
behaviour each generated clip shows.

Pipeline (each stage skipped when its output exists, so a killed run continues where it stopped):

  1. data       `ivideogpt collect --env pusher-behaviours`: training episodes (seed 0), held-out episodes (seed 1)
  2. tokenizer  `ivideogpt train tokenizer --preset tiny-cpu` for --tokenizer-minutes (or --tokenizer RUN)
  3. main       `ivideogpt train transformer --preset imitation` (4 x 192) for --main-steps
  4. scaling    three sizes (--sizes) x three seeds (--seeds) for --steps each, --parallel runs at a time
  5. upper bound  the main model fine-tuned (--finetune-steps) on explicit cross-episode pairs: sequences of a trial
                of one episode and a trial of another episode with the same behaviour
  6. evaluation --queries held-out queries per model -> OUT/results/*.json, then a summary table, a scaling plot
                and a GIF

Conditions (each query: trial 1 of a held-out episode, its first 4 frames given; z* = the behaviour that episode
really has, which its held frames do not show):
  no_demo       the query alone                                              scored against z*
  in_class      a demo of behaviour z* from another episode (another scene)  against z*
  random        a demo of a uniformly random behaviour (the mean over all K) against z*
  contrastive   a demo of the opposite behaviour                             against the demo's behaviour
  shuffled      the in-class demo with its 8 frames in a random order        against z*
  same_scene    trial 0 of the query's own episode                           against z*
  pair          contrastive pair success: the in-class and the contrastive demo both followed (chance 1/K^2)
Arm error: the effector's position in the generated frames against the counterfactual truth (the simulator
restored at the query's first frame and stepped with the demo's actions) vs against the replays of the other
behaviours' demos. PSNR likewise; FVD (main model, the first 80 queries: in-class and no-demo clips against the
counterfactual replays) on the 8-frame clips with the last frame repeated (the I3D needs 9).

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/imitation.py --out /work/imit
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ivideogpt.data.episodes import EpisodeDataset, EpisodeWriter
from ivideogpt.envs.behaviours import contrastive
from ivideogpt.eval import psnr
from ivideogpt.eval.behaviour import BehaviourClassifier
from ivideogpt.frames import to_model, to_uint8
from ivideogpt.serve.ground_truth import GroundTruth
from ivideogpt.world_model import WorldModel

SIZES = {"xs": dict(n_layer=2, d_model=96, n_head=4, d_ff=288),
         "s": dict(n_layer=3, d_model=144, n_head=4, d_ff=432),
         "m": dict(n_layer=4, d_model=192, n_head=6, d_ff=576)}  # m = the imitation preset's backbone
TRIAL, QUERY = 8, 4  # frames per trial (the preset's segment) and given query frames
FVD_VIDEOS = 80


def cli(*args, threads: int, log: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-m", "ivideogpt.cli", *map(str, args)]
    with open(log, "a") as f:
        f.write(f"$ {' '.join(cmd)}\n")
        f.flush()
        subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, check=True)


def train_cmd(run: Path, steps: int, data: Path, *, tokenizer: Path | None = None, init: Path | None = None,
              size: dict | None = None, seed: int = 0) -> list:
    args = ["train", "transformer", "--preset", "imitation", "--data", data, "--out", run, "--max-steps", steps,
            "--no-progress", "--set", f"train.seed={seed}"]
    args += ["--tokenizer", tokenizer] if tokenizer else ["--init", init]
    for k, v in (size or {}).items():
        args += ["--set", f"model.{k}={v}"]
    return args + ["--resume"]  # continues a killed run; starts afresh where there is no checkpoint yet


def ended(run: Path, steps: int | None = None) -> bool:
    """The run's metrics log ends with the engine's end-of-run record (after ``steps`` steps, when given)."""
    path = run / "metrics.jsonl"
    if not path.exists():
        return False
    ends = [json.loads(line) for line in path.read_text().splitlines() if '"event": "end"' in line]
    return bool(ends) and (steps is None or ends[-1]["step"] >= steps)


def launch(jobs: list[tuple[Path, list]], parallel: int, log_dir: Path, cache_from: Path | None) -> None:
    """Run training jobs, ``parallel`` at a time with one thread each (small models: two single-threaded
    processes do more steps than one with two threads)."""
    todo = list(jobs)
    running: list[tuple[subprocess.Popen, Path]] = []
    while todo or running:
        while todo and len(running) < parallel:
            run, args = todo.pop(0)
            run.mkdir(parents=True, exist_ok=True)
            if cache_from is not None and not (run / "token_cache.pt").exists():
                shutil.copy(cache_from / "token_cache.pt", run / "token_cache.pt")  # same key: no re-tokenizing
            log = open(log_dir / f"{run.name}.log", "a")
            threads = 1 if parallel > 1 else 2
            p = subprocess.Popen([sys.executable, "-m", "ivideogpt.cli", *map(str, args)], stdout=log,
                                 stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
            running.append((p, run))
            print(f"[imitation] training {run.name} ({threads} thread(s))", flush=True)
        time.sleep(5)
        for p, run in list(running):
            if p.poll() is not None:
                running.remove((p, run))
                if p.returncode:
                    raise SystemExit(f"training {run} failed (exit {p.returncode}); see {log_dir / run.name}.log")
                print(f"[imitation] finished {run.name}", flush=True)


def make_pairs(src: EpisodeDataset, out: Path, n: int, seed: int) -> None:
    """Explicit cross-episode (demo, query) pairs: episode = a trial of episode a, then a trial of episode b != a
    with the same behaviour (the upper bound's training data; the cut between them is a context frame)."""
    rng = np.random.default_rng(seed)
    z = np.array([src.episode_info(i)["behaviour"] for i in range(len(src))])
    trials = src.length(0) // TRIAL
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    h, w = src.meta["image_size"]
    with EpisodeWriter(tmp, image_size=(h, w), action_dim=src.meta["action_dim"], source="imitation pairs",
                       extra={"pairs_of": str(src.path)}) as wr:
        for _ in range(n):
            a = int(rng.integers(len(src)))
            b = int(rng.choice(np.flatnonzero((z == z[a]) & (np.arange(len(z)) != a))))
            ta, tb = (int(rng.integers(trials)) * TRIAL for _ in range(2))
            ea, eb = src.episode(a), src.episode(b)
            frames = np.concatenate([ea["frames"][ta:ta + TRIAL], eb["frames"][tb:tb + TRIAL]])
            acts = np.concatenate([ea["actions"][ta:ta + TRIAL - 1], np.zeros((1, ea["actions"].shape[1]), np.float32),
                                   eb["actions"][tb:tb + TRIAL - 1]])
            rew = np.zeros(len(acts), np.float32)
            wr.add_episode(frames, acts, rew, info={"behaviour": int(z[a]), "demo": [a, ta], "query": [b, tb]})
    tmp.rename(out)


# ------------------------------------------------------------------------------------------- evaluation
class Heldout:
    """Held-out episodes, queries, demos per behaviour, and the simulator's counterfactual replays."""

    def __init__(self, path: Path, queries: int, seed: int):
        self.ds = EpisodeDataset(path)
        n = len(self.ds)
        if queries > n:
            raise SystemExit(f"--queries {queries}: the held-out set has only {n} episodes")
        self.frames = np.stack([self.ds.frames(i) for i in range(n)])
        self.actions = np.stack([self.ds.episode(i)["actions"] for i in range(n)])
        self.z = np.array([self.ds.episode_info(i)["behaviour"] for i in range(n)])
        self.K = int(self.ds.episode_info(0)["behaviours"])
        rng = np.random.default_rng(seed)
        Q = self.Q = queries
        self.query = self.frames[:Q, TRIAL:TRIAL + QUERY]  # trial 1 of each query episode, held start
        self.truth = self.frames[:Q, TRIAL + QUERY:2 * TRIAL]  # what that episode really did next
        trials = self.frames.shape[1] // TRIAL
        # One demo per behaviour per query: a random trial of a random other episode with that behaviour.
        self.demo_ep = np.zeros((Q, self.K), int)
        self.demo_t = rng.integers(trials, size=(Q, self.K)) * TRIAL
        for q in range(Q):
            for k in range(self.K):
                self.demo_ep[q, k] = rng.choice(np.flatnonzero((self.z == k) & (np.arange(n) != q)))
        self.perm = np.stack([_derangement(rng, TRIAL) for _ in range(Q)])
        self.replay = self._replays()

    def demo(self, k) -> np.ndarray:
        """Demos [Q, TRIAL, H, W, 3]: behaviour k per query (k: int, or an array [Q])."""
        k = np.broadcast_to(np.asarray(k), (self.Q,))
        e, t = self.demo_ep[np.arange(self.Q), k], self.demo_t[np.arange(self.Q), k]
        return np.stack([self.frames[i, s:s + TRIAL] for i, s in zip(e, t)])

    def _replays(self) -> np.ndarray:
        """[Q, K, TRIAL, H, W, 3]: each query's simulator at its first frame, stepped with demo k's actions."""
        out = np.zeros((self.Q, self.K, TRIAL, *self.frames.shape[2:]), np.uint8)
        for q in range(self.Q):
            gt = GroundTruth(self.ds, q, TRIAL + 1)
            if gt.env is None:
                raise SystemExit(gt.reason)
            for k in range(self.K):
                gt.restart()
                e, t = self.demo_ep[q, k], self.demo_t[q, k]
                out[q, k, 0] = gt.frame
                for j, a in enumerate(self.actions[e, t:t + TRIAL - 1]):
                    out[q, k, j + 1] = gt.step(a)[0]
        return out


def _derangement(rng, n):
    while True:
        p = rng.permutation(n)
        if (p != np.arange(n)).all():
            return p


def generate(wm, demo, query, seed: int, batch: int) -> np.ndarray:
    out = []
    for i in range(0, len(query), batch):
        d = None if demo is None else demo[i:i + batch]
        out.append(wm.imitate(d, query[i:i + batch], TRIAL - QUERY, seed=seed + i))
    return np.concatenate(out)


def evaluate(wm, h: Heldout, *, seed: int, batch: int, with_fvd: bool) -> dict:
    K, Q = h.K, h.Q
    clf = BehaviourClassifier(K)
    zs = h.z[:Q]
    opp = np.array([contrastive(z, K) for z in zs])
    start = torch.as_tensor(h.query[:, -1])
    gen = {f"demo_{k}": generate(wm, h.demo(k), h.query, seed, batch) for k in range(K)}
    gen["no_demo"] = generate(wm, None, h.query, seed, batch)
    gen["same_scene"] = generate(wm, h.frames[:Q, :TRIAL], h.query, seed, batch)
    inclass = h.demo(zs)
    gen["shuffled"] = generate(wm, np.stack([d[p] for d, p in zip(inclass, h.perm)]), h.query, seed, batch)
    disp = {k: clf.displacement(start, torch.as_tensor(v)) for k, v in gen.items()}
    pred = {k: clf.classify(v).numpy() for k, v in disp.items()}
    still = {k: float(clf.is_still(v).float().mean()) for k, v in disp.items()}
    by = np.stack([pred[f"demo_{k}"] for k in range(K)], 1)  # [Q, K]: generated behaviour with demo k
    rows = np.arange(Q)
    r = {"queries": Q, "K": K, "chance": 1 / K,
         "acc_no_demo": float((pred["no_demo"] == zs).mean()),
         "acc_in_class": float((by[rows, zs] == zs).mean()),
         "acc_random": float((by == zs[:, None]).mean()),
         "acc_contrastive": float((by[rows, opp] == opp).mean()),
         "acc_all_demos": float((by == np.arange(K)[None]).mean()),
         "acc_shuffled": float((pred["shuffled"] == zs).mean()),
         "acc_same_scene": float((pred["same_scene"] == zs).mean()),
         "pair_success": float(((by[rows, zs] == zs) & (by[rows, opp] == opp)).mean()),
         "pair_chance": 1 / K ** 2, "still": still,
         "no_demo_distribution": np.bincount(pred["no_demo"], minlength=K).tolist()}
    # Arm position and PSNR against the counterfactual truth (same k) vs the other behaviours' replays.
    px = h.frames.shape[2]
    arm_gen = np.stack([clf.locate(torch.as_tensor(gen[f"demo_{k}"])).numpy() for k in range(K)], 1)  # [Q,K,4,2]
    arm_rep = clf.locate(torch.as_tensor(h.replay[:, :, QUERY:])).numpy()  # [Q,K,4,2]
    err = np.linalg.norm(arm_gen[:, :, None] - arm_rep[:, None, :], axis=-1).mean(-1) * px  # [Q,K(gen),K(rep)]
    eye = np.eye(K, dtype=bool)
    r["arm_err_truth_px"] = float(err[:, eye].mean())
    r["arm_err_other_px"] = float(err[:, ~eye].mean())
    p = np.stack([[psnr(gen[f"demo_{k}"], h.replay[:, j, QUERY:]).mean(-1) for j in range(K)] for k in range(K)])
    r["psnr_truth"] = float(np.asarray(p)[eye].mean())
    r["psnr_other"] = float(np.asarray(p)[~eye].mean())
    # Ceilings: the classifier on real frames (the replays, the query episodes' real continuations) and on
    # tokenizer reconstructions of those continuations.
    rep_pred = clf(torch.as_tensor(h.replay[:, :, QUERY - 1]), torch.as_tensor(h.replay[:, :, QUERY:])).numpy()
    r["classifier_real_replays"] = float((rep_pred == np.arange(K)[None]).mean())
    r["classifier_real_truth"] = float((clf(start, torch.as_tensor(h.truth)).numpy() == zs).mean())
    with torch.no_grad():
        real = h.frames[:Q, TRIAL:2 * TRIAL]
        recon = []
        for i in range(0, Q, batch):
            x = to_model(real[i:i + batch])
            state = wm.tokenizer.encode_context_state(x[:, :1])
            ids = wm.tokenizer.encode_future(x[:, 1:], state)
            recon.append(to_uint8(wm.tokenizer.decode_future(ids, state)).numpy())
        recon = np.concatenate(recon)[:, QUERY - 1:]
    r["classifier_tokenizer_recon"] = float((clf(start, torch.as_tensor(recon)).numpy() == zs).mean())
    r.update(demo_dependence(wm, h, batch))
    if with_fvd:
        # I3D features once per set (the first FVD_VIDEOS queries; the I3D costs ~1 s per clip here): the
        # counterfactual replays vs the clips generated with the in-class demo and with no demo.
        from ivideogpt.eval.frechet import feature_stats, frechet_distance, load_detector

        n = min(Q, FVD_VIDEOS)
        det = load_detector()
        pad = lambda v: np.concatenate([v, v[:, -1:]], 1)  # noqa: E731  (the I3D needs >= 9 frames)
        stats = {k: feature_stats(det.features(torch.as_tensor(pad(v[:n])), batch_size=8)) for k, v in (
            ("real", h.replay[rows, zs]), ("in_class", np.concatenate([h.query, by_demo(gen, zs)], 1)),
            ("no_demo", np.concatenate([h.query, gen["no_demo"]], 1)))}
        r["fvd_videos"] = n
        r["fvd_in_class"] = frechet_distance(*stats["real"], *stats["in_class"])
        r["fvd_no_demo"] = frechet_distance(*stats["real"], *stats["no_demo"])
    return r, gen


@torch.no_grad()
def demo_dependence(wm, h: Heldout, batch: int) -> dict:
    """Teacher-forced cross-entropy (nats per token) of the query trial's real moving frames (4..7) after the
    in-class demo vs after the contrastive one: a model that reads the demonstration finds the real continuation
    likelier after the demo that shows it. Less noisy than classifying samples."""
    tok, tr = wm.tokenizer, wm.transformer
    lay = tr.layout
    zs = h.z[:h.Q]
    real = h.frames[:h.Q, TRIAL:2 * TRIAL]

    def segment(frames):
        x = to_model(frames)
        state = tok.encode_context_state(x[:, :1])
        return lay.build(state.ids, tok.encode_future(x[:, 1:], state))

    out = {}
    for name, ks in (("in_class", zs), ("contrastive", np.array([contrastive(z, h.K) for z in zs]))):
        ce = []
        demo = h.demo(ks)
        for i in range(0, h.Q, batch):
            tokens = torch.cat([segment(demo[i:i + batch]), segment(real[i:i + batch])], 1)
            logits, _ = tr(tokens)
            first = lay.length(TRIAL) + lay.context_length + (QUERY - 1) * lay.frame_length  # frame 4's [S2]
            pos = torch.arange(first, tokens.shape[1] - 1)
            pos = pos[lay.is_future_code(tr.local_positions(tokens.shape[1])[pos + 1])]
            lp = torch.log_softmax(logits[:, pos].float(), -1).gather(-1, tokens[:, pos + 1, None])[..., 0]
            ce.append(-lp.mean(1))
        out[name] = float(torch.cat(ce).mean())
    return {"ce_moving_in_class": out["in_class"], "ce_moving_contrastive": out["contrastive"]}


def by_demo(gen: dict, ks: np.ndarray) -> np.ndarray:
    """Per query q, the frames generated with demo ks[q]."""
    return np.stack([gen[f"demo_{k}"][q] for q, k in enumerate(ks)])


def binomial_band(p: float, n: int) -> float:
    return 1.96 * float(np.sqrt(p * (1 - p) / n))


def num_params(run: Path) -> int:
    return WorldModel.from_pretrained(run).transformer.num_params()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--episodes", type=int, default=1600, help="training episodes (32 frames = 4 trials each)")
    ap.add_argument("--heldout", type=int, default=400, help="held-out episodes (queries and demos)")
    ap.add_argument("--tokenizer", type=Path, default=None, help="a trained tokenizer run (default: train one)")
    ap.add_argument("--tokenizer-minutes", type=float, default=12.0)
    ap.add_argument("--main-steps", type=int, default=1500)
    ap.add_argument("--sizes", nargs="*", default=list(SIZES), choices=list(SIZES),
                    help="scaling-study sizes (none: main and upper bound only; a later run adds the rest)")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=400, help="training steps of each scaling run")
    ap.add_argument("--finetune-steps", type=int, default=300)
    ap.add_argument("--pairs", type=int, default=2000, help="cross-episode pairs for the upper bound")
    ap.add_argument("--queries", type=int, default=240, help="held-out queries for the main and fine-tuned models")
    ap.add_argument("--scaling-queries", type=int, default=80, help="held-out queries for each scaling run")
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--batch", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0, help="evaluation seed (demo choice and sampling)")
    ap.add_argument("--no-fvd", action="store_true")
    ap.add_argument("--plot", type=Path, default=Path("docs/img/imitation_scaling.png"))
    ap.add_argument("--gif", type=Path, default=Path("docs/img/imitation.gif"))
    args = ap.parse_args()
    out = args.out
    (out / "logs").mkdir(parents=True, exist_ok=True)
    (out / "results").mkdir(exist_ok=True)
    log = out / "logs" / "pipeline.log"
    t0 = time.time()
    # 1. data
    for name, n, seed in (("train", args.episodes, 0), ("heldout", args.heldout, 1)):
        if not (out / name / "meta.json").exists() or len(EpisodeDataset(out / name)) < n:
            print(f"[imitation] collecting {name} ({n} episodes)", flush=True)
            cli("collect", "--env", "pusher-behaviours", "--episodes", n, "--steps", 4 * TRIAL, "--seed", seed,
                "--out", out / name, "--no-progress", *(["--resume"] if (out / name).exists() else []),
                threads=2, log=log)
    # 2. tokenizer
    tok = args.tokenizer or out / "tokenizer"
    if args.tokenizer is None and not ended(tok):
        print(f"[imitation] training the tokenizer ({args.tokenizer_minutes} min)", flush=True)
        cli("train", "tokenizer", "--preset", "tiny-cpu", "--data", out / "train", "--out", tok, "--no-progress",
            "--set", f"train.max_minutes={args.tokenizer_minutes}", threads=2, log=log)
    runs = out / "runs"
    main_run = runs / "main"
    # 3. main model
    if not ended(main_run, args.main_steps):
        launch([(main_run, train_cmd(main_run, args.main_steps, out / "train", tokenizer=tok))], 1, out / "logs", None)
    # 4. scaling
    jobs = [(runs / f"{s}-{seed}", train_cmd(runs / f"{s}-{seed}", args.steps, out / "train", tokenizer=tok,
                                             size=SIZES[s], seed=seed))
            for seed in args.seeds for s in args.sizes]
    launch([j for j in jobs if not ended(j[0], args.steps)], args.parallel, out / "logs", main_run)
    # 5. upper bound
    if not (out / "pairs" / "meta.json").exists():
        make_pairs(EpisodeDataset(out / "train"), out / "pairs", args.pairs, seed=0)
    ft = runs / "finetuned"
    if not ended(ft, args.finetune_steps):
        launch([(ft, train_cmd(ft, args.finetune_steps, out / "pairs", init=main_run))], 1, out / "logs", None)
    # 6. evaluation
    print(f"[imitation] evaluation: {args.queries} held-out queries; building demos and replays", flush=True)
    held = {n: Heldout(out / "heldout", n, args.seed) for n in {args.queries, args.scaling_queries}}
    torch.manual_seed(0)
    models = ["main", "finetuned"] + [f"{s}-{seed}" for s in args.sizes for seed in args.seeds]
    results = {}
    for name in models:
        path = out / "results" / f"{name}.json"
        h = held[args.queries if name in ("main", "finetuned") else args.scaling_queries]
        if not path.exists():
            t = time.time()
            wm = WorldModel.from_pretrained(runs / name)
            r, gen = evaluate(wm, h, seed=args.seed, batch=args.batch, with_fvd=name == "main" and not args.no_fvd)
            r["params"] = wm.transformer.num_params()
            r["eval_seconds"] = round(time.time() - t, 1)
            path.write_text(json.dumps(r, indent=2) + "\n")
            if name == "main":
                write_gif(h, gen, args.gif)
        results[name] = json.loads(path.read_text())
        print(f"[imitation] {name}: " + ", ".join(f"{k}={v:.3f}" for k, v in results[name].items()
                                                    if k.startswith(("acc_", "pair_success"))), flush=True)
    summary = summarize(results, args.sizes, args.seeds, args.queries, args.scaling_queries)
    (out / "results" / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if args.sizes:
        plot(summary, args.sizes, args.steps, len(args.seeds), args.plot)
    print(json.dumps({"minutes": round((time.time() - t0) / 60, 1), **summary}, indent=2))


def summarize(results: dict, sizes, seeds, Q: int, Q_scaling: int) -> dict:
    keys = ["acc_no_demo", "acc_random", "acc_in_class", "acc_contrastive", "acc_shuffled", "acc_same_scene",
            "pair_success", "arm_err_truth_px", "arm_err_other_px", "psnr_truth", "psnr_other",
            "ce_moving_in_class", "ce_moving_contrastive"]
    out = {"main": results["main"], "finetuned": results["finetuned"], "scaling": {}}
    chance = results["main"]["chance"]
    for key, n in (("chance_band_95", Q), ("chance_band_95_scaling", Q_scaling)):
        out[key] = [chance - binomial_band(chance, n), chance + binomial_band(chance, n)]
    for s in sizes:
        rs = [results[f"{s}-{seed}"] for seed in seeds]
        row = {"params": rs[0]["params"]}
        for k in keys:
            v = np.array([r[k] for r in rs])
            row[k] = [float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0]
        gain = np.array([r["acc_in_class"] - r["acc_random"] for r in rs])
        row["gain_in_class_over_random"] = [float(gain.mean()), float(gain.std(ddof=1)) if len(gain) > 1 else 0.0]
        out["scaling"][s] = row
    return out


def plot(summary: dict, sizes, steps: int, seeds: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(9, 3.4))
    params = [summary["scaling"][s]["params"] / 1e6 for s in sizes]
    for key, label in (("acc_in_class", "in-class demo"), ("acc_random", "random demo"),
                       ("acc_no_demo", "no demo"), ("pair_success", "contrastive pair")):
        m = [summary["scaling"][s][key][0] for s in sizes]
        e = [summary["scaling"][s][key][1] for s in sizes]
        ax[0].errorbar(params, m, yerr=e, marker="o", capsize=3, label=label)
    lo, hi = summary["chance_band_95_scaling"]
    ax[0].axhspan(lo, hi, color="grey", alpha=0.2, label="chance (95%)")
    ax[0].set_xscale("log")
    ax[0].set_xlabel("transformer parameters (M)")
    ax[0].set_ylabel("accuracy (pixel classifier)")
    ax[0].legend(fontsize=7)
    g = [summary["scaling"][s]["gain_in_class_over_random"] for s in sizes]
    ax[1].errorbar(params, [x[0] for x in g], yerr=[x[1] for x in g], marker="o", capsize=3)
    ax[1].axhline(0, color="grey", lw=0.8)
    ax[1].set_xscale("log")
    ax[1].set_xlabel("transformer parameters (M)")
    ax[1].set_ylabel("in-class minus random demo")
    for a, s in zip(params, sizes):
        ax[1].annotate(s, (a, 0), textcoords="offset points", xytext=(0, 4), fontsize=8)
    fig.suptitle(f"In-context imitation vs size after {steps} steps each ({seeds} seeds, mean ± sd)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def write_gif(h: Heldout, gen: dict, path: Path, queries: int = 3) -> None:
    """The first ``queries`` held-out queries (not picked), each with its in-class and its contrastive demo."""
    from ivideogpt.eval.imitation import write_imitation_gif

    names = ["right", "down", "left", "up"] if h.K == 4 else [str(k) for k in range(h.K)]
    rows = []
    for q in range(queries):
        for k in (h.z[q], contrastive(h.z[q], h.K)):
            rows.append({"demo": h.demo(k)[q], "imitation": np.concatenate([h.query[q], gen[f"demo_{k}"][q]]),
                         "replay": h.replay[q, k], "label": f"query {q}\ndemo: {names[k]}"})
    path.parent.mkdir(parents=True, exist_ok=True)
    write_imitation_gif(path, rows, query_frames=QUERY)


if __name__ == "__main__":
    main()
