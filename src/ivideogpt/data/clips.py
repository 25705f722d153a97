"""Clip sampling for training: fixed-length clips from one dataset or a weighted mixture of datasets.

Train items are a pure function of ``(seed, k)``: item k draws its source (by weight), an episode,
a start frame and its augmentation from ``np.random.default_rng([seed, k])``. So the data position
of a run is just the number of items consumed (exact resume), and DataLoader workers need no
seeding. Validation items are a fixed list: ``val_clips_per_episode`` evenly spaced clips of every
validation episode, never augmented.

Mixtures (the paper mixes 36 datasets with per-dataset weights and frame steps) are lists of
:class:`MixtureSource` (``--data`` takes them one by one or from a mixture file, see :mod:`.mixtures`).
Actions of sources with fewer dimensions are zero-padded to ``action_dim``, and every item carries
``action_mask`` (1 for the dimensions its source has). ``action_norm="per_source"`` normalises each source's
actions with that source's own mean/std (padded dimensions stay exactly 0), for mixtures of robots whose action
spaces differ; the default ``"raw"`` leaves normalisation to the model (one mean/std for the mixture).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import ConfigError, DataError
from ..frames import to_model
from . import augment as aug
from .augment import AugmentConfig
from .episodes import EpisodeDataset


@dataclass
class MixtureSource:
    path_or_dataset: str | os.PathLike | EpisodeDataset
    weight: float = 1.0
    frame_step: int = 1  # keep every frame_step-th frame (actions/rewards in between are summed)


def as_sources(sources) -> list[MixtureSource]:
    """A path, an EpisodeDataset, a MixtureSource or a list of them -> list of MixtureSource."""
    if isinstance(sources, (str, os.PathLike, EpisodeDataset, MixtureSource)):
        sources = [sources]
    out = []
    for s in sources:
        s = s if isinstance(s, MixtureSource) else MixtureSource(s)
        ds = s.path_or_dataset
        ds = ds if isinstance(ds, EpisodeDataset) else EpisodeDataset(ds)
        if not (s.weight > 0) or int(s.frame_step) != s.frame_step or s.frame_step < 1:
            raise ConfigError(f"mixture source {ds.path}: weight must be > 0 and frame_step an integer >= 1, "
                              f"got weight={s.weight}, frame_step={s.frame_step}")
        out.append(MixtureSource(ds, float(s.weight), int(s.frame_step)))
    if not out:
        raise ConfigError("no data sources given")
    return out


ACTION_NORMS = ("raw", "per_source")


def source_action_norm(ds: EpisodeDataset) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) float32 [A] of one dataset's stored per-step actions; std 0 (a constant dimension) -> 1."""
    st = ds.meta["action_stats"]
    if not st or ds.action_dim == 0:
        return np.zeros(ds.action_dim, np.float32), np.ones(ds.action_dim, np.float32)
    std = np.array(st["std"], np.float32)
    return np.array(st["mean"], np.float32), np.where(std > 1e-8, std, 1.0).astype(np.float32)


