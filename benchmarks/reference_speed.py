"""Action-conditioned rollout speed against the reference implementation itself, on the same model, in one run.

One random-weight paper-small release (a 138M Llama inside the reference's HeadModelWithAction, action_dim 4,
float16 on disk, float32 in both) is written once; then for each batch size:
  reference  thuml/iVideoGPT's own ``HeadModelWithAction.generate`` (sampling, top-k 100, temperature 1; it
             re-runs the whole prefix for every frame), loaded from the release as its inference/predict.py does,
             run in the reference's environment (a child process: transformers 4.38.2 -- see
             tools/reference_fixtures.py for that venv)
  ours       the same release converted by ``ivideogpt.convert.reference``: prefill the context once, then
             ``generate_frame`` per frame with the KV cache kept across frames (top-k 100, temperature 1)
Transformer only (the tokenizer does the same work in both), 2 context frames, horizon 10. Ours is timed right
before and right after the reference (load on a shared machine drifts) and the mean is used.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/reference_speed.py --ref /work/ref/iVideoGPT \\
        --ref-python /work/venvs/ref/bin/python [--batch 4 16] [--horizon 10] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONTEXT, ACTION_DIM, SEGMENT_EXTRA = 2, 4, 0


def write_release(root: Path, seed: int = 0) -> None:
    """A paper-small action-conditioned release with random weights, from reference-layout.json's shapes."""
    import torch
    from safetensors.torch import save_file

    layout = json.loads((ROOT / "tests" / "fixtures" / "reference-layout.json").read_text())
    tr = layout["transformer-small-action-reward"]
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for k, shape in tr["state_dict"].items():
        if k.startswith("reward_linear"):
            continue  # the released action-conditioned transformers have no reward head
        std = 1.0 if "norm" in k else (0.0 if k.endswith("bias") else 0.02)
        state[k] = (torch.randn(shape, generator=gen) * std + (1.0 if "norm" in k else 0.0)).half()
    (root / "tokenizer").mkdir(parents=True)
    (root / "transformer").mkdir()
    (root / "tokenizer" / "config.json").write_text(json.dumps(layout["tokenizer-64"]["config"]))
    (root / "transformer" / "config.json").write_text(json.dumps(dict(tr["config"], vocab_size=16386)))
    save_file(state, str(root / "transformer" / "model.safetensors"))


def inputs(batch: int, horizon: int, seed: int):
    """The context tokens in the reference's layout (first separator dropped, then the first frame separator,
    as inference/predict.py cuts them) and raw actions [B, T, A] for T = context + horizon frames."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    ctx = torch.randint(0, 8192, (batch, CONTEXT, 256), generator=gen)
    parts = []
    for t in range(CONTEXT):
        if t:
            parts.append(torch.full((batch, 1), 16384))
        parts.append(ctx[:, t])
    parts.append(torch.full((batch, 1), 16385))
    actions = torch.randn(batch, CONTEXT + horizon, ACTION_DIM, generator=gen)
    return torch.cat(parts, dim=1), actions


# ---------------------------------------------------------------------------------------- reference (child process)
def run_reference(release: Path, ref: Path, batch: int, horizon: int, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    sys.path.insert(0, str(ROOT / "tools"))
    from reference_fixtures import import_reference
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForCausalLM

    HeadModelWithAction, _ = import_reference(ref)
    # As the reference's inference/predict.py loads an action-conditioned release.
    config = AutoConfig.from_pretrained(release / "transformer")
    model = HeadModelWithAction(AutoModelForCausalLM.from_config(config), action_dim=ACTION_DIM,
                                prelude_tokens_num=(256 + 1) * CONTEXT - 1, tokens_num_per_dyna=16,
                                context=CONTEXT, segment_length=CONTEXT + horizon)
    model.load_state_dict(load_file(str(release / "transformer" / "model.safetensors")), strict=True)
    model.eval()
    tokens, actions = inputs(batch, horizon, seed=1)
    torch.manual_seed(0)
    t = time.perf_counter()
    out = model.generate(tokens, do_sample=True, temperature=1.0, top_k=100, max_new_tokens=17 * horizon - 1,
                         pad_token_id=50256, action=actions)
    sec = time.perf_counter() - t
    assert out.shape[1] == tokens.shape[1] + 17 * horizon - 1
    import transformers

    return {"seconds": sec, "torch": torch.__version__, "transformers": transformers.__version__,
            "threads": torch.get_num_threads()}


# ---------------------------------------------------------------------------------------------------- ours (parent)
def run_ours(model, batch: int, horizon: int) -> float:
    import torch

    tokens, actions = inputs(batch, horizon, seed=1)
    a = actions[:, CONTEXT - 1: CONTEXT - 1 + horizon]  # ours: actions[:, i] leads to future frame i
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        t = time.perf_counter()
        cache = model.new_cache(batch)
        model.prefill(tokens[:, :-1], cache)  # the context; generate_frame feeds the [S2] slot itself
        for i in range(horizon):
            model.generate_frame(cache, a[:, i], temperature=1.0, top_k=100, generator=gen)
        return time.perf_counter() - t


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ref", help="checkout of thuml/iVideoGPT (holds ivideogpt/)")
    p.add_argument("--ref-python", default="/work/venvs/ref/bin/python",
                   help="python of the reference's environment (transformers 4.38.2)")
    p.add_argument("--batch", type=int, nargs="+", default=[4, 16])
    p.add_argument("--horizon", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--child", nargs=2, metavar=("RELEASE", "BATCH"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(run_reference(Path(args.child[0]), Path(args.ref), int(args.child[1]), args.horizon,
                                       args.threads)))
        return
    if not args.ref or not (Path(args.ref) / "ivideogpt" / "transformer" / "action_model.py").is_file():
        raise SystemExit("--ref: expected a thuml/iVideoGPT checkout (ivideogpt/transformer/action_model.py)")
    import torch

    from ivideogpt.convert.reference import load_transformer

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        release = Path(tmp) / "ivideogpt-paper-small-act-cond"
        write_release(release)
        model = load_transformer(release, segment_length=CONTEXT + args.horizon)
        print(json.dumps({"model": "paper-small (random weights)", "params": model.num_params(),
                          "horizon": args.horizon, "context_frames": CONTEXT, "threads": args.threads}), flush=True)
        run_ours(model, 1, 1)  # warm-up
        for b in args.batch:
            before = run_ours(model, b, args.horizon)
            cmd = [args.ref_python, __file__, "--ref", args.ref, "--horizon", str(args.horizon),
                   "--threads", str(args.threads), "--child", str(release), str(b)]
            res = subprocess.run(cmd, capture_output=True, text=True)
            if res.returncode:
                raise SystemExit(f"reference run failed:\n{res.stderr[-3000:]}")
            ref = json.loads(res.stdout.strip().splitlines()[-1])
            after = run_ours(model, b, args.horizon)
            ours = (before + after) / 2
            frames = b * args.horizon
            print(json.dumps({
                "batch": b, "reference_generate_s": round(ref["seconds"], 2),
                "reference_frames_per_s": round(frames / ref["seconds"], 3),
                "ours_kv_cached_s": round(ours, 2), "ours_before_after_s": [round(before, 2), round(after, 2)],
                "ours_frames_per_s": round(frames / ours, 3), "speedup": round(ref["seconds"] / ours, 2),
                "reference_env": {k: ref[k] for k in ("torch", "transformers", "threads")}}), flush=True)


if __name__ == "__main__":
    main()
