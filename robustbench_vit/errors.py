"""Exceptions a user sees. Each message is one line that names the thing to fix."""

from __future__ import annotations

__all__ = [
    "RbvitError",
    "UnknownNameError",
    "DataError",
    "CheckpointError",
    "WeightsUnavailableError",
    "ConfigError",
    "ResultsError",
]


class RbvitError(Exception):
    """Base class: the CLI prints ``str(err)`` as a one-line error and exits with ``exit_code``."""

    exit_code = 2


class UnknownNameError(RbvitError, LookupError):
    """A registry was asked for a name it does not hold."""

    exit_code = 3


class DataError(RbvitError):
    """A dataset folder is missing or malformed, or an image cannot be read."""

    exit_code = 4


class CheckpointError(RbvitError):
    """A checkpoint or model card cannot be loaded (format, keys, shapes)."""

    exit_code = 5


class WeightsUnavailableError(RbvitError):
    """Pretrained weights cannot be fetched (offline, hub down) and are not cached."""

    exit_code = 6


class ResultsError(RbvitError):
    """A results or cache folder cannot be written (permission, no space left)."""

    exit_code = 8


class ConfigError(RbvitError, ValueError):
    """A suite, perturbation or CLI parameter is invalid."""

    exit_code = 2
