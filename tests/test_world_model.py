"""WorldModel: interactive rollouts (reset/step/rollout), reproducibility, causality in actions, KV cache vs
teacher forcing, checkpoints, input validation.

The models are untrained and tiny (32x32 frames, 16 + 4 tokens per frame). The action projection is
zero-initialised in a fresh transformer, so it is re-drawn here: otherwise actions could not change
anything and the action tests could not fail.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import conftest
from ivideogpt import WorldModel
from ivideogpt.errors import CheckpointError
from ivideogpt.frames import to_model, to_uint8
from ivideogpt.transformer import symexp

RES, T0 = 32, 2


pytestmark = pytest.mark.usefixtures("one_thread")


def micro_world_model(action_dim: int = 2, use_reward: bool = True, goal_conditioned: bool = False,
                      seed: int = 0, variant: str = "paper") -> WorldModel:
    return conftest.micro_world_model(action_dim=action_dim, use_reward=use_reward, goal_conditioned=goal_conditioned,
                                      seed=seed, context_frames=T0, action_mean=[0.5, -0.2], action_std=[2.0, 0.5],
                                      tokenizer_overrides=conftest.CPU_VARIANT if variant == "cpu" else None,
                                      transformer_overrides=conftest.CPU_TRANSFORMER if variant == "cpu" else None)


VARIANTS = pytest.mark.parametrize("variant", ["paper", "cpu"])


def context(b: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (b, T0, RES, RES, 3), dtype=np.uint8)


def actions(b: int = 2, k: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed + 100).normal(size=(b, k, 2)).astype(np.float32)


def step_by_step(wm, ctx, acts, **kw):
    wm.reset(ctx, **kw)
    out = [wm.step(acts[:, i]) for i in range(acts.shape[1])]
    return np.stack([o.frames for o in out], 1), np.stack([o.rewards for o in out], 1)


@VARIANTS
@pytest.mark.parametrize("b,k", [(2, 4), (1, 4)])
def test_rollout_equals_step_by_step(b, k, variant):
    wm = micro_world_model(variant=variant)
    # Several draws: a rollout that decoded its K frames in one batch differed from step() in a few
    # uint8 pixels for 2 of these 5 seeds at B = 1 (float sums in another order).
    for seed in range(5):
        ctx, acts = context(b, seed), actions(b, k, seed)
        frames, rewards = wm.rollout(ctx, acts, seed=seed)
        f2, r2 = step_by_step(wm, ctx, acts, seed=seed)
        assert frames.shape == (b, k, RES, RES, 3) and frames.dtype == np.uint8
        assert rewards.shape == (b, k)
        np.testing.assert_array_equal(frames, f2)
        np.testing.assert_array_equal(rewards, r2)


def test_seeds_reproduce_and_differ():
    wm = micro_world_model()
    ctx, acts = context(), actions()
    f0, r0 = wm.rollout(ctx, acts, seed=0)
    f0b, r0b = wm.rollout(ctx, acts, seed=0)
    f1, r1 = wm.rollout(ctx, acts, seed=1)
    np.testing.assert_array_equal(f0, f0b)
    np.testing.assert_array_equal(r0, r0b)
    assert not np.array_equal(f0, f1)  # temperature 1: an untrained model samples near-uniformly
    assert not np.array_equal(r0, r1)
    g = torch.Generator().manual_seed(0)
    fg, _ = wm.rollout(ctx, acts, generator=g)
    np.testing.assert_array_equal(f0, fg)


@VARIANTS
@pytest.mark.parametrize("temperature", [1.0, 0.0])
def test_changing_action_k_changes_nothing_before_frame_k(temperature, variant):
    wm = micro_world_model(variant=variant)
    ctx, a1 = context(), actions()
    k = 2
    a2 = a1.copy()
    a2[:, k] = -3.0 * a1[:, k]  # flips the direction of the action embedding
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    f1, r1 = wm.rollout(ctx, a1, temperature=temperature, generator=g1)
    f2, r2 = wm.rollout(ctx, a2, temperature=temperature, generator=g2)
    # actions[:, k] leads to frames[:, k]: everything before is untouched ...
    np.testing.assert_array_equal(f1[:, :k], f2[:, :k])
    np.testing.assert_array_equal(r1[:, :k], r2[:, :k])
    # ... and the action does reach the model from frame k on.
    assert not np.array_equal(f1[:, k:], f2[:, k:])
    assert not np.array_equal(r1[:, k], r2[:, k])
    # Sampling draws the same amount of randomness whatever the actions are.
    assert torch.equal(g1.get_state(), g2.get_state())


def record_generated_ids(wm) -> list:
    """From now on, every frame's sampled future ids [B, n] are appended to the returned list."""
    ids = []
    generate = wm.transformer.generate_frame

    def recording(*args, **kwargs):
        out = generate(*args, **kwargs)
        ids.append(out[0])
        return out

    wm.transformer.generate_frame = recording
    return ids


