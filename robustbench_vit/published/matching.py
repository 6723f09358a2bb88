"""Which result rows follow a paper card's protocol, so they can be read beside the published table
(``rbvit reproduce`` compares them cell by cell).

A row follows protocol ``P`` of a card when all of these hold:

- the same suite, condition and metric, for a model the card lists under ``P``, loaded from the same source
  with its own published weights: never a checkpoint given in their place (``--checkpoint``), random
  weights, a model changed after loading, or a card of the user's that takes the model's name;
- the same suite configuration (every parameter and the suite version, as the run recorded it);
- ``P``'s dataset, where ``P`` names one;
- ``P``'s preprocessing. Every field ``P`` fixes has the row's effective value, and the run overrode no
  field that ``P`` leaves to the model. So a ``model`` protocol never matches a run made with
  ``--img-size`` or ``--crop-pct``;
- ``P``'s image set: its content id where the card records one; else the shipped id list ``P`` names (and
  its image count); else the image count.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any

import pandas as pd

from robustbench_vit.published.cards import Protocol, card_names, load_card, protocol_preprocessing

__all__ = ["comparable_with"]


@dataclass(frozen=True)
class _Entry:
    ref: str
    protocol: Protocol
    suite_config: str
    models: dict[str, dict[str, Any]]  # row key -> the preprocessing overrides P gives that model
    sources: dict[str, str]  # row key -> the source the card's model is loaded from (timm, torchvision, ...)


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=str)


@functools.lru_cache(maxsize=1)
def _protocols() -> dict[tuple[str, str, str], list[_Entry]]:
    """(suite, condition, metric) -> the shipped protocols with that cell."""
    from robustbench_vit.models.names import resolve_spec, row_key
    from robustbench_vit.suites import make_suite

    out: dict[tuple[str, str, str], list[_Entry]] = {}
    for name in card_names():
        card = load_card(name)
        for pid, p in card.protocols.items():
            models, sources = {}, {}
            for c in card.cells:
                if c.protocol == pid:
                    models[row_key(c.model)] = protocol_preprocessing(p.preprocessing, c.model)
                    sources[row_key(c.model)] = resolve_spec(c.model).source
            config = _canonical(make_suite(p.suite, p.params).config())
            out.setdefault((p.suite, p.condition, p.metric), []).append(
                _Entry(f"{name}/{pid}", p, config, models, sources)
            )
    return out


def _effective(row: Any) -> dict[str, Any]:
    """The row's preprocessing, by the names of the override flags."""
    return {
        "img_size": _int_or_none(getattr(row, "input_size", None)),
        "crop_pct": _float_or_none(getattr(row, "crop_pct", None)),
        "interpolation": getattr(row, "interpolation", None),
    }


def _int_or_none(v: Any) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def _float_or_none(v: Any) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and abs(float(a) - float(b)) < 1e-9
    return a == b


#: marks of the ``weights`` column that say the weights are not the model's published ones
_NOT_PUBLISHED = ("checkpoint:", "random", "module ")
_CHANGED = (" changed:", " global-hooks:")


def _published_weights(row: Any, entry: _Entry, config: dict[str, Any]) -> bool:
    """Whether the row's model is the card's model with its own published weights: the same source (a
    user's card named like a zoo model is not it), no checkpoint in their place, not random, not changed
    after loading, no hook registered for every module."""
    if str(getattr(row, "source", "")) != entry.sources.get(row.model):
        return False
    options = config.get("options", {})
    if options.get("checkpoint") or options.get("pretrained") is False:
        return False
    weights = str(getattr(row, "weights", "") or "")
    return not weights.startswith(_NOT_PUBLISHED) and not any(m in weights for m in _CHANGED)


def _follows(row: Any, entry: _Entry, config: dict[str, Any]) -> bool:
    """Whether one result row (an itertuples row) follows ``entry``'s protocol; ``config`` is its parsed
    ``config`` column."""
    p = entry.protocol
    if row.model not in entry.models or not _published_weights(row, entry, config):
        return False
    if _canonical(config.get("suite", {})) != entry.suite_config:
        return False
    if p.dataset and row.dataset != p.dataset:
        return False
    wanted = entry.models[row.model]
    overridden = {
        k for k, v in (config.get("options", {}).get("override_preprocessing") or {}).items() if v is not None
    }
    if overridden - set(wanted):
        return False  # the run changed something the protocol leaves to the model
    effective = _effective(row)
    if any(not _same(effective.get(k), v) for k, v in wanted.items()):
        return False
    if p.image_set_id:
        return str(row.image_set) == p.image_set_id
    if p.subset:
        return config.get("options", {}).get("subset") == p.subset and int(row.n_images) == p.images
    return int(row.n_images) == p.images


def comparable_with(rows: pd.DataFrame) -> pd.Series:
    """Per result row: the ``card/protocol`` entries it follows (comma-separated, '' for none). ``rows`` are
    result rows as stored (``config`` JSON, ``input_size``, ``crop_pct``, ``interpolation``, ``dataset``,
    ``n_images``, ``image_set``); a row without them follows no protocol."""
    table = _protocols()
    needed = {"suite", "condition", "metric", "model", "source", "weights", "dataset"}
    needed |= {"n_images", "image_set", "config"}
    if rows.empty or not needed <= set(rows.columns):
        return pd.Series("", index=rows.index, dtype=object)
    marks = []
    for r in rows.itertuples(index=False):
        entries = table.get((r.suite, r.condition, r.metric), [])
        if not entries:
            marks.append("")
            continue
        try:
            config = json.loads(r.config) if isinstance(r.config, str) else {}
        except ValueError:
            config = {}
        marks.append(", ".join(e.ref for e in entries if _follows(r, e, config)))
    return pd.Series(marks, index=rows.index, dtype=object)
