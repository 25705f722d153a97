"""Converted reference releases compute what the reference implementation computes.

The fixtures (tests/fixtures/reference/, written by tools/reference_fixtures.py with the reference code itself:
thuml/iVideoGPT 2ae0381, transformers 4.38.2, diffusers 0.27.0) are small releases with random weights and the
reference's own outputs for recorded inputs. Tolerances: ids and greedy tokens exact; frames and logits 1e-4
(float32 computed in a different order: SDPA vs nn.MultiheadAttention, addmm vs cdist).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ivideogpt.convert.reference import load_release
from ivideogpt.frames import to_model, to_uint8
from ivideogpt.transformer.model import Transformer

FIX = Path(__file__).parent / "fixtures" / "reference"
CASES = ["ctx1-act-free", "ctx2-act-cond"]
TOL = 1e-4


@pytest.fixture(scope="module", params=CASES)
def case(request):
    d = FIX / request.param
    meta = json.loads((d / "fixture.json").read_text())
    wm = load_release(d, segment_length=meta["segment_length"])
    ref = dict(np.load(d / "reference_outputs.npz"))
    return wm, ref, meta


def _tokens(wm, frames):
    t0 = wm.context_frames
    ctx_ids, fut_ids = wm.tokenizer.tokenize(to_model(torch.as_tensor(frames)), t0)
    return wm.transformer.config.layout.build(ctx_ids, fut_ids), ctx_ids, fut_ids


def _actions(ref, meta):
    # The reference's actions [B, T, A]: action t is taken after frame t; ours [B, F, A] lead to future frame f.
    a = torch.as_tensor(ref["actions"])
    return a[:, meta["context_frames"] - 1: -1] if meta["action_dim"] else None


@torch.no_grad()
def test_token_ids_exact(case):
    wm, ref, _ = case
    tokens, _, _ = _tokens(wm, ref["frames"])
    assert tokens.shape == ref["tokens"].shape
    assert torch.equal(tokens, torch.as_tensor(ref["tokens"]))


@torch.no_grad()
def test_decoded_frames(case):
    wm, ref, _ = case
    _, ctx_ids, fut_ids = _tokens(wm, ref["frames"])
    frames = (wm.tokenizer.detokenize(ctx_ids, fut_ids) + 1) / 2  # ours [-1, 1], the reference's [0, 1]
    err = (frames - torch.as_tensor(ref["decoded"])).abs().max().item()
    assert err < TOL, err


@torch.no_grad()
def test_logits_with_actions(case):
    wm, ref, meta = case
    tokens = torch.as_tensor(ref["tokens"])
    logits, _ = wm.transformer(tokens, _actions(ref, meta))
    want = torch.as_tensor(ref["logits"])
    err = (logits - want).abs().max().item()
    assert err < TOL * max(1.0, want.abs().max().item()), err


@torch.no_grad()
def test_greedy_rollout_token_for_token(case):
    wm, ref, meta = case
    t0, seg = meta["context_frames"], meta["segment_length"]
    actions = _actions(ref, meta)
    frames = torch.as_tensor(ref["frames"])
    state = wm.tokenizer.encode_context_state(to_model(frames[:, :t0]))
    tr = wm.transformer
    lay = tr.config.layout
    cache = tr.new_cache(frames.shape[0])
    tr.prefill(lay.build(state.ids, state.ids.new_zeros(frames.shape[0], 0, lay.future_tokens)), cache)
    ids = torch.stack([tr.generate_frame(cache, None if actions is None else actions[:, i], temperature=0)[0]
                       for i in range(seg - t0)], dim=1)
    assert torch.equal(lay.build(state.ids, ids), torch.as_tensor(ref["rollout"]))
    decoded = (wm.tokenizer.decode_future(ids, state) + 1) / 2
    err = (decoded - torch.as_tensor(ref["rollout_frames"])).abs().max().item()
    assert err < TOL, err
    # The same through the public API: uint8 frames as the reference's decoded frames rounded.
    out, _ = wm.rollout(ref["frames"][:, :t0], None if actions is None else actions.numpy(),
                        horizon=seg - t0, temperature=0.0)
    want = to_uint8(torch.as_tensor(ref["rollout_frames"]) * 2 - 1).numpy()
    assert np.abs(out.astype(int) - want.astype(int)).max() <= 1


def test_actions_are_raw(case):
    wm, _, meta = case
    cfg = wm.transformer.config
    assert cfg.action_mean == [0.0] * meta["action_dim"] and cfg.action_std == [1.0] * meta["action_dim"]
    assert cfg.first_slot is False and cfg.sample_vocab == "future" and wm.tokenizer.config.pixels == "unit"


@torch.no_grad()
def test_whole_vocab_sampling_feeds_back_what_was_drawn():
    """sample_vocab='all' (the reference's generate): a context code drawn greedily is fed back as is, and the
    frame reads it clamped into the future codes, as the reference's detokenize does."""
    tr = Transformer.from_preset("tiny-cpu", sample_vocab="all", first_slot=False).eval()
    lay = tr.config.layout
    v = torch.randn(tr.config.d_model)
    tr.lm_head.weight.zero_()
    tr.lm_head.weight[3], tr.lm_head.weight[5] = v, -v  # the argmax is context code 3 or 5, never a future code
    fed = []
    tr.model.embed_tokens.register_forward_hook(lambda m, args, out: fed.append(args[0].clone()))
    cache = tr.new_cache(2)
    tr.prefill(torch.zeros(2, lay.context_length, dtype=torch.long), cache)
    ids, _ = tr.generate_frame(cache, temperature=0)
    assert ids.tolist() == [[0] * lay.future_tokens] * 2  # 3 - Vc and 5 - Vc clamped to the first future code
    drawn = torch.cat(fed[2:], dim=1)  # after the prefill and the [S2] slot: the n tokens fed back
    assert drawn.shape == (2, lay.future_tokens) and set(drawn.unique().tolist()) <= {3, 5}
    # The default samples future codes only.
    tr.config.sample_vocab = "future"
    cache = tr.new_cache(2)
    tr.prefill(torch.zeros(2, lay.context_length, dtype=torch.long), cache)
    fed.clear()
    tr.generate_frame(cache, temperature=0)
    lo, hi = lay.future_code_range
    assert all(((f >= lo) & (f < hi)).all() for f in fed[1:])


def test_layout_without_the_first_slot():
    """first_slot=False (the reference's layout): one token shorter, everything after shifted by one."""
    from ivideogpt.transformer.layout import SequenceLayout

    ref = SequenceLayout(16, 4, 2, 10, 12, first_slot=False)
    ours = SequenceLayout(16, 4, 2, 10, 12)
    ctx, fut = torch.randint(0, 10, (2, 2, 16)), torch.randint(0, 12, (2, 3, 4))
    a, b = ref.build(ctx, fut), ours.build(ctx, fut)
    assert torch.equal(a, b[:, 1:]) and ref.length(5) == ours.length(5) - 1 == a.shape[1]
    assert all(torch.equal(x, y) for x, y in zip(ref.split(a), (ctx, fut)))
    assert torch.equal(ref.action_positions(5), ours.action_positions(5) - 1)
    assert torch.equal(ref.target_mask(5), ours.target_mask(5)[1:])
    assert torch.equal(ref.spatial_coords(0, a.shape[1])[0], ours.spatial_coords(1, b.shape[1])[0])
    assert int(a[0, ref.action_positions(5)[0]]) == ref.slot_future