@VARIANTS
def test_kv_cache_rollout_matches_teacher_forced_forward(variant):
    """Greedy ids from the cached rollout == argmax of one full-sequence forward over those ids."""
    wm = micro_world_model(variant=variant)
    ctx, acts = context(), actions()
    ids = record_generated_ids(wm)
    frames, rewards = wm.rollout(ctx, acts, temperature=0.0)
    fut = torch.stack(ids, dim=1)  # [B, K, n] future-code ids
    assert fut.shape == (2, 4, wm.tokenizer.n_future_tokens)

    state = wm.tokenizer.encode_context_state(to_model(ctx))
    lay = wm.transformer.config.layout
    tokens = lay.build(state.ids, fut)
    with torch.no_grad():
        logits, reward = wm.transformer(tokens, torch.as_tensor(acts))
    where = lay.target_mask(T0 + fut.shape[1]).nonzero().squeeze(-1)
    lo, hi = lay.future_code_range
    torch.testing.assert_close(logits[:, where, lo:hi].argmax(-1), tokens[:, where + 1] - lo, rtol=0, atol=0)
    np.testing.assert_allclose(rewards, symexp(reward).numpy(), rtol=1e-5, atol=1e-6)
    # and the frames are those ids decoded against the context
    decoded = [to_uint8(wm.tokenizer.decode_future(fut[:, i:i + 1], state))[:, 0] for i in range(fut.shape[1])]
    np.testing.assert_array_equal(frames, torch.stack(decoded, 1).numpy())


@VARIANTS
def test_observed_frames_continue_the_rollout(variant):
    """Frames after the T0 context are tokenized as future frames and prefilled with their actions: greedy
    ids then equal the teacher-forced argmax over (context, observed, predicted), each observed frame uses up one
    of max_steps, and the observed action matters."""
    wm = micro_world_model(variant=variant)
    ctx, acts = context(), actions(k=4)
    obs = np.random.default_rng(7).integers(0, 256, (2, 1, RES, RES, 3), dtype=np.uint8)
    seen = np.concatenate([ctx, obs], axis=1)
    ids = record_generated_ids(wm)
    frames, _ = wm.rollout(seen, acts[:, 1:3], context_actions=acts[:, :1], temperature=0.0)
    assert frames.shape[1] == 2 and wm._state["steps"] == 3
    wm.step(acts[:, 3])
    assert wm._state["steps"] == wm.max_steps  # the cache is full: the next step re-anchors (test_long_play_...)

    state = wm.tokenizer.encode_context_state(to_model(ctx))
    fut = torch.cat([wm.tokenizer.encode_future(to_model(obs), state), torch.stack(ids[:2], dim=1)], dim=1)
    lay = wm.transformer.config.layout
    tokens = lay.build(state.ids, fut)
    with torch.no_grad():
        logits, _ = wm.transformer(tokens, torch.as_tensor(acts[:, :3]))
    where = lay.target_mask(T0 + 3).nonzero().squeeze(-1)
    where = where[where >= lay.length(T0 + 1)]  # predicted frames only: the observed one was given
    lo, hi = lay.future_code_range
    torch.testing.assert_close(logits[:, where, lo:hi].argmax(-1), tokens[:, where + 1] - lo, rtol=0, atol=0)

    # The observed action is in the prefix: changing it changes the predicted rewards (the micro model's ids are
    # too robust to show it reliably).
    a, b = (wm.rollout(seen, acts[:, 1:3], context_actions=c, seed=1)[1] for c in (acts[:, :1], acts[:, :1] + 3.0))
    assert np.abs(a - b).max() > 1e-3
    with pytest.raises(ValueError, match="context_actions"):
        wm.reset(seen)
    with pytest.raises(ValueError, match="context_actions"):
        wm.reset(seen, context_actions=acts[:, :2])
    with pytest.raises(ValueError, match="context frames"):
        wm.reset(np.concatenate([ctx, ctx, ctx], axis=1), context_actions=acts)


