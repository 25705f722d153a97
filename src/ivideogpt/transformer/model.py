"""The interactive transformer: a LLaMA decoder over the token layout of layout.py, with an action
input at the [S2] slots, a reward head, and a static KV cache for frame-by-frame rollouts.

Parameter names follow ``transformers``' LlamaForCausalLM (``model.embed_tokens``,
``model.layers.i.self_attn.q_proj``, ..., ``model.norm``, ``lm_head``): ``self.model`` loads a
``LlamaModel`` state dict as is, and a reference checkpoint (``llm.*`` + ``action_linear`` +
``reward_linear``) maps by dropping the ``llm.`` prefix.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import from_dict, load_preset, to_dict
from .cache import KVCache
from .config import TransformerConfig
from .sampling import sample_logits

KIND = "transformer"


def symlog(x: torch.Tensor) -> torch.Tensor:
    """Rewards are regressed in symlog space so large and small scales train alike (DreamerV3)."""
    return torch.sign(x) * torch.log1p(x.abs())


def symexp(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * torch.expm1(x.abs())


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        # Normalise in float32 then cast back, as HF Llama does (matters in bf16).
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


class Rotary(nn.Module):
    """Rotary position embedding, HF Llama convention (halves rotated, not interleaved pairs)."""

    def __init__(self, head_dim: int, theta: float):
        super().__init__()
        self.head_dim, self.theta = head_dim, theta

    def forward(self, start: int, length: int, dtype, device):
        # Computed in float32 on the fly (cheap): no buffer for model.to(bfloat16) to round, and no
        # table to outgrow when a cache is longer than max_frames.
        exponent = torch.arange(0, self.head_dim, 2, dtype=torch.int64, device=device).float() / self.head_dim
        inv_freq = 1.0 / (self.theta**exponent)
        pos = torch.arange(start, start + length, device=device, dtype=torch.float32)
        freqs = pos[:, None] * inv_freq[None, :]
        emb = torch.cat([freqs, freqs], dim=-1)
        return emb.cos().to(dtype), emb.sin().to(dtype)


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


class Attention(nn.Module):
    def __init__(self, cfg: TransformerConfig, layer_idx: int):
        super().__init__()
        d = cfg.d_model
        self.n_head, self.head_dim, self.layer_idx = cfg.n_head, cfg.head_dim, layer_idx
        self.dropout = cfg.dropout
        self.q_proj = nn.Linear(d, d, bias=False)
        self.k_proj = nn.Linear(d, d, bias=False)
        self.v_proj = nn.Linear(d, d, bias=False)
        self.o_proj = nn.Linear(d, d, bias=False)

    def forward(self, x, cos, sin, cache: KVCache | None = None):
        B, l, D = x.shape
        q = self.q_proj(x).view(B, l, self.n_head, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(B, l, self.n_head, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(B, l, self.n_head, self.head_dim).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        mask, causal = None, True
        if cache is not None:
            start = cache.pos
            k, v = cache.update(self.layer_idx, k, v)
            k, v = k.to(q.dtype), v.to(q.dtype)
            if l == 1:
                causal = False  # one query sees every cached key
            elif start > 0:
                # SDPA's is_causal aligns top-left; with a prefix in the cache the mask is offset.
                qpos = torch.arange(start, start + l, device=x.device)
                mask, causal = qpos[:, None] >= torch.arange(start + l, device=x.device)[None, :], False
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=causal, dropout_p=self.dropout if self.training else 0.0
        )
        return self.o_proj(y.transpose(1, 2).reshape(B, l, D))


class MLP(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.d_model, cfg.d_ff, bias=False)
        self.up_proj = nn.Linear(cfg.d_model, cfg.d_ff, bias=False)
        self.down_proj = nn.Linear(cfg.d_ff, cfg.d_model, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, cfg: TransformerConfig, layer_idx: int):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.d_model, cfg.rms_norm_eps)
        self.self_attn = Attention(cfg, layer_idx)
        self.post_attention_layernorm = RMSNorm(cfg.d_model, cfg.rms_norm_eps)
        self.mlp = MLP(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x, cos, sin, cache=None):
        x = x + self.drop(self.self_attn(self.input_layernorm(x), cos, sin, cache))
        return x + self.drop(self.mlp(self.post_attention_layernorm(x)))


class LlamaBackbone(nn.Module):
    """Same parameter names as ``transformers.LlamaModel``: its state dict loads as is."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.layers = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layer))
        self.norm = RMSNorm(cfg.d_model, cfg.rms_norm_eps)
        self.rotary = Rotary(cfg.head_dim, cfg.rope_theta)

    def forward(self, x, start: int = 0, cache: KVCache | None = None):
        """Embeddings ``x [B,l,D]`` at absolute positions ``start..start+l-1`` -> normed hidden."""
        cos, sin = self.rotary(start, x.shape[1], x.dtype, x.device)
        for layer in self.layers:
            x = layer(x, cos, sin, cache)
        return self.norm(x)


