"""Per-frame tokenizer: the same backbone without conditioning, every frame -> token_grid^2 tokens.

The paper's efficiency baseline (Appendix B.5): 4x4 tokens per frame lose the scene, 16x16 make the
transformer's sequences 16x longer. Compare it with :class:`Tokenizer` on equal footing.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn as nn

from ..config import apply_overrides, from_dict, load_preset
from ..errors import DataError
from .blocks import Decoder, Encoder
from .config import BaselineConfig
from .losses import Perceptual, l1_sum, perceptual_mean, psnr_db
from .model import PretrainedMixin, as_model_frames, patchify, unpatchify
from .quantizer import make_quantizer


class BaselineTokenizer(PretrainedMixin, nn.Module):
    KIND = "baseline-tokenizer"
    CONFIG = BaselineConfig

    def __init__(self, config: BaselineConfig | dict | None = None):
        super().__init__()
        cfg = config if isinstance(config, BaselineConfig) else from_dict(BaselineConfig, config, "tokenizer")
        self.config = cfg
        p = cfg.latent_grid // cfg.token_grid
        self.encoder = Encoder(cfg, mid_attention=cfg.mid_attention, cross_attn=False)
        self.decoder = Decoder(cfg, mid_attention=cfg.mid_attention, cross_attn=False)
        self.quant_linear = nn.Linear(cfg.embed_dim * p * p, cfg.code_dim)
        self.quantize = make_quantizer(cfg.quantizer, size=cfg.codebook_size, dim=cfg.code_dim,
                                       levels=cfg.fsq_levels, beta=cfg.commit_beta,
                                       dead_code_steps=cfg.dead_code_steps)
        self.post_quant_linear = nn.Linear(cfg.code_dim, cfg.embed_dim * p * p)
        self.patch = p

    @classmethod
    def from_preset(cls, name: str, token_grid: int | None = None, overrides: list[str] | None = None):
        """The backbone of tokenizer preset ``name`` (conditional-only fields dropped), per-frame tokens."""
        data = load_preset("tokenizer", name)
        model = apply_overrides(data.get("model") or {}, overrides)
        keep = {f.name for f in dataclasses.fields(BaselineConfig)}
        model = {k: v for k, v in model.items() if k in keep}
        if token_grid is not None:
            model["token_grid"] = token_grid
        return cls(from_dict(BaselineConfig, model, where=f"{data.get('_source', name)}: model"))

    @property
    def n_tokens(self) -> int:
        return self.config.token_grid**2

    @property
    def vocab_size(self) -> int:
        return self.quantize.vocab_size

    @property
    def resolution(self) -> int:
        return self.config.resolution

    def _encode(self, x: torch.Tensor):
        z, _ = self.encoder(x.flatten(0, 1))
        return self.quantize(self.quant_linear(patchify(z, self.patch)))

    def _decode(self, codes: torch.Tensor, b: int, t: int) -> torch.Tensor:
        out, _ = self.decoder(unpatchify(self.post_quant_linear(codes), self.patch, self.config.embed_dim))
        return out.reshape(b, t, *out.shape[1:])

    def encode(self, frames) -> torch.Tensor:
        """Frames [B, T, ...] -> ids [B, T, token_grid^2]."""
        x = as_model_frames(frames, self.resolution)
        return self._encode(x).ids.reshape(x.shape[0], x.shape[1], -1)

    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """ids [B, T, token_grid^2] -> frames float [B, T, 3, H, W]."""
        if ids.shape[-1] != self.n_tokens:
            raise DataError(f"ids: expected {self.n_tokens} tokens per frame, got {ids.shape[-1]}")
        b, t = ids.shape[:2]
        return self._decode(self.quantize.lookup(ids.reshape(b * t, -1).long()), b, t)

    def training_losses(self, frames, *, n_context: int = 0, n_future: int | None = None,
                        perceptual: Perceptual | None = None, generator: torch.Generator | None = None):
        """Same contract as ``Tokenizer.training_losses``; context and future frames are treated alike."""
        cfg = self.config
        x = as_model_frames(frames, self.resolution, "frames")
        b, t = x.shape[:2]
        idx = torch.arange(t - n_context)
        if n_future is not None and n_future < t - n_context:
            idx = torch.randperm(t - n_context, generator=generator)[:n_future].sort().values
        x = torch.cat([x[:, :n_context], x[:, n_context + idx.to(x.device)]], 1)
        q = self._encode(x)
        rec = self._decode(q.z_q, b, x.shape[1])
        l1 = l1_sum(rec, x) / x.numel()
        loss = cfg.l1_weight * l1 + cfg.commit_weight * q.loss
        perc = torch.zeros((), device=x.device)
        if perceptual is not None and cfg.perceptual_weight > 0:
            perc = perceptual_mean(perceptual, rec, x)
            loss = loss + cfg.perceptual_weight * perc
        logs = {"loss": loss.item(), "l1": l1.item(), "perceptual": perc.item(), "commit": q.loss.item(),
                "psnr": psnr_db(rec, x), "psnr_context": psnr_db(rec[:, :n_context], x[:, :n_context])
                if n_context else float("nan"), "psnr_future": psnr_db(rec[:, n_context:], x[:, n_context:]),
                "perplexity": q.perplexity, "dead_codes": q.dead_fraction}
        return loss, logs, {"frames": rec.detach(), "target": x.detach(), "future_index": idx}

    def forward(self, frames, **kwargs):
        return self.training_losses(frames, **kwargs)
