"""Which stored runs a model reference names: the rows of ``compare`` and ``worst-case``.

A model's name is chosen by people (a card's ``name``), so two card files can give one name to two models
(the same weights built with other ``kwargs``). Rows record the exact model (``arch``: a card's resolved
path, a timm ``arch.tag``); a reference that is a card file picks that card's runs, and a plain name that
covers several models is refused rather than answered with whichever ran last.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from robustbench_vit.errors import DataError, RbvitError

__all__ = ["runs_of_model"]


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
