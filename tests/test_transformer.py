import dataclasses

import pytest
import torch

from ivideogpt.errors import CheckpointError, ConfigError
from ivideogpt.transformer import (
    Transformer,
    TransformerConfig,
    make_generator,
    sample_logits,
    symexp,
    symlog,
)

A = 3


pytestmark = pytest.mark.usefixtures("one_thread")


def _cfg(**kw):
    base = dict(
        n_layer=2,
        d_model=32,
        n_head=4,
        d_ff=64,
        dropout=0.0,
        max_frames=6,
        context_tokens=4,
        future_tokens=3,
        context_frames=2,
        context_vocab_size=11,
        future_vocab_size=13,
        action_dim=A,
        use_reward=True,
    )
    base.update(kw)
    return TransformerConfig(**base)


# The tiny-cpu extras: codebook-vector and spatial embeddings (square 2x2 grids for both frame kinds).
EXTRAS = dict(code_embedding=True, code_vector_dim=5, spatial_frequencies=2, future_tokens=4)
WITH_EXTRAS = pytest.mark.parametrize("kw", [{}, EXTRAS], ids=["plain", "extras"])


def _model(seed=0, **kw):
    torch.manual_seed(seed)
    m = Transformer(_cfg(**kw)).eval()
    if m.config.code_embedding:
        lay = m.layout
        m.set_code_vectors(torch.randn(lay.context_vocab, 3), torch.randn(lay.future_vocab, 2))
    with torch.no_grad():
        # Make every parameter matter: norms and the zero-initialised action projection too.
        for name, p in m.named_parameters():
            if name.endswith("layernorm.weight") or name.endswith("norm.weight"):
                p.copy_(1 + 0.3 * torch.randn_like(p))
        if m.config.action_dim:
            m.action_linear.weight.normal_(0, 0.5)
            m.action_linear.bias.normal_(0, 0.5)
    return m


def _clip(m, B=2, T=6, seed=1):
    lay = m.layout
    g = torch.Generator().manual_seed(seed)
    ctx = torch.randint(0, lay.context_vocab, (B, lay.context_frames, lay.context_tokens), generator=g)
    fut = torch.randint(0, lay.future_vocab, (B, T - lay.context_frames, lay.future_tokens), generator=g)
    actions = torch.randn(B, T - lay.context_frames, m.config.action_dim, generator=g)
    rewards = torch.randn(B, T - lay.context_frames, generator=g) * 3
    return lay.build(ctx, fut), actions, rewards


def test_symlog_symexp():
    x = torch.tensor([-1e4, -7.5, -1.0, 0.0, 0.3, 2.0, 1e4], dtype=torch.float64)
    assert torch.allclose(symexp(symlog(x)), x, rtol=1e-12, atol=1e-12)
    assert symlog(torch.tensor(torch.e - 1)).item() == pytest.approx(1.0)
    assert torch.equal(symlog(-x), -symlog(x))


