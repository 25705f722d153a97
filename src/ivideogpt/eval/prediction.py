"""Action-conditioned video prediction on real clips: the model, the same model fed shuffled actions, and the
copy-last-frame baseline, measured per predicted step; and a GIF that shows them side by side.

Blur alone can beat copy-last at later steps, so the shuffled-action control is part of every report: a
model that ignores its actions scores the same with true and with shuffled actions.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import ConfigError
from .metrics import psnr, ssim


def shuffled_actions(actions: torch.Tensor) -> torch.Tensor:
    """Each clip gets another clip's action sequence (a derangement: roll by one over the batch).
    With a single clip, its actions are reversed in time instead."""
    if actions.shape[0] >= 2:
        return actions.roll(1, dims=0)
    return actions.flip(1)


def check_context(wm, context: int, horizon: int) -> int:
    """How many of ``context`` real frames are observed ones (after the tokenizer's context frames, given as
    future tokens); a clear error when the model cannot start from ``context`` frames or roll out ``horizon``."""
    observed = context - wm.context_frames
    if not 0 <= observed < wm.max_steps:
        raise ConfigError(f"--context {context}: this model takes {wm.context_frames} to "
                          f"{wm.context_frames + wm.max_steps - 1} context frames")
    if not 1 <= horizon <= wm.max_steps - observed:
        raise ConfigError(f"--horizon {horizon}: with {context} context frames this model rolls out "
                          f"1..{wm.max_steps - observed} frames per reset")
    return observed


@torch.no_grad()
def predict_clips(wm, frames: torch.Tensor, actions: torch.Tensor | None, rewards: torch.Tensor | None = None, *,
                  seed: int = 0, temperature: float = 1.0, top_k: int | None = 100, shuffled: bool = True,
                  observed: int = 0) -> dict:
    """``frames`` uint8 [B,T,H,W,3], ``actions`` raw [B,T-1,A], ``rewards`` [B,T-1] (the dataset's layout:
    action t follows frame t). The model gets the first T0 frames as context plus ``observed`` real frames
    after them (with their actions) and predicts the rest. Returns per-step metric arrays [K] and the predicted
    frames. The shuffled-action control shuffles only the actions of the predicted steps; copy-last copies the
    last frame the model was given."""
    t0 = wm.context_frames + observed
    ctx, target = frames[:, :t0], frames[:, t0:]
    k = target.shape[1]
    use = actions is not None and wm.action_dim > 0
    act = actions[:, t0 - 1:t0 - 1 + k] if use else None
    seen = actions[:, wm.context_frames - 1:t0 - 1] if use and observed else None
    kw = dict(seed=seed, temperature=temperature, top_k=top_k, **({} if seen is None else {"context_actions": seen}))
    pred, rew = wm.rollout(ctx, act, horizon=k, **kw)
    copy = ctx[:, -1:].expand_as(target)
    out = {"pred": pred, "target": target, "context": ctx}
    out["psnr_model"], out["ssim_model"] = _per_step(target, pred)
    out["psnr_copy_last"], out["ssim_copy_last"] = _per_step(target, copy)
    if shuffled and act is not None:
        pred_s, _ = wm.rollout(ctx, shuffled_actions(act), **kw)
        out["pred_shuffled"] = pred_s
        out["psnr_shuffled"], out["ssim_shuffled"] = _per_step(target, pred_s)
    if rew is not None and rewards is not None:
        true_r = rewards[:, t0 - 1:t0 - 1 + k].to(rew.device)
        out["reward_mae"] = float((rew - true_r).abs().mean())
        out["reward_mae_mean_baseline"] = float((true_r - true_r.mean()).abs().mean())
    return out


def _per_step(a: torch.Tensor, b: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    p = psnr(a, b).clamp(max=99.0)  # identical frames give inf; cap so averages stay finite
    s = ssim(a, b)
    return p.mean(0).cpu().numpy(), s.mean(0).cpu().numpy()


def summarize(results: list[dict]) -> dict:
    """Average per-step curves over several batches; headline numbers over all steps and the second half."""
    keys = [k for k in results[0] if k.startswith(("psnr_", "ssim_"))]
    n = np.array([r["target"].shape[0] for r in results], dtype=float)
    out: dict = {}
    for key in keys:
        curve = np.sum([r[key] * w for r, w in zip(results, n)], axis=0) / n.sum()
        half = len(curve) // 2
        out[key] = {"per_step": [round(float(v), 4) for v in curve], "mean": round(float(curve.mean()), 4),
                    "second_half": round(float(curve[half:].mean()), 4)}
    for key in ("reward_mae", "reward_mae_mean_baseline"):
        if key in results[0]:
            out[key] = round(float(np.sum([r[key] * w for r, w in zip(results, n)]) / n.sum()), 5)
    return out


def rollout_strip(results: dict, max_clips: int = 4) -> np.ndarray:
    """A PNG-able grid: for each clip, rows truth / prediction / shuffled-action prediction."""
    from ..data.contact_sheet import contact_sheet

    rows = []
    for b in range(min(max_clips, results["target"].shape[0])):
        ctx = _np(results["context"][b])
        rows.append(np.concatenate([ctx, _np(results["target"][b])]))
        rows.append(np.concatenate([ctx, _np(results["pred"][b])]))
        if "pred_shuffled" in results:
            rows.append(np.concatenate([ctx, _np(results["pred_shuffled"][b])]))
    return contact_sheet(rows)


def _np(x):
    return x.cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def write_rollout_gif(path, context, target, pred, pred_shuffled=None, *, scale: int = 3, fps: int = 4) -> None:
    """Animated GIF: one row per clip, columns truth | prediction | prediction with shuffled actions.

    Context frames get a green border, predicted frames a red one, so a viewer knows what was given.
    """
    import imageio.v2 as imageio
    from PIL import Image, ImageDraw

    context, target, pred = _np(context), _np(target), _np(pred)
    cols = [target, pred] + ([_np(pred_shuffled)] if pred_shuffled is not None else [])
    titles = ["truth", "prediction", "shuffled actions"][: len(cols)]
    b, t0 = context.shape[:2]
    k, h, w = target.shape[1:4]
    cell_h, cell_w, pad, head = h * scale + 4, w * scale + 4, 4, 14
    W = len(cols) * (cell_w + pad) + pad
    H = head + b * (cell_h + pad) + pad
    frames = []
    for t in range(t0 + k):
        canvas = Image.new("RGB", (W, H), (255, 255, 255))
        draw = ImageDraw.Draw(canvas)
        for c, title in enumerate(titles):
            draw.text((pad + c * (cell_w + pad) + 2, 1), title, fill=(0, 0, 0))
        for i in range(b):
            for c, col in enumerate(cols):
                img = context[i, t] if t < t0 else col[i, t - t0]
                x0, y0 = pad + c * (cell_w + pad), head + pad + i * (cell_h + pad)
                color = (40, 170, 60) if t < t0 else (210, 50, 50)
                draw.rectangle([x0, y0, x0 + cell_w - 1, y0 + cell_h - 1], fill=color)
                tile = Image.fromarray(img).resize((w * scale, h * scale), Image.NEAREST)
                canvas.paste(tile, (x0 + 2, y0 + 2))
        frames.append(np.asarray(canvas))
    imageio.mimsave(path, frames, duration=1000 / fps, loop=0)
