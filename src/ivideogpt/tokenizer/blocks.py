"""Conv encoder/decoder (VQGAN / diffusers layout) with optional context cross-attention.

Module and parameter names follow the reference checkpoint (``down_blocks.i.resnets.j.conv1``...), so a
paper-sized model has exactly the reference's state-dict keys and shapes. Every normalisation acts on
one frame's map (GroupNorm), never across frames: a future frame's tokens depend only on that frame
and the context.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .attention import CrossAttention, SelfAttention2d
from .config import BackboneConfig, TokenizerConfig


def group_norm(groups: int, channels: int) -> nn.Module:
    """GroupNorm (reference), or nothing with ``groups == 0``: GroupNorm removes each frame's spatially
    constant offsets (the table colour), which small CPU-trained models then take long to recover."""
    return nn.GroupNorm(groups, channels, eps=1e-6) if groups > 0 else nn.Identity()


class ResnetBlock(nn.Module):
    def __init__(self, cin: int, cout: int, groups: int):
        super().__init__()
        self.norm1 = group_norm(groups, cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = group_norm(groups, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return (self.conv_shortcut(x) if self.conv_shortcut is not None else x) + h


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1)))  # asymmetric pad, as diffusers' Downsample2D(padding=0)


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class ResStage(nn.Module):
    """A down block (resnets, then optional 2x down) or an up block (resnets, then optional 2x up)."""

    def __init__(self, cin: int, cout: int, layers: int, groups: int, resample: str | None):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock(cin if i == 0 else cout, cout, groups) for i in range(layers)])
        if resample == "down":
            self.downsamplers = nn.ModuleList([Downsample(cout)])
        elif resample == "up":
            self.upsamplers = nn.ModuleList([Upsample(cout)])

    def forward(self, x):
        for r in self.resnets:
            x = r(x)
        for s in getattr(self, "downsamplers", getattr(self, "upsamplers", [])):
            x = s(x)
        return x


class MidBlock(nn.Module):
    def __init__(self, channels: int, groups: int, attention: bool):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock(channels, channels, groups) for _ in range(2)])
        self.attentions = nn.ModuleList([SelfAttention2d(channels, groups)] if attention else [])

    def forward(self, x):
        x = self.resnets[0](x)
        for a in self.attentions:
            x = a(x)
        return self.resnets[1](x)


def cross_attn_levels(cfg: BackboneConfig) -> tuple[list[int], list[int]]:
    """Encoder down-block indices and decoder stage indices (0 = after the mid block, i+1 = after up
    block i) whose output map is small enough for cross-attention. Empty for a BaselineConfig."""
    if not isinstance(cfg, TokenizerConfig):
        return [], []
    m = cfg.cross_attn_max_res
    enc_res, dec_res = cfg.level_resolutions(), cfg.decoder_resolutions()
    return [i for i, r in enumerate(enc_res) if r <= m], [i for i, r in enumerate(dec_res) if r <= m]


def _cross_blocks(cfg: TokenizerConfig, levels: list[int], chans: list[int], res: list[int]) -> nn.ModuleList:
    return nn.ModuleList([
        CrossAttention(chans[i], res[i] ** 2, cfg.context_frames * res[i] ** 2, cfg.cross_attn_heads,
                       cfg.cross_attn_dropout, cfg.norm_groups, cfg.context_skip)
        for i in levels
    ])


class Encoder(nn.Module):
    """frames [M, 3, H, W] -> latent [M, embed_dim, g, g] and the maps at the cross-attention levels.

    With ``cross_attn`` (prediction encoder) each of those maps is first updated by attending to the
    context's keys/values; without it (context encoder) the maps are returned for the context state.
    """

    def __init__(self, cfg: BackboneConfig, *, mid_attention: bool, cross_attn: bool, in_channels: int = 3):
        super().__init__()
        ch, g = cfg.channels, cfg.norm_groups
        if cfg.stem == "patch":
            self.conv_in = nn.Conv2d(in_channels, ch[0], cfg.stem_patch, stride=cfg.stem_patch)
        else:
            self.conv_in = nn.Conv2d(in_channels, ch[0], 3, padding=1)
        self.down_blocks = nn.ModuleList([
            ResStage(ch[max(i - 1, 0)], ch[i], cfg.layers_per_block, g, "down" if i < len(ch) - 1 else None)
            for i in range(len(ch))
        ])
        self.mid_block = MidBlock(ch[-1], g, mid_attention)
        # Always normalised (one group at least): an unnormalised latent grows until FSQ's tanh saturates.
        self.conv_norm_out = nn.GroupNorm(max(g, 1), ch[-1], eps=1e-6)
        self.conv_out = nn.Conv2d(ch[-1], cfg.embed_dim, 3, padding=1)
        self.levels = cross_attn_levels(cfg)[0]
        self.unit_pixels = cfg.pixels == "unit"
        if cross_attn:
            self.cross_att_blocks = _cross_blocks(cfg, self.levels, ch, cfg.level_resolutions())

    def forward(self, x: torch.Tensor, kv: list | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        # [0, 1] pixels (reference weights) cannot be folded into conv_in: its zero padding would change meaning.
        x = self.conv_in((x + 1) / 2 if self.unit_pixels else x)
        feats = []
        for i, block in enumerate(self.down_blocks):
            x = block(x)
            if i in self.levels:
                if kv is not None:
                    j = self.levels.index(i)
                    x = self.cross_att_blocks[j](x, kv[j])
                feats.append(x)
        x = self.mid_block(x)
        return self.conv_out(F.silu(self.conv_norm_out(x))), feats


class Decoder(nn.Module):
    """latent [M, embed_dim, g, g] -> frames [M, 3, H, W] (and the maps at the cross-attention levels)."""

    def __init__(self, cfg: BackboneConfig, *, mid_attention: bool, cross_attn: bool):
        super().__init__()
        ch, g = list(reversed(cfg.channels)), cfg.norm_groups
        self.conv_in = nn.Conv2d(cfg.embed_dim, ch[0], 3, padding=1)
        self.mid_block = MidBlock(ch[0], g, mid_attention)
        self.up_blocks = nn.ModuleList([
            ResStage(ch[max(i - 1, 0)], ch[i], cfg.decoder_layers_per_block, g, "up" if i < len(ch) - 1 else None)
            for i in range(len(ch))
        ])
        self.conv_norm_out = group_norm(g, ch[-1]) if cfg.decoder_norm_out else nn.Identity()
        p = cfg.stem_stride
        # Patch stem: predict p*p sub-pixels per position and PixelShuffle them back (cheap full-res output).
        self.conv_out = nn.Conv2d(ch[-1], 3 * p * p, 3, padding=1)
        self.shuffle = nn.PixelShuffle(p) if p > 1 else nn.Identity()
        self.levels = cross_attn_levels(cfg)[1]
        self.unit_pixels = cfg.pixels == "unit"
        if cross_attn:
            self.cross_att_blocks = _cross_blocks(cfg, self.levels, cfg.decoder_channels(), cfg.decoder_resolutions())

    def forward(self, z: torch.Tensor, kv: list | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = self.mid_block(self.conv_in(z))
        feats = []
        for i in range(len(self.up_blocks) + 1):
            if i > 0:
                x = self.up_blocks[i - 1](x)
            if i in self.levels:
                if kv is not None:
                    j = self.levels.index(i)
                    x = self.cross_att_blocks[j](x, kv[j])
                feats.append(x)
        out = self.shuffle(self.conv_out(F.silu(self.conv_norm_out(x))))
        return (out * 2 - 1 if self.unit_pixels else out), feats
