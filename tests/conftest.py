"""Shared test helpers: single-threaded torch for modules of tiny ops, and a micro world model."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    # Tiny ops on 2 shared cores: intra-op threads mostly wait on each other (check_env measured 0.13 s with
    # 1 thread vs 2.3 s with 2), so modules of tiny models opt into running single-threaded.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# The tiny-cpu preset's tokenizer options (coarse context grid, decoding against the real context frame,
# residual output, change-aware encoder) on the micro backbone.
CPU_VARIANT = dict(channels=[16], context_grid=4, future_decoder_context="frames", future_residual=True,
                   future_encoder_delta=True, context_motion_weight=5.0)
# ... and its transformer options (codebook-vector and spatial embeddings).
CPU_TRANSFORMER = dict(code_embedding=True, spatial_frequencies=2)


def micro_world_model(*, res: int = 32, context_frames: int = 2, max_steps: int = 4, action_dim: int = 2,
                      use_reward: bool = True, goal_conditioned: bool = False, seed: int = 0,
                      action_mean: list[float] | None = None, action_std: list[float] | None = None,
                      tokenizer_overrides: dict | None = None, transformer_overrides: dict | None = None):
    """A 32x32 world model with 16 + 4 tokens per frame and 2 layers, built in milliseconds.

    The zero-initialised action projection is re-drawn so actions matter, and init_std 0.1 spreads the logits
    so greedy argmax has no near-ties between the KV-cached path and a full forward.
    """
    from ivideogpt import WorldModel
    from ivideogpt.tokenizer import Tokenizer
    from ivideogpt.transformer import Transformer, TransformerConfig
    from ivideogpt.world_model import sequence_fields

    torch.manual_seed(seed)
    tok = Tokenizer({**dict(resolution=res, stem="patch", stem_patch=4, channels=[16, 16], layers_per_block=1,
                         decoder_layers_per_block=1, norm_groups=8, embed_dim=8, quantizer="fsq",
                         fsq_levels=[4, 4], future_fsq_levels=[4, 4], context_frames=context_frames,
                         future_grid=2, cross_attn_max_res=8, cross_attn_heads=2, cross_attn_dropout=0.0,
                         mid_attention=False, cond_mid_attention=False), **(tokenizer_overrides or {})})
    seq = sequence_fields(tok)
    seq["context_frames"] += int(goal_conditioned)
    stats = {}
    if action_dim and action_mean is not None:
        stats = {"action_mean": action_mean[:action_dim], "action_std": action_std[:action_dim]}
    cfg = TransformerConfig(n_layer=2, d_model=32, n_head=2, d_ff=64, dropout=0.0, init_std=0.1,
                            max_frames=seq["context_frames"] + max_steps, action_dim=action_dim,
                            use_reward=use_reward, **stats, **seq, **(transformer_overrides or {}))
    tr = Transformer(cfg)
    if action_dim:
        torch.nn.init.normal_(tr.action_linear.weight, std=1.0)
    return WorldModel(tok, tr, goal_conditioned=goal_conditioned).eval()