class Transformer(nn.Module):
    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = config
        self.layout = config.layout
        self.model = LlamaBackbone(config)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        A = config.action_dim
        if A:
            self.action_linear = nn.Linear(A, config.d_model)
            # Statistics live in the config (config.json); buffers are derived, not saved, so a
            # reference/HF state dict loads strictly.
            self.register_buffer("action_mean", torch.zeros(A), persistent=False)
            self.register_buffer("action_std", torch.ones(A), persistent=False)
            self._fill_action_stats()
        self.reward_linear = nn.Linear(config.d_model, 1) if config.use_reward else None
        if config.code_embedding:
            # Persistent: the tokenizer's codebook as it was when this transformer was made (set_code_vectors),
            # saved with it so a loaded model embeds exactly as it was trained.
            self.register_buffer("code_vectors", torch.zeros(config.vocab_size, config.code_vector_dim))
            self.code_proj = nn.Linear(config.code_vector_dim, config.d_model, bias=False)
        if config.frame_embedding:
            self.frame_embed = nn.Embedding(config.segment_frames or config.max_frames, config.d_model)
        if config.spatial_frequencies:
            self.spatial_proj = nn.Linear(4 * config.spatial_frequencies, config.d_model, bias=False)
            self.register_buffer("spatial_features", self._spatial_features(0, config.max_len), persistent=False)
        self.apply(self._init_weights)
        if A:
            # Zero-initialised (as in the reference): a pre-trained action-free model is unchanged
            # at the start of action-conditioned fine-tuning.
            nn.init.zeros_(self.action_linear.weight)
            nn.init.zeros_(self.action_linear.bias)

    def _init_weights(self, m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, mean=0.0, std=self.config.init_std)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)

    # -- embedding extras (config.code_embedding / spatial_frequencies) ------------------------
    @torch.no_grad()
    def set_code_vectors(self, context: torch.Tensor, future: torch.Tensor) -> None:
        """Codebook vectors ``context [Vc, dc]`` and ``future [Vf, df]`` (the tokenizer's) -> the code embedding's
        input: each part standardised per dim over its codes, the two side by side; slots stay zero."""
        lay, V = self.layout, self.config.vocab_size
        if context.shape[0] != lay.context_vocab or future.shape[0] != lay.future_vocab or \
                context.shape[1] + future.shape[1] != self.config.code_vector_dim:
            raise ValueError(f"code vectors must be [{lay.context_vocab}, dc] and [{lay.future_vocab}, df] with "
                             f"dc + df = {self.config.code_vector_dim}, got {tuple(context.shape)} and "
                             f"{tuple(future.shape)}")

        def std(v):
            v = v.float()
            return (v - v.mean(0)) / v.std(0).clamp(min=1e-6)

        vec = torch.zeros(V, self.config.code_vector_dim)
        dc = context.shape[1]
        vec[: lay.context_vocab, :dc] = std(context)
        vec[lay.context_vocab : lay.context_vocab + lay.future_vocab, dc:] = std(future)
        self.code_vectors.copy_(vec)

    def _spatial_features(self, start: int, stop: int) -> torch.Tensor:
        """sin/cos of each code token's cell centre at frequencies pi*1..pi*K per axis; zero at slots (for local
        positions ``start .. stop-1``)."""
        xy, valid = self.layout.spatial_coords(start, stop)
        ang = xy[:, :, None] * (math.pi * torch.arange(1, self.config.spatial_frequencies + 1))
        f = torch.cat([ang.sin(), ang.cos()], dim=-1).flatten(1)
        return f * valid[:, None]

    # -- actions ------------------------------------------------------------------------------
    def _fill_action_stats(self):
        cfg = self.config
        with torch.no_grad():
            if cfg.action_mean:
                self.action_mean.copy_(torch.tensor(cfg.action_mean, dtype=torch.float32))
            if cfg.action_std:
                std = torch.tensor(cfg.action_std, dtype=torch.float32)
                # A constant action dimension has std 0: leave it unscaled instead of dividing by 0.
                self.action_std.copy_(torch.where(std > 1e-8, std, torch.ones_like(std)))

    def set_action_stats(self, mean, std) -> None:
        """Set the per-dimension action statistics (from the dataset); saved with the config."""
        mean, std = [float(x) for x in mean], [float(x) for x in std]
        dataclasses.replace(self.config, action_mean=mean, action_std=std)  # validates before changing anything
        self.config.action_mean, self.config.action_std = mean, std
        self._fill_action_stats()

    def normalize_actions(self, actions: torch.Tensor) -> torch.Tensor:
        return (actions.float() - self.action_mean.float()) / self.action_std.float()

    def _embed(self, tokens, local: torch.Tensor, actions):
        """Token embeddings, plus each action's projection at the [S2] slots inside this chunk.

        ``local [l]``: the tokens' positions within their segments (layout.local_positions). ``actions [B, k,
        A]`` are the actions for the k [S2] slots in this chunk, in order (for a whole clip: one per future frame).
        """
        x = self.model.embed_tokens(tokens)
        if self.config.code_embedding:
            x = x + self.code_proj(self.code_vectors[tokens].to(self.code_proj.weight.dtype)).to(x.dtype)
        if self.config.spatial_frequencies:
            table = self.spatial_features
            if int(local.max()) >= table.shape[0]:
                table = self._spatial_features(0, int(local.max()) + 1).to(x.device)
            f = table[local.to(table.device)]
            x = x + self.spatial_proj(f.to(self.spatial_proj.weight.dtype)).to(x.dtype)
        if self.config.frame_embedding:
            idx = self.layout.frame_index(local).clamp(max=self.frame_embed.num_embeddings - 1)
            x = x + self.frame_embed(idx.to(x.device))
        if actions is None:
            return x
        if not self.config.action_dim:
            raise ValueError("this transformer is action-free (action_dim = 0) but actions were given")
        idx = self.layout.is_slot(local).nonzero().squeeze(-1).to(x.device)
        if actions.ndim != 3 or actions.shape[1] != len(idx) or actions.shape[2] != self.config.action_dim:
            raise ValueError(
                f"actions must be [B, {len(idx)}, {self.config.action_dim}] for the [S2] slots of this "
                f"chunk ({tokens.shape[1]} tokens), got {tuple(actions.shape)}"
            )
        a = self.action_linear(self.normalize_actions(actions.to(x.device)).to(self.action_linear.weight.dtype))
        return x.index_add(1, idx, a.to(x.dtype))

    def _hidden(self, tokens, actions=None, cache: KVCache | None = None, local: torch.Tensor | None = None):
        """``local``: positions within the segments (default: the chunk continues the cache's segment, or is
        one segment from position 0)."""
        start = cache.pos if cache is not None else 0
        if local is None:
            first = start - (cache.segment_start if cache is not None else 0)
            local = torch.arange(first, first + tokens.shape[1])
        h = self.model(self._embed(tokens, local, actions), start, cache)
        if cache is not None:
            cache.advance(tokens.shape[1])
        return h

    def _reward(self, h):
        return self.reward_linear(h).squeeze(-1).float()

    # -- teacher-forced -----------------------------------------------------------------------
    def local_positions(self, length: int) -> torch.Tensor:
        """Positions within their segments of a teacher-forced sequence of ``length`` tokens: segments of
        config.segment_frames, as training lays them out."""
        return self.layout.local_positions_of_length(length, self.config.segment_frames)

    def forward(
        self,
        tokens: torch.Tensor,
        actions: torch.Tensor | None = None,
        rewards: torch.Tensor | None = None,
        *,
        return_loss: bool = False,
        reward_weight: float = 1.0,
    ):
        """``tokens [B,L]``, ``actions [B,F,A]`` (one per [S2] slot) -> ``(logits [B,L,V], reward [B,F])``.

        ``reward`` is in symlog space (None without a reward head); F = complete future frames in tokens.
        With ``return_loss=True`` returns :meth:`loss` instead: a DDP/FSDP-wrapped model must be
        trained through ``forward`` (``model(tokens, actions, rewards, return_loss=True)``) so that
        gradients are synchronised.
        """
        if return_loss:
            return self.loss(tokens, actions, rewards, reward_weight)
        local = self.local_positions(tokens.shape[1])
        h = self._hidden(tokens, actions, local=local)
        reward = None
        if self.reward_linear is not None:
            pos = self.layout.is_frame_end(local).nonzero().squeeze(-1).to(h.device)
            reward = self._reward(h[:, pos])
        return self.lm_head(h), reward

    def loss(self, tokens, actions=None, rewards=None, reward_weight: float = 1.0):
        """Cross-entropy on future-frame tokens only (+ reward MSE in symlog space).

        ``tokens [B,L]`` a whole clip (layout.build); ``actions [B,F,A]``: ``actions[:, f]`` leads
        to future frame f (dataset actions ``[B,T,A]`` taken after frame t: ``actions[:, T0-1:T-1]``);
        ``rewards [B,F]`` in the original scale, ``rewards[:, f]`` earned on arriving at future
        frame f. Returns ``(loss, logs)``; logs are detached 0-d tensors (ce, accuracy, reward_mse).
        """
        local = self.local_positions(tokens.shape[1])
        h = self._hidden(tokens, actions, local=local)
        where = self.layout.target_mask_at(local).nonzero().squeeze(-1).to(tokens.device)
        # Only the target positions go through the (large) vocabulary head.
        logits = self.lm_head(h[:, where]).float()
        targets = tokens[:, where + 1]
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        logs = {"ce": ce.detach(), "accuracy": (logits.argmax(-1) == targets).float().mean().detach()}
        loss = ce
        if self.reward_linear is not None and rewards is not None:
            pos = self.layout.is_frame_end(local).nonzero().squeeze(-1).to(tokens.device)
            if tuple(rewards.shape) != (tokens.shape[0], len(pos)):
                raise ValueError(f"rewards must be [B, F] = {[tokens.shape[0], len(pos)]}, got {list(rewards.shape)}")
            mse = F.mse_loss(self._reward(h[:, pos]), symlog(rewards.float().to(h.device)))
            loss = loss + reward_weight * mse
            logs["reward_mse"] = mse.detach()
        return loss, logs

    # -- decoding with the static KV cache ----------------------------------------------------
    def new_cache(self, batch: int, max_len: int | None = None, device=None, dtype=None) -> KVCache:
        w = self.lm_head.weight
        cfg = self.config
        return KVCache.empty(
            cfg.n_layer,
            batch,
            cfg.n_head,
            max_len or cfg.max_len,
            cfg.head_dim,
            device=device or w.device,
            dtype=dtype or w.dtype,
        )

    def forward_with_cache(self, tokens, cache: KVCache, actions=None, last_only: bool = False,
                           plan: list[int] | None = None):
        """Run a chunk ``tokens [B,l]`` (any l >= 1) after what the cache holds, and append it.

        ``actions [B,k,A]`` for the k [S2] slots inside the chunk. ``plan``: the chunk is whole segments of these
        frames (it then starts a new segment, and the cache stands in its last one afterwards); default: the
        chunk continues the cache's current segment. Returns ``(logits, hidden)``: logits ``[B,l,V]``
        (``[B,V]`` for the last position when ``last_only``), hidden ``[B,l,D]``.
        """
        local = None
        if plan is not None:
            local = self.layout.local_positions(plan)
            if len(local) != tokens.shape[1]:
                raise ValueError(f"plan {plan} lays out {len(local)} tokens, the chunk has {tokens.shape[1]}")
            last_start = cache.pos + tokens.shape[1] - self.layout.length(plan[-1])
        h = self._hidden(tokens, actions, cache, local)
        if plan is not None:
            cache.segment_start = last_start
        return self.lm_head(h[:, -1] if last_only else h), h

    @torch.no_grad()
    def prefill(self, tokens, cache: KVCache, actions=None, plan: list[int] | None = None):
        """Reset ``cache`` and run the prefix ``tokens [B,L0]`` into it -> ``(logits_last [B,V], hidden)``.
        ``plan``: frames per segment of a prefix of several segments (default: one)."""
        cache.reset()
        return self.forward_with_cache(tokens, cache, actions, last_only=True, plan=plan)

    @torch.no_grad()
    def generate_frame(
        self,
        cache: KVCache,
        action: torch.Tensor | None = None,
        *,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
    ):
        """Predict the next frame: feed [S2] (+ action), sample n future codes one at a time.

        The last sampled token is fed too, so the reward head reads its hidden state and the
        cache ends on a frame boundary, ready for the next call. Returns ``(future_ids [B,n]`` in
        the future-code space ``0..Vf-1``, ``reward [B]`` original scale or None).
        """
        lay = self.layout
        lay.future_frame_at(cache.pos - cache.segment_start)  # must stand on a frame boundary
        B = cache.batch_size
        device = cache.k.device
        lo, hi = lay.future_code_range
        whole = self.config.sample_vocab == "all"
        # Default: slots and context codes are never sampled. "all" (the reference's generate): every id can
        # be drawn and is fed back as drawn; the frame reads it clamped into the future codes.
        head = self.lm_head.weight if whole else self.lm_head.weight[lo:hi]
        tok = torch.full((B, 1), lay.slot_future, dtype=torch.long, device=device)
        h = self._hidden(tok, None if action is None else action[:, None], cache)
        ids = []
        for _ in range(lay.future_tokens):
            nxt = sample_logits(F.linear(h[:, -1], head), temperature, top_k, generator)
            if whole:
                ids.append((nxt - lo).clamp(0, hi - lo - 1))
                h = self._hidden(nxt[:, None], None, cache)
                continue
            ids.append(nxt)
            h = self._hidden((nxt + lo)[:, None], None, cache)
        reward = symexp(self._reward(h[:, -1])) if self.reward_linear is not None else None
        return torch.stack(ids, dim=1), reward

    @torch.no_grad()
    def generate_frame_recompute(
        self,
        tokens: torch.Tensor,
        actions: torch.Tensor | None = None,
        *,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
    ):
        """The reference's way (for benchmarks): re-run the whole prefix for every frame.

        ``tokens [B,L]`` all tokens so far (ending on a frame boundary); ``actions [B,F+1,A]``:
        one per [S2] slot in ``tokens`` plus the one leading to the new frame. A fresh cache lives
        only for this frame, like ``transformers``' generate called once per frame.
        """
        cache = self.new_cache(tokens.shape[0], max_len=tokens.shape[1] + self.layout.frame_length)
        self.prefill(tokens, cache, None if actions is None else actions[:, :-1])
        return self.generate_frame(
            cache,
            None if actions is None else actions[:, -1],
            temperature=temperature,
            top_k=top_k,
            generator=generator,
        )

    # -- checkpoints --------------------------------------------------------------------------
    @classmethod
    def from_preset(cls, name: str, **overrides) -> Transformer:
        """An untrained model from ``configs/transformer/<name>.yaml`` (or a YAML path)."""
        data = load_preset(KIND, name).get("model") or {}
        data.update(overrides)
        return cls(from_dict(TransformerConfig, data, where=f"transformer preset '{name}' model"))

    @classmethod
    def from_pretrained(cls, path, map_location="cpu") -> Transformer:
        from ..checkpoint import load_pretrained_dir, load_state_dict_strict

        cfg_dict, state = load_pretrained_dir(path, KIND)
        model = cls(from_dict(TransformerConfig, cfg_dict, where=f"{path}/config.json"))
        load_state_dict_strict(model, state, str(path))
        return model.to(map_location)

    def save_pretrained(self, path) -> None:
        from ..checkpoint import save_pretrained

        save_pretrained(path, kind=KIND, config=to_dict(self.config), state_dict=self.state_dict())

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
