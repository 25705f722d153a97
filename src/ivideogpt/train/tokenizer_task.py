"""The tokenizer stage for the training engine, and the reconstruction used by validation and the CLI."""

from __future__ import annotations

from pathlib import Path

import torch

from ..checkpoint import load_pretrained_dir, load_state_dict_strict
from ..frames import to_uint8
from .config import TrainConfig

DISCRIMINATOR_FILE = "discriminator.safetensors"


@torch.no_grad()
def reconstruct(tokenizer, frames: torch.Tensor):
    """Clip float [B,T,3,H,W] -> (reconstruction, context ids, future ids or None), through the public
    encode/decode path rollouts use."""
    t0 = tokenizer.context_frames
    ctx = tokenizer.encode_context_state(frames[:, :t0])  # also holds the decoded context (ctx.recon)
    if frames.shape[1] == t0:
        return ctx.recon, ctx.ids, None
    fut_ids = tokenizer.encode_future(frames[:, t0:], ctx)
    return torch.cat([ctx.recon, tokenizer.decode_future(fut_ids, ctx)], dim=1), ctx.ids, fut_ids


def recon_report(tokenizer, frames: torch.Tensor, n_show: int = 4):
    """PSNR/SSIM of context and future reconstructions, a PNG grid (rows: truth, reconstruction), and the
    (context, future) token ids for codebook-usage counts."""
    from ..data.contact_sheet import contact_sheet
    from ..eval.metrics import psnr, ssim

    t0 = tokenizer.context_frames
    rec, ctx_ids, fut_ids = reconstruct(tokenizer, frames)
    real_u8, rec_u8 = to_uint8(frames), to_uint8(rec)
    p, s = psnr(real_u8, rec_u8), ssim(real_u8, rec_u8)  # [B, T]
    logs = {"psnr_context": float(p[:, :t0].mean()), "ssim_context": float(s[:, :t0].mean())}
    if frames.shape[1] > t0:
        logs.update(psnr_future=float(p[:, t0:].mean()), ssim_future=float(s[:, t0:].mean()))
    rows = []
    for b in range(min(n_show, frames.shape[0])):
        rows += [real_u8[b].cpu().numpy(), rec_u8[b].cpu().numpy()]
    return logs, contact_sheet(rows), (ctx_ids, fut_ids)


class TokenizerTrainModule(torch.nn.Module):
    """forward(batch, step) -> (loss, logs); the perceptual net is frozen and never saved."""

    def __init__(self, tokenizer, perceptual, n_future: int | None, seed: int):
        super().__init__()
        self.tokenizer = tokenizer
        self.perceptual = perceptual
        self.n_future, self.seed = n_future, seed
        cfg = tokenizer.config
        self.discriminator = None
        if getattr(cfg, "gan_weight", 0) > 0:
            from ..tokenizer.discriminator import PatchDiscriminator

            self.discriminator = PatchDiscriminator(cfg.disc_channels, cfg.disc_layers)

    def forward(self, batch, step: int):
        # The random subset of future frames is a function of (seed, step): resume stays exact.
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        gan_on = self.discriminator is not None and step >= self.tokenizer.config.gan_start_step
        loss, logs, _ = self.tokenizer.training_losses(
            batch["frames"], n_context=self.tokenizer.context_frames, n_future=self.n_future,
            perceptual=self.perceptual, generator=gen, discriminator=self.discriminator if gan_on else None,
        )
        if self.discriminator is not None and not gan_on:
            # Every parameter takes part in every step (DDP requires it); before the start the terms weigh 0.
            loss = loss + 0.0 * sum(p.sum() for p in self.discriminator.parameters())
        return loss, logs


class TokenizerTask:
    name = "tokenizer"

    def __init__(self, model_config: dict, cfg: TrainConfig, sources, init: str | None = None):
        self.model_config, self.cfg, self.sources, self.init = model_config, cfg, sources, init
        self._module = None

    def _build_tokenizer(self):
        from ..config import from_dict
        from ..tokenizer import Tokenizer, TokenizerConfig

        if self.init:
            return Tokenizer.from_pretrained(self.init)
        return Tokenizer(from_dict(TokenizerConfig, self.model_config, where="tokenizer model config"))

    def trainable(self):
        if self._module is not None:
            return self._module
        torch.manual_seed(self.cfg.seed)  # the same seed gives the same initial weights, run after run
        tok = self._build_tokenizer()
        self.resolution = tok.config.resolution
        perceptual = None
        if getattr(tok.config, "perceptual_weight", 0) > 0:
            from ..eval.stlpips import STLPIPS

            perceptual = STLPIPS()
        self._module = TokenizerTrainModule(tok, perceptual, self.cfg.n_future, self.cfg.seed)
        return self._module

    def _dataset(self, split: str):
        from ..data.augment import AugmentConfig
        from ..data.clips import ClipDataset

        a = self.cfg.augment
        augment = None
        if split == "train" and a.enabled:
            augment = AugmentConfig(crop_scale=tuple(a.crop_scale), brightness=a.brightness, contrast=a.contrast,
                                    saturation=a.saturation, hue=a.hue)
        return ClipDataset(self.sources, self.cfg.clip_len, split=split, resolution=self.resolution,
                           augment=augment, seed=self.cfg.seed)

    def train_dataset(self):
        return self._dataset("train")

    def val_dataset(self):
        ds = self._dataset("val")
        return ds if len(ds) > 0 else None

    @torch.no_grad()
    def validate(self, module, batches):
        logs_sum: dict[str, float] = {}
        image = None
        ctx_ids, fut_ids = [], []
        for i, b in enumerate(batches):
            logs, img, (c, f) = recon_report(module.tokenizer, b["frames"])
            image = img if i == 0 else image
            for k, v in logs.items():
                logs_sum[k] = logs_sum.get(k, 0.0) + v / len(batches)
            ctx_ids.append(c.flatten())
            if f is not None:
                fut_ids.append(f.flatten())
        # Codebook health on held-out data: a collapsed future codebook means the decoder copies the context.
        logs_sum["context_codes_used"] = float(torch.cat(ctx_ids).unique().numel())
        if fut_ids:
            logs_sum["future_codes_used"] = float(torch.cat(fut_ids).unique().numel())
        return logs_sum, image

    def save_model(self, module, path: Path):
        module.tokenizer.save_pretrained(path)
        if module.discriminator is not None:  # training state: beside the model, not inside it
            from safetensors.torch import save_file

            save_file(module.discriminator.state_dict(), str(path.parent / DISCRIMINATOR_FILE))

    def load_model(self, module, path: Path):
        _, state = load_pretrained_dir(path, "tokenizer")
        load_state_dict_strict(module.tokenizer, state, str(path))
        if module.discriminator is not None:
            from safetensors.torch import load_file

            from ..errors import CheckpointError

            f = path.parent / DISCRIMINATOR_FILE
            if not f.exists():
                raise CheckpointError(f"{f}: missing; this run trains with gan_weight > 0 and cannot resume "
                                      "without its discriminator")
            load_state_dict_strict(module.discriminator, load_file(str(f)), str(f))
