"""Label spaces: the ordered classes a model predicts, named by WordNet id and/or class name.

Datasets are mapped onto a model's label space by wnid (ImageNet-style folders) or by class name
(CIFAR-style folders), never by position alone, so a folder with a missing class cannot silently
shift every label.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from dataclasses import dataclass
from functools import cache

from robustbench_vit.errors import ConfigError, DataError, UnknownNameError

__all__ = [
    "LabelSpace",
    "get_label_space",
    "CIFAR10_CLASSES",
    "is_wnid",
    "normalize_name",
    "nfc",
    "wnid_positions",
]

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)

_WNID = re.compile(r"^n\d{8}$")


def is_wnid(name: str) -> bool:
    return bool(_WNID.match(name))


def nfc(text: str) -> str:
    """Unicode's composed form: a name macOS stored decomposed (``cafe`` + combining accent) is the name
    typed with its accented letter."""
    return unicodedata.normalize("NFC", text)


def normalize_name(name: str) -> str:
    return re.sub(r"[\s_\-]+", " ", nfc(name).strip().lower())


@dataclass(frozen=True)
class LabelSpace:
    """An ordered set of classes. ``wnids`` is empty for spaces without WordNet ids."""

    name: str
    names: tuple[str, ...]
    wnids: tuple[str, ...] = ()

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def index_of(self, cls: str) -> int:
        """Index of a dataset class given as wnid or class name; raises ``DataError`` if absent."""
        if self.wnids and is_wnid(cls):
            try:
                return self.wnids.index(cls)
            except ValueError:
                raise DataError(f"class folder {cls!r} is not a wnid of label space {self.name!r}") from None
        key = normalize_name(cls)
        hits = [i for i, n in enumerate(self.names) if normalize_name(n) == key]
        if len(hits) > 1:  # ImageNet-1k names two classes "crane" (the bird and the machine)
            which = ", ".join(self.wnids[i] if self.wnids else str(i) for i in hits)
            raise DataError(
                f"class name {cls!r} names {len(hits)} classes of label space {self.name!r} ({which}); "
                "name the class by its wnid"
            )
        if hits:
            return hits[0]
        if (
            cls.strip().isdigit()
        ):  # caffe's val.txt (sorted wnids, 0-based) and the devkit (ILSVRC ids, 1-based) differ
            raise DataError(
                f"class {cls!r} is a number: labels name classes by wnid or class name, never by an index whose "
                "order differs between releases (caffe's val.txt, the devkit's ground truth); map them to wnids"
            )
        raise DataError(f"class {cls!r} is not in label space {self.name!r} ({self._naming_hint(cls)})")

    def _naming_hint(self, cls: str) -> str:
        """How this space names its classes, and the class ``cls`` most likely meant."""
        if self.wnids:
            how = f"it names classes by wnid, like {self.wnids[0]}, or by name, like {self.names[0]!r}"
        else:
            how = f"its classes: {', '.join(self.names[:10])}{' ...' if len(self.names) > 10 else ''}"
        if self.wnids and cls.strip().lower() in self.wnids:
            return f"{how}; did you mean {cls.strip().lower()!r}? wnids are lower case"
        if self.wnids:  # names there are lists of synonyms: a near name is rarely the class meant
            return how
        normalized = [normalize_name(n) for n in self.names]
        close = difflib.get_close_matches(normalize_name(cls), normalized, n=1, cutoff=0.75)
        return f"{how}; did you mean {self.names[normalized.index(close[0])]!r}?" if close else how


@cache
def _imagenet1k() -> LabelSpace:
    from timm.data import ImageNetInfo

    info = ImageNetInfo("imagenet-1k")
    wnids = tuple(info.label_names())
    names = tuple(info.index_to_description(i) for i in range(len(wnids)))
    return LabelSpace("imagenet1k", names, wnids)


_BUILTIN = {
    "imagenet1k": _imagenet1k,
    "cifar10": lambda: LabelSpace("cifar10", CIFAR10_CLASSES),
}


def get_label_space(spec: str | list[str] | tuple[str, ...]) -> LabelSpace:
    """``imagenet1k``, ``cifar10``, or an explicit list of class names (model cards)."""
    if isinstance(spec, (list, tuple)):
        if not spec:
            raise ConfigError("an explicit label space needs at least one class name")
        seen: dict[str, str] = {}
        for s in spec:
            if not isinstance(s, str) or not s.strip():
                raise ConfigError(f"label_space entries must be class names, got {s!r}")
            if normalize_name(s) in seen:
                raise ConfigError(
                    f"label_space names one class twice ({seen[normalize_name(s)]!r} and {s!r}); "
                    "every class needs its own name"
                )
            seen[normalize_name(s)] = s
        wnids = tuple(spec) if all(is_wnid(s) for s in spec) else ()
        return LabelSpace("custom", tuple(spec), wnids)
    try:
        return _BUILTIN[spec]()
    except KeyError:
        raise UnknownNameError(
            f"unknown label space {spec!r}; use one of {', '.join(_BUILTIN)} or a list of class names"
        ) from None


def wnid_positions(space: LabelSpace, wnids: list[str] | tuple[str, ...], what: str) -> list[int]:
    """Where each of ``wnids`` sits among the outputs of a model with label space ``space``, matched by
    WordNet id: ImageNet-1k in timm's order, or a card's own list of wnids in any order (a model trained
    with another class order, or on more classes). ``what`` (the suite) names the need in the error."""
    if not space.wnids:
        raise ConfigError(
            f"{what} needs an ImageNet model: label space {space.name!r} names its classes without "
            "WordNet ids"
        )
    pos = {w: i for i, w in enumerate(space.wnids)}
    missing = [w for w in wnids if w not in pos]
    if missing:
        raise ConfigError(
            f"{what}: label space {space.name!r} lacks {len(missing)} of the {len(wnids)} ImageNet "
            f"classes it scores (e.g. {missing[0]})"
        )
    return [pos[w] for w in wnids]


def no_classifier(model: str, suite: str) -> ConfigError:
    """The one-line refusal of a model without a classifier (label space ``none``) by a suite that scores
    class predictions."""
    return ConfigError(
        f"model {model} has no classifier (label space 'none'), and suite {suite} scores class predictions; "
        "evaluate its features with --suite representations (CKA, attention distance)"
    )
