"""A VP2-style predictor: the world model behind the interface of the VP2 visual-planning benchmark.

VP2 calls ``model(batch)`` with ``batch["video"]`` (N, n_ctx, H, W, C) context frames and ``batch["actions"]``
(N, n_ctx - 1 + T, A) -- the first n_ctx - 1 actions lead between the context frames, the last T are the
candidates -- and reads back ``{"rgb": (N, T, H, W, C)}`` floats in [0, 1]. This adapter accepts numpy or
torch, channels-last or channels-first, uint8 or float in [0, 1], and answers in the input's array type.

The world model may take fewer context frames than VP2 gives (tiny-cpu takes 1): it gets the last
``wm.context_frames`` of them, and the actions from the last context frame on.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import ConfigError
from ..frames import to_unit


def _as_tensor(x, name: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu()
    try:
        return torch.as_tensor(np.asarray(x))
    except (TypeError, ValueError) as e:
        raise TypeError(f"batch['{name}']: expected a numpy array or torch tensor, got {type(x).__name__}: "
                        f"{e}") from None


def channels_last_uint8(video: torch.Tensor) -> torch.Tensor:
    """(N, T, H, W, 3) or (N, T, 3, H, W), uint8 or float in [0, 1] -> uint8 (N, T, H, W, 3)."""
    if video.ndim != 5:
        raise ValueError(f"batch['video']: expected 5 dimensions (N, T, H, W, C) or (N, T, C, H, W), got shape "
                         f"{tuple(video.shape)}")
    last, first = video.shape[4] == 3, video.shape[2] == 3
    if last and first:
        raise ValueError(f"batch['video']: shape {tuple(video.shape)} is ambiguous (size 3 on both axis 2 and axis "
                         "4): cannot tell channels-first from channels-last")
    if not (last or first):
        raise ValueError(f"batch['video']: expected 3 colour channels on axis 4 (channels-last) or axis 2 "
                         f"(channels-first), got shape {tuple(video.shape)}")
    if first:
        video = video.permute(0, 1, 3, 4, 2)
    if video.dtype == torch.uint8:
        return video.contiguous()
    if not video.is_floating_point():
        raise TypeError(f"batch['video']: expected uint8 or float in [0, 1], got dtype {video.dtype}")
    if video.numel() and (video.min() < 0 or video.max() > 1):
        raise ValueError(f"batch['video']: float frames must lie in [0, 1], got [{float(video.min()):.3g}, "
                         f"{float(video.max()):.3g}] (pass uint8, or divide by 255)")
    return (video.float() * 255).round().to(torch.uint8).contiguous()


class VP2Predictor:
    """``VP2Predictor(wm)(batch) -> {"rgb": (N, T, H, W, 3) float32 in [0, 1]}``.

    Sampling is reproducible: call k uses seed (``seed``, k) unless ``reseed`` is False, in which case every
    call uses ``seed`` itself (what a test comparing against ``wm.rollout(..., seed=seed)`` wants). At most
    ``max_batch`` sequences are rolled out at once; chunk i of a call uses that call's seed + i.
    """

    def __init__(self, wm, *, temperature: float = 1.0, top_k: int | None = 100, seed: int = 0,
                 max_batch: int = 200, reseed: bool = True):
        if max_batch < 1:
            raise ConfigError(f"VP2Predictor: max_batch must be >= 1, got {max_batch}")
        self.wm, self.temperature, self.top_k = wm, temperature, top_k
        self.seed, self.max_batch, self.reseed, self.calls = int(seed), int(max_batch), reseed, 0

    def _call_seed(self) -> int:
        if not self.reseed:
            return self.seed
        return int(np.random.SeedSequence([self.seed, self.calls]).generate_state(1)[0])

    def __call__(self, batch: dict) -> dict:
        for key in ("video", "actions"):
            if key not in batch:
                raise KeyError(f"batch: missing '{key}' (VP2 passes 'video' and 'actions'); got keys {sorted(batch)}")
        numpy_out = not isinstance(batch["video"], torch.Tensor)
        video = channels_last_uint8(_as_tensor(batch["video"], "video"))
        actions = _as_tensor(batch["actions"], "actions")
        n, n_ctx = video.shape[:2]
        t0 = self.wm.context_frames
        if n_ctx < t0:
            raise ValueError(f"batch['video']: this world model needs at least {t0} context frames, got {n_ctx}")
        r = self.wm.tokenizer.config.resolution
        if tuple(video.shape[2:4]) != (r, r):
            raise ValueError(f"batch['video']: frames are {tuple(video.shape[2:4])}, the world model takes ({r}, {r})")
        if actions.ndim != 3 or actions.shape[0] != n or actions.shape[2] != self.wm.action_dim:
            raise ValueError(f"batch['actions']: expected (N={n}, n_ctx - 1 + T, A={self.wm.action_dim}), got "
                             f"{tuple(actions.shape)}")
        if not actions.is_floating_point():
            raise TypeError(f"batch['actions']: expected floats, got dtype {actions.dtype}")
        horizon = actions.shape[1] - (n_ctx - 1)
        if not 1 <= horizon <= self.wm.max_steps:
            raise ValueError(f"batch['actions']: {actions.shape[1]} actions for {n_ctx} context frames leave "
                             f"T = {horizon} to predict; this model predicts 1..{self.wm.max_steps}")
        ctx = video[:, n_ctx - t0:]
        future = actions[:, n_ctx - 1:].float()
        seed = self._call_seed()
        self.calls += 1
        out = []
        for i, start in enumerate(range(0, n, self.max_batch)):
            sl = slice(start, start + self.max_batch)
            frames, _ = self.wm.rollout(ctx[sl], future[sl], temperature=self.temperature, top_k=self.top_k,
                                        seed=seed + i)
            out.append(frames.cpu())
        rgb = to_unit(torch.cat(out))
        return {"rgb": rgb.numpy() if numpy_out else rgb}
