"""The public ``evaluate``: the caller's choice of executor, one process (:func:`runner.evaluate`) or one
process per local device (:func:`multidevice.evaluate_on_devices`, ``devices=`` / ``--devices``), as a
sweep chooses between its local and Ray executors. The runner itself never starts processes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
from torch import nn

from robustbench_vit.engine.multidevice import evaluate_on_devices
from robustbench_vit.engine.progress import Progress
from robustbench_vit.engine.runner import RunOptions, _make_suites, parse_suites, run_options
from robustbench_vit.engine.runner import evaluate as evaluate_here
from robustbench_vit.models.loading import LoadedModel
from robustbench_vit.results.figures.plots import draw_run_figures
from robustbench_vit.suites import Suite

__all__ = ["evaluate"]


def evaluate(
    model: str | LoadedModel | nn.Module,
    suite: str | Suite | Sequence[str | Suite],
    options: RunOptions | None = None,
    *,
    progress: bool | str | Progress | None = "auto",
    preprocessing: dict[str, Any] | None = None,
    name: str | None = None,
    **kwargs: Any,
) -> pd.DataFrame:
    """Evaluate a model under one or more suites (see :func:`robustbench_vit.engine.runner.evaluate`); with
    ``devices=(...)`` the conditions are split over one process per device, and the rows equal one
    process's."""
    opts = run_options(options, kwargs)
    if not opts.devices:
        # the caller's own options and keywords: the runner tells a dtype asked for from the default one
        df = evaluate_here(
            model, suite, options, progress=progress, preprocessing=preprocessing, name=name, **kwargs
        )
    else:
        _make_suites(parse_suites(suite), opts.suite_params)  # parameter errors before any process starts
        df = evaluate_on_devices(model, suite, opts, progress=progress)
    if opts.out and opts.shard is None:
        draw_run_figures(df, opts.out)
    return df