def test_save_load_roundtrip_and_run_dirs(tmp_path):
    wm = micro_world_model()
    ctx, acts = context(), actions()
    want = wm.rollout(ctx, acts, seed=5)
    wm.save_pretrained(tmp_path / "wm")
    got = WorldModel.from_pretrained(tmp_path / "wm").rollout(ctx, acts, seed=5)
    np.testing.assert_array_equal(want[0], got[0])
    np.testing.assert_array_equal(want[1], got[1])

    # A run directory means its latest complete checkpoint.
    run = tmp_path / "run"
    micro_world_model(seed=1).save_pretrained(run / "checkpoints" / "step_00000005" / "model")
    wm.save_pretrained(run / "checkpoints" / "step_00000010" / "model")
    (run / "checkpoints" / "step_00000020").mkdir()  # incomplete: no model/ inside
    got = WorldModel.from_pretrained(run).rollout(ctx, acts, seed=5)
    np.testing.assert_array_equal(want[0], got[0])

    with pytest.raises(CheckpointError, match="missing"):
        WorldModel.from_pretrained(tmp_path / "missing")
    with pytest.raises(CheckpointError, match="expected a 'world_model'"):
        WorldModel.from_pretrained(tmp_path / "wm" / "tokenizer")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="empty"):
        WorldModel.from_pretrained(tmp_path / "empty")


def test_code_vectors_come_from_the_tokenizer_and_stay_with_the_model(tmp_path):
    """A new world model takes its transformer's code vectors from its tokenizer; a saved one loads the vectors
    it was trained with, not its tokenizer's current ones (they differ after joint fine-tuning of a VQ)."""
    wm = micro_world_model(variant="cpu")
    ref = wm.transformer.code_vectors.clone()
    wm.transformer.set_code_vectors(*wm.tokenizer.code_vectors())
    assert torch.equal(wm.transformer.code_vectors, ref) and ref.abs().sum() > 0
    lay = wm.transformer.layout
    own = (torch.randn(lay.context_vocab, wm.tokenizer.quantize.dim),
           torch.randn(lay.future_vocab, wm.tokenizer.dynamics_quantize.dim))
    wm.transformer.set_code_vectors(*own)
    mine = wm.transformer.code_vectors.clone()
    wm.save_pretrained(tmp_path / "wm")
    got = WorldModel.from_pretrained(tmp_path / "wm")
    assert torch.equal(got.transformer.code_vectors, mine) and not torch.equal(mine, ref)
    ctx, acts = context(), actions()
    np.testing.assert_array_equal(wm.rollout(ctx, acts, seed=3)[0], got.rollout(ctx, acts, seed=3)[0])


