"""Learned perceptual distance: ST-LPIPS, a shift-tolerant (anti-aliased) AlexNet LPIPS.

One network serves as the tokenizer's perceptual loss (``STLPIPS()(x, y)`` on float [-1, 1]
``[B, 3, H, W]``, differentiable w.r.t. the inputs, weights frozen) and as the evaluation metric
(``perceptual(a, b)`` on frames ``[..., H, W, 3]``).

The weights ship inside the PyPI package ``stlpips-pytorch`` (backbone + LPIPS linear heads). Only the
weight file is read; the package's code is never imported (it needs torchvision and IPython, and its
network code carries a non-commercial licence) — the network below is our own, written to the same
architecture so the published state dict loads with ``strict=True``.

Architecture (what the weights expect):
  LPIPS scaling layer (x - shift) / scale, then AlexNet whose every stride-2 step is replaced by
  "stride 1, then BlurPool": reflect-pad 2 on every side, 3x3 binomial filter [1, 2, 1]^T [1, 2, 1] / 16
  per channel, stride 2. The first conv is 11x11 with stride 1 (not 4), blurred *before* its ReLU.
  Five taps (after each ReLU: 64, 192, 384, 256, 256 channels) are unit-normalised over channels,
  squared differences go through a 1x1 conv head (no bias) per tap, are averaged over space and summed.
Smallest input: 21x21 (the third BlurPool reflect-pads by 2 and needs a 3-pixel map); 64x64 frames are
used at native resolution, no resizing.
"""

from __future__ import annotations

import importlib.util
import math
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CheckpointError
from .metrics import frame_pair

# LPIPS input normalisation: ImageNet mean/std expressed for inputs in [-1, 1].
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)
# AlexNet channel counts at the five LPIPS taps.
ALEX_CHANNELS = (64, 192, 384, 256, 256)
# Added to the channel norm before dividing, exactly as LPIPS does (changes results at ~1e-10 only).
NORM_EPS = 1e-10

STLPIPS_PACKAGE = "stlpips_pytorch"
STLPIPS_WEIGHTS = ("weights", "vST0.0", "alex_shift_tolerant.pth")
STLPIPS_FILE = "the ST-LPIPS AlexNet weights (alex_shift_tolerant.pth from stlpips-pytorch)"


class BlurPool(nn.Module):
    """Anti-aliased downsampling (Zhang 2019): low-pass with a binomial filter, then subsample.

    Reflect padding of ``size - 1`` on every side (the "shift tolerant" variant pads more than
    "same") keeps the borders from dominating small maps.
    """

    def __init__(self, channels: int, size: int = 3, stride: int = 2):
        super().__init__()
        row = torch.tensor([math.comb(size - 1, i) for i in range(size)], dtype=torch.float32)
        kernel = torch.outer(row, row)
        self.register_buffer("filt", (kernel / kernel.sum()).expand(channels, 1, size, size).clone())
        self.pad = size - 1
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (self.pad,) * 4, mode="reflect")
        return F.conv2d(x, self.filt, stride=self.stride, groups=x.shape[1])


def shift_tolerant_alexnet() -> tuple[nn.Sequential, tuple[int, ...]]:
    """The ST-LPIPS backbone and the indices of the layers whose outputs are the five taps.

    Layer indices match the weight file (``net.sliceK.<index>.*``), hence the flat Sequential.
    """
    c1, c2, c3, c4, c5 = ALEX_CHANNELS
    layers = nn.Sequential(
        nn.Conv2d(3, c1, 11, stride=1, padding=2),  # 0
        BlurPool(c1),                                # 1
        nn.ReLU(),                                   # 2  tap
        nn.MaxPool2d(3, stride=1),                   # 3
        BlurPool(c1),                                # 4
        nn.Conv2d(c1, c2, 5, padding=2),             # 5
        nn.ReLU(),                                   # 6  tap
        nn.MaxPool2d(3, stride=1),                   # 7
        BlurPool(c2),                                # 8
        nn.Conv2d(c2, c3, 3, padding=1),             # 9
        nn.ReLU(),                                   # 10 tap
        nn.Conv2d(c3, c4, 3, padding=1),             # 11
        nn.ReLU(),                                   # 12 tap
        nn.Conv2d(c4, c5, 3, padding=1),             # 13
        nn.ReLU(),                                   # 14 tap
    )
    return layers, (2, 6, 10, 12, 14)


