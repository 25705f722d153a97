"""Write the reference-equality fixtures: small releases of the reference implementation and its own outputs.

Environment (CI does not run this; the fixtures it writes are committed under tests/fixtures/reference/):
  - the reference code: thuml/iVideoGPT at 2ae0381 (its ``ivideogpt/`` package), path given by --ref
  - Python 3.11, torch 2.13.0 (CPU), transformers==4.38.2, diffusers==0.27.0, huggingface_hub==0.25.2
    (a newer huggingface_hub breaks diffusers 0.27's import), safetensors, numpy
  e.g. python3 -m venv /work/venvs/ref && echo /work/main/.venv/lib/python3.11/site-packages \\
         > /work/venvs/ref/lib/python3.11/site-packages/zz_main.pth \\
       && /work/venvs/ref/bin/pip install transformers==4.38.2 diffusers==0.27.0 huggingface_hub==0.25.2
       OMP_NUM_THREADS=1 /work/venvs/ref/bin/python tools/reference_fixtures.py --ref /work/ref/iVideoGPT

It builds the reference's own classes (CompressiveVQModel; LlamaForCausalLM, bare or inside
HeadModelWithAction) with random weights at reduced sizes -- channels [32, 32, 32], codebooks of 64, a
2-layer Llama -- for one context frame (action-free) and two context frames (action-conditioned), saves each
in the release layout, and records inputs with the reference's outputs: token ids (tokenize), decoded frames
(detokenize), transformer logits (forward, with actions), and a greedy rollout by the reference's generate
restricted to future codes (generation_config.suppress_tokens: the reference samples over the whole
vocabulary; ours over future codes only) with the future frames it decodes to.
The reference hard-codes a 16x16 context grid and a 4x4 future grid in detokenize, so the models keep 64x64
input with three blocks.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "reference"
SEGMENT = {1: 5, 2: 6}  # frames per clip by context frames: ctx + 4 future frames
BATCH = 2


def tokenizer_config(context: int) -> dict:
    return {
        "in_channels": 3, "out_channels": 3, "act_fn": "silu",
        "down_block_types": ["DownEncoderBlock2D"] * 3, "up_block_types": ["UpDecoderBlock2D"] * 3,
        "block_out_channels": [32, 32, 32], "layers_per_block": 1, "latent_channels": 16,
        "num_vq_embeddings": 64, "num_dyn_embeddings": 64, "norm_num_groups": 32, "vq_embed_dim": None,
        "norm_type": "group", "mid_block_add_attention": False, "context_length": context,
        "max_att_resolution": 16, "resolution": 64, "patch_size": 4,
    }


def randomize(module: torch.nn.Module, gen: torch.Generator) -> None:
    """Every parameter random (the reference zero-initialises positions and actions, which would test nothing),
    scaled so activations neither vanish nor explode and logits have clear winners."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("embedding.weight") and "quantize" in name:
                p.copy_(torch.randn(p.shape, generator=gen))  # codebooks at the latents' scale: ids spread
            elif p.ndim >= 2 and "pos_emb" not in name:
                fan_in = p[0].numel() if "embed_tokens" not in name else 1
                p.copy_(torch.randn(p.shape, generator=gen) / fan_in**0.5)
            elif "norm" in name and name.endswith("weight"):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(0.3 * torch.randn(p.shape, generator=gen))
            # Values exactly representable in float16, saved as float16 (as the hub releases may be): half the
            # size on disk, and the converter's cast to float32 is exercised; the reference computes in float32.
            p.copy_(p.half().float())


def half(path: Path) -> None:
    from safetensors.torch import load_file, save_file

    save_file({k: v.half() for k, v in load_file(str(path)).items()}, str(path))


def smooth_frames(gen: torch.Generator, b: int, t: int) -> torch.Tensor:
    """uint8 [B, T, 64, 64, 3]: random low-frequency images (more image-like than per-pixel noise)."""
    low = torch.rand(b * t, 3, 8, 8, generator=gen)
    x = torch.nn.functional.interpolate(low, size=(64, 64), mode="bilinear", align_corners=False)
    x = x + 0.05 * torch.randn(x.shape, generator=gen)
    u8 = (x.clamp(0, 1) * 255).round().to(torch.uint8)
    return u8.reshape(b, t, 3, 64, 64).permute(0, 1, 3, 4, 2).contiguous()


def import_reference(ref: Path):
    """(HeadModelWithAction, CompressiveVQModel) from the reference checkout. Its vq_model/__init__ also imports
    its LPIPS (torchvision, not installed here), so the packages are registered bare and only the modules
    these classes live in are imported."""
    import importlib
    import types

    for pkg in ("ivideogpt", "ivideogpt.vq_model", "ivideogpt.transformer"):
        m = types.ModuleType(pkg)
        m.__path__ = [str(ref / pkg.replace(".", "/"))]
        sys.modules[pkg] = m
    act = importlib.import_module("ivideogpt.transformer.action_model")
    vq = importlib.import_module("ivideogpt.vq_model.compressive_vq_model")
    return act.HeadModelWithAction, vq.CompressiveVQModel