def test_hf_llama_parity():
    transformers = pytest.importorskip("transformers")
    m = _model(action_dim=0, use_reward=False)
    cfg = m.config
    hf_cfg = transformers.LlamaConfig(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.d_model,
        intermediate_size=cfg.d_ff,
        num_hidden_layers=cfg.n_layer,
        num_attention_heads=cfg.n_head,
        num_key_value_heads=cfg.n_head,
        rms_norm_eps=cfg.rms_norm_eps,
        rope_theta=cfg.rope_theta,
        max_position_embeddings=cfg.max_len,
        tie_word_embeddings=False,
    )
    hf = transformers.LlamaForCausalLM(hf_cfg).eval()
    hf.load_state_dict(m.state_dict(), strict=True)  # our names are HF's names
    tokens = torch.randint(0, cfg.vocab_size, (2, cfg.max_len), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        out = hf(input_ids=tokens, output_hidden_states=True)
        ours_h = m.model(m.model.embed_tokens(tokens))
        ours_logits, _ = m(tokens)
    assert (out.hidden_states[-1] - ours_h).abs().max() <= 1e-5
    assert (out.logits - ours_logits).abs().max() <= 1e-5
    # The backbone also loads a plain LlamaModel state dict.
    m.model.load_state_dict(hf.model.state_dict(), strict=True)


def test_reference_checkpoint_maps_by_prefix_and_param_counts():
    # The reference action+reward checkpoint (paper-small) has 138,438,913 parameters named llm.*,
    # action_linear.*, reward_linear.*: same count, and dropping "llm." gives our names.
    with torch.device("meta"):
        ref_like = Transformer.from_preset("paper-small", action_dim=4, use_reward=True)
        small = Transformer.from_preset("paper-small")
        medium = Transformer.from_preset("paper-medium")
    assert ref_like.num_params() == 138_438_913
    shapes = {k: tuple(v.shape) for k, v in ref_like.state_dict().items()}
    assert shapes["model.embed_tokens.weight"] == (16386, 768)
    assert shapes["action_linear.weight"] == (768, 4) and shapes["reward_linear.weight"] == (1, 768)
    assert abs(small.num_params() / 138e6 - 1) < 0.02
    assert abs(medium.num_params() / 436e6 - 1) < 0.02
    # Prefix rename loads strictly.
    m = _model()
    ref_state = {("llm." + k if k.startswith(("model.", "lm_head.")) else k): v for k, v in m.state_dict().items()}
    m2 = Transformer(m.config)
    m2.load_state_dict({k.removeprefix("llm."): v for k, v in ref_state.items()}, strict=True)


@WITH_EXTRAS
def test_kv_cache_matches_teacher_forcing(kw):
    m = _model(**kw)
    lay = m.layout
    tokens, actions, _ = _clip(m, T=6)
    with torch.no_grad():
        full, reward = m(tokens, actions)
        cache = m.new_cache(tokens.shape[0])
        last, _ = m.prefill(tokens[:, : lay.context_length], cache)
        got = [last[:, None]]
        pos, used = lay.context_length, 0
        # Chunks of several sizes (some span an [S2] slot, some start on one), then single tokens.
        for size in [5, 1, 1, 3, 2, 1, 1, 100]:
            stop = min(pos + size, tokens.shape[1])
            k = int(lay.slot_mask(pos, stop).sum())
            logits, _ = m.forward_with_cache(tokens[:, pos:stop], cache, actions[:, used : used + k])
            got.append(logits)
            pos, used = stop, used + k
            if pos == tokens.shape[1]:
                break
    got = torch.cat(got, dim=1)
    assert cache.pos == tokens.shape[1] and used == actions.shape[1]
    assert (got - full[:, lay.context_length - 1 :]).abs().max() <= 1e-5
    # The reward is read from the final hidden state at each frame's last token.
    h = m.model(m._embed(tokens, torch.arange(tokens.shape[1]), actions))
    manual = m.reward_linear(h[:, lay.reward_positions(6)]).squeeze(-1)
    assert torch.allclose(reward, manual, atol=1e-6)


@WITH_EXTRAS
def test_causality_actions_and_tokens(kw):
    m = _model(**kw)
    lay = m.layout
    tokens, actions, _ = _clip(m, T=6)
    slots = lay.action_positions(6)
    with torch.no_grad():
        base, rew = m(tokens, actions)
        for k in range(actions.shape[1]):
            a2 = actions.clone()
            a2[:, k] += 1.0
            out, rew2 = m(tokens, a2)
            p = int(slots[k])
            assert (out[:, :p] - base[:, :p]).abs().max() <= 1e-6
            assert (out[:, p:] - base[:, p:]).abs().max() > 1e-3
            assert torch.allclose(rew2[:, :k], rew[:, :k], atol=1e-6) and not torch.allclose(rew2[:, k], rew[:, k])
        for j in [3, lay.context_length + 2, tokens.shape[1] - 2]:
            t2 = tokens.clone()
            t2[:, j] = (t2[:, j] + 1) % lay.context_vocab
            out, _ = m(t2, actions)
            assert (out[:, :j] - base[:, :j]).abs().max() <= 1e-6
            assert (out[:, j] - base[:, j]).abs().max() > 1e-3


def test_generate_frame_sampling_and_consistency():
    m = _model()
    lay = m.layout
    tokens, actions, _ = _clip(m, B=3, T=5)
    ctx = tokens[:, : lay.context_length]

    def roll(seed, frames=2, **kw):
        cache = m.new_cache(3)
        m.prefill(ctx, cache)
        g = make_generator(seed) if seed is not None else None
        outs = [m.generate_frame(cache, actions[:, f], generator=g, **kw) for f in range(frames)]
        return torch.stack([o[0] for o in outs], 1), torch.stack([o[1] for o in outs], 1), cache

    ids1, r1, cache = roll(7)
    ids2, r2, _ = roll(7)
    ids3, _, _ = roll(8)
    assert ids1.shape == (3, 2, lay.future_tokens) and r1.shape == (3, 2)
    assert torch.equal(ids1, ids2) and torch.equal(r1, r2)
    assert not torch.equal(ids1, ids3)
    assert ids1.min() >= 0 and ids1.max() < lay.future_vocab
    assert cache.pos == lay.length(lay.context_frames + 2)
    greedy, _, _ = roll(None, temperature=0.0)
    assert torch.equal(greedy, roll(5, top_k=1)[0])
    # Greedy codes are the argmax of a teacher-forced pass over the generated clip, restricted
    # to future codes, and the rewards are that pass's rewards (original scale).
    clip = lay.build(tokens[:, : lay.context_length].reshape(3, 2, -1)[:, :, 1:], greedy)
    full, rew = m(clip, actions[:, :2])
    lo, hi = lay.future_code_range
    where = lay.target_mask(4).nonzero().squeeze(-1)
    assert torch.equal(full[:, where, lo:hi].argmax(-1), greedy.reshape(3, -1))
    assert torch.allclose(roll(None, temperature=0.0)[1], symexp(rew), atol=1e-5)
    # The prefix-recompute path (the reference's way) samples the same frame from the same seed.
    cache = m.new_cache(3)
    m.prefill(clip[:, : lay.length(3)], cache, actions[:, :1])
    a = m.generate_frame(cache, actions[:, 1], generator=make_generator(11))
    b = m.generate_frame_recompute(clip[:, : lay.length(3)], actions[:, :2], generator=make_generator(11))
    assert torch.equal(a[0], b[0]) and torch.allclose(a[1], b[1], atol=1e-5)


def test_cache_batch_expansion_and_overflow():
    m = _model()
    lay = m.layout
    tokens, actions, _ = _clip(m, B=2, T=5)
    cache = m.new_cache(2)
    m.prefill(tokens[:, : lay.context_length], cache)
    big = cache.repeat_interleave(3)
    assert big.batch_size == 6 and big.pos == cache.pos
    ref, _ = m.generate_frame(cache.clone(), actions[:, 0], temperature=0.0)
    out, _ = m.generate_frame(big, actions[:, 0].repeat_interleave(3, 0), temperature=0.0)
    assert torch.equal(out, ref.repeat_interleave(3, 0))
    swapped, _ = m.generate_frame(cache.index_select([1, 0]), actions[:, 0].flip(0), temperature=0.0)
    assert torch.equal(swapped, ref.flip(0))
    small = m.new_cache(2, max_len=lay.context_length + lay.frame_length)
    m.prefill(tokens[:, : lay.context_length], small)
    m.generate_frame(small, actions[:, 0])
    with pytest.raises(ConfigError, match="KV cache full"):
        m.generate_frame(small, actions[:, 1])


def test_sample_logits_top_k_and_temperature():
    logits = torch.tensor([[0.0, 3.0, 1.0, 2.0, -1.0]]).repeat(2000, 1)
    g = make_generator(0)
    ids = sample_logits(logits, 1.0, top_k=2, generator=g)
    assert set(ids.tolist()) == {1, 3}
    assert set(sample_logits(logits, 1.0, generator=g).tolist()) == {0, 1, 2, 3, 4}
    assert (sample_logits(logits, 0.0) == 1).all()
    # Low temperature concentrates on the argmax.
    assert (sample_logits(logits, 0.05, generator=g) == 1).float().mean() > 0.99


def test_zero_initialised_actions_then_learned():
    torch.manual_seed(0)
    m = Transformer(_cfg())
    tokens, actions, rewards = _clip(m)
    with torch.no_grad():
        assert torch.equal(m(tokens, actions)[0], m(tokens)[0])
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2)
    loss, logs = m.loss(tokens, actions, rewards)
    loss.backward()
    opt.step()
    with torch.no_grad():
        diff = (m(tokens, actions)[0] - m(tokens, -actions)[0]).abs().max()
    assert diff > 1e-4


