"""Which stored runs a model reference names, and which network they ran: the rows of ``compare`` and
``worst-case``.

A model's name is chosen by people (a card's ``name``), so two card files can give one name to two models
(the same weights built with other ``kwargs``). Rows record the exact model (``arch``: a card's resolved
path, a timm ``arch.tag``); a reference that is a card file picks that card's runs, and a plain name that
covers several models is refused rather than answered with whichever ran last.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Iterable

import pandas as pd

from robustbench_vit.errors import DataError, RbvitError

__all__ = [
    "runs_of_model",
    "NETWORK",
    "with_network",
    "latest_network",
    "condition_settings",
    "differing_settings",
]

log = logging.getLogger(__name__)

#: what makes two runs under one model name the same network (the leaderboard's variant, less the suite
#: configuration and images; ``preprocessing`` names the geometry, ``mean``/``std`` the normalisation):
#: per-image outcomes of two of them are never combined
NETWORK = ["weights", "dtype", "preprocessing", "mean", "std"]


def runs_of_model(ref: str, present: Iterable[str], runs: pd.DataFrame | None) -> tuple[str, set[str] | None]:
    """``(the model key ref's rows carry, the run ids of ref's model)``; ``None`` for the run ids when every
    run of the key is ref's (one model under that name, or no metric rows to tell models apart). A reference
    that resolves to a model (a card file, a zoo or timm name) picks the runs of its exact ``arch``."""
    from robustbench_vit.models.names import resolve_spec, stored_key

    key = stored_key(ref, present)
    if runs is None or runs.empty or "arch" not in runs:
        return key, None
    mine = runs[runs.model == key]
    try:
        arch = resolve_spec(ref).arch
    except (RbvitError, OSError):  # a name only rows know now (a card since deleted, a module)
        arch = None
    if arch is not None and (mine.arch == arch).any():
        return key, set(mine.run_id[mine.arch == arch])
    archs = sorted(set(mine.arch.dropna()))
    if len(archs) > 1:
        raise DataError(
            f"{key} names {len(archs)} models ({', '.join(archs[:3])}); name the one you mean by its card file"
        )
    return key, None


def with_network(samples: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """``samples`` with the :data:`NETWORK` columns of their runs ('' where the metric rows lack them)."""
    network = runs.drop_duplicates("run_id").set_index("run_id")[NETWORK]
    out = samples.drop(columns=[c for c in NETWORK if c in samples]).join(network, on="run_id")
    out[NETWORK] = out[NETWORK].fillna("")
    return out


def latest_network(samples: pd.DataFrame, runs: pd.DataFrame | None, model: str) -> pd.DataFrame:
    """The per-image rows of one model name that ran the network seen last, with a warning naming how many
    others were left out (weights overwritten, another precision or preprocessing under the same name):
    rows of two networks are never pooled into one model's outcomes."""
    if runs is None or samples.empty:
        return samples
    d = with_network(samples, runs)
    key = d[NETWORK].astype(str).agg("\0".join, axis=1)
    if key.nunique() <= 1:
        return samples
    seen = d["seen_at"] if "seen_at" in d else pd.Series(pd.NaT, index=d.index)
    order = d.assign(_seen=seen, _key=key).sort_values(["_seen", "run_id"], na_position="first")
    chosen = order["_key"].iloc[-1]
    log.warning(
        "%s has per-image rows of %d networks under its name (weights, precision or preprocessing); "
        "using the one seen last (%s)",
        model,
        key.nunique(),
        chosen.replace("\0", "; "),
    )
    return samples[(key == chosen).to_numpy()]


#: suite parameters that name inputs (a referenced model, a folder) rather than how the suite runs: they
#: may be spelled otherwise for one input, and the condition's own parameters name the input where it matters
_INPUT_PARAMETERS = ("source", "compare_with", "saliency_model", "clean_data", "baseline", "baseline_model")


@functools.lru_cache(maxsize=4096)
def _plain_suite_settings(config: str) -> tuple[tuple[str, object], ...]:
    """The suite's version and plain parameters in a run's ``config`` (parsed once per run, not per row)."""
    try:
        suite = json.loads(config).get("suite", {})
    except (TypeError, ValueError, AttributeError):
        return ()
    return tuple((k, v) for k, v in suite.items() if not isinstance(v, (list, dict)))


def condition_settings(config: str, params: str) -> dict[str, object]:
    """How a run ran one condition: the suite's version and plain parameters (not the lists that choose the
    conditions: epsilons, corruptions, grids) and the condition's own parameters."""
    try:
        own = json.loads(params or "{}")
    except (TypeError, ValueError):
        own = {}
    own = own if isinstance(own, dict) else {}
    plain = dict(_plain_suite_settings(config)) if isinstance(config, str) else {}
    return {k: v for k, v in {**plain, **own}.items() if k not in _INPUT_PARAMETERS}


def differing_settings(settings: list[dict[str, object]]) -> list[str]:
    """The keys whose values are not the same in every one of ``settings`` (a key one lacks differs)."""
    keys = sorted({k for d in settings for k in d})
    return [k for k in keys if len({json.dumps(d.get(k, "-"), default=str) for d in settings}) > 1]
