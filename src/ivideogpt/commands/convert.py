"""``ivideogpt convert reference SRC --out DIR``: a reference (thuml/iVideoGPT) release -> a WorldModel directory."""

from __future__ import annotations

HELP = "convert another implementation's checkpoint (the reference's releases) into a world-model directory"


def add_arguments(p):
    sub = p.add_subparsers(dest="source", metavar="<from>", required=True)
    r = sub.add_parser("reference", help="a thuml/iVideoGPT release (local directory or hub id)",
                       description="Convert a release of the reference implementation (tokenizer/ in diffusers "
                       "format, transformer/ a Llama) into a world-model directory. Actions stay raw, as the "
                       "reference feeds them.")
    r.add_argument("src", help="a downloaded release directory, or a hub id such as thuml/ivideogpt-bair-64-act-cond "
                   "(downloads with huggingface_hub)")
    r.add_argument("--out", required=True, help="world-model directory to write (replaced atomically)")
    r.add_argument("--segment-length", type=int, default=None,
                   help="frames per clip the transformer was trained on, context included (default: from the "
                   "known releases; required for others)")


def run(args) -> int:
    import json
    from pathlib import Path

    from ..convert.reference import build_world_model, read_release, resolve_source
    from ..fileio import atomic_dir

    src, hub_id = resolve_source(args.src)
    rel = read_release(src, segment_length=args.segment_length, hub_id=hub_id)
    wm = build_world_model(rel)  # everything is read and checked before anything is written
    out = Path(args.out)
    with atomic_dir(out) as tmp:
        wm.write_into(tmp)
    t = wm.transformer.config
    print(json.dumps({"out": str(out), "release": rel.name or str(src), "resolution": wm.tokenizer.resolution,
                      "context_frames": wm.context_frames, "segment_length": t.max_frames,
                      "action_dim": t.action_dim, "actions": "raw (identity normalisation)" if t.action_dim else None,
                      "tokenizer_params": sum(p.numel() for p in wm.tokenizer.parameters()),
                      "transformer_params": wm.transformer.num_params()}))
    return 0
