"""``ivideogpt evaluate``: the video-prediction protocol (best-of-K PSNR/SSIM/ST-LPIPS, FVD over all samples,
per-step curves, shuffled-action control, copy-last baseline, reward error) and the action-controllability
table; writes report.json, report.md, samples.png and samples.gif into ``--out`` and prints the table.

The inverse-dynamics model for controllability depends only on the data, so it is cached in ``<out>/idm``
(or ``--idm DIR``, to share one between evaluations of several models) and retrained only when the dataset
or its training settings change.
"""

from __future__ import annotations

import json
from pathlib import Path


def add_arguments(p):
    p.add_argument("--model", required=True, help="world model directory or transformer run directory")
    p.add_argument("--data", required=True, help="episode dataset directory")
    p.add_argument("--split", default="val", help="dataset split to evaluate on (default: val)")
    p.add_argument("--context", type=int, default=None,
                   help="real frames each rollout starts from (default: the tokenizer's context frames; later ones "
                        "are tokenized as observed future frames)")
    p.add_argument("--horizon", type=int, default=None, help="predicted frames per clip (default: the model's most)")
    p.add_argument("--samples", "-K", type=int, default=100,
                   help="sampled rollouts per clip; best-of-K is reported (paper: 100); 1 gives the mean case")
    act = p.add_mutually_exclusive_group()
    act.add_argument("--actions", dest="actions", action="store_true", default=None,
                     help="condition on the clips' actions (default for action-conditioned models)")
    act.add_argument("--no-actions", dest="actions", action="store_false",
                     help="evaluate without actions (action-free models)")
    p.add_argument("--out", default="eval", help="output directory (default: ./eval)")
    p.add_argument("--max-clips", type=int, default=None, help="evaluate at most this many clips")
    p.add_argument("--clips-per-episode", type=int, default=1, help="evenly spaced clips per episode (default 1)")
    p.add_argument("--batch-size", type=int, default=32, help="rollouts per forward pass (clips x samples chunked)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=100, help="top-k sampling (0: no top-k)")
    p.add_argument("--no-fvd", action="store_true", help="skip FVD (the I3D is slow on CPU)")
    p.add_argument("--fvd-detector", default=None,
                   help="I3D weights (.ckpt) or a StyleGAN-V TorchScript detector (code you choose to run)")
    p.add_argument("--no-perceptual", action="store_true", help="skip ST-LPIPS")
    p.add_argument("--idm-steps", type=int, default=300,
                   help="training steps of the inverse-dynamics model for controllability (0: skip)")
    p.add_argument("--idm", default=None, help="directory to cache/reuse the inverse-dynamics model (default: OUT/idm)")
    p.add_argument("--no-progress", action="store_true")


def load_or_train_idm(data, resolution: int, steps: int, idm_dir: Path, seed: int, progress: bool,
                      batch: int = 32):
    """The cached IDM in ``idm_dir`` if it was trained on this data with these settings, else a new one."""
    from ..eval.controllability import InverseDynamics, idm_fingerprint, train_inverse_dynamics

    key = idm_fingerprint(data, resolution, steps, batch, seed)
    meta = idm_dir / "config.json"
    if meta.is_file():
        try:
            if json.loads(meta.read_text()).get("fingerprint") == key:
                return InverseDynamics.from_pretrained(idm_dir), True
        except json.JSONDecodeError:
            pass  # a broken cache is retrained and overwritten
    idm = train_inverse_dynamics(data, steps=steps, batch=batch, seed=seed, resolution=resolution, progress=progress)
    idm.save_pretrained(idm_dir, extra={"fingerprint": key})
    return idm, False


def run(args) -> int:
    from ..errors import ConfigError, DataError
    from ..eval.prediction import check_context
    from ..eval.protocol import evaluate, markdown_table
    from ..world_model import WorldModel

    data = Path(args.data)
    if not data.is_dir():
        raise DataError(f"--data {data}: no such dataset directory")
    for name in ("samples", "batch_size", "clips_per_episode"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.max_clips is not None and args.max_clips < 1:
        raise ConfigError(f"--max-clips must be >= 1, got {args.max_clips}")
    if args.idm_steps < 0:
        raise ConfigError(f"--idm-steps must be >= 0, got {args.idm_steps}")
    wm = WorldModel.from_pretrained(args.model)
    context = wm.context_frames if args.context is None else args.context
    horizon = wm.max_steps - max(0, context - wm.context_frames) if args.horizon is None else args.horizon
    check_context(wm, context, horizon)  # before any inverse-dynamics training
    use_actions = wm.action_dim > 0 if args.actions is None else args.actions
    out = Path(args.out)
    idm, cached = None, False
    if use_actions and args.idm_steps > 0:
        idm, cached = load_or_train_idm(data, wm.tokenizer.config.resolution, args.idm_steps,
                                        Path(args.idm) if args.idm else out / "idm", args.seed,
                                        progress=not args.no_progress)
    report = evaluate(wm, data, split=args.split, context=context, horizon=horizon, samples=args.samples,
                      use_actions=use_actions, max_clips=args.max_clips, batch_size=args.batch_size, seed=args.seed,
                      temperature=args.temperature, top_k=args.top_k or None, fvd=not args.no_fvd,
                      perceptual=not args.no_perceptual, progress=not args.no_progress, idm=idm,
                      clips_per_episode=args.clips_per_episode, fvd_detector=args.fvd_detector, out_dir=out,
                      model_path=args.model)
    print(markdown_table(report))
    idm_note = f"; inverse dynamics {'reused from' if cached else 'trained into'} {args.idm or out / 'idm'}" \
        if idm is not None else ""
    print(f"\n{report['config']['clips']} clips x {args.samples} samples, {report['timings']['total_s']} s; "
          f"wrote {out}/report.json, report.md, samples.png, samples.gif{idm_note}")
    return 0
