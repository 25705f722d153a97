"""``ivideogpt <command>``: a thin dispatcher; each command lives in ``ivideogpt/commands/<name>.py``
with ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``. Imports are lazy so ``--help`` is fast.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

from .errors import IVideoGPTError

# (command, module, one-line help). `train` has sub-commands of its own.
COMMANDS = [
    ("collect", "collect", "collect episodes from an environment into a dataset directory"),
    ("info", "info", "print a dataset's metadata and write a PNG contact sheet"),
    ("import", "import_", "import videos (MP4/GIF/WebM) or a LeRobot dataset into the episode format"),
    ("convert-data", "convert_data", "convert an episode dataset to the sharded store or back; verify checksums"),
    ("train", None, "train a tokenizer or a transformer (world model)"),
    ("reconstruct", "reconstruct", "tokenize and reconstruct held-out clips; write a PNG"),
    ("predict", "predict", "roll a world model out on dataset episodes; write a GIF/MP4"),
    ("imitate", "imitate", "video in-context imitation: continue a query episode as a demonstration goes; GIF"),
    ("evaluate", "evaluate", "video-prediction metrics (PSNR/SSIM/perceptual/FVD) with best-of-K"),
    ("plan", "plan", "model-predictive control (CEM/MPPI) with a world model"),
    ("mbrl", "mbrl", "model-based RL: MBPO with DrQ-v2 and the world model"),
    ("drqv2", "drqv2", "model-free DrQ-v2 baseline"),
    ("demo", "demo", "the end-to-end demo: collect, train, roll out, report"),
    ("convert", "convert", "convert a reference (thuml/iVideoGPT) release into a world-model directory"),
    ("play", "play", "play a world model in the browser: keys in, predicted frames out, the simulator beside it"),
]
TRAIN_COMMANDS = [
    ("tokenizer", "train_tokenizer", "train the compressive VQ tokenizer"),
    ("transformer", "train_transformer", "train the interactive transformer on a frozen/fine-tuned tokenizer"),
]


def _load(module: str):
    return importlib.import_module(f"ivideogpt.commands.{module}")


def _available(module: str) -> bool:
    return importlib.util.find_spec(f"ivideogpt.commands.{module}") is not None


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ivideogpt",
        description="iVideoGPT: an interactive video world model. Tokenize video with a compressive "
        "tokenizer, predict the next frame's tokens with a LLaMA-style transformer, one frame at a time, "
        "with actions in and rewards out.",
        epilog="Run 'ivideogpt <command> --help' for a command's options.",
    )
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    # Only the module of the command being run is imported; the others just register their help.
    wanted = argv[0] if argv else None
    for name, module, help_ in COMMANDS:
        if module is None:
            p = sub.add_parser(name, help=help_, description=help_)
            tsub = p.add_subparsers(dest="train_command", metavar="<what>")
            for tname, tmodule, thelp in TRAIN_COMMANDS:
                if not _available(tmodule):
                    continue
                tp = tsub.add_parser(tname, help=thelp, description=thelp)
                if wanted == "train" and len(argv) > 1 and argv[1] == tname and _available(tmodule):
                    _load(tmodule).add_arguments(tp)
                tp.set_defaults(_module=tmodule)
            continue
        if not _available(module):
            continue  # not built yet in this version: keep it out of --help
        p = sub.add_parser(name, help=help_, description=help_)
        if wanted == name and _available(module):
            _load(module).add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    module = getattr(args, "_module", None)
    if module is None:
        parser.print_help()
        return 0 if not argv else 2
    if not _available(module):
        print(f"ivideogpt {args.command}: not implemented yet in this version", file=sys.stderr)
        return 2
    try:
        return int(_load(module).run(args) or 0)
    except IVideoGPTError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted (what was saved is kept; re-run with --resume to continue)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