def test_action_normalisation():
    m = _model()
    mean, std = [1.0, -2.0, 0.5], [2.0, 0.5, 0.0]  # a constant dimension (std 0) is left unscaled
    tokens, actions, _ = _clip(m)
    raw = actions * torch.tensor([2.0, 0.5, 1.0]) + torch.tensor(mean)
    m2 = Transformer(dataclasses.replace(m.config, action_mean=mean, action_std=std)).eval()
    m2.load_state_dict(m.state_dict(), strict=True)
    with torch.no_grad():
        assert torch.allclose(m2(tokens, raw)[0], m(tokens, actions)[0], atol=1e-5)
    m.set_action_stats(mean, std)
    assert m.config.action_mean == mean
    with torch.no_grad():
        assert torch.allclose(m(tokens, raw)[0], m2(tokens, raw)[0], atol=1e-6)
    with pytest.raises(ValueError):
        _cfg(action_mean=[0.0])


def test_loss_matches_manual_computation():
    m = _model()
    lay = m.layout
    tokens, actions, rewards = _clip(m, T=6)
    loss, logs = m.loss(tokens, actions, rewards, reward_weight=0.5)
    logits, rew = m(tokens, actions)
    where = lay.target_mask(6).nonzero().squeeze(-1)
    ce = torch.nn.functional.cross_entropy(
        logits[:, where].reshape(-1, lay.vocab_size), tokens[:, where + 1].reshape(-1)
    )
    mse = ((rew - symlog(rewards)) ** 2).mean()
    assert logs["ce"].item() == pytest.approx(ce.item(), rel=1e-5)
    assert logs["reward_mse"].item() == pytest.approx(mse.item(), rel=1e-5)
    assert loss.item() == pytest.approx(ce.item() + 0.5 * mse.item(), rel=1e-5)
    # No loss on context frames: the first trained position is the first [S2] slot (it predicts the
    # first future code); nothing before it is trained on.
    assert where.min() == lay.context_length
    # The same loss through forward (what a DDP-wrapped model must call).
    loss2, _ = m(tokens, actions, rewards, return_loss=True, reward_weight=0.5)
    assert loss2.item() == loss.item()
    with pytest.raises(ValueError):
        m.loss(tokens, actions, rewards[:, :2])
    with pytest.raises(ValueError):
        Transformer(_cfg(action_dim=0)).loss(tokens, actions)


