"""The previous-frame tokenizer (``future_reference: previous``) and the world model on top of it.

Contract: tokens of future frame t depend on the context and frames <= t (through frame t - 1, its reference),
never on later frames; decoding runs frame by frame, each frame against the previous *decoded* one, and a rollout
(reset/step) decodes exactly as ``decode_future`` does.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import conftest
from ivideogpt.errors import ConfigError
from ivideogpt.frames import to_model, to_uint8
from ivideogpt.tokenizer import Tokenizer, TokenizerConfig
from test_tokenizer import SMALL
from test_world_model import record_generated_ids

pytestmark = pytest.mark.usefixtures("one_thread")

RES = 32
# The tiny-cpu preset's options with a previous-frame reference, decoded against the re-quantised reference.
PREVIOUS = {**conftest.CPU_VARIANT, "future_reference": "previous", "future_decoder_context": "decoded"}
VARIANTS = pytest.mark.parametrize("decoder_context", ["decoded", "frames"])


def world_model(decoder_context: str = "decoded", seed: int = 0):
    return conftest.micro_world_model(context_frames=1, seed=seed, action_mean=[0.5, -0.2], action_std=[2.0, 0.5],
                                      tokenizer_overrides={**PREVIOUS, "future_decoder_context": decoder_context},
                                      transformer_overrides=conftest.CPU_TRANSFORMER)


def tokenizer(decoder_context: str = "decoded") -> Tokenizer:
    """A small VQ tokenizer (distinct codes even untrained, unlike the micro world model's FSQ)."""
    torch.manual_seed(0)
    return Tokenizer(TokenizerConfig(**{**SMALL, **PREVIOUS, "context_frames": 1,
                                        "future_decoder_context": decoder_context})).eval()


def frames(b: int, t: int, seed: int = 0) -> torch.Tensor:
    return to_model(np.random.default_rng(seed).integers(0, 256, (b, t, RES, RES, 3), dtype=np.uint8))


@VARIANTS
def test_encoding_is_causal_and_reads_the_previous_frame(decoder_context):
    tok = tokenizer(decoder_context)
    x = frames(2, 5)
    with torch.no_grad():
        ids = tok.encode_future(x[:, 1:], x[:, :1])
        for j in range(4):  # change future frame j (clip frame j + 1)
            y = x.clone()
            y[:, 1 + j] = -y[:, 1 + j]
            ids2 = tok.encode_future(y[:, 1:], y[:, :1])
            assert torch.equal(ids2[:, :j], ids[:, :j]), "a frame's tokens changed with a later frame"
            assert not torch.equal(ids2[:, j], ids[:, j])
            if j + 1 < 4:  # ... and the next frame's tokens, whose reference it is
                assert not torch.equal(ids2[:, j + 1], ids[:, j + 1])
        # frame by frame against the real previous frame == the batched encoding
        for j in range(4):
            one = tok.encode_future(x[:, 1 + j:2 + j], x[:, j:j + 1])
            assert torch.equal(one[:, 0], ids[:, j])


@VARIANTS
def test_decoding_runs_against_the_previous_decoded_frame(decoder_context):
    tok = tokenizer(decoder_context)
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(0, tok.future_vocab_size, (2, 4, tok.n_future_tokens), generator=g)
    ctx = frames(2, 1, seed=1)
    with torch.no_grad():
        out = tok.decode_future(ids, ctx)
        # by hand: each frame decoded against the uint8 rounding of the one before
        state, ref = tok.encode_context_state(ctx), []
        for i in range(4):
            f = tok._decode_ids(ids[:, i:i + 1], state)
            ref.append(f)
            state = tok.encode_context_state(to_model(to_uint8(f)))
        torch.testing.assert_close(out, torch.cat(ref, 1), rtol=0, atol=0)
        ids2 = ids.clone()
        ids2[:, 1] = (ids2[:, 1] + 1) % tok.future_vocab_size
        out2 = tok.decode_future(ids2, ctx)
        assert torch.equal(out2[:, 0], out[:, 0])
        assert (out2[:, 1] - out[:, 1]).abs().max() > 1e-4
        assert (out2[:, 2] - out[:, 2]).abs().max() > 1e-4, "frame 2 must be decoded from decoded frame 1"


def test_training_pairs_each_frame_with_the_one_before():
    tok = tokenizer().train()
    x = frames(2, 6)
    loss, logs, recon = tok.training_losses(x, n_context=1, n_future=3, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(loss) and recon["future"].shape == (6, 1, 3, RES, RES)
    idx = recon["future_index"]
    assert torch.equal(recon["future_target"][:, 0], x[:, 1 + idx].flatten(0, 1))
    loss.backward()
    assert tok.cond_decoder.conv_out.weight.grad.abs().sum() > 0


def test_previous_reference_needs_one_context_frame():
    with pytest.raises(ConfigError, match="context_frames: 1"):
        TokenizerConfig(**{**SMALL, **PREVIOUS, "context_frames": 2}).validate()


@VARIANTS
def test_rollout_equals_step_by_step_and_decode_future(decoder_context):
    wm = world_model(decoder_context)
    rng = np.random.default_rng(0)
    ctx = rng.integers(0, 256, (2, 1, RES, RES, 3), dtype=np.uint8)
    acts = rng.normal(size=(2, 4, 2)).astype(np.float32)
    ids = record_generated_ids(wm)
    frames_, rewards = wm.rollout(ctx, acts, seed=5)
    ids = list(ids)  # the rollout's; step() below records its own after them
    wm.reset(ctx, seed=5)
    steps = [wm.step(acts[:, i]) for i in range(4)]
    np.testing.assert_array_equal(frames_, np.stack([s.frames for s in steps], 1))
    np.testing.assert_array_equal(rewards, np.stack([s.rewards for s in steps], 1))
    with torch.no_grad():  # the same frames as the tokenizer's own closed-loop decoding of the generated ids
        dec = to_uint8(wm.tokenizer.decode_future(torch.stack(ids, 1), to_model(ctx)))
    np.testing.assert_array_equal(frames_, dec.numpy())


def test_observed_frames_become_the_reference():
    """After observed frames the first predicted frame is decoded against the last one seen, and with
    ``samples`` each context's state is repeated."""
    wm = world_model()
    rng = np.random.default_rng(1)
    seen = rng.integers(0, 256, (2, 3, RES, RES, 3), dtype=np.uint8)
    acts = rng.normal(size=(2, 3, 2)).astype(np.float32)
    frames_, _ = wm.rollout(seen, acts[:, 2:], context_actions=acts[:, :2], temperature=0.0)
    ids = wm.tokenizer.encode_future(to_model(seen[:, 1:]), to_model(seen[:, :1]))
    assert ids.shape == (2, 2, wm.tokenizer.n_future_tokens)
    state = wm._state["ctx"]
    assert state.batch_size == 2
    rep, _ = wm.rollout(seen, np.repeat(acts[:, 2:], 3, axis=0), context_actions=acts[:, :2], samples=3,
                        temperature=0.0)
    np.testing.assert_array_equal(rep[::3], frames_)
    # a different last observed frame changes the first prediction (it is the reference)
    other = seen.copy()
    other[:, 2] = 255 - other[:, 2]
    f2, _ = wm.rollout(other, acts[:, 2:], context_actions=acts[:, :2], temperature=0.0)
    assert np.abs(f2.astype(int) - frames_.astype(int)).max() > 0