def build_case(name: str, context: int, action_dim: int, seed: int, ref: Path) -> None:
    from diffusers.configuration_utils import FrozenDict  # noqa: F401  (diffusers import check)
    from safetensors.torch import save_file
    from transformers import LlamaConfig, LlamaForCausalLM

    HeadModelWithAction, CompressiveVQModel = import_reference(ref)

    gen = torch.Generator().manual_seed(seed)
    out = OUT / name
    shutil.rmtree(out, ignore_errors=True)
    seg = SEGMENT[context]

    tok = CompressiveVQModel(**tokenizer_config(context))
    randomize(tok, gen)
    tok.eval()
    tok.save_pretrained(out / "tokenizer")
    half(out / "tokenizer" / "diffusion_pytorch_model.safetensors")

    vocab = 64 + 64 + 2
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=4, rms_norm_eps=1e-6, max_position_embeddings=1024,
                      tie_word_embeddings=False, bos_token_id=50256, eos_token_id=50256)
    llm = LlamaForCausalLM(cfg)
    prelude = (256 + 1) * context - 1  # the reference's own formula (inference/predict.py)
    if action_dim:
        model = HeadModelWithAction(llm, action_dim=action_dim, prelude_tokens_num=prelude, tokens_num_per_dyna=16,
                                    context=context, segment_length=seg)
    else:
        model = llm
    randomize(model, gen)
    model.eval()
    (out / "transformer").mkdir(parents=True)
    llm.config.save_pretrained(out / "transformer")
    save_file({k: v.contiguous().half() for k, v in model.state_dict().items()},
              str(out / "transformer" / "model.safetensors"))

    frames = smooth_frames(gen, BATCH, seg)  # uint8 [B, T, H, W, 3]
    pixels = frames.permute(0, 1, 4, 2, 3).float() / 255.0  # the reference takes [0, 1], channels first
    actions = torch.randn(BATCH, seg, action_dim, generator=gen) if action_dim else None
    with torch.no_grad():
        tokens, _ = tok.tokenize(pixels, context)
        decoded = tok.detokenize(tokens, context)
        if action_dim:
            logits = model(input_ids=tokens, action=actions).logits
        else:
            logits = model(input_ids=tokens).logits
        # Greedy rollout by the reference's generate, restricted to future codes as our sampler is.
        llm.generation_config.suppress_tokens = list(range(64)) + [vocab - 2, vocab - 1]
        n_new = (1 + 16) * (seg - context) - 1
        prefix = tokens[:, : context * (16 * 16 + 1)]
        if action_dim:
            rollout = model.generate(prefix, do_sample=False, max_new_tokens=n_new, pad_token_id=50256, action=actions)
        else:
            h = HeadModelWithAction(llm, action_dim=1, prelude_tokens_num=prelude, tokens_num_per_dyna=16,
                                    context=context, segment_length=seg)
            rollout = h.generate_without_action(prefix, do_sample=False, max_new_tokens=n_new)
        rollout_frames = tok.detokenize(rollout, context)
    np.savez_compressed(
        out / "reference_outputs.npz",
        frames=frames.numpy(), actions=(actions if action_dim else torch.zeros(BATCH, seg, 0)).numpy(),
        tokens=tokens.numpy(), decoded=decoded.numpy(), logits=logits.float().numpy(),
        rollout=rollout.numpy(), rollout_frames=rollout_frames[:, context:].numpy(),  # future part
    )
    meta = {"context_frames": context, "segment_length": seg, "action_dim": action_dim, "seed": seed,
            "reference_commit": "2ae0381", "torch": torch.__version__,
            "transformers": __import__("transformers").__version__,
            "diffusers": __import__("diffusers").__version__}
    (out / "fixture.json").write_text(json.dumps(meta, indent=1) + "\n")
    ids = tokens[:, : prelude]
    print(name, {k: v for k, v in meta.items() if k in ("context_frames", "segment_length", "action_dim")},
          "distinct context ids", int(ids[ids < 64].unique().numel()),
          "distinct future ids", int(tokens[tokens >= 64].unique().numel()) - 1,
          "size", sum(f.stat().st_size for f in out.rglob("*") if f.is_file()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ref", required=True, help="checkout of thuml/iVideoGPT (the directory holding ivideogpt/)")
    args = ap.parse_args()
    ref = Path(args.ref).resolve()
    if not (ref / "ivideogpt" / "vq_model" / "compressive_vq_model.py").is_file():
        sys.exit(f"--ref {ref}: expected a thuml/iVideoGPT checkout (ivideogpt/vq_model/compressive_vq_model.py)")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    torch.manual_seed(0)
    build_case("ctx1-act-free", context=1, action_dim=0, seed=1, ref=ref)
    build_case("ctx2-act-cond", context=2, action_dim=3, seed=2, ref=ref)


if __name__ == "__main__":
    main()
