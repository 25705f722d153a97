"""Action controllability: does a world model's output *follow the actions it was given*?

PSNR cannot tell (a blurred frame beats copy-last with no dynamics at all), so we borrow the measure from the
GameWorld / MineWorld line of work: train a small inverse-dynamics model (IDM) on *real* transitions
(frame t, frame t+1) -> a_t, then ask it to read the actions back from *predicted* transitions.

How the scores are read (``ivideogpt evaluate`` reports all four, R^2 and MAE):

- ``real``: the IDM on real val transitions. The ceiling: how much of the action is visible in a frame pair.
- ``predicted``: predictions made with the clip's true actions, scored against those actions.
- ``shuffled_vs_given``: predictions made with *another clip's* actions, scored against the actions the model
  was given. This is the controllability number. A model that follows its actions scores as in
  ``predicted``; a model that ignores them produces motion unrelated to what it was given -> R^2 <= 0.
- ``shuffled_vs_own``: the same shuffled-action predictions scored against the clip's *own* actions. High
  means the model continues the motion it sees in the context frames instead of obeying the actions.
  ``predicted`` alone cannot separate the two cases (expert actions are smooth in time, so extrapolating the
  context motion also "recovers" them); the shuffled pair does.

R^2 is ``1 - SSE / SST`` per action dimension in normalised units, averaged over dimensions (as sklearn's
``r2_score`` with uniform averaging). 0 is "no better than always predicting the mean action"; it is negative
for worse. Dimensions that never vary in the scored set are left out (R^2 is undefined there).

The IDM is a property of the *data* (and the frame size), not of the world model: the evaluate command
caches it in its output directory, ``<out>/idm`` (``--idm DIR`` shares one between evaluations), keyed by a
fingerprint of the dataset and the training settings, and never writes into the model directory.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CheckpointError, DataError
from ..fileio import atomic_dir

IDM_KIND = "inverse_dynamics"
# Variance below this (normalised units) means the dimension did not vary in the scored set.
MIN_VARIANCE = 1e-8
# Keeps motion-weighted pooling finite for pairs with (almost) no change, in units of mean |diff| x positions.
MOTION_EPS = 1e-2


class InverseDynamics(nn.Module):
    """(frame t, frame t+1) stacked on channels -> a_t in normalised units (``(a - mean) / std``).

    Frames come in as the model's float ``[B, 3, H, W]`` in [-1, 1]; their difference is a third input (the
    action is what changed). Three 3x3 convs (stride 2 while the map stays >= 16x16), features pooled over
    space with weights = how much each place changed, then a small MLP; 75 k parameters.
    """

    def __init__(self, resolution: int, action_dim: int, action_mean, action_std, width: int = 32):
        super().__init__()
        self.config = {"resolution": int(resolution), "action_dim": int(action_dim), "width": int(width),
                       "action_mean": [float(v) for v in action_mean], "action_std": [float(v) for v in action_std]}
        if len(self.config["action_mean"]) != action_dim or len(self.config["action_std"]) != action_dim:
            raise ValueError(f"action_mean/std must have {action_dim} entries")
        layers, c = [], 9
        for i, out in enumerate((width, 2 * width, 2 * width)):
            # Stride 2 until about 16x16: the effector moves a few pixels per step at 64x64.
            stride = 2 if resolution // (2 ** (i + 1)) >= 16 else 1
            layers += [nn.Conv2d(c, out, 3, stride=stride, padding=1), nn.SiLU()]
            c = out
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Linear(2 * c, 128), nn.SiLU(), nn.Linear(128, action_dim))
        self.register_buffer("action_mean", torch.tensor(self.config["action_mean"], dtype=torch.float32))
        # A constant dimension has std 0; 1 keeps it finite (its targets are all 0 then).
        std = torch.tensor(self.config["action_std"], dtype=torch.float32)
        self.register_buffer("action_std", torch.where(std > 1e-6, std, torch.ones_like(std)))

    @property
    def action_dim(self) -> int:
        return self.config["action_dim"]

    def forward(self, before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
        """float [B, 3, H, W] pairs in [-1, 1] -> normalised actions [B, A]."""
        diff = after - before
        h = self.features(torch.cat([before, after, diff], dim=1))
        # Pooled over space, weighted by where the frame changed: an action is the same motion wherever it
        # happens, the per-episode table texture cannot be memorised through positions (a flattened map
        # overfit to R^2 < 0 on new episodes), and a pair without motion gives one constant output, so
        # the IDM cannot guess the expert's action from the scene alone (that gave R^2 ~ 0.2 on static pairs).
        w = F.adaptive_avg_pool2d(diff.abs().mean(1, keepdim=True), h.shape[-2:])
        hw = h * w
        pooled = hw.sum(dim=(2, 3)) / (w.sum(dim=(2, 3)) + MOTION_EPS)
        return self.head(torch.cat([pooled, hw.amax(dim=(2, 3))], dim=1))

    def normalise(self, actions: torch.Tensor) -> torch.Tensor:
        return (actions[..., : self.action_dim] - self.action_mean) / self.action_std

    def denormalise(self, actions: torch.Tensor) -> torch.Tensor:
        return actions * self.action_std + self.action_mean

    @torch.no_grad()
    def predict(self, frames_before, frames_after, batch_size: int = 256) -> torch.Tensor:
        """uint8 frame pairs ``[..., H, W, 3]`` -> raw-scale actions ``[..., A]`` (float32, CPU)."""
        from ..frames import to_model

        a, b = _frames(frames_before), _frames(frames_after)
        if a.shape != b.shape:
            raise ValueError(f"frames_before {tuple(a.shape)} and frames_after {tuple(b.shape)} differ")
        r = self.config["resolution"]
        if tuple(a.shape[-3:]) != (r, r, 3):
            raise ValueError(f"the inverse-dynamics model takes {r}x{r} frames, got shape {tuple(a.shape)}")
        lead = a.shape[:-3]
        a, b = a.reshape(-1, r, r, 3), b.reshape(-1, r, r, 3)
        dev = self.action_mean.device
        out = [self(to_model(a[i:i + batch_size], dev), to_model(b[i:i + batch_size], dev)).float().cpu()
               for i in range(0, a.shape[0], batch_size)]
        pred = torch.cat(out) if out else torch.zeros(0, self.action_dim)
        return self.denormalise(pred.to(self.action_mean.device)).cpu().reshape(*lead, self.action_dim)

    # --------------------------------------------------------------------------------- save / load
    def save_pretrained(self, path, extra: dict | None = None) -> None:
        from safetensors.torch import save_file

        with atomic_dir(path) as tmp:
            save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(tmp / "model.safetensors"))
            meta = {"kind": IDM_KIND, "config": self.config, **(extra or {})}
            (tmp / "config.json").write_text(json.dumps(meta, indent=2) + "\n")

    @classmethod
    def from_pretrained(cls, path) -> InverseDynamics:
        from safetensors.torch import load_file

        p = Path(path)
        try:
            meta = json.loads((p / "config.json").read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise CheckpointError(f"{p}: not an inverse-dynamics model directory ({e})") from None
        if meta.get("kind") != IDM_KIND:
            raise CheckpointError(f"{p}/config.json: kind is {meta.get('kind')!r}, expected '{IDM_KIND}'")
        model = cls(**meta["config"])
        try:
            model.load_state_dict(load_file(str(p / "model.safetensors")))
        except (OSError, RuntimeError) as e:
            raise CheckpointError(f"{p}/model.safetensors: {e}") from None
        return model.eval()


def _frames(x) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    if t.dtype != torch.uint8:
        raise TypeError(f"frames must be uint8 [..., H, W, 3], got {t.dtype}")
    return t


def idm_fingerprint(dataset, resolution: int, steps: int, batch: int, seed: int, split: str = "train") -> dict:
    """What an IDM depends on; a cached one is reused only if this matches exactly."""
    from ..data.episodes import EpisodeDataset

    ds = dataset if isinstance(dataset, EpisodeDataset) else EpisodeDataset(dataset)
    m = ds.meta
    return {"dataset": str(Path(ds.path).resolve()), "num_episodes": m["num_episodes"], "num_frames": m["num_frames"],
            "splits": {k: len(v) for k, v in m["splits"].items()}, "action_stats": m["action_stats"],
            "split": split, "resolution": int(resolution), "steps": int(steps), "batch": int(batch), "seed": int(seed)}


def train_inverse_dynamics(dataset, split: str = "train", steps: int = 400, batch: int = 64, seed: int = 0, *,
                           resolution: int | None = None, lr: float = 2e-3, progress: bool = False) -> InverseDynamics:
    """Train an IDM on random real transitions of ``dataset`` (a path or EpisodeDataset), deterministically.

    Transitions come from :class:`ClipDataset` with 2-frame clips (unaugmented, resized to ``resolution``),
    so the IDM sees frames exactly as the world model does.
    """
    from tqdm import tqdm

    from ..data.clips import ClipDataset
    from ..data.episodes import EpisodeDataset

    ds = dataset if isinstance(dataset, EpisodeDataset) else EpisodeDataset(dataset)
    stats = ds.meta["action_stats"]
    if ds.action_dim == 0 or stats is None:
        raise DataError(f"{ds.path}: the dataset has no actions; an inverse-dynamics model needs them")
    clips = ClipDataset(ds, 2, split=split, resolution=resolution, seed=seed, num_samples=steps * batch)
    res = clips.size[0]
    if clips.size[0] != clips.size[1]:
        raise DataError(f"{ds.path}: frames are {clips.size}; pass a square resolution")
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = InverseDynamics(res, ds.action_dim, stats["mean"], stats["std"])
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 1), pct_start=0.1)
    model.train()
    for step in tqdm(range(steps), desc="inverse dynamics", unit="step", disable=not progress):
        items = [clips[step * batch + i] for i in range(batch)]
        frames = torch.stack([it["frames"] for it in items])  # [B, 2, 3, H, W]
        target = model.normalise(torch.stack([it["actions"][0] for it in items]))
        # Random horizontal/vertical flips would change the action's meaning: no augmentation at all.
        loss = F.smooth_l1_loss(model(frames[:, 0], frames[:, 1]), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return model.eval()


def r2_mae(pred: torch.Tensor, target: torch.Tensor, std: torch.Tensor) -> dict:
    """R^2 (normalised units, mean over varying dimensions) and MAE (raw units) of [N, A] predictions."""
    pred, target = pred.double().reshape(-1, pred.shape[-1]), target.double().reshape(-1, target.shape[-1])
    n = pred.shape[0]
    if n == 0:
        return {"r2": None, "mae": None, "n": 0}
    p, t = pred / std.double(), target / std.double()
    sst = (t - t.mean(0)).square().sum(0)
    sse = (p - t).square().sum(0)
    varying = sst / n > MIN_VARIANCE
    r2 = float((1 - sse[varying] / sst[varying]).mean()) if bool(varying.any()) else None
    return {"r2": r2, "mae": float((pred - target).abs().mean()), "n": int(n)}


def controllability(idm: InverseDynamics, frames_before, frames_after, actions) -> dict:
    """How well ``idm`` recovers ``actions`` [..., A] (raw) from uint8 frame pairs [..., H, W, 3].

    Returns ``{"r2", "mae", "n"}`` (see the module docstring for how R^2 is averaged).
    """
    a = actions if isinstance(actions, torch.Tensor) else torch.as_tensor(np.asarray(actions))
    a = a.float().cpu()[..., : idm.action_dim]
    pred = idm.predict(frames_before, frames_after)
    if pred.shape != a.shape:
        raise ValueError(f"actions have shape {tuple(a.shape)}, frame pairs give {tuple(pred.shape)}")
    return r2_mae(pred, a, idm.action_std.cpu())
