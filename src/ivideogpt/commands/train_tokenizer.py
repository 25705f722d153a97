"""``ivideogpt train tokenizer``: train the compressive VQ tokenizer with the shared engine."""

from __future__ import annotations

import json


def add_arguments(p):
    from ..train.common import add_common_arguments

    add_common_arguments(p, "tokenizer")
    p.add_argument("--init", default=None, help="start from a pre-trained tokenizer (model or run dir): fine-tuning")


def run(args) -> int:
    from ..config import to_dict
    from ..train.common import parse_sources, resolve_config
    from ..train.engine import Trainer
    from ..train.tokenizer_task import TokenizerTask

    model_cfg, cfg, info = resolve_config(args, "tokenizer")
    task = TokenizerTask(model_cfg, cfg, parse_sources(args.data), init=args.init)
    info["model"] = to_dict(task.trainable().tokenizer.config)  # validates the config before anything is written
    summary = Trainer(task, cfg, args.out, resume=args.resume, run_info=info,
                      progress=not args.no_progress).fit()
    print(json.dumps({"run": args.out, **summary}))
    return 0