def test_tiny_overfit():
    torch.manual_seed(0)
    m = Transformer(_cfg(d_model=64, d_ff=128, n_layer=2, n_head=4))
    tokens, actions, rewards = _clip(m, B=4, T=6)
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3, weight_decay=0.0)
    for _ in range(300):
        loss, logs = m.loss(tokens, actions, rewards)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    assert logs["ce"] < 0.05 and logs["accuracy"] == 1.0 and logs["reward_mse"] < 0.01


@WITH_EXTRAS
def test_save_load_round_trip(tmp_path, kw):
    pytest.importorskip("ivideogpt.checkpoint")
    m = _model(**kw)
    m.set_action_stats([0.1, 0.2, 0.3], [1.0, 2.0, 3.0])
    m.save_pretrained(tmp_path / "tf")
    m2 = Transformer.from_pretrained(tmp_path / "tf")
    assert m2.config == m.config
    tokens, actions, _ = _clip(m)
    with torch.no_grad():
        assert torch.equal(m(tokens, actions)[0], m2.eval()(tokens, actions)[0])
    with pytest.raises(CheckpointError):
        Transformer.from_pretrained(tmp_path / "missing")


def test_code_embedding_inputs():
    """Codes with the same codebook vector differ only by their id embedding; each part is standardised and
    the two parts sit side by side (slots zero); a wrongly sized codebook is refused."""
    m = _model(**EXTRAS)
    lay = m.layout
    ctx, fut = torch.randn(lay.context_vocab, 3) * 5 + 2, torch.randn(lay.future_vocab, 2)
    ctx[4] = ctx[3]
    m.set_code_vectors(ctx, fut)
    v = m.code_vectors
    assert torch.allclose(v[: lay.context_vocab, :3].mean(0), torch.zeros(3), atol=1e-5)
    assert torch.allclose(v[: lay.context_vocab, :3].std(0), torch.ones(3), atol=1e-5)
    assert v[: lay.context_vocab, 3:].abs().max() == 0 and v[lay.context_vocab:lay.slot_context, :3].abs().max() == 0
    assert v[lay.slot_context:].abs().max() == 0
    with torch.no_grad():
        m.model.embed_tokens.weight[4:6] = m.model.embed_tokens.weight[3]  # ids 3, 4, 5 embed alike...
        e3, e4, e5 = (m._embed(torch.tensor([[i]]), torch.tensor([1]), None) for i in (3, 4, 5))
    assert torch.equal(e3, e4) and (e3 - e5).abs().max() > 1e-3  # ...and differ only through their vectors
    with pytest.raises(ValueError, match="code vectors"):
        m.set_code_vectors(torch.randn(lay.context_vocab, 4), fut)


