"""Paper cards: the published tables as data (``robustbench_vit/published/cards/*.toml``).

A card holds ``[card]`` (name, title, citation: the paper, table or authors' file with its commit),
``[[protocol]]`` entries (``id``, ``suite``, ``params``, ``condition``, ``metric``, ``preprocessing``
(:data:`PREPROCESSING`), ``dataset`` (the rows' dataset name, when the folder alone does not say it),
``subset`` (a shipped id list), ``image_set`` in words, ``images`` (count), optional ``image_set_id``
(rbvit's content id of that image set), ``data`` (what ``--data`` must hold), ``source`` (the file and
commit of this protocol's values, when they differ from the card's citation) and a ``tolerance`` with its
``reason``) and ``[[cell]]`` entries (``protocol``, ``model``, ``value``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import tomllib

from robustbench_vit.errors import ConfigError, UnknownNameError

__all__ = [
    "Protocol",
    "Cell",
    "PaperCard",
    "load_card",
    "card_names",
    "PREPROCESSING",
    "RES256_CROP224",
    "protocol_preprocessing",
]

RES256_CROP224 = {"img_size": 224, "crop_pct": 224 / 256, "interpolation": "bilinear"}

#: preprocessing choices a protocol may name: ``model`` (each model's own), ``res256crop224`` (resize 256,
#: centre crop 224, bilinear; each model's mean/std) and ``timm-test`` (each timm model's ``test_input_size``
#: and ``test_crop_pct``: the rows timm's result files list at the larger test size)
PREPROCESSING = ("model", "res256crop224", "timm-test")


def protocol_preprocessing(choice: str, model: str) -> dict[str, Any]:
    """The ``--img-size/--crop-pct/--interpolation`` overrides that give ``model`` the preprocessing a
    protocol names ({} for ``model``); read from metadata only (no weights, no network)."""
    if choice == "model":
        return {}
    if choice == "res256crop224":
        return dict(RES256_CROP224)
    if choice == "timm-test":
        from robustbench_vit.models.names import resolve_spec

        spec = resolve_spec(model)
        cfg = None
        if spec.source == "timm":
            import timm

            cfg = timm.get_pretrained_cfg(spec.arch, allow_unregistered=False)
        if cfg is None or not cfg.test_input_size:
            raise ConfigError(
                f"{model} has no timm test_input_size: protocol preprocessing timm-test needs one"
            )
        return {
            "img_size": int(cfg.test_input_size[-1]),
            "crop_pct": float(cfg.test_crop_pct or cfg.crop_pct),
        }
    raise ConfigError(f"preprocessing must be one of {', '.join(PREPROCESSING)}, got {choice!r}")


@dataclass(frozen=True)
class Protocol:
    id: str
    suite: str
    condition: str
    metric: str
    image_set: str
    images: int
    tolerance: float
    reason: str
    params: dict[str, Any] = field(default_factory=dict)
    preprocessing: str = "model"
    dataset: str = ""
    subset: str = ""
    data: str = ""
    image_set_id: str = ""
    source: str = ""


@dataclass(frozen=True)
class Cell:
    protocol: str
    model: str
    value: float


@dataclass(frozen=True)
class PaperCard:
    name: str
    title: str
    citation: str
    protocols: dict[str, Protocol]
    cells: list[Cell]
    path: Path

    def models(self) -> list[str]:
        return list(dict.fromkeys(c.model for c in self.cells))


def card_names() -> list[str]:
    """The shipped cards."""
    folder = resources.files("robustbench_vit.published") / "cards"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def load_card(ref: str) -> PaperCard:
    """A shipped card by name or a card file by path, validated (:func:`_validate`)."""
    path = Path(ref)
    if not path.is_file():
        if ref not in card_names():
            import difflib

            close = difflib.get_close_matches(ref, card_names(), n=2)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise UnknownNameError(f"unknown paper card {ref!r}{hint} (rbvit reproduce --list)")
        path = Path(str(resources.files("robustbench_vit.published") / "cards" / f"{ref}.toml"))
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"paper card {path}: {e}") from None
    head = raw.get("card", {})
    try:
        protocols = {p["id"]: Protocol(**p) for p in raw.get("protocol", [])}
        cells = [Cell(**c) for c in raw.get("cell", [])]
        card = PaperCard(head["name"], head["title"], head["citation"], protocols, cells, path)
    except (KeyError, TypeError) as e:
        raise ConfigError(f"paper card {path}: missing or unknown field ({e})") from None
    _validate(card)
    return card


def _validate(card: PaperCard) -> None:
    """Names resolve offline, suites and parameters exist, values are proportions, the citation is filled."""
    from robustbench_vit.models.names import resolve_spec
    from robustbench_vit.suites import make_suite

    where = f"paper card {card.name}"
    if not card.citation.strip() or not card.title.strip():
        raise ConfigError(f"{where}: cite the paper, table or file (with its commit) the values come from")
    from robustbench_vit.data.registry import DATASETS
    from robustbench_vit.data.subset import builtin_subsets

    for p in card.protocols.values():
        make_suite(p.suite, p.params)  # unknown suites and parameters are one-line errors here
        if p.preprocessing not in PREPROCESSING:
            raise ConfigError(
                f"{where}: protocol {p.id}: preprocessing must be one of {', '.join(PREPROCESSING)}"
            )
        if p.dataset:
            DATASETS.get(p.dataset)  # unknown name -> did-you-mean error
        if p.subset and p.subset not in builtin_subsets():
            raise ConfigError(f"{where}: protocol {p.id}: no shipped subset {p.subset!r}")
        if not (0 < p.tolerance < 1 and p.reason.strip() and p.images > 0):
            raise ConfigError(
                f"{where}: protocol {p.id} needs a tolerance in (0, 1), its reason and an image count"
            )
    for c in card.cells:
        if c.protocol not in card.protocols:
            raise ConfigError(f"{where}: cell of {c.model} names no protocol {c.protocol!r}")
        if not 0 <= c.value <= 1:
            raise ConfigError(f"{where}: {c.model} {c.protocol} value {c.value} is not a fraction in [0, 1]")
    for m in card.models():
        resolve_spec(m)
    for c in card.cells:  # timm-test: every model of the protocol has a timm test size
        protocol_preprocessing(card.protocols[c.protocol].preprocessing, c.model)
