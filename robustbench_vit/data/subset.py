"""Evaluation subsets: class-stratified seeded ``--limit N`` and checked-in id lists (``--subset``)."""

from __future__ import annotations

import os
from collections import Counter
from importlib import resources
from pathlib import Path

import numpy as np

from robustbench_vit.data.datasets import ImageDataset
from robustbench_vit.errors import DataError

__all__ = ["stratified_limit", "read_subset", "builtin_subsets", "shipped_subset_items", "LIMIT_SEED"]

#: the seed of every ``--limit`` draw: the evaluated images never depend on the run's ``--seed``, so runs
#: of several seeds measure the perturbations' randomness on one image set and the leaderboard averages
#: them (a subset drawn per seed would make each seed its own image set, never aggregated)
LIMIT_SEED = 0


def stratified_limit(targets: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Pick ``n`` indices spread evenly over classes (round-robin over seeded per-class shuffles).

    The result is sorted (sequential cache reads) and deterministic for a given seed.
    """
    if n <= 0:
        raise DataError(f"--limit must be positive, got {n}")
    if n >= len(targets):
        return np.arange(len(targets))
    rng = np.random.default_rng(seed)
    classes = np.unique(targets)
    per_class = [rng.permutation(np.flatnonzero(targets == c)) for c in classes]
    order = rng.permutation(len(classes))
    picked: list[int] = []
    depth = 0
    while len(picked) < n:
        for ci in order:
            if depth < len(per_class[ci]):
                picked.append(int(per_class[ci][depth]))
                if len(picked) == n:
                    break
        depth += 1
    return np.sort(np.asarray(picked, dtype=np.int64))


def builtin_subsets() -> list[str]:
    return sorted(
        p.name[:-4] for p in resources.files("robustbench_vit.subsets").iterdir() if p.name.endswith(".txt")
    )


def shipped_subset_items(name: str) -> list[str]:
    """The relative paths of a list shipped in ``robustbench_vit/subsets`` (``#`` lines are comments)."""
    shipped = resources.files("robustbench_vit.subsets") / f"{name}.txt"
    if not shipped.is_file():
        raise DataError(f"no shipped subset {name!r} ({', '.join(builtin_subsets())})")
    return _items(shipped.read_text())


def _items(text: str) -> list[str]:
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]


def _relative(item: str, root: Path) -> str:
    """An item as the dataset names it: ``./dog/1.png`` and ``<root>/dog/1.png`` are ``dog/1.png``."""
    while item.startswith("./"):
        item = item[2:]
    if Path(item).is_absolute():
        path = Path(os.path.normpath(item))
        for base in (Path(root).absolute(), Path(root).resolve()):
            if path.is_relative_to(base):
                return path.relative_to(base).as_posix()
    return item  # outside the folder: reported as not in it


def read_subset(spec: str, ds: ImageDataset) -> np.ndarray:
    """Indices of the items named by a subset file (one path per line, relative to the folder, ``./`` or
    under its absolute path; ``#`` comments).

    ``spec`` is a path or the name of a list shipped in ``robustbench_vit/subsets``.
    """
    path = Path(spec)
    if not path.is_file():
        if spec not in builtin_subsets():
            raise DataError(
                f"subset {spec!r} is neither a file nor a shipped list ({', '.join(builtin_subsets())})"
            )
        wanted = shipped_subset_items(spec)
    else:
        wanted = _items(path.read_text(encoding="utf-8-sig"))  # a BOM is not part of the first path
    wanted = [_relative(w, ds.root) for w in wanted]
    pos = {it: i for i, it in enumerate(ds.items)}
    missing = [w for w in wanted if w not in pos]
    if missing:
        raise DataError(f"subset {spec!r}: {len(missing)} items not in {ds.root}, e.g. {missing[0]}")
    if not wanted:
        raise DataError(f"subset {spec!r} names no items (one relative path per line)")
    twice = sorted(w for w, k in Counter(wanted).items() if k > 1)
    if twice:
        raise DataError(
            f"subset {spec!r} names {len(twice)} items more than once, e.g. {twice[0]} (each image would count twice)"
        )
    return np.sort(np.asarray([pos[w] for w in wanted], dtype=np.int64))