def test_input_validation():
    wm = micro_world_model()
    ctx = context()
    with pytest.raises(TypeError, match="uint8"):
        wm.reset(ctx.astype(np.float32) / 255)
    with pytest.raises(ValueError, match=f"H = W = {RES}"):
        wm.reset(np.zeros((2, T0, RES * 2, RES * 2, 3), np.uint8))
    with pytest.raises(ValueError, match=f"takes {T0} context frames"):
        wm.reset(ctx[:, :1])
    with pytest.raises(RuntimeError, match="reset"):
        micro_world_model().step(np.zeros((2, 2), np.float32))
    wm.reset(ctx, seed=0)
    with pytest.raises(ValueError, match="actions: expected shape"):
        wm.step(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="actions: expected shape"):
        wm.step(np.zeros((1, 2), np.float32))
    with pytest.raises(TypeError, match="float"):
        wm.step(np.zeros((2, 2), np.int64))
    with pytest.raises(ValueError, match="action-conditioned"):
        wm.step(None)
    with pytest.raises(ValueError, match="action-conditioned"):
        wm.rollout(ctx, None, horizon=2)

    free = micro_world_model(action_dim=0, use_reward=False)
    with pytest.raises(ValueError, match="action-free"):
        free.rollout(ctx, actions())
    free.reset(ctx, seed=0)
    with pytest.raises(ValueError, match="action-free"):
        free.step(np.zeros((2, 2), np.float32))
    out = free.step()
    assert out.frames.shape == (2, RES, RES, 3) and out.rewards is None
    frames, rewards = free.rollout(ctx, horizon=3, seed=0)
    assert frames.shape == (2, 3, RES, RES, 3) and rewards is None
    with pytest.raises(ValueError, match="horizon"):
        free.rollout(ctx)


def test_goal_conditioning_is_checked():
    ctx = context()
    goal = context(seed=1)[:, 0]
    gc = micro_world_model(goal_conditioned=True)
    with pytest.raises(ValueError, match="goal-conditioned"):
        gc.reset(ctx)
    with pytest.raises(ValueError, match="goal"):
        gc.reset(ctx, goal[:1])
    f1, _ = gc.rollout(ctx, actions(), goal=goal, temperature=0.0)
    f2, _ = gc.rollout(ctx, actions(), goal=context(seed=2)[:, 0], temperature=0.0)
    assert f1.shape == (2, 4, RES, RES, 3)
    assert not np.array_equal(f1, f2)  # the goal is one more context frame: it changes the prediction
    with pytest.raises(ValueError, match="not trained goal-conditioned"):
        micro_world_model().reset(ctx, goal)


def test_numpy_in_numpy_out_torch_in_torch_out():
    wm = micro_world_model()
    ctx, acts = context(), actions()
    fn, rn = wm.rollout(ctx, acts, seed=2)
    ft, rt = wm.rollout(torch.from_numpy(ctx), torch.from_numpy(acts), seed=2)
    assert isinstance(fn, np.ndarray) and isinstance(rn, np.ndarray)
    assert isinstance(ft, torch.Tensor) and isinstance(rt, torch.Tensor) and ft.dtype == torch.uint8
    np.testing.assert_array_equal(fn, ft.numpy())
    np.testing.assert_array_equal(rn, rt.numpy())
    wm.reset(torch.from_numpy(ctx), seed=2)
    out = wm.step(torch.from_numpy(acts[:, 0]))
    assert isinstance(out.frames, torch.Tensor) and isinstance(out.rewards, torch.Tensor)
    np.testing.assert_array_equal(out.frames.numpy(), fn[:, 0])


def test_batch_rows_are_independent_rollouts():
    """B = 3 greedy rollouts in one batch == three B = 1 rollouts (no row sees another's tokens)."""
    wm = micro_world_model()
    ctx, acts = context(b=3), actions(b=3)
    frames, rewards = wm.rollout(ctx, acts, temperature=0.0)
    assert frames.shape == (3, 4, RES, RES, 3) and rewards.shape == (3, 4)
    assert not np.array_equal(frames[0], frames[1])
    for i in range(3):
        fi, ri = wm.rollout(ctx[i:i + 1], acts[i:i + 1], temperature=0.0)
        # Frames are rounded to uint8 from float convs whose batch size differs: allow one grey level.
        assert np.abs(fi[0].astype(int) - frames[i]).max() <= 1
        np.testing.assert_allclose(ri[0], rewards[i], rtol=1e-5, atol=1e-6)