class ClipDataset(torch.utils.data.Dataset):
    """Items: ``frames`` float32 [T, 3, H, W] in [-1, 1]; ``actions`` float32 [T-1, action_dim] (raw or normalised
    per source, zero-padded); ``action_mask`` float32 [action_dim]; ``rewards`` float32 [T-1]; ``source``,
    ``episode``, ``start`` (ints)."""

    def __init__(self, sources, clip_len: int, *, split: str = "train", resolution: int | None = None,
                 action_dim: int | None = None, augment: AugmentConfig | None = None, seed: int = 0,
                 num_samples: int = 10**9, val_clips_per_episode: int = 1, action_norm: str = "raw"):
        if clip_len < 1:
            raise ConfigError(f"clip_len must be >= 1, got {clip_len}")
        if action_norm not in ACTION_NORMS:
            raise ConfigError(f"action_norm must be one of {ACTION_NORMS}, got {action_norm!r}")
        self.action_norm = action_norm
        self.sources = as_sources(sources)
        self.clip_len, self.split, self.seed = int(clip_len), split, int(seed)
        self.datasets = [s.path_or_dataset for s in self.sources]
        sizes = {tuple(d.image_size) for d in self.datasets}
        if resolution is None and len(sizes) > 1:
            raise ConfigError(f"sources have different image sizes {sorted(sizes)}; set a resolution")
        self.size = (resolution, resolution) if resolution else sizes.pop()
        dims = [d.action_dim for d in self.datasets]
        self.action_dim = max(dims) if action_dim is None else int(action_dim)
        if max(dims) > self.action_dim:
            worst = self.datasets[int(np.argmax(dims))]
            raise ConfigError(f"{worst.path}: action_dim {max(dims)} is larger than the model's action_dim "
                              f"{self.action_dim}")
        self.augment = augment if split == "train" else None
        self.norms = [source_action_norm(d) for d in self.datasets] if action_norm == "per_source" else None

        # Episodes per source that fit one clip at that source's frame step (from meta: no reads).
        self.eligible = []
        for s, ds in zip(self.sources, self.datasets):
            span = (self.clip_len - 1) * s.frame_step + 1
            eps = [i for i in ds.split(split) if ds.length(i) >= span]
            if not eps and split == "train":
                raise DataError(f"{ds.path}: no {split} episode has the {span} frames a clip needs "
                                f"(clip_len={clip_len}, frame_step={s.frame_step}); "
                                f"longest is {max(ds.meta['episode_lengths'], default=0)}")
            self.eligible.append(np.array(eps, dtype=np.int64))
        if not any(len(e) for e in self.eligible):
            raise DataError(f"no {split} episode in {[str(d.path) for d in self.datasets]} is long enough "
                            f"for a clip of {clip_len} frames")
        weights = np.array([s.weight if len(e) else 0.0 for s, e in zip(self.sources, self.eligible)])
        self.probs = weights / weights.sum()

        if split == "train":
            self.num_samples = int(num_samples)
            self.items = None
        else:
            self.items = []
            for src, (s, ds, eps) in enumerate(zip(self.sources, self.datasets, self.eligible)):
                span = (self.clip_len - 1) * s.frame_step + 1
                for i in eps.tolist():
                    starts = np.linspace(0, ds.length(i) - span, max(1, val_clips_per_episode)).round()
                    self.items += [(src, i, int(st)) for st in dict.fromkeys(starts.astype(int).tolist())]
            self.num_samples = len(self.items)

    def __len__(self) -> int:
        return self.num_samples

    def locate(self, k: int) -> tuple[int, int, int, np.random.Generator | None]:
        """(source, episode, start, rng for augmentation) of item k, without reading any frames."""
        if not 0 <= k < self.num_samples:
            raise IndexError(f"item {k} out of range for {self.num_samples} items")
        if self.items is not None:
            return (*self.items[k], None)
        rng = np.random.default_rng([self.seed, k])
        src = int(rng.choice(len(self.sources), p=self.probs))
        eps = self.eligible[src]
        ep = int(eps[rng.integers(len(eps))])
        span = (self.clip_len - 1) * self.sources[src].frame_step + 1
        start = int(rng.integers(self.datasets[src].length(ep) - span + 1))
        return src, ep, start, rng

    def __getitem__(self, k: int) -> dict:
        return self.read(*self.locate(int(k)))

    def read(self, src: int, ep: int, start: int, rng: np.random.Generator | None = None) -> dict:
        """The item for clip (source, episode, start); augmented only when this dataset augments and an rng
        is given."""
        ds = self.datasets[src]
        clip = ds.clip(ep, start, self.clip_len, self.sources[src].frame_step)
        frames = to_model(clip["frames"])
        if self.augment is not None and self.augment.enabled and rng is not None:
            frames = aug.apply(frames, aug.sample_params(self.augment, rng), self.size)
        else:
            frames = aug.resize(frames, self.size)
        actions = np.zeros((self.clip_len - 1, self.action_dim), np.float32)
        actions[:, : ds.action_dim] = clip["actions"]
        if self.norms is not None:
            mean, std = self.norms[src]
            actions[:, : ds.action_dim] = (clip["actions"] - mean) / std
        mask = np.zeros(self.action_dim, np.float32)
        mask[: ds.action_dim] = 1.0
        return {
            "frames": frames,  # may be channels-last strided; collation makes the batch contiguous
            "actions": torch.from_numpy(actions),
            "action_mask": torch.from_numpy(mask),
            "rewards": torch.from_numpy(clip["rewards"]),
            "source": src,
            "episode": ep,
            "start": start,
        }


