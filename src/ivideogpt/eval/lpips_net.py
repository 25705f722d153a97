"""Standard LPIPS (AlexNet, v0.1) from user-supplied weight files.

No package ships both halves of it offline: the backbone is torchvision's ImageNet AlexNet
(``alexnet-owt-7be5be79.pth``, keys ``features.0.weight`` ...; the classifier is ignored) and the linear
heads are the ``lpips`` package's ``weights/v0.1/alex.pth`` (keys ``lin0.model.1.weight`` ...). Both are
read with ``weights_only=True``. For the default perceptual metric use ``perceptual`` (ST-LPIPS).

Smallest input: 31x31 (the second max-pool needs a 3-pixel map); most published numbers use 64x64
or larger at native resolution.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from ..errors import CheckpointError
from .stlpips import (
    ALEX_CHANNELS,
    PerceptualDistance,
    cached_net,
    frame_distance,
    load_exact,
    read_weights,
    resolve_device,
)

ALEXNET_FILE = "torchvision's ImageNet AlexNet state dict (alexnet-owt-7be5be79.pth)"
HEADS_FILE = "the LPIPS v0.1 AlexNet linear heads (weights/v0.1/alex.pth from the lpips package)"


def alexnet_features() -> tuple[nn.Sequential, tuple[int, ...]]:
    """torchvision's ``alexnet().features`` layer for layer (same indices), and the LPIPS taps."""
    c1, c2, c3, c4, c5 = ALEX_CHANNELS
    layers = nn.Sequential(
        nn.Conv2d(3, c1, 11, stride=4, padding=2),  # 0
        nn.ReLU(),                                   # 1  tap
        nn.MaxPool2d(3, stride=2),                   # 2
        nn.Conv2d(c1, c2, 5, padding=2),             # 3
        nn.ReLU(),                                   # 4  tap
        nn.MaxPool2d(3, stride=2),                   # 5
        nn.Conv2d(c2, c3, 3, padding=1),             # 6
        nn.ReLU(),                                   # 7  tap
        nn.Conv2d(c3, c4, 3, padding=1),             # 8
        nn.ReLU(),                                   # 9  tap
        nn.Conv2d(c4, c5, 3, padding=1),             # 10
        nn.ReLU(),                                   # 11 tap
    )
    return layers, (1, 4, 7, 9, 11)


class LPIPS(PerceptualDistance):
    """AlexNet LPIPS v0.1: ``LPIPS(alexnet_path, heads_path)(x, y) -> [B]`` for float [-1, 1] images."""

    min_side = 31

    def __init__(self, alexnet_path: str | Path, heads_path: str | Path):
        features, taps = alexnet_features()
        super().__init__(features, taps, ALEX_CHANNELS)
        alexnet_path, heads_path = Path(alexnet_path), Path(heads_path)
        backbone = read_weights(alexnet_path, ALEXNET_FILE)
        heads = read_weights(heads_path, HEADS_FILE)
        # The classifier (and anything else outside `features.`) plays no part in LPIPS.
        feats = {k.removeprefix("features."): v for k, v in backbone.items() if k.startswith("features.")}
        if not feats:
            raise CheckpointError(f"{alexnet_path} has no 'features.*' keys; expected {ALEXNET_FILE}")
        lins = {}
        for key, value in heads.items():
            m = re.fullmatch(r"lin(\d+)\.model\.1\.weight", key)
            if m is None:
                raise CheckpointError(f"{heads_path}: unexpected key {key!r}; expected {HEADS_FILE}")
            lins[f"{m.group(1)}.weight"] = value
        load_exact(self.features, feats, alexnet_path, "features.")
        load_exact(self.heads, lins, heads_path, "lin")


def lpips(a, b, *, alexnet_path, heads_path, batch_size: int = 64, device=None) -> torch.Tensor:
    """Standard AlexNet LPIPS per frame: frames ``[..., H, W, 3]`` (uint8 or float in [0, 1]) -> ``[...]``."""
    dev = resolve_device(a, device)
    paths = (str(Path(alexnet_path).resolve()), str(Path(heads_path).resolve()))
    net = cached_net(("lpips", *paths, dev), lambda: LPIPS(*paths))
    return frame_distance(net, a, b, batch_size, dev)
