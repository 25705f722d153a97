"""Optional adversarial loss for the tokenizer (VQGAN-style, off by default): a PatchGAN discriminator,
hinge losses and the adaptive weight that balances the generator term against the reconstruction term.

The discriminator trains with the tokenizer's own optimizer in the same backward pass: the generator term
is evaluated with *detached* discriminator parameters (so it only moves the tokenizer) and the
discriminator term on *detached* reconstructions (so it only moves the discriminator).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call


class PatchDiscriminator(nn.Module):
    """Frames [M, 3, H, W] in [-1, 1] -> real/fake logits per patch [M, 1, h, w] (taming-transformers'
    NLayerDiscriminator layout; GroupNorm instead of BatchNorm so batch statistics never leak between
    real and fake batches or across processes)."""

    def __init__(self, channels: int = 64, layers: int = 3):
        super().__init__()
        mods: list[nn.Module] = [nn.Conv2d(3, channels, 4, 2, 1), nn.LeakyReLU(0.2)]
        c = channels
        for i in range(1, layers + 1):
            c_out = channels * min(2**i, 8)
            stride = 2 if i < layers else 1
            mods += [nn.Conv2d(c, c_out, 4, stride, 1, bias=False), nn.GroupNorm(min(32, c_out // 4), c_out),
                     nn.LeakyReLU(0.2)]
            c = c_out
        mods.append(nn.Conv2d(c, 1, 4, 1, 1))
        self.net = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def hinge_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def generator_logits(disc: PatchDiscriminator, fake: torch.Tensor) -> torch.Tensor:
    """D(fake) through detached discriminator weights: gradients reach ``fake`` only."""
    params = {k: v.detach() for k, v in disc.named_parameters()}
    return functional_call(disc, params, (fake,))


def adaptive_weight(rec_loss: torch.Tensor, g_loss: torch.Tensor, last_layer: torch.Tensor,
                    max_weight: float = 1e4) -> torch.Tensor:
    """||d rec / d W|| / ||d g / d W|| at the decoder's last layer (VQGAN, Esser et al. 2021): the adversarial
    gradient is scaled to the size of the reconstruction gradient, whatever the losses' magnitudes."""
    rec_g = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0]
    gan_g = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
    return (rec_g.norm() / (gan_g.norm() + 1e-4)).clamp(0.0, max_weight).detach()
