"""Episode datasets: the on-disk format, clip sampling and mixtures, clip augmentation, contact sheets."""

from .augment import AugmentConfig
from .clips import ClipDataset, MixtureSource, dataset_stats
from .contact_sheet import contact_sheet, save_png
from .episodes import EpisodeDataset, EpisodeWriter

__all__ = [
    "AugmentConfig", "ClipDataset", "EpisodeDataset", "EpisodeWriter", "MixtureSource", "contact_sheet",
    "dataset_stats", "save_png",
]
