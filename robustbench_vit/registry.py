"""A generic name -> item registry, one instance per kind (models, suites, datasets).

Duplicates raise; unknown names raise :class:`UnknownNameError` with close matches and the
full list, so a typo on the command line is fixed from the error message alone.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Generic, TypeVar, overload

from robustbench_vit.errors import UnknownNameError

__all__ = ["Registry", "first_unknown"]

T = TypeVar("T")


def first_unknown(keys: Iterable[object], known: Sequence[str]) -> tuple[str, str | None] | None:
    """``(key, closest known name or None)`` for the first of ``keys`` not in ``known``, or ``None``: how a
    card, a preprocessing dict or a sweep file names the field it does not read."""
    for key in keys:
        if key not in known:
            close = difflib.get_close_matches(str(key), list(known), n=1, cutoff=0.6)
            return str(key), (close[0] if close else None)
    return None


class Registry(Generic[T]):
    """Ordered mapping of unique names to items of one kind.

    Example:
        >>> r: Registry[int] = Registry("number")
        >>> r.add("one", 1)
        >>> r.get("one")
        1
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def add(self, name: str, item: T) -> None:
        """Register ``item`` under ``name``; a name already taken raises ``ValueError``."""
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._items[name] = item

    @overload
    def register(self, name: str) -> Callable[[T], T]: ...
    @overload
    def register(self, name: str, item: T) -> T: ...

    def register(self, name, item=None):  # type: ignore[no-untyped-def]
        """Register directly, or use as a decorator: ``@REG.register("name")``."""
        if item is not None:
            self.add(name, item)
            return item

        def deco(obj: T) -> T:
            self.add(name, obj)
            return obj

        return deco

    def get(self, name: str) -> T:
        """Return the item for ``name`` or raise with "did you mean" suggestions."""
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(name, list(self._items), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        return f"unknown {self.kind} {name!r}.{hint} Known: {', '.join(self._items)}"

    def names(self) -> list[str]:
        return list(self._items)

    def items(self) -> Iterator[tuple[str, T]]:
        return iter(list(self._items.items()))

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)
