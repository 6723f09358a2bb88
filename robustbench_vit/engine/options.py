"""``RunOptions``: everything besides the model and the suites that shapes a run (all recorded in
``config``), and their validation; one builder (:func:`run_options`) for the runner and the public API."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from robustbench_vit.device import autocast_dtype
from robustbench_vit.errors import ConfigError

__all__ = ["RunOptions", "run_options", "DECODE_CHOICES"]


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    """Everything besides the model and suite that shapes a run (all recorded in ``config``)."""

    data: str | None = None
    dataset: str | None = None
    labels: str | None = None
    limit: int | None = None
    subset: str | None = None
    batch_size: int = 64
    device: str | None = None
    dtype: str = "fp32"
    seed: int = 0
    #: results folder; ``None`` (the API default) writes no files and resumes nothing
    out: str | None = None
    save_samples: bool = False
    workers: int | None = None
    #: where image files are decoded: ``auto`` (in batches on the model's GPU when it has one, else CPU
    #: threads), ``cpu``, or ``device`` (batches on the model's device, whatever it is)
    decode: str = "auto"
    pretrained: bool = True
    checkpoint: str | None = None
    cache_dir: str | None = None
    suite_params: Mapping[str, Any] = field(default_factory=dict)
    #: preprocessing overrides by timm ``validate.py``'s names (``img_size``, ``crop_pct``, ``interpolation``,
    #: ``mean``, ``std``), recorded in every row like any preprocessing
    override_preprocessing: Mapping[str, Any] = field(default_factory=dict)
    #: ``(k, n)``: run only every n-th condition starting at k (a worker's share of a run split over
    #: devices or Ray tasks); no summary. Results are identical to an unsplit run.
    shard: tuple[int, int] | None = None
    #: run the conditions on several local devices at once, one process each (``--devices 0,1``)
    devices: tuple[str, ...] | None = None

    def validate(self) -> None:
        """One-line errors for values no run can use (before any model or image is touched)."""
        for name, lo, hi in (
            ("batch_size", 1, 1 << 20),
            ("limit", 1, (1 << 63) - 1),
            ("seed", 0, (1 << 63) - 1),
            ("workers", 1, 1024),
        ):
            v = getattr(self, name)
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, int):
                raise ConfigError(f"{name} must be an integer, got {v!r}")
            if not lo <= v <= hi:
                flag = "--" + name.replace("_", "-")
                raise ConfigError(f"{flag} must be between {lo} and {hi}, got {v}")
        for name in ("data", "dataset", "labels", "subset", "device", "checkpoint", "cache_dir", "out"):
            v = getattr(self, name)
            if v is not None and not isinstance(v, (str, os.PathLike)):
                raise ConfigError(f"{name} must be a path or name (a string), got {type(v).__name__} {v!r}")
        if not isinstance(self.suite_params, Mapping):
            raise ConfigError(
                f"suite_params must be a mapping of parameter names to values, got {self.suite_params!r}"
            )
        autocast_dtype(self.dtype)
        if self.decode not in DECODE_CHOICES:
            raise ConfigError(f"--decode must be one of {', '.join(DECODE_CHOICES)}, got {self.decode!r}")
        if self.shard is not None:
            k, n = self.shard
            if not (isinstance(k, int) and isinstance(n, int) and n >= 1 and 0 <= k < n):
                raise ConfigError(f"shard must be (k, n) with 0 <= k < n, got {self.shard!r}")
        if self.devices is not None and not self.devices:
            raise ConfigError("--devices needs at least one device")


DECODE_CHOICES = ("auto", "cpu", "device")


def run_options(options: RunOptions | None, changes: Mapping[str, Any]) -> RunOptions:
    """``options`` (default ``RunOptions()``) with keyword ``changes``, validated; a wrong type or an
    unknown option is a :class:`ConfigError`."""
    if options is not None and not isinstance(options, RunOptions):
        raise ConfigError(f"options must be a RunOptions, got {type(options).__name__}")
    try:
        opts = dataclasses.replace(options or RunOptions(), **changes)
    except TypeError as e:
        raise ConfigError(f"evaluate() got an unknown option: {e}") from None
    opts.validate()
    return opts