def dataset_stats(sources, action_dim: int | None = None) -> dict:
    """Combined action and reward statistics of a mixture, for the model's normalisation.

    Action dimension j combines (count-weighted, exactly) the sources that *have* dimension j;
    padded zeros are not counted, so a dimension only one robot has keeps that robot's scale.
    A dimension no source has gets mean 0, std 1. Returns lists of length ``action_dim`` (default:
    the largest source dim) under ``action_mean/std/min/max`` and scalars ``reward_mean/std/min/max``.
    Statistics are of the stored per-step actions; a source with ``frame_step`` s > 1 feeds the
    model sums of s actions, whose scale these do not describe. A constant dimension has std 0:
    clamp before dividing.
    """
    datasets = [s.path_or_dataset for s in as_sources(sources)]
    widest = max(d.action_dim for d in datasets)
    dim = widest if action_dim is None else int(action_dim)
    if widest > dim:
        raise ConfigError(f"a source has action_dim {widest}, larger than the requested action_dim {dim}")
    a = {k: np.zeros(dim) for k in ("n", "sum", "sumsq")}
    a_min, a_max = np.full(dim, np.inf), np.full(dim, -np.inf)
    r = dict(n=0.0, sum=0.0, sumsq=0.0, min=np.inf, max=-np.inf)
    for d in datasets:
        n = d.meta["num_frames"] - d.meta["num_episodes"]  # one action/reward per transition
        if n == 0 or d.meta["action_stats"] is None:
            continue
        st, k = d.meta["action_stats"], d.action_dim
        mean, std = np.array(st["mean"], np.float64), np.array(st["std"], np.float64)
        a["n"][:k] += n
        a["sum"][:k] += n * mean
        a["sumsq"][:k] += n * (std**2 + mean**2)
        a_min[:k] = np.minimum(a_min[:k], st["min"])
        a_max[:k] = np.maximum(a_max[:k], st["max"])
        rs = d.meta["reward_stats"]
        r["n"] += n
        r["sum"] += n * rs["mean"]
        r["sumsq"] += n * (rs["std"] ** 2 + rs["mean"] ** 2)
        r["min"], r["max"] = min(r["min"], rs["min"]), max(r["max"], rs["max"])
    has = a["n"] > 0
    n = np.where(has, a["n"], 1)
    mean = np.where(has, a["sum"] / n, 0.0)
    std = np.where(has, np.sqrt(np.maximum(a["sumsq"] / n - mean**2, 0.0)), 1.0)
    rn = max(r["n"], 1)
    r_mean = r["sum"] / rn
    return {
        "action_dim": dim,
        "action_mean": mean.tolist(),
        "action_std": std.tolist(),
        "action_min": np.where(has, a_min, 0.0).tolist(),
        "action_max": np.where(has, a_max, 0.0).tolist(),
        "reward_mean": float(r_mean),
        "reward_std": float(np.sqrt(max(r["sumsq"] / rn - r_mean**2, 0.0))) if r["n"] else 1.0,
        "reward_min": float(r["min"]) if r["n"] else 0.0,
        "reward_max": float(r["max"]) if r["n"] else 0.0,
    }
