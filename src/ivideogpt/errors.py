"""User-facing errors: the CLI prints these as one line and exits non-zero (no traceback)."""


class IVideoGPTError(Exception):
    """Base class for errors caused by user input (files, configs, arguments), not by bugs."""


class DataError(IVideoGPTError):
    """A dataset file is missing, truncated or has the wrong shape/dtype."""


class ConfigError(IVideoGPTError):
    """A config/preset/override names an unknown field or has a value of the wrong type."""


class CheckpointError(IVideoGPTError):
    """A checkpoint directory is missing, incomplete or does not match the model."""
