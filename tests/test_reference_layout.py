"""Releases at the real paper sizes convert and load: written from the parameter names and shapes of the
reference's checkpoints (reference-layout.json, generated from the reference classes), random float16 weights
(half the disk of float32; the converter casts to float32)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from ivideogpt.convert.reference import load_release

LAYOUT = Path(__file__).parent / "fixtures" / "reference-layout.json"


def _write(path: Path, shapes: dict, gen: torch.Generator) -> dict[str, torch.Tensor]:
    # Windows of one random pool at random offsets: random weights without drawing 300M numbers.
    pool = torch.randn(1 << 22, generator=gen).half()
    ring = torch.cat([pool, pool])
    state = {}
    for k, shape in shapes.items():
        n = int(torch.tensor(shape).prod()) if shape else 1
        if n <= pool.numel():
            start = int(torch.randint(0, pool.numel(), (1,), generator=gen))
            state[k] = ring[start:start + n].reshape(shape).clone()
        else:
            state[k] = pool.repeat(-(-n // pool.numel()))[:n].reshape(shape).clone()
    save_file(state, str(path))
    return state


def _release(root: Path, tokenizer: dict, transformer: dict, vocab: int, gen) -> tuple[dict, dict]:
    (root / "tokenizer").mkdir(parents=True)
    (root / "transformer").mkdir()
    (root / "tokenizer" / "config.json").write_text(json.dumps(tokenizer["config"]))
    tok = _write(root / "tokenizer" / "diffusion_pytorch_model.safetensors", tokenizer["state_dict"], gen)
    cfg = dict(transformer["config"], vocab_size=vocab)  # the reference overwrites it before saving
    (root / "transformer" / "config.json").write_text(json.dumps(cfg))
    tr = _write(root / "transformer" / "model.safetensors", transformer["state_dict"], gen)
    return tok, tr


def _count(m) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("tokenizer", ["tokenizer-64", "tokenizer-256"])
def test_paper_size_release_converts_with_the_layout_parameter_counts(tmp_path, tokenizer):
    layout = json.loads(LAYOUT.read_text())
    tok_layout = layout[tokenizer]
    gen = torch.Generator().manual_seed(0)
    if tokenizer == "tokenizer-64":
        tr_layout = layout["transformer-small-action-reward"]  # 138.44M: paper-small with action and reward heads
    else:
        # The 256 tokenizer with a one-layer transformer of the same vocabulary: the 138M one is checked above.
        small = {k: v for k, v in layout["transformer-small-action-reward"]["state_dict"].items()
                 if ".layers." not in k or ".layers.0." in k}
        tr_layout = {"config": dict(layout["transformer-small-action-reward"]["config"], num_hidden_layers=1),
                     "state_dict": small}
    tok_state, tr_state = _release(tmp_path / "rel", tok_layout, tr_layout, vocab=16386, gen=gen)
    wm = load_release(tmp_path / "rel", segment_length=16)
    assert _count(wm.tokenizer) == tok_layout["params"]
    assert len(wm.tokenizer.state_dict()) == len(tok_layout["state_dict"])
    if tokenizer == "tokenizer-64":
        assert _count(wm.transformer) == tr_layout["params"]
        assert wm.transformer.config.action_dim == 4 and wm.transformer.config.use_reward
    assert wm.tokenizer.n_context_tokens == 256 and wm.tokenizer.n_future_tokens == 16
    # spot checks: the weights are the file's, under the same names (the transformer's without "llm.")
    key = "cond_decoder.cross_att_blocks.0.att.in_proj_weight"
    assert torch.equal(wm.tokenizer.state_dict()[key], tok_state[key].float())
    assert torch.equal(wm.transformer.state_dict()["model.layers.0.mlp.up_proj.weight"],
                       tr_state["llm.model.layers.0.mlp.up_proj.weight"].float())