@VARIANTS
def test_samples_encode_each_context_once(variant):
    """samples=S rolls each context out S times from one encoding and one prefill: the same greedy rollouts as
    the context repeated S times, while sampled rows of one context still draw their own tokens."""
    wm = micro_world_model(variant=variant)
    ctx, acts = context(b=2), actions(b=6)
    prefills = []
    prefill = wm.transformer.prefill
    wm.transformer.prefill = lambda tokens, *a, **k: prefills.append(tokens.shape[0]) or prefill(tokens, *a, **k)
    frames, rewards = wm.rollout(ctx, acts, samples=3, temperature=0.0)
    assert prefills == [2] and frames.shape == (6, 4, RES, RES, 3) and rewards.shape == (6, 4)
    f2, r2 = wm.rollout(np.repeat(ctx, 3, axis=0), acts, temperature=0.0)
    assert prefills == [2, 6]
    # Frames are rounded to uint8 from float convs whose batch size differs: allow one grey level.
    assert np.abs(frames.astype(int) - f2).max() <= 1
    np.testing.assert_allclose(rewards, r2, rtol=1e-5, atol=1e-6)

    same = np.repeat(acts[:1], 3, axis=0)
    wm.reset(ctx[:1], samples=3, seed=0)
    assert wm.step(same[:, 0]).frames.shape == (3, RES, RES, 3)
    drawn = wm.rollout(ctx[:1], same, samples=3, seed=0)[0]
    assert not np.array_equal(drawn[0], drawn[1]) and not np.array_equal(drawn[1], drawn[2])
    with pytest.raises(ValueError, match="B = 6"):
        wm.rollout(ctx, acts[:2], samples=3)
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="samples"):
            wm.rollout(ctx, acts, samples=bad)


@pytest.mark.parametrize("samples", [1, 2])
def test_long_play_reanchors_past_max_steps(samples):
    """3 x max_steps steps from one reset: each time the KV cache is full the model continues from its own latest
    frames, and the step after a re-anchor is exactly a fresh rollout from those frames (as context + observed
    frames with their actions) with the generator in the same state."""
    wm = micro_world_model()
    ctx = context(2)
    k = 3 * wm.max_steps
    acts = actions(2 * samples, k, seed=3)
    wm.reset(ctx, seed=0, samples=samples)
    keep = wm.context_frames + wm.max_steps // 2
    frames, anchors = [], []
    for i in range(k):
        if wm._state["steps"] == wm.max_steps:  # this step re-anchors: what a fresh rollout would start from
            window = np.concatenate([ctx.repeat(samples, 0), *[f[:, None] for f in frames]], 1)[:, -keep:]
            gen = wm._state["generator"].get_state()
            anchors.append((i, window, acts[:, i - (keep - T0):i], gen))
        frames.append(wm.step(acts[:, i]).frames)
    assert len(frames) == k and frames[-1].shape == (2 * samples, RES, RES, 3)
    assert len(anchors) == 1 + (k - wm.max_steps - 1) // (wm.max_steps - (keep - T0))
    for i, window, observed_acts, gen in anchors:
        g = torch.Generator().set_state(gen)
        fresh, _ = wm.rollout(window, acts[:, i:i + 1], context_actions=observed_acts, generator=g)
        np.testing.assert_array_equal(fresh[:, 0], frames[i])
    # rollout() goes past max_steps the same way, and still equals reset() + step() bit for bit.
    rolled, rewards = wm.rollout(ctx, acts, seed=0, samples=samples)
    np.testing.assert_array_equal(rolled, np.stack(frames, 1))
    assert rewards.shape == (2 * samples, k) and np.isfinite(rewards).all()
    # The window kept for re-anchoring is bounded, not the whole session.
    assert len(wm._state["frames"]) == keep and len(wm._state["actions"]) == keep
