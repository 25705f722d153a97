"""The video-prediction evaluation protocol behind ``ivideogpt evaluate``.

For every test clip the world model sees ``context`` real frames and (optionally) the clip's real actions and
samples ``K`` futures of ``horizon`` frames. Reported, each as a mean and a per-step curve:

- **best-of-K** (the paper's convention, "PSNR/SSIM/LPIPS of the best sample", 100 samples per video):
  chosen per metric and per clip, as the VideoGPT-style protocols do: the sample with the highest PSNR, the
  one with the highest SSIM and the one with the lowest ST-LPIPS (each averaged over the horizon) can be
  three different samples. Its per-step curve is that chosen sample's curve.
- **mean over samples**: the expected quality of one sample (with K = 1, best-of-K equals it).
- **shuffled actions**: the same model fed another clip's actions (1 sample). A model that ignores its
  actions scores the same here as with the true ones; blur alone can beat copy-last, so this control
  is what shows that actions matter.
- **copy-last**: the last context frame repeated (the baseline that needs no model).
- **FVD** over all N x K samples vs the N real clips, videos = context + predicted frames (the I3D needs
  at least 9 frames). Where it cannot be computed the report says why — never a made-up number.
- **reward MAE** vs the true rewards, next to always predicting the evaluated clips' mean reward.
- **action controllability** with an inverse-dynamics model (see :mod:`.controllability`).

Determinism: rollouts are batched ``batch_size`` at a time over the list of (clip, sample) pairs, and each
batch's sampling generator is seeded from ``(seed, first clip, first sample)`` of that batch; so a report is
a pure function of (model, data, seed, batch_size, settings): the same call gives the same numbers, bit for
bit (the ``timings`` block aside). A different ``batch_size`` draws different (equally valid) samples.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError, DataError
from ..frames import to_uint8
from .metrics import psnr, ssim
from .prediction import check_context, shuffled_actions

# Identical frames have infinite PSNR; capped so that means stay finite (best-of-K still prefers them).
PSNR_CAP = 99.0
METRICS = ("psnr", "ssim", "stlpips")
HIGHER_IS_BETTER = {"psnr": True, "ssim": True, "stlpips": False}
METRIC_NAMES = {"psnr": "PSNR (dB) ↑", "ssim": "SSIM ↑", "stlpips": "ST-LPIPS ↓"}
ROLLOUT_TAG, SHUFFLED_TAG = 0, 1
PROTOCOL_TEXT = (
    "For each test clip, {k} sampled rollout(s) of {horizon} frames from {context} real context frames{actions}. "
    "Best-of-K: per clip, the sample with the best value of each metric (max PSNR, max SSIM, min ST-LPIPS; "
    "the paper's convention); model mean: mean over the samples (one sample's expected quality); shuffled "
    "actions: one rollout fed another clip's actions; copy-last: the last context frame repeated. FVD is "
    "over all samples (context + predicted frames) vs the real clips."
)


def seed_for(seed: int, *keys: int) -> int:
    """A 63-bit sampling seed derived from the run seed and integer keys (stable across platforms)."""
    state = np.random.SeedSequence([int(seed), *[int(k) for k in keys]]).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1]))


def load_clips(dataset_path, wm, *, split: str, horizon: int, max_clips: int | None = None,
               clips_per_episode: int = 1, seed: int = 0, context: int | None = None) -> dict:
    """The evaluation clips (context + horizon frames, deterministic val-style selection) as tensors:
    frames uint8 [N, T, H, W, 3], actions raw [N, T-1, A], rewards [N, T-1], and where they came from."""
    from ..data.clips import ClipDataset
    from ..data.episodes import EpisodeDataset

    context = wm.context_frames if context is None else context
    n_frames = context + horizon
    if not Path(dataset_path).is_dir():
        raise DataError(f"--data {dataset_path}: no such dataset directory")
    kw = {"resolution": wm.tokenizer.config.resolution, "action_dim": wm.action_dim or None}
    if split == "train":
        # The train split has no fixed clip list: draw clips with the (seeded, unaugmented) training sampler.
        n_eps = len(EpisodeDataset(dataset_path).split("train"))
        ds = ClipDataset(dataset_path, n_frames, split="train", seed=seed, augment=None,
                         num_samples=max(1, n_eps * clips_per_episode), **kw)
    else:
        # Any other split: its fixed list of evenly spaced clips per episode, never augmented.
        ds = ClipDataset(dataset_path, n_frames, split=split, val_clips_per_episode=clips_per_episode, **kw)
    n = len(ds) if max_clips is None else min(len(ds), int(max_clips))
    if n == 0:
        raise DataError(f"{dataset_path}: no '{split}' episode has the {n_frames} frames a clip needs "
                        f"(context {context} + horizon {horizon})")
    items = [ds[i] for i in range(n)]
    return {"frames": to_uint8(torch.stack([it["frames"] for it in items])),
            "actions": torch.stack([it["actions"] for it in items]),
            "rewards": torch.stack([it["rewards"] for it in items]),
            "where": [[int(it["episode"]), int(it["start"])] for it in items]}


def frame_metrics(target: torch.Tensor, pred: torch.Tensor, perceptual: bool) -> dict[str, np.ndarray]:
    """Per-frame metrics of uint8 [..., H, W, 3] pairs -> {name: float64 array [...]}."""
    out = {"psnr": psnr(target, pred).clamp(max=PSNR_CAP).double().numpy(),
           "ssim": ssim(target, pred).double().numpy()}
    if perceptual:
        from .stlpips import perceptual as st_lpips

        out["stlpips"] = st_lpips(target, pred).double().numpy()
    return out


def _curve(x: np.ndarray) -> dict:
    """[N, steps] per-clip curves -> mean and per-step means (rounded so reports read and diff cleanly)."""
    return {"mean": round(float(x.mean()), 5), "per_step": [round(float(v), 5) for v in x.mean(0)]}


def best_of_k(values: np.ndarray, higher_is_better: bool) -> tuple[np.ndarray, np.ndarray]:
    """values [N, K, steps] -> (index of the best sample per clip [N], its per-step values [N, steps]);
    "best" by the value averaged over the steps."""
    per_sample = values.mean(-1)
    idx = per_sample.argmax(1) if higher_is_better else per_sample.argmin(1)
    return idx, values[np.arange(values.shape[0]), idx]


class _FVD:
    """Streams I3D features of real and generated videos so N x K videos never sit in memory at once."""

    def __init__(self, enabled: bool, n_frames: int, n_real: int, n_fake: int, detector=None):
        from .i3d import min_frames

        self.det, self.reason, self.name = None, None, None
        self.feats: dict[str, list[torch.Tensor]] = {"real": [], "model": [], "shuffled": [], "copy_last": []}
        if not enabled:
            self.reason = "FVD not computed: disabled (fvd=False / --no-fvd)"
        elif n_frames < min_frames():
            self.reason = (f"FVD not computed: videos have {n_frames} frames (context + horizon); the I3D needs "
                           f"at least {min_frames()}")
        elif n_real < 2 or n_fake < 2:
            self.reason = (f"FVD not computed: needs at least 2 real and 2 generated videos (a covariance), "
                           f"got {n_real} and {n_fake}")
        else:
            from ..errors import CheckpointError
            from .frechet import load_detector

            try:
                self.det = load_detector(detector)
            except CheckpointError as e:
                self.reason = f"FVD not computed: {e}"
            else:
                self.name = getattr(self.det, "description", None) or _detector_name(self.det)

    def add(self, key: str, videos: torch.Tensor) -> None:
        if self.det is not None:
            self.feats[key].append(self.det.features(videos.contiguous()).double().cpu())

    def result(self) -> dict:
        if self.det is None:
            return {"model": None, "shuffled": None, "copy_last": None, "reason": self.reason}
        from .frechet import feature_stats, frechet_distance

        real = feature_stats(torch.cat(self.feats["real"]))
        out = {"detector": self.name, "videos": {}}
        for key in ("model", "shuffled", "copy_last"):
            if len(self.feats[key]) == 0 or sum(len(f) for f in self.feats[key]) < 2:
                out[key] = None
                continue
            fake = torch.cat(self.feats[key])
            out[key] = round(frechet_distance(*real, *feature_stats(fake)), 4)
            out["videos"][key] = int(fake.shape[0])
        out["videos"]["real"] = int(sum(len(f) for f in self.feats["real"]))
        return out


def _detector_name(det) -> str:
    from .i3d import I3D, TorchScriptDetector

    if isinstance(det, I3D):
        return "TF-Hub Kinetics-400 I3D (PyTorch port)"
    if isinstance(det, TorchScriptDetector):
        return "StyleGAN-V TorchScript I3D"
    return type(det).__name__


@torch.no_grad()
def evaluate(wm, dataset_path, *, split: str = "val", context: int = 2, horizon: int, samples: int = 100,
             use_actions: bool = True, max_clips: int | None = None, batch_size: int = 32, seed: int = 0,
             temperature: float = 1.0, top_k: int | None = 100, fvd: bool = True, perceptual: bool = True,
             progress: bool = True, idm=None, clips_per_episode: int = 1, fvd_detector=None,
             out_dir=None, model_path: str | None = None, show: int = 4) -> dict:
    """Run the protocol (module docstring) and return the report dict; with ``out_dir``, also write
    report.json, report.md, samples.png and samples.gif there (see :func:`write_report`).

    ``idm``: an :class:`~.controllability.InverseDynamics` for the controllability table (None: skipped).
    """
    from tqdm import tqdm

    t_start = time.perf_counter()
    observed = check_context(wm, context, horizon)
    if samples < 1 or batch_size < 1:
        raise ConfigError(f"--samples and --batch-size must be >= 1, got {samples} and {batch_size}")
    if use_actions and wm.action_dim == 0:
        raise ConfigError("this world model is action-free: evaluate it without actions (--no-actions)")
    if not use_actions and wm.action_dim > 0:
        raise ConfigError("this world model is action-conditioned: it needs the clips' actions (--actions)")

    clips = load_clips(dataset_path, wm, split=split, horizon=horizon, max_clips=max_clips,
                       clips_per_episode=clips_per_episode, seed=seed, context=context)
    frames = clips["frames"]
    n, t0, k = frames.shape[0], context, samples
    ctx, target = frames[:, :t0], frames[:, t0:]
    acts = clips["actions"][:, t0 - 1:t0 - 1 + horizon] if use_actions else None
    acts_s = shuffled_actions(acts) if use_actions else None
    seen = clips["actions"][:, wm.context_frames - 1:t0 - 1] if use_actions and observed else None

    def observed_actions(ci):  # only when there are observed frames: any model with a plain rollout() still works
        return {} if seen is None else {"context_actions": seen[ci]}
    true_r = clips["rewards"][:, t0 - 1:t0 - 1 + horizon].double().numpy()
    has_reward = bool(getattr(wm.transformer.config, "use_reward", False))
    n_show = min(show, n)

    fvd_state = _FVD(fvd, t0 + horizon, n, n * k, fvd_detector)
    fvd_state.add("real", frames)
    metrics = {m: np.zeros((n, k, horizon)) for m in METRICS if perceptual or m != "stlpips"}
    rewards = np.zeros((n, k, horizon))
    idm_pred = torch.zeros(n, k, horizon, idm.action_dim) if idm is not None and use_actions else None
    shown = {c: [None] * k for c in range(n_show)}  # the displayed clips keep all their samples' frames

    jobs = [(c, s) for c in range(n) for s in range(k)]
    n_rollouts = len(jobs) + (n if use_actions else 0)
    t_roll = t_metric = 0.0
    bar = tqdm(total=n_rollouts, desc="evaluate", unit="rollout", disable=not progress)
    for j in range(0, len(jobs), batch_size):
        chunk = jobs[j:j + batch_size]
        ci = torch.tensor([c for c, _ in chunk])
        t = time.perf_counter()
        pred, rew = wm.rollout(ctx[ci], acts[ci] if use_actions else None, horizon=horizon, **observed_actions(ci),
                               seed=seed_for(seed, ROLLOUT_TAG, *chunk[0]), temperature=temperature, top_k=top_k)
        t_roll += time.perf_counter() - t
        t = time.perf_counter()
        for name, v in frame_metrics(target[ci], pred, perceptual).items():
            metrics[name][ci.numpy(), [s for _, s in chunk]] = v
        if rew is not None:
            rewards[ci.numpy(), [s for _, s in chunk]] = rew.double().cpu().numpy()
        if idm_pred is not None:
            before = torch.cat([ctx[ci, -1:], pred[:, :-1]], dim=1)
            idm_pred[ci, [s for _, s in chunk]] = idm.predict(before, pred)
        fvd_state.add("model", torch.cat([ctx[ci], pred], dim=1))
        for row, (c, s) in enumerate(chunk):
            if c < n_show:
                shown[c][s] = pred[row]
        t_metric += time.perf_counter() - t
        bar.update(len(chunk))

    shuffled, shuffled_pred, shuffled_rew, idm_shuffled = None, [], [], []
    if use_actions:
        for j in range(0, n, batch_size):
            ci = torch.arange(j, min(n, j + batch_size))
            t = time.perf_counter()
            pred, rew = wm.rollout(ctx[ci], acts_s[ci], **observed_actions(ci), seed=seed_for(seed, SHUFFLED_TAG, j),
                                   temperature=temperature, top_k=top_k)
            t_roll += time.perf_counter() - t
            t = time.perf_counter()
            shuffled_pred.append(pred)
            shuffled_rew.append(rew)
            if idm is not None:
                idm_shuffled.append(idm.predict(torch.cat([ctx[ci, -1:], pred[:, :-1]], dim=1), pred))
            fvd_state.add("shuffled", torch.cat([ctx[ci], pred], dim=1))
            t_metric += time.perf_counter() - t
            bar.update(len(ci))
        shuffled_pred = torch.cat(shuffled_pred)
        shuffled = frame_metrics(target, shuffled_pred, perceptual)
    bar.close()

    t = time.perf_counter()
    copy = ctx[:, -1:].expand_as(target)
    copy_m = frame_metrics(target, copy, perceptual)
    fvd_state.add("copy_last", torch.cat([ctx, copy], dim=1))
    t_metric += time.perf_counter() - t

    # ------------------------------------------------------------------------------------- summary
    report: dict = {"protocol": PROTOCOL_TEXT.format(k=k, horizon=horizon, context=t0,
                                                     actions=" and the clip's actions" if use_actions else ""),
                    "config": {"model": None if model_path is None else str(model_path),
                               "data": str(dataset_path), "split": split, "context": t0, "horizon": horizon,
                               "samples": k, "use_actions": use_actions, "seed": seed, "temperature": temperature,
                               "top_k": top_k, "batch_size": batch_size, "clips": n, "max_clips": max_clips,
                               "clips_per_episode": clips_per_episode, "perceptual": perceptual, "fvd": fvd,
                               "resolution": int(frames.shape[-2])},
                    "clips": clips["where"], "metrics": {}}
    best_idx = {}
    for name in METRICS:
        if name not in metrics:
            report["metrics"][name] = {"reason": "ST-LPIPS not computed: disabled (perceptual=False / "
                                                 "--no-perceptual)"}
            continue
        idx, best = best_of_k(metrics[name], HIGHER_IS_BETTER[name])
        best_idx[name] = idx
        report["metrics"][name] = {
            "best_of_k": _curve(best), "mean": _curve(metrics[name].mean(1)),
            "shuffled": _curve(shuffled[name]) if shuffled is not None else None,
            "copy_last": _curve(copy_m[name]),
        }
    report["metrics"]["best_sample_by_psnr"] = best_idx["psnr"].tolist()
    t = time.perf_counter()
    report["fvd"] = fvd_state.result()
    t_fvd = time.perf_counter() - t
    report["reward"] = _reward_report(has_reward, rewards, true_r, shuffled_rew)
    report["controllability"] = _controllability_report(idm, use_actions, frames, t0, horizon, acts, acts_s,
                                                        idm_pred, idm_shuffled)
    report["timings"] = {"rollouts_s": round(t_roll, 2), "metrics_s": round(t_metric, 2), "fvd_s": round(t_fvd, 2),
                         "total_s": round(time.perf_counter() - t_start, 2),
                         "rollouts": n_rollouts, "frames_predicted": n_rollouts * horizon}

    if out_dir is not None:
        order = np.argsort(metrics["psnr"][:n_show].mean(-1), axis=1, kind="stable")
        examples = {"context": ctx[:n_show], "target": target[:n_show],
                    "best": torch.stack([shown[c][int(best_idx["psnr"][c])] for c in range(n_show)]),
                    "typical": torch.stack([shown[c][int(order[c, k // 2])] for c in range(n_show)]),
                    "shuffled": shuffled_pred[:n_show] if use_actions else None}
        write_report(report, examples, out_dir)
    return report


def _reward_report(has_reward: bool, rewards: np.ndarray, true_r: np.ndarray, shuffled_rew: list) -> dict:
    if not has_reward:
        return {"reason": "reward error not computed: the model has no reward head"}
    err = np.abs(rewards - true_r[:, None])  # [N, K, steps]
    out = {"model": _curve(err.mean(1)),
           # The evaluated clips' own mean reward: a constant no model could know in advance (a tough baseline).
           "mean_baseline": _curve(np.abs(true_r - true_r.mean()))}
    if shuffled_rew:
        out["shuffled"] = _curve(np.abs(torch.cat(shuffled_rew).double().cpu().numpy() - true_r))
    return out


def _controllability_report(idm, use_actions, frames, t0, horizon, acts, acts_s, idm_pred, idm_shuffled) -> dict:
    from .controllability import controllability, r2_mae

    if not use_actions:
        return {"reason": "controllability not computed: evaluated without actions"}
    if idm is None:
        return {"reason": "controllability not computed: no inverse-dynamics model (idm_steps = 0)"}
    std = idm.action_std.cpu()
    a = acts[..., :idm.action_dim]
    real = frames[:, t0 - 1:t0 - 1 + horizon + 1]
    idm_shuffled = torch.cat(idm_shuffled)
    return {
        "real": controllability(idm, real[:, :-1], real[:, 1:], a),
        "predicted": r2_mae(idm_pred, a[:, None].expand_as(idm_pred), std),
        "shuffled_vs_given": r2_mae(idm_shuffled, acts_s[..., :idm.action_dim], std),
        "shuffled_vs_own": r2_mae(idm_shuffled, a, std),
        "note": "R^2 of actions read back by an inverse-dynamics model trained on real frames. shuffled_vs_given "
                "is the controllability score (a model ignoring its actions scores <= 0 there); shuffled_vs_own "
                "high means the model continues the context's motion instead of obeying the actions.",
    }


# ----------------------------------------------------------------------------------------------- reports
def _fmt(v, digits: int = 3) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def markdown_table(report: dict) -> str:
    """The human-readable summary: the metric table, reward error, controllability and the protocol."""
    cfg, lines = report["config"], []
    k = cfg["samples"]
    lines.append(f"| metric | model best-of-{k} | model mean | shuffled actions | copy-last |")
    lines.append("|---|---|---|---|---|")
    for name in METRICS:
        m = report["metrics"][name]
        if "reason" in m:
            lines.append(f"| {METRIC_NAMES[name]} | {m['reason']} | | | |")
            continue
        cells = [_fmt((m[c] or {}).get("mean"), 4 if name != "psnr" else 2)
                 for c in ("best_of_k", "mean", "shuffled", "copy_last")]
        lines.append(f"| {METRIC_NAMES[name]} | " + " | ".join(cells) + " |")
    f = report["fvd"]
    if f.get("reason"):
        lines.append(f"| FVD ↓ | {f['reason']} | | | |")
    else:
        lines.append(f"| FVD ↓ | (all samples →) | {_fmt(f['model'], 1)} | {_fmt(f['shuffled'], 1)} | "
                     f"{_fmt(f['copy_last'], 1)} |")
    lines.append("")
    r = report["reward"]
    if "reason" in r:
        lines.append(f"Reward: {r['reason']}.")
    else:
        lines.append("| reward MAE ↓ | model | shuffled actions | predict the mean |")
        lines.append("|---|---|---|---|")
        lines.append(f"| all steps | {_fmt(r['model']['mean'], 4)} | {_fmt((r.get('shuffled') or {}).get('mean'), 4)} "
                     f"| {_fmt(r['mean_baseline']['mean'], 4)} |")
    lines.append("")
    c = report["controllability"]
    if "reason" in c:
        lines.append(f"Action controllability: {c['reason']}.")
    else:
        lines.append("| action controllability (inverse dynamics) | R² ↑ | MAE ↓ | pairs |")
        lines.append("|---|---|---|---|")
        for key, label in (("real", "real frames (ceiling)"), ("predicted", "predictions, true actions"),
                           ("shuffled_vs_given", "predictions, shuffled actions, vs the actions given"),
                           ("shuffled_vs_own", "predictions, shuffled actions, vs the clip's own actions")):
            lines.append(f"| {label} | {_fmt(c[key]['r2'])} | {_fmt(c[key]['mae'])} | {c[key]['n']} |")
        lines.append("")
        lines.append(c["note"])
    return "\n".join(lines)


def markdown_report(report: dict) -> str:
    cfg = report["config"]
    head = [f"# Evaluation: {cfg['model'] or 'world model'} on {cfg['data']} ({cfg['split']})", "",
            f"{cfg['clips']} clips, context {cfg['context']}, horizon {cfg['horizon']}, {cfg['samples']} samples "
            f"per clip, seed {cfg['seed']}, temperature {cfg['temperature']}, top-k {cfg['top_k']}, "
            f"{cfg['resolution']}x{cfg['resolution']}.", "", report["protocol"], "", markdown_table(report), ""]
    if report["fvd"].get("detector"):
        v = report["fvd"]["videos"]
        head += [f"FVD: {report['fvd']['detector']}; {v.get('model')} generated vs {v['real']} real videos "
                 "(FVD needs hundreds of videos to be comparable with published numbers).", ""]
    m = report["metrics"]
    head += ["## Per-step PSNR (dB)", "", "| step | best-of-K | mean | shuffled | copy-last |", "|---|---|---|---|---|"]
    p = m["psnr"]
    for i in range(cfg["horizon"]):
        cells = [_fmt(p[c]["per_step"][i], 2) if p[c] else "—" for c in ("best_of_k", "mean", "shuffled", "copy_last")]
        head.append(f"| {i + 1} | " + " | ".join(cells) + " |")
    t = report["timings"]
    head += ["", f"Timings: rollouts {t['rollouts_s']} s, metrics {t['metrics_s']} s, FVD {t['fvd_s']} s, total "
             f"{t['total_s']} s ({t['rollouts']} rollouts). Full numbers and per-step curves: report.json; "
             "pictures: samples.png (rows per clip: truth, best sample, typical sample, shuffled actions; "
             "the first columns are the context frames) and samples.gif.", ""]
    return "\n".join(head)


def sample_grid(examples: dict) -> np.ndarray:
    """PNG image: per clip, rows truth / best sample / typical (median-PSNR) sample / shuffled actions, each
    row = context frames then predicted frames, with a label column on the left."""
    from PIL import Image, ImageDraw

    from ..data.contact_sheet import contact_sheet

    labels, rows = [], []
    ctx = examples["context"].numpy()
    for c in range(ctx.shape[0]):
        for key, label in (("target", "truth"), ("best", "best"), ("typical", "typical"),
                           ("shuffled", "shuffled")):
            if examples.get(key) is None:
                continue
            rows.append(np.concatenate([ctx[c], examples[key][c].numpy()]))
            labels.append(f"{c}: {label}")
    gap = 2
    sheet = contact_sheet(rows, pick=False, gap=gap)
    h = ctx.shape[-3]
    scale = max(1, round(128 / h))
    label_w = 72
    img = Image.new("RGB", (sheet.shape[1] + label_w, sheet.shape[0]), (255, 255, 255))
    img.paste(Image.fromarray(sheet), (label_w, 0))
    draw = ImageDraw.Draw(img)
    for r, text in enumerate(labels):
        draw.text((4, gap + r * (h * scale + gap) + h * scale // 2 - 5), text, fill=(0, 0, 0))
    return np.asarray(img)


def write_report(report: dict, examples: dict | None, out_dir) -> Path:
    """report.json, report.md and (with examples) samples.png and samples.gif in ``out_dir``."""
    from ..data.contact_sheet import save_png
    from ..fileio import atomic_write_bytes, atomic_write_json
    from .prediction import write_rollout_gif

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "report.json", report)
    atomic_write_bytes(out / "report.md", markdown_report(report).encode())
    if examples is not None:
        save_png(sample_grid(examples), out / "samples.png")
        tmp = out / ".samples.tmp.gif"
        write_rollout_gif(tmp, examples["context"], examples["target"], examples["best"], examples.get("shuffled"))
        tmp.replace(out / "samples.gif")
    return out
