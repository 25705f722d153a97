"""``ivideogpt imitate``: show an action-free world model demonstrations and a query, and write a GIF with one row
per demonstration: demo | the query continued by the model | the simulator replaying the demo's actions from the
query's start state (what doing "the same" would really look like)."""

from __future__ import annotations

import json


def add_arguments(p):
    p.add_argument("--model", required=True, help="action-free world model directory or transformer run directory "
                                                   "(e.g. trained with the `imitation` preset)")
    p.add_argument("--demo", required=True, action="append", metavar="DATA:EPISODE[:START]",
                   help="a demonstration: dataset directory, episode index and first frame (default 0); repeat for "
                        "several demos (one GIF row each), e.g. two contrastive demos")
    p.add_argument("--query", required=True, metavar="DATA:EPISODE[:START]", help="the query episode and first frame")
    p.add_argument("--demo-frames", type=int, default=None,
                   help="frames per demonstration (default: the model's segment length)")
    p.add_argument("--query-frames", type=int, default=4, help="given frames of the query (default 4)")
    p.add_argument("--horizon", type=int, default=None,
                   help="frames to generate (default: the rest of the query's segment)")
    p.add_argument("--out", default="imitate.gif", help="output .gif")
    p.add_argument("--env", default=None,
                   help="simulator for the replay column (default: the one the query's dataset records; 'none': "
                        "no replay)")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)


def run(args) -> int:
    from pathlib import Path

    import numpy as np

    from ..errors import ConfigError, DataError
    from ..eval.behaviour import BehaviourClassifier
    from ..eval.imitation import EpisodeSpan, replay_from, write_imitation_gif
    from ..world_model import WorldModel

    out = Path(args.out)
    if out.suffix.lower() != ".gif":
        raise ConfigError(f"--out {out}: expected a .gif file name")
    wm = WorldModel.from_pretrained(args.model)
    c = wm.transformer.config
    seg = c.segment_frames or c.max_frames
    demo_frames = args.demo_frames or seg
    horizon = args.horizon if args.horizon is not None else seg - args.query_frames
    query = EpisodeSpan.parse(args.query, "--query")
    q, _, qds = query.read(args.query_frames, "--query")
    demos = [EpisodeSpan.parse(d, "--demo") for d in args.demo]
    read = [d.read(demo_frames, "--demo") for d in demos]
    demo = np.stack([r[0] for r in read])
    try:
        gen = wm.imitate(demo, np.repeat(q[None], len(demos), 0), horizon, temperature=args.temperature,
                         top_k=args.top_k, seed=args.seed)
    except (ValueError, TypeError) as e:  # a demo/query of the wrong size, resolution or length for this model
        raise DataError(f"--demo {args.demo[0]} / --query {args.query} with --model {args.model}: {e}") from None
    k = qds.episode_info(query.index).get("behaviours")
    clf = BehaviourClassifier(int(k)) if k else None
    rows, report = [], []
    for d, (frames, actions, ds), g in zip(demos, read, gen):
        z = ds.episode_info(d.index).get("behaviour")
        replay, why = (None, "no replay (--env none)") if args.env == "none" else \
            replay_from(query, actions[: args.query_frames + horizon - 1])
        got = int(clf(q[-1], g)) if clf is not None else None
        rows.append({"demo": frames, "imitation": np.concatenate([q, g]), "replay": replay,
                     "label": f"demo z={z}" + ("" if got is None else f"\nmodel: z={got}")})
        report.append({"demo": f"{d.data}:{d.index}:{d.start}", "demo_behaviour": z, "generated_behaviour": got,
                       **({"replay": why} if why else {})})
    write_imitation_gif(out, rows, query_frames=args.query_frames)
    print(json.dumps({"out": str(out), "query": f"{query.data}:{query.index}:{query.start}",
                      "query_behaviour": qds.episode_info(query.index).get("behaviour"), "demos": report}))
    return 0
