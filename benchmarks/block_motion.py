"""Do predicted blocks move the way the real ones do? Block 0's position error on held-out pusher clips.

On a finished demo (or any pusher run collected with `ivideogpt collect`, seed 0), for held-out clips in which
the real block moves by more than `--min-move` pixels over the horizon, block 0 is located in every frame as a
soft colour centroid (`planning.costs.ObjectKeypoints.locate`, within 0.5 px of the simulator on real frames)
and compared with the real frame's block, per predicted step, for:

  static            the block left where it was in the last frame the model was given (copy-last)
  tokenizer_open    the real future frames encoded and decoded by the tokenizer, each decoded against the *real*
                    frame it was encoded against (what the tokens can carry at all)
  tokenizer_closed  the same tokens decoded the way a rollout decodes them: a previous-frame tokenizer
                    (future_reference: previous) decodes each frame against its own previous *decoded* frame;
                    for the paper's context reference both rows are the same
  model             the world model's greedy rollout from 2 real frames and the real actions (the demo's setting)
  shuffled          the same with the predicted steps' actions shuffled across clips

Pixel errors at 64x64. A model whose blocks move like the real ones beats `static`; one that leaves blocks
where they were matches it (and a pushing effector drawn over the block can make it worse).

    OMP_NUM_THREADS=1 taskset -c 0 .venv/bin/python benchmarks/block_motion.py --run demo [--clips 48]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from ivideogpt.commands.collect import episode_seeds
from ivideogpt.commands.plan import env_settings
from ivideogpt.data.episodes import EpisodeDataset
from ivideogpt.envs import make
from ivideogpt.errors import IVideoGPTError
from ivideogpt.eval.prediction import shuffled_actions
from ivideogpt.frames import to_model, to_uint8
from ivideogpt.planning.costs import ObjectKeypoints
from ivideogpt.tokenizer import Tokenizer
from ivideogpt.world_model import WorldModel


def moving_clips(ds: EpisodeDataset, env, length: int, last_seen: int, min_move_px: float, stride: int, limit: int):
    """(episode, start, designation) of held-out clips whose block moves > min_move_px after frame last_seen."""
    out = []
    for i in ds.split("val"):
        env.reset(seed=episode_seeds(ds.meta.get("extra", {}).get("seed", 0), i)[0])
        designation = env.designation()
        frames = ds.frames(i)
        kp = ObjectKeypoints(frames[0], **designation)
        pos = kp.locate(torch.as_tensor(frames).float() / 255, "object").numpy() * frames.shape[1]
        for s in range(0, len(frames) - length + 1, stride):
            if np.linalg.norm(pos[s + length - 1] - pos[s + last_seen]) > min_move_px:
                out.append((i, s, designation))
        if len(out) >= limit:
            return out[:limit]
    return out


def tokenizer_rows(tok, frames: torch.Tensor, t0: int, start: int):
    """uint8 clips [B, T, H, W, 3] -> (open-loop, closed-loop) reconstructions of frames ``start``.. [B, K, ...].

    Closed loop is ``detokenize`` (a previous-frame tokenizer decodes each frame against its previous decoded
    frame); open loop decodes frame i against the real frame i - 1 instead (for the paper's context reference,
    where every frame is decoded against the context, the two are the same)."""
    x = to_model(frames)
    ctx_ids, fut_ids = tok.tokenize(x, n_context=t0)
    closed = tok.detokenize(ctx_ids, fut_ids, context_frames=x[:, :t0])
    if not tok.previous_reference:
        return to_uint8(closed)[:, start:], to_uint8(closed)[:, start:]
    b, k = fut_ids.shape[:2]
    refs = tok.encode_context_state(x[:, t0 - 1:-1].flatten(0, 1)[:, None])  # real frame i - 1 for every i
    open_ = tok.decode_step(fut_ids.flatten(0, 1), refs)[0].reshape(b, k, *x.shape[2:])
    return to_uint8(open_)[:, start - t0:], to_uint8(closed)[:, start:]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", default="demo", help="a demo directory (data/, world_model/)")
    p.add_argument("--context", type=int, default=2, help="real frames given to the model (the demo's 2)")
    p.add_argument("--horizon", type=int, default=10)
    p.add_argument("--clips", type=int, default=48)
    p.add_argument("--min-move", type=float, default=2.0, help="pixels the real block must move")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--tokenizer", help="measure only this tokenizer (a model or run directory): the static and "
                                       "tokenizer rows, on --data")
    p.add_argument("--data", help="the dataset (default: RUN/data)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        return measure(args)
    except IVideoGPTError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def measure(args) -> int:
    run = Path(args.run)
    data = Path(args.data) if args.data else run / "data"
    wm = None if args.tokenizer else WorldModel.from_pretrained(run / "world_model").eval()
    tok = Tokenizer.from_pretrained(args.tokenizer).eval() if args.tokenizer else wm.tokenizer
    ds = EpisodeDataset(data)
    env = make("pusher", **env_settings(data, [], None)[0])
    T0, K, t0 = args.context, args.horizon, tok.context_frames
    clips = moving_clips(ds, env, T0 + K, T0 - 1, args.min_move, 4, args.clips)
    rows = ("static", "tokenizer_open", "tokenizer_closed") + (() if wm is None else ("model", "shuffled"))
    errs = {k: [] for k in rows}
    moved = []
    for b in range(0, len(clips), 16):
        chunk = clips[b:b + 16]
        frames = torch.as_tensor(np.stack([ds.frames(i, s, s + T0 + K) for i, s, _ in chunk]))
        acts = torch.as_tensor(np.stack([ds.episode(i)["actions"][s:s + T0 + K - 1] for i, s, _ in chunk]))
        act, seen = acts[:, T0 - 1:T0 - 1 + K], acts[:, t0 - 1:T0 - 1]
        kw = dict(seed=0, top_k=1, **({"context_actions": seen} if T0 > t0 else {}))
        with torch.no_grad():
            rec_open, rec = tokenizer_rows(tok, frames, t0, T0)
            rows = {"static": frames[:, T0 - 1:T0].expand(-1, K, -1, -1, -1), "tokenizer_open": rec_open,
                    "tokenizer_closed": rec}
            if wm is not None:
                rows["model"] = wm.rollout(frames[:, :T0], act, horizon=K, **kw)[0]
                rows["shuffled"] = wm.rollout(frames[:, :T0], shuffled_actions(act), horizon=K, **kw)[0]
        for j, (_, _, designation) in enumerate(chunk):
            kp = ObjectKeypoints(frames[j, 0], **designation)

            def locate(x, kp=kp):
                x = torch.as_tensor(np.asarray(x))
                return kp.locate(x.float() / 255, "object").numpy() * x.shape[-2]

            real = locate(frames[j, T0:])
            moved.append(float(np.linalg.norm(real[-1] - locate(frames[j, T0 - 1]))))
            for name, x in rows.items():
                errs[name].append(np.linalg.norm(locate(x[j]) - real, axis=-1))
    result = {"run": str(args.tokenizer or run), "clips": len(moved),
              "mean_real_move_px": round(float(np.mean(moved)), 2),
              "block_error_px_per_step": {k: [round(float(v), 2) for v in np.mean(e, 0)] for k, e in errs.items()},
              "block_error_px_mean": {k: round(float(np.mean(e)), 2) for k, e in errs.items()}}
    print(json.dumps(result))
    print(f"\n{len(moved)} held-out clips, real block moves {result['mean_real_move_px']} px over {K} steps")
    print("| | " + " | ".join(f"step {t + 1}" for t in range(K)) + " | mean |")
    print("|---" * (K + 2) + "|")
    for k, v in result["block_error_px_per_step"].items():
        print(f"| {k} | " + " | ".join(f"{x:.1f}" for x in v) + f" | {result['block_error_px_mean'][k]:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