class PerceptualDistance(nn.Module):
    """LPIPS on top of any backbone: scale, tap features, unit-normalise, 1x1 heads, mean, sum.

    Frozen and always in eval mode (``.train()`` is a no-op), so it can sit inside a model that is
    being trained and serve as its loss; gradients still flow to the inputs.
    """

    min_side = 1  # subclasses set the smallest H, W their backbone accepts

    def __init__(self, features: nn.Sequential, taps: tuple[int, ...], channels: tuple[int, ...]):
        super().__init__()
        self.features = features
        self.taps = tuple(taps)
        self.heads = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in channels)
        # Constants of the metric, not weights: kept out of the state dict.
        self.register_buffer("shift", torch.tensor(LPIPS_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(LPIPS_SCALE).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True):
        return super().train(False)

    def tap_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        out, last = [], self.taps[-1]
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.taps:
                out.append(x)
            if i == last:
                break
        return out

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Distances ``[B]`` between float images ``[B, 3, H, W]`` in [-1, 1]."""
        if x.shape != y.shape or x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected two [B, 3, H, W] images of one shape, got {tuple(x.shape)} "
                             f"and {tuple(y.shape)}")
        if min(x.shape[-2:]) < self.min_side:
            raise ValueError(f"{type(self).__name__} needs images of at least {self.min_side}x"
                             f"{self.min_side}, got {x.shape[-2]}x{x.shape[-1]}")
        fx = self.tap_features((x - self.shift) / self.scale)
        # As a loss the target needs no graph: its half of the backward pass is skipped.
        with torch.set_grad_enabled(torch.is_grad_enabled() and y.requires_grad):
            fy = self.tap_features((y - self.shift) / self.scale)
        total = x.new_zeros(x.shape[0], 1)
        for a, b, head in zip(fx, fy, self.heads):
            a = a / (a.square().sum(dim=1, keepdim=True).sqrt() + NORM_EPS)
            b = b / (b.square().sum(dim=1, keepdim=True).sqrt() + NORM_EPS)
            total = total + head((a - b).square()).mean(dim=(2, 3))
        return total[:, 0]


class STLPIPS(PerceptualDistance):
    """Shift-tolerant AlexNet LPIPS with the weights shipped in ``stlpips-pytorch``.

    ``STLPIPS()(x, y) -> [B]`` for float [-1, 1] ``[B, 3, H, W]``; H, W >= 21.
    """

    min_side = 21

    def __init__(self, weights: str | Path | None = None):
        features, taps = shift_tolerant_alexnet()
        super().__init__(features, taps, ALEX_CHANNELS)
        path = Path(weights) if weights is not None else stlpips_weights_path()
        state = read_weights(path, STLPIPS_FILE)
        feats, heads, rest = {}, {}, {}
        for key, value in state.items():
            if m := re.fullmatch(r"net\.slice\d+\.(\d+\..+)", key):
                feats[m.group(1)] = value
            elif m := re.fullmatch(r"lin(\d+)\.model\.1\.weight", key):
                heads[f"{m.group(1)}.weight"] = value
            else:
                rest[key] = value
        for name, const in (("shift", LPIPS_SHIFT), ("scale", LPIPS_SCALE)):
            stored = rest.pop(f"scaling_layer.{name}", None)
            if stored is not None and not torch.allclose(stored.flatten().float(), torch.tensor(const)):
                raise CheckpointError(f"{path}: scaling_layer.{name} is {stored.flatten().tolist()}, "
                                      f"expected {list(const)}")
        if rest:
            raise CheckpointError(f"{path}: unexpected keys {sorted(rest)[:5]} in ST-LPIPS weights")
        load_exact(self.features, feats, path, "net.sliceK.")
        load_exact(self.heads, heads, path, "lin")


def stlpips_weights_path() -> Path:
    """Where ``stlpips-pytorch`` keeps its AlexNet weights, found without importing the package."""
    hint = "install it with `pip install stlpips-pytorch` (only its weight file is used)"
    spec = importlib.util.find_spec(STLPIPS_PACKAGE)  # a top-level find_spec executes nothing
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointError(f"the perceptual metric needs the package stlpips-pytorch, which is not "
                              f"installed: {hint}")
    for root in spec.submodule_search_locations:
        path = Path(root).joinpath(*STLPIPS_WEIGHTS)
        if path.is_file():
            return path
    raise CheckpointError(f"stlpips-pytorch is installed but has no {'/'.join(STLPIPS_WEIGHTS)}: "
                          f"re-{hint.removeprefix('install it')}")


def read_weights(path: Path, what: str) -> dict[str, torch.Tensor]:
    """A state dict from a ``torch.save`` file, tensors only (``weights_only=True``)."""
    if not path.is_file():
        raise CheckpointError(f"missing weight file {path}: expected {what}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a pickle that is not plain tensors, or a truncated file
        raise CheckpointError(f"cannot read {path} as {what}: {type(e).__name__}: {e}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} is not a state dict of tensors; expected {what}")
    return state


def load_exact(module: nn.Module, state: dict[str, torch.Tensor], path: Path, prefix: str) -> None:
    """``load_state_dict(strict=True)`` with a one-line error naming the file and the offending keys."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [f"{k} {tuple(state[k].shape)} (expected {tuple(own[k].shape)})"
             for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        parts = [("missing", missing[:5]), ("unexpected", unexpected[:5]), ("wrong shape", wrong[:3])]
        raise CheckpointError(f"{path}: keys under '{prefix}' do not match the network: "
                              + "; ".join(f"{name} {keys}" for name, keys in parts if keys))
    module.load_state_dict(state, strict=True)


# One network per (kind, device) per process: building one costs a file read and ~60 MB.
_CACHE: dict[tuple, PerceptualDistance] = {}


def cached_net(key: tuple, build) -> PerceptualDistance:
    if key not in _CACHE:
        _CACHE[key] = build().to(key[-1])
    return _CACHE[key]


def resolve_device(a, device) -> torch.device:
    if device is not None:
        return torch.device(device)
    return a.device if isinstance(a, torch.Tensor) else torch.device("cpu")


def frame_distance(net: PerceptualDistance, a, b, batch_size: int, device: torch.device) -> torch.Tensor:
    """Apply ``net`` to frame pairs ``[..., H, W, 3]`` in chunks; ``[...]`` float32 on the CPU."""
    x, y = frame_pair(a, b)
    lead, (h, w) = x.shape[:-3], x.shape[-3:-1]
    x, y = x.reshape(-1, h, w, 3), y.reshape(-1, h, w, 3)
    out = torch.empty(x.shape[0])
    with torch.inference_mode():
        for i in range(0, x.shape[0], batch_size):
            # [0, 1] channels-last -> [-1, 1] channels-first, the networks' input convention.
            xb = x[i:i + batch_size].to(device).movedim(-1, 1) * 2 - 1
            yb = y[i:i + batch_size].to(device).movedim(-1, 1) * 2 - 1
            out[i:i + batch_size] = net(xb, yb).float().cpu()
    return out.reshape(lead)


def perceptual(a, b, *, batch_size: int = 64, device=None) -> torch.Tensor:
    """ST-LPIPS distance per frame: frames ``[..., H, W, 3]`` (uint8 or float in [0, 1]) -> ``[...]``.

    Lower is closer; 0 for identical frames. Runs on ``device`` (default: the device of ``a`` if it
    is a tensor, else CPU) in chunks of ``batch_size`` frames.
    """
    dev = resolve_device(a, device)
    net = cached_net(("stlpips", dev), STLPIPS)
    return frame_distance(net, a, b, batch_size, dev)