def test_spatial_features_shared_by_grids():
    """The same cell gets the same features in a context and a future frame; slots get none; features
    past the precomputed table are computed, not truncated."""
    m = _model(**EXTRAS)  # 2x2 context and 2x2 future grids
    lay = m.layout
    f = m._spatial_features(0, lay.length(4))
    ctx0 = f[1:1 + lay.context_tokens]
    fut0 = f[lay.context_length + 1: lay.context_length + lay.frame_length]
    assert torch.equal(ctx0, fut0) and len(set(map(tuple, ctx0.tolist()))) == lay.context_tokens
    assert f[0].abs().max() == 0 and f[lay.context_length].abs().max() == 0
    n = m.spatial_features.shape[0]
    longer = m._spatial_features(0, n + lay.frame_length)
    assert torch.allclose(m._spatial_features(n, n + lay.frame_length), longer[n:])
    with pytest.raises(ValueError, match="square"):
        _cfg(spatial_frequencies=2, future_tokens=3)


def test_presets_build():
    with torch.device("meta"):
        tiny = Transformer.from_preset("tiny-cpu")
    c = tiny.config
    want = (c.context_tokens + 1) * c.context_frames + (c.future_tokens + 1) * (c.max_frames - c.context_frames)
    assert c.n_layer == 4 and c.max_len == want
    with pytest.raises(ConfigError):
        Transformer.from_preset("no-such-preset")
    with pytest.raises(ConfigError):
        Transformer.from_preset("tiny-cpu", bogus=1)
