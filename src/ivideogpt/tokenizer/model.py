"""The compressive tokenizer: context frames -> N tokens each, future frames -> n << N tokens each.

Context pair (``encoder``/``decoder``) sees one frame at a time. Prediction pair (``cond_encoder``/
``cond_decoder``) sees one future frame plus, through cross-attention, the maps of all T0 context
frames: the context encoder's maps on the way in, the context decoder's maps on the way out. The
future latent (g x g x embed) is cut into future_grid^2 patches, each projected to one code.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from ..config import apply_overrides, from_dict, load_preset, to_dict
from ..errors import ConfigError, DataError
from ..frames import to_model, to_uint8
from .blocks import Decoder, Encoder
from .config import TokenizerConfig, decoder_levels
from .losses import Perceptual, l1_sum, moving_pixels, perceptual_mean, psnr_db
from .quantizer import make_quantizer

KIND = "tokenizer"


@dataclass
class ContextState:
    """Everything future frames need from the context, computed once per reset.

    ``enc_kv``/``dec_kv``: per cross-attention level, the projected keys and values of the context
    encoder's / decoder's maps ([B, heads, T0*h*w, d]), plus the last context map [B, C, h, w] when the
    config has ``context_skip``; ``enc_kv`` is None when the state was built
    from token ids (then future frames can be decoded but not encoded).
    """

    ids: torch.Tensor  # [B, T0, N]
    enc_kv: list[tuple[torch.Tensor, ...]] | None
    dec_kv: list[tuple[torch.Tensor, ...]] | None  # None: built from ids, decoder attends to real frames
    recon: torch.Tensor  # decoded context frames [B, T0, 3, H, W]
    # The last real context frame [B, 3, H, W] (None when built from ids): the base a residual prediction
    # decoder adds its output to.
    last_frame: torch.Tensor | None = None

    @property
    def batch_size(self) -> int:
        return self.ids.shape[0]

    def _map(self, fn) -> ContextState:
        kv = lambda lst: None if lst is None else [tuple(fn(t) for t in item) for item in lst]
        return ContextState(fn(self.ids), kv(self.enc_kv), kv(self.dec_kv), fn(self.recon),
                            None if self.last_frame is None else fn(self.last_frame))

    def expand(self, k: int) -> ContextState:
        """Repeat each sample k times (sample-major: b0, b0, ..., b1, ...) for K rollouts per context."""
        return self._map(lambda t: t.repeat_interleave(k, dim=0))

    def __getitem__(self, idx) -> ContextState:
        if isinstance(idx, int):
            idx = slice(idx, idx + 1 if idx != -1 else None)
        return self._map(lambda t: t[idx])

    def to(self, *args, **kwargs) -> ContextState:
        return self._map(lambda t: t.to(*args, **kwargs))


def as_model_frames(frames, resolution: int, name: str = "frames") -> torch.Tensor:
    """uint8 [B, T, H, W, 3] or float [B, T, 3, H, W] in [-1, 1] -> float [B, T, 3, H, W]."""
    x = frames if isinstance(frames, torch.Tensor) else torch.as_tensor(frames)
    if x.dtype == torch.uint8:
        if x.ndim != 5 or x.shape[-1] != 3:
            raise DataError(f"{name}: uint8 frames must be [B, T, H, W, 3], got shape {tuple(x.shape)}")
        x = to_model(x)
    elif not x.is_floating_point():
        raise DataError(f"{name}: expected uint8 [B, T, H, W, 3] or float [B, T, 3, H, W], got dtype {x.dtype}")
    if x.ndim != 5 or x.shape[2] != 3:
        raise DataError(f"{name}: float frames must be [B, T, 3, H, W], got shape {tuple(x.shape)}")
    if x.shape[-1] != resolution or x.shape[-2] != resolution:
        raise DataError(f"{name}: this tokenizer takes {resolution}x{resolution} frames, "
                        f"got {x.shape[-2]}x{x.shape[-1]}")
    return x


def patchify(z: torch.Tensor, p: int) -> torch.Tensor:
    """[M, C, g, g] -> [M, (g/p)^2, p*p*C], each vector ordered (row, col, channel) like the reference."""
    m, c, h, w = z.shape
    z = z.permute(0, 2, 3, 1).reshape(m, h // p, p, w // p, p, c).permute(0, 1, 3, 2, 4, 5)
    return z.reshape(m, (h // p) * (w // p), p * p * c)


def unpatchify(x: torch.Tensor, p: int, c: int) -> torch.Tensor:
    m, n, _ = x.shape
    s = int(round(n**0.5))
    x = x.reshape(m, s, s, p, p, c).permute(0, 5, 1, 3, 2, 4)
    return x.reshape(m, c, s * p, s * p)


class PretrainedMixin:
    """from_pretrained / save_pretrained / from_preset for a module with ``config`` and class attrs
    ``KIND`` and ``CONFIG``."""

    KIND: str
    CONFIG: type

    @classmethod
    def from_pretrained(cls, path, device=None):
        from ..checkpoint import load_pretrained_dir, load_state_dict_strict

        cfg, state = load_pretrained_dir(path, cls.KIND)
        model = cls(from_dict(cls.CONFIG, cfg, where=f"{path}: config"))
        load_state_dict_strict(model, state, str(path))
        return model.to(device) if device is not None else model

    def save_pretrained(self, path) -> None:
        from ..checkpoint import save_pretrained

        save_pretrained(path, kind=self.KIND, config=to_dict(self.config), state_dict=self.state_dict())


class Tokenizer(PretrainedMixin, nn.Module):
    KIND = KIND
    CONFIG = TokenizerConfig

    def __init__(self, config: TokenizerConfig | dict | None = None):
        super().__init__()
        cfg = config if isinstance(config, TokenizerConfig) else from_dict(TokenizerConfig, config, "tokenizer")
        self.config = cfg
        self.encoder = Encoder(cfg, mid_attention=cfg.mid_attention, cross_attn=False)
        self.decoder = Decoder(cfg, mid_attention=cfg.mid_attention, cross_attn=False)
        self.cond_encoder = Encoder(cfg, mid_attention=cfg.cond_mid_attention, cross_attn=True,
                                    in_channels=6 if cfg.future_encoder_delta else 3)
        self.cond_decoder = Decoder(cfg, mid_attention=cfg.cond_mid_attention, cross_attn=True)
        p = cfg.future_patch
        cp = cfg.context_patch
        # One token per latent position (reference layout: 1x1 convs), or per cp x cp patch (linear, as the future).
        self.quant_conv = nn.Conv2d(cfg.embed_dim, cfg.code_dim, 1) if cp == 1 else \
            nn.Linear(cfg.embed_dim * cp * cp, cfg.code_dim)
        self.quantize = make_quantizer(cfg.quantizer, size=cfg.codebook_size, dim=cfg.code_dim,
                                       levels=cfg.fsq_levels, beta=cfg.commit_beta,
                                       dead_code_steps=cfg.dead_code_steps)
        self.post_quant_conv = nn.Conv2d(cfg.code_dim, cfg.embed_dim, 1) if cp == 1 else \
            nn.Linear(cfg.code_dim, cfg.embed_dim * cp * cp)
        self.quant_linear = nn.Linear(cfg.embed_dim * p * p, cfg.future_code_dim)
        self.dynamics_quantize = make_quantizer(cfg.future_kind, size=cfg.future_codebook_size,
                                                dim=cfg.future_code_dim, levels=cfg.future_fsq_levels,
                                                beta=cfg.commit_beta, dead_code_steps=cfg.dead_code_steps)
        self.post_quant_linear = nn.Linear(cfg.future_code_dim, cfg.embed_dim * p * p)

    @classmethod
    def from_preset(cls, name: str, overrides: list[str] | None = None) -> Tokenizer:
        """An untrained tokenizer from ``configs/tokenizer/<name>.yaml`` (``model:`` section)."""
        data = load_preset(KIND, name)
        model = apply_overrides(data.get("model") or {}, overrides)
        return cls(from_dict(TokenizerConfig, model, where=f"{data.get('_source', name)}: model"))

    # ---- sizes (all derived from the config) -----------------------------------------------------
    @property
    def context_grid(self) -> int:
        return self.config.context_grid or self.config.latent_grid

    @property
    def future_grid(self) -> int:
        return self.config.future_grid

    @property
    def n_context_tokens(self) -> int:
        return self.context_grid**2

    @property
    def n_future_tokens(self) -> int:
        return self.future_grid**2

    @property
    def context_vocab_size(self) -> int:
        return self.quantize.vocab_size

    @property
    def future_vocab_size(self) -> int:
        return self.dynamics_quantize.vocab_size

    @property
    def code_vector_dim(self) -> int:
        """dc + df of :meth:`code_vectors` (the transformer's ``code_vector_dim``)."""
        return self.quantize.dim + self.dynamics_quantize.dim

    @torch.no_grad()
    def code_vectors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """What every code stands for in latent space: ``(context [Vc, dc], future [Vf, df])`` float32 (a VQ
        codebook's rows; FSQ's level values). The transformer's code embedding starts from these."""
        dev = next(self.parameters()).device
        ctx = self.quantize.lookup(torch.arange(self.context_vocab_size, device=dev)).float().cpu()
        fut = self.dynamics_quantize.lookup(torch.arange(self.future_vocab_size, device=dev)).float().cpu()
        return ctx, fut

    @property
    def context_frames(self) -> int:
        return self.config.context_frames

    @property
    def resolution(self) -> int:
        return self.config.resolution

    # ---- building blocks (frames float [B, T, 3, H, W]) ------------------------------------------
    def _encode_ctx(self, x: torch.Tensor):
        b, t = x.shape[:2]
        z, feats = self.encoder(x.flatten(0, 1))
        cp, g = self.config.context_patch, self.context_grid
        if cp == 1:
            z = self.quant_conv(z).permute(0, 2, 3, 1)  # channels-last [B*T, g, g, d]
        else:
            z = self.quant_conv(patchify(z, cp)).reshape(z.shape[0], g, g, -1)
        q = self.quantize(z)
        feats = [f.reshape(b, t, *f.shape[1:]) for f in feats]
        return q, feats

    def _decode_ctx(self, codes: torch.Tensor, b: int, t: int):
        """codes [B*T, g, g, d] -> frames [B, T, 3, H, W] and the decoder maps [B, T, C, h, w]."""
        cp = self.config.context_patch
        if cp == 1:
            z = self.post_quant_conv(codes.permute(0, 3, 1, 2))
        else:
            z = unpatchify(self.post_quant_conv(codes.flatten(1, 2)), cp, self.config.embed_dim)
        out, feats = self.decoder(z)
        return out.reshape(b, t, *out.shape[1:]), [f.reshape(b, t, *f.shape[1:]) for f in feats]

    def _state(self, ids, enc_feats, dec_feats, recon, frames=None) -> ContextState:
        if ids.shape[1] != self.context_frames:
            raise DataError(f"context: this tokenizer is conditioned on exactly {self.context_frames} context "
                            f"frames, got {ids.shape[1]}")
        enc_kv = dec_kv = None
        if enc_feats is not None:
            enc_kv = [blk.context_kv(f) for blk, f in zip(self.cond_encoder.cross_att_blocks, enc_feats)]
        if self.config.future_decoder_context == "frames":
            if enc_feats is not None:  # decoder level (resolution, channels) -> the encoder map of that shape
                by_shape = {(f.shape[-1], f.shape[2]): f for f in enc_feats}
                dec_feats = [by_shape[lv] for lv in decoder_levels(self.config)]
            else:
                dec_feats = None
        if dec_feats is not None:
            dec_kv = [blk.context_kv(f) for blk, f in zip(self.cond_decoder.cross_att_blocks, dec_feats)]
        last = None if frames is None else frames[:, -1]
        return ContextState(ids.reshape(ids.shape[0], ids.shape[1], -1), enc_kv, dec_kv, recon, last)

    def _encode_fut(self, x: torch.Tensor, state: ContextState):
        if state.enc_kv is None:
            raise ValueError("encode_future needs a ContextState built from context frames, not token ids")
        if self.config.future_encoder_delta:
            x = torch.cat([x, x - self._future_base(state)[:, None]], dim=2)
        z, _ = self.cond_encoder(x.flatten(0, 1), state.enc_kv)
        return self.dynamics_quantize(self.quant_linear(patchify(z, self.config.future_patch)))

    def _decode_fut(self, codes: torch.Tensor, state: ContextState, b: int, t: int) -> torch.Tensor:
        """codes [B*T, n, d] -> frames [B, T, 3, H, W]."""
        if state.dec_kv is None:
            raise DataError("decode_future: this tokenizer decodes future frames against the real context frames "
                            "(future_decoder_context: frames); pass the context frames or a ContextState built "
                            "from them, not context token ids")
        z = unpatchify(self.post_quant_linear(codes), self.config.future_patch, self.config.embed_dim)
        out, _ = self.cond_decoder(z, state.dec_kv)
        out = out.reshape(b, t, *out.shape[1:])
        if self.config.future_residual:
            out = out + self._future_base(state)[:, None]
        return out

    def _future_base(self, state: ContextState) -> torch.Tensor:
        """The frame a future frame is a change of: the real last context frame, or with
        ``future_decoder_context: decoded`` its reconstruction from the context tokens (what the decoder sees)."""
        return state.last_frame if self.config.future_decoder_context == "frames" else state.recon[:, -1]

    def _check_batch(self, state: ContextState, b: int) -> None:
        if state.batch_size != b:
            raise DataError(f"context batch {state.batch_size} does not match {b} clips of future frames "
                            f"(use context.expand(k) for k samples per context)")

    def _as_state(self, context) -> ContextState:
        if isinstance(context, ContextState):
            return context
        if isinstance(context, torch.Tensor) and not context.is_floating_point() and context.dtype != torch.uint8:
            return self.context_state_from_ids(context)
        return self.encode_context_state(context)

    # ---- public API ---------------------------------------------------------------------------------
    def encode_context_state(self, frames) -> ContextState:
        """Context frames [B, T0, ...] -> ContextState (ids + cached keys/values for both directions)."""
        x = as_model_frames(frames, self.resolution, "context frames")
        b, t = x.shape[:2]
        q, enc_feats = self._encode_ctx(x)
        recon, dec_feats = self._decode_ctx(q.z_q, b, t)
        return self._state(q.ids.reshape(b, t, -1), enc_feats, dec_feats, recon, x)

    def context_state_from_ids(self, ids: torch.Tensor) -> ContextState:
        """Context token ids [B, T0, N] -> a decode-only ContextState."""
        b, t = ids.shape[:2]
        recon, dec_feats = self._decode_ctx(self._ctx_codes(ids), b, t)
        return self._state(ids, None, dec_feats, recon)

    def _ctx_codes(self, ids: torch.Tensor) -> torch.Tensor:
        g = self.context_grid
        if ids.shape[-1] != self.n_context_tokens:
            raise DataError(f"context ids: expected {self.n_context_tokens} tokens per frame, got {ids.shape[-1]}")
        return self.quantize.lookup(ids.reshape(-1, g, g).long())

    def encode_context(self, frames) -> torch.Tensor:
        """Frames [B, T, ...] -> context ids [B, T, N] (each frame alone)."""
        x = as_model_frames(frames, self.resolution, "context frames")
        return self._encode_ctx(x)[0].ids.reshape(x.shape[0], x.shape[1], -1)

    def decode_context(self, ids: torch.Tensor) -> torch.Tensor:
        """Context ids [B, T, N] -> frames float [B, T, 3, H, W]."""
        return self._decode_ctx(self._ctx_codes(ids), ids.shape[0], ids.shape[1])[0]

    @property
    def previous_reference(self) -> bool:
        """True when each future frame is encoded/decoded against the frame before it (``future_reference``)."""
        return self.config.future_reference == "previous"

    def encode_future(self, frames, context) -> torch.Tensor:
        """Future frames [B, T, ...] and a ContextState (or the context frames) -> ids [B, T, n].

        With ``future_reference: previous`` frame i is encoded against real frame i - 1 (the context's last frame
        for i = 0); all T references are encoded in one batch."""
        x = as_model_frames(frames, self.resolution, "future frames")
        state = self._as_state(context)
        b, t = x.shape[:2]
        self._check_batch(state, b)
        if self.previous_reference and t > 1:
            if state.last_frame is None:
                raise DataError("encode_future: pass the context frames (or a ContextState built from them), "
                                "not token ids")
            refs = torch.cat([state.last_frame[:, None], x[:, :-1]], dim=1)  # [B, T, 3, H, W]
            state = self.encode_context_state(refs.flatten(0, 1)[:, None])
            return self._encode_fut(x.flatten(0, 1)[:, None], state).ids.reshape(b, t, -1)
        return self._encode_fut(x, state).ids.reshape(b, t, -1)

    def decode_future(self, ids: torch.Tensor, context) -> torch.Tensor:
        """Future ids [B, T, n] and a ContextState (or context frames / ids) -> frames [B, T, 3, H, W].

        With ``future_reference: previous`` the frames are decoded one after the other, each against the
        previous *decoded* frame (:meth:`decode_step`), as a rollout does."""
        state = self._as_state(context)
        if self.previous_reference:
            frames = []
            for i in range(ids.shape[1]):
                frame, state = self.decode_step(ids[:, i], state)
                frames.append(frame)
            return torch.stack(frames, dim=1)
        return self._decode_ids(ids, state)

    def _decode_ids(self, ids: torch.Tensor, state: ContextState) -> torch.Tensor:
        if ids.shape[-1] != self.n_future_tokens:
            raise DataError(f"future ids: expected {self.n_future_tokens} tokens per frame, got {ids.shape[-1]}")
        b, t = ids.shape[:2]
        self._check_batch(state, b)
        codes = self.dynamics_quantize.lookup(ids.reshape(b * t, -1).long())
        return self._decode_fut(codes, state, b, t)

    def decode_step(self, ids: torch.Tensor, context) -> tuple[torch.Tensor, ContextState]:
        """One future frame's ids [B, n] -> (frame [B, 3, H, W], the ContextState to decode the next frame with).

        The state is ``context`` itself, or with ``future_reference: previous`` the decoded frame re-encoded."""
        state = self._as_state(context)
        frame = self._decode_ids(ids[:, None], state)
        return frame[:, 0], self.advance(state, frame)

    def advance(self, state: ContextState, frames: torch.Tensor) -> ContextState:
        """The state to encode/decode the frame after ``frames`` [B, T, 3, H, W] (float) with: unchanged for the
        paper's context reference; the last of ``frames``, encoded as the context, for a previous-frame one."""
        if not self.previous_reference or frames.shape[1] == 0:
            return state
        # Rounded to uint8 first: the reference is exactly the frame a user is shown (and could reset from).
        return self.encode_context_state(to_model(to_uint8(frames[:, -1:]), device=frames.device))

    def tokenize(self, clip, n_context: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Clip [B, T, ...] -> (context ids [B, T0, N], future ids [B, T - T0, n])."""
        n_context = self._check_n_context(n_context)
        x = as_model_frames(clip, self.resolution, "clip")
        state = self.encode_context_state(x[:, :n_context])
        return state.ids, self.encode_future(x[:, n_context:], state)

    def detokenize(self, ctx_ids: torch.Tensor, fut_ids: torch.Tensor, context_frames=None) -> torch.Tensor:
        """Ids -> frames [B, T0 + T, 3, H, W]. The future is decoded against the context *ids* (as in training),
        or, with ``future_decoder_context: frames``, against ``context_frames`` (then required); given context
        frames are returned in place of the decoded context."""
        if context_frames is not None and self.config.future_decoder_context == "frames":
            state = self.encode_context_state(context_frames)
        else:
            state = self.context_state_from_ids(ctx_ids)
        ctx = state.recon
        if context_frames is not None:
            ctx = as_model_frames(context_frames, self.resolution, "context frames").to(ctx)
        return torch.cat([ctx, self.decode_future(fut_ids, state)], dim=1)

    def _gan_terms(self, disc: nn.Module, rec_loss: torch.Tensor, real: torch.Tensor, fake: torch.Tensor):
        from .discriminator import adaptive_weight, generator_logits, hinge_d_loss

        real, fake = real.flatten(0, 1), fake.flatten(0, 1)
        g_loss = -generator_logits(disc, fake).mean()
        # Balanced at the prediction decoder's output layer: the future frames are what the model exists for.
        w = self.config.gan_weight * adaptive_weight(rec_loss, g_loss, self.cond_decoder.conv_out.weight)
        d_loss = hinge_d_loss(disc(real), disc(fake.detach()))
        logs = {"gan_g": g_loss.item(), "gan_d": d_loss.item(), "gan_weight": w.item()}
        return rec_loss + w * g_loss + d_loss, logs

    def _check_n_context(self, n_context: int | None) -> int:
        if n_context is None:
            return self.context_frames
        if n_context != self.context_frames:
            raise ConfigError(f"n_context={n_context}, but this tokenizer's cross-attention was built for "
                              f"context_frames={self.context_frames}")
        return n_context

    # ---- training -----------------------------------------------------------------------------------
    def training_losses(self, frames, *, n_context: int, n_future: int | None = None,
                        perceptual: Perceptual | None = None, generator: torch.Generator | None = None,
                        discriminator: nn.Module | None = None):
        """One clip batch -> (loss, logs, recon). A random subset of ``n_future`` of the frames after the
        context is reconstructed (the same subset for the whole batch; None = all of them). With a
        ``discriminator`` (and ``gan_weight`` > 0) the loss also holds the hinge-GAN terms of both players."""
        cfg = self.config
        n_context = self._check_n_context(n_context)
        x = as_model_frames(frames, self.resolution, "frames")
        b, t = x.shape[:2]
        if t <= n_context:
            raise DataError(f"frames: need more than {n_context} frames per clip (context + future), got {t}")
        ctx = x[:, :n_context]
        idx = torch.arange(t - n_context)
        if n_future is not None and n_future < t - n_context:
            idx = torch.randperm(t - n_context, generator=generator)[:n_future].sort().values
        fut = x[:, n_context + idx.to(x.device)]
        if self.previous_reference:
            # Each chosen frame with the real frame before it as its context: B * n (reference, frame) pairs.
            ctx = x[:, n_context - 1 + idx.to(x.device)].flatten(0, 1)[:, None]
            fut = fut.flatten(0, 1)[:, None]
            b = ctx.shape[0]

        cq, enc_feats = self._encode_ctx(ctx)
        ctx_rec, dec_feats = self._decode_ctx(cq.z_q, b, n_context)
        state = self._state(cq.ids.reshape(b, n_context, -1), enc_feats, dec_feats, ctx_rec, ctx)
        fq = self._encode_fut(fut, state)
        fut_rec = self._decode_fut(fq.z_q, state, b, fut.shape[1])

        l1 = (l1_sum(ctx_rec, ctx) + l1_sum(fut_rec, fut)) / (ctx.numel() + fut.numel())
        commit = cq.loss + fq.loss
        loss = cfg.l1_weight * l1 + cfg.commit_weight * commit
        motion = torch.zeros((), device=x.device)
        if cfg.motion_weight > 0:
            # What moved since the last context frame is a few % of the pixels; without extra weight the
            # background dominates the gradient and the future tokens learn to carry nothing for a long time.
            moving = moving_pixels(fut, ctx[:, -1:], cfg.motion_threshold)
            motion = ((fut_rec - fut).abs() * moving).sum() / fut.numel()
            loss = loss + cfg.motion_weight * motion
        if cfg.context_motion_weight > 0:
            # Context pixels that differ from some future frame of the clip: where the arm and pushed objects are.
            moving = moving_pixels(ctx[:, :, None], fut[:, None], cfg.motion_threshold).amax(2)
            ctx_motion = ((ctx_rec - ctx).abs() * moving).sum() / ctx.numel()
            loss = loss + cfg.context_motion_weight * ctx_motion
            motion = motion + ctx_motion
        perc = torch.zeros((), device=x.device)
        if perceptual is not None and cfg.perceptual_weight > 0:
            if cfg.perceptual_on == "both":
                perc = perceptual_mean(perceptual, torch.cat([ctx_rec, fut_rec], 1), torch.cat([ctx, fut], 1))
            else:
                perc = perceptual_mean(perceptual, fut_rec, fut)
            loss = loss + cfg.perceptual_weight * perc
        gan_logs = {}
        if discriminator is not None and cfg.gan_weight > 0:
            loss, gan_logs = self._gan_terms(discriminator, loss, torch.cat([ctx, fut], 1),
                                             torch.cat([ctx_rec, fut_rec], 1))
        logs = {
            **gan_logs,
            "loss": loss.item(), "l1": l1.item(), "perceptual": perc.item(), "motion_l1": motion.item(),
            "commit_context": cq.loss.item(), "commit_future": fq.loss.item(),
            "psnr_context": psnr_db(ctx_rec, ctx), "psnr_future": psnr_db(fut_rec, fut),
            "perplexity_context": cq.perplexity, "perplexity_future": fq.perplexity,
            "dead_codes_context": cq.dead_fraction, "dead_codes_future": fq.dead_fraction,
        }
        recon = {"context": ctx_rec.detach(), "future": fut_rec.detach(), "future_target": fut.detach(),
                 "future_index": idx}
        return loss, logs, recon

    def forward(self, frames, **kwargs):
        """Same as ``training_losses`` (so DDP's forward hooks see the training step)."""
        return self.training_losses(frames, **kwargs)
