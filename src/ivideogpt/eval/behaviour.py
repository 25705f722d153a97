"""Which behaviour a clip shows, read off its pixels (video in-context imitation, benchmarks/imitation.py).

The ``pusher-behaviours`` behaviours are sweep directions of the effector, so the classifier tracks the effector
by colour (a soft colour centroid, as the planning keypoints do) and names the behaviour whose direction is
closest to its displacement from the last given frame to the last generated one. It reads only frames, so a
generated clip is judged by where the model drew the arm; its accuracy on real frames and on tokenizer
reconstructions is the ceiling of every accuracy measured with it.
"""

from __future__ import annotations

import numpy as np
import torch

from ..envs.behaviours import behaviour_directions
from ..envs.pusher import EFFECTOR_FILL
from ..frames import to_unit
from ..planning.costs import colour_centroid


class BehaviourClassifier:
    """``classifier(start, frames)`` -> behaviour ids; ``start`` [..., H, W, 3] the last frame given to the model,
    ``frames`` [..., T, H, W, 3] what came after it (uint8 or float in [0, 1])."""

    def __init__(self, behaviours: int = 4, colour=EFFECTOR_FILL, sigma: float = 0.1, still: float = 0.03):
        self.directions = torch.as_tensor(behaviour_directions(behaviours), dtype=torch.float32)
        self.colour = torch.as_tensor(np.asarray(colour, np.float32)).reshape(3)
        self.sigma, self.still = float(sigma), float(still)

    def locate(self, frames) -> torch.Tensor:
        """Effector position [..., 2] (x, y in frame widths) in frames [..., H, W, 3]. A pixel counts with weight
        exp(-d^2 / 2 sigma^2) (d: RGB distance to the effector's colour) when it is nearer that colour than the
        frame's median colour (the table); a 3x3 erosion drops thin stray lines."""
        x = to_unit(frames)
        lead = x.shape[:-3]
        x = x.reshape(-1, *x.shape[-3:])
        bg = x.flatten(1, 2).median(dim=1).values[:, None, None]
        d = (x - self.colour.to(x)).square().sum(-1)
        w = torch.exp(-d / (2 * self.sigma ** 2)) * (d < (x - bg).square().sum(-1))
        w = -torch.nn.functional.max_pool2d(-w[:, None], 3, stride=1, padding=1)[:, 0]
        return colour_centroid(w).reshape(*lead, 2)

    def displacement(self, start, frames) -> torch.Tensor:
        """Effector displacement [..., 2] from ``start`` to the last of ``frames``."""
        return self.locate(to_unit(frames)[..., -1, :, :, :]) - self.locate(start)

    def __call__(self, start, frames) -> torch.Tensor:
        return self.classify(self.displacement(start, frames))

    def classify(self, displacement: torch.Tensor) -> torch.Tensor:
        return (displacement @ self.directions.T).argmax(-1)

    def is_still(self, displacement: torch.Tensor) -> torch.Tensor:
        """True where the effector moved less than ``still`` frame widths (a clip that shows no behaviour)."""
        return displacement.norm(dim=-1) < self.still
