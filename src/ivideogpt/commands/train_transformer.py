"""``ivideogpt train transformer``: train the interactive transformer on a tokenizer -> a world model run."""

from __future__ import annotations

import json


def add_arguments(p):
    from ..train.common import add_common_arguments

    add_common_arguments(p, "transformer")
    p.add_argument("--tokenizer", default=None, help="trained tokenizer (run dir or model dir)")
    p.add_argument("--init", default=None, help="pre-trained world model to fine-tune (run dir or model dir)")
    p.add_argument("--actions", action="store_true", help="action-conditioned (actions added at [S2] slots)")
    p.add_argument("--rewards", action="store_true", help="train the reward head (MSE on symlog reward)")
    p.add_argument("--goal-conditioned", action="store_true", help="the clip's last frame is a goal context frame")
    p.add_argument("--finetune-tokenizer", action="store_true", help="train the tokenizer jointly (no token cache)")
    p.add_argument("--freeze-transformer", action="store_true",
                   help="tokenizer-only adaptation: train the tokenizer, keep the (pre-trained) transformer fixed")


def run(args) -> int:
    from ..config import to_dict
    from ..train.common import parse_sources, resolve_config
    from ..train.engine import Trainer
    from ..train.transformer_task import TransformerTask

    if not args.resume:
        args.set = [f"train.use_actions={str(args.actions).lower()}", f"train.use_rewards={str(args.rewards).lower()}",
                    f"train.goal_conditioned={str(args.goal_conditioned).lower()}",
                    f"train.freeze_tokenizer={str(not (args.finetune_tokenizer or args.freeze_transformer)).lower()}",
                    f"train.freeze_transformer={str(args.freeze_transformer).lower()}", *args.set]
    model_cfg, cfg, info = resolve_config(args, "transformer")
    task = TransformerTask(model_cfg, cfg, parse_sources(args.data), tokenizer=args.tokenizer, init=args.init,
                           out=args.out, progress=not args.no_progress)
    module = task.trainable()
    info["model"] = to_dict(module.wm.transformer.config)
    info["tokenizer"] = args.tokenizer
    summary = Trainer(task, cfg, args.out, resume=args.resume, run_info=info, progress=not args.no_progress).fit()
    print(json.dumps({"run": args.out, **summary}))
    return 0
