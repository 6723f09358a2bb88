"""Image datasets as index lists: folder layouts, flat folders with a label file, CIFAR-10 batches.

An :class:`ImageDataset` knows its items, their dataset-class targets and how to read one raw
image; it never resizes or normalises (that is the cache's and the model's job). Dataset classes
are names (wnids or words) that the runner maps onto the model's label space.
"""

from __future__ import annotations

import functools
import hashlib
import io
import logging
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from robustbench_vit.data.decode import read_bytes, read_rgb
from robustbench_vit.data.digests import stat_tuple
from robustbench_vit.data.labels import CIFAR10_CLASSES, nfc
from robustbench_vit.errors import DataError

__all__ = [
    "ImageDataset",
    "image_folder",
    "flat_folder",
    "cifar10_batches",
    "concat_datasets",
    "IMAGE_EXTENSIONS",
]

log = logging.getLogger(__name__)

#: the files a dataset folder's images are recognised by: torchvision's ``IMG_EXTENSIONS`` (ImageFolder),
#: plus GIF and the other names of JPEG (``.jpe``, ``.jfif``) and Netpbm (``.pbm``, ``.pnm``) files; files
#: of another type Pillow reads (``.avif``, ``.jp2``, ``.tga`` ...) are left out and named in a warning
IMAGE_EXTENSIONS = (
    ".jpeg",
    ".jpg",
    ".jpe",
    ".jfif",
    ".png",
    ".bmp",
    ".webp",
    ".ppm",
    ".pgm",
    ".pbm",
    ".pnm",
    ".tif",
    ".tiff",
    ".gif",
)


@dataclass
class ImageDataset:
    """Items of one dataset.

    Attributes:
        kind: layout that produced it (``folder``, ``flat``, ``cifar10-batches``).
        root: the folder given by the user.
        classes: dataset class names, index = target value.
        items: stable item ids (relative paths), in index order.
        targets: int64 array, dataset class of every item.
        read: index -> uint8 (3, H, W) RGB tensor, full resolution.
        encoded: index -> the item's encoded file bytes (uint8 1-D), for decoders that take a batch
            of files at once (the GPU data path); ``None`` when items are not files.
        fingerprint: the dataset's *layout* (kind, resolved root, item ids): names the cache folder. What
            the items hold is identified by content (:meth:`ImageCache.identity`), never by this.
        file: index -> the item's file (``None`` when items are not files: their pixels are hashed).
        stats: (N, 4) int64 stat tuples of the files when they were listed (see :mod:`.digests`).
    """

    kind: str
    root: Path
    classes: tuple[str, ...]
    items: list[str]
    targets: np.ndarray
    read: Callable[[int], torch.Tensor] = field(repr=False)
    fingerprint: str = ""
    encoded: Callable[[int], torch.Tensor] | None = field(default=None, repr=False)
    file: Callable[[int], Path] | None = field(default=None, repr=False)
    stats: np.ndarray | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.items)

    def class_of(self, i: int) -> str:
        return self.classes[int(self.targets[i])]


def _fingerprint(kind: str, root: Path, items: list[str]) -> str:
    h = hashlib.sha256(f"{kind}\0{root.resolve()}\0".encode())
    for it in items:
        h.update(f"{it}\n".encode())
    return h.hexdigest()[:16]


@functools.cache
def _other_image_types() -> frozenset[str]:
    """Extensions of the image files Pillow reads that a dataset folder does not count as images."""
    from PIL import Image

    documents = {".pdf", ".eps", ".ps", ".h5", ".hdf", ".bufr", ".grib", ".fit", ".fits", ".mpeg", ".mpg"}
    return frozenset(ext.lower() for ext in Image.registered_extensions()) - set(IMAGE_EXTENSIONS) - documents


def _list_images(
    folder: Path,
    nested: list[str] | None = None,
    hidden: list[str] | None = None,
    other: list[str] | None = None,
) -> list[tuple[str, tuple[int, int, int, int]]]:
    """``(file name, stat tuple)`` of the image files in ``folder``, sorted by name (one ``scandir``);
    the names of its sub-folders (not hidden) are appended to ``nested`` when given. Hidden files (macOS's
    ``._<name>`` resource forks beside every copied image, editors' temp files) are not images: they are
    left out and named in ``hidden``. Images of a type outside :data:`IMAGE_EXTENSIONS` (``.avif``,
    ``.jp2`` ...) are left out and named in ``other``."""
    out = []
    with os.scandir(folder) as it:
        for e in it:
            if nested is not None and not e.name.startswith((".", "__")) and e.is_dir():
                nested.append(f"{folder.name}/{e.name}")
                continue
            ext = os.path.splitext(e.name)[1].lower()
            if ext not in IMAGE_EXTENSIONS:
                if other is not None and ext in _other_image_types() and not e.name.startswith("."):
                    other.append(f"{folder.name}/{e.name}")
                continue
            if e.name.startswith("."):
                if hidden is not None:
                    hidden.append(f"{folder.name}/{e.name}")
                continue
            try:
                if not e.is_file():
                    if e.is_symlink() and not e.is_dir():  # a link whose target is gone (an unmounted disk)
                        raise DataError(
                            f"image {folder / e.name} is a link to a missing file ({os.readlink(e.path)}); "
                            "restore its target or remove the link"
                        )
                    continue
                out.append((e.name, stat_tuple(e.stat())))
            except OSError as err:  # never a smaller image set without a word
                raise DataError(f"cannot read image {folder / e.name}: {err.strerror or err}") from None
    return sorted(out)


def _say_left_out(root: Path, hidden: list[str], other: list[str]) -> None:
    """Warn about the files of a dataset folder that look like images and are not evaluated."""
    if hidden:
        log.warning(
            "%s: %d hidden files with image extensions (e.g. %s: macOS resource forks, temp files) are not "
            "evaluated",
            root,
            len(hidden),
            sorted(hidden)[0],
        )
    if other:
        log.warning(
            "%s: %d image files of a type rbvit does not read (e.g. %s) are not evaluated; convert them to "
            "one of %s",
            root,
            len(other),
            sorted(other)[0],
            " ".join(IMAGE_EXTENSIONS),
        )


def _file_dataset(
    kind: str, root: Path, classes: tuple[str, ...], items: list[str], targets: list[int], stats: list
) -> ImageDataset:
    return ImageDataset(
        kind,
        root,
        classes,
        items,
        np.asarray(targets, dtype=np.int64),
        lambda i: read_rgb(root / items[i]),
        _fingerprint(kind, root, items),
        lambda i: read_bytes(root / items[i]),
        lambda i: root / items[i],
        np.asarray(stats, dtype=np.int64).reshape(-1, 4),
    )


def _require_dir(root: Path, what: str) -> Path:
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"{what} folder not found: {root} (pass --data PATH to an existing folder)")
    return root


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS


def image_folder(root: str | Path, *, classes: list[str] | None = None) -> ImageDataset:
    """``root/<class>/<image>`` (ImageNet wnid folders, CIFAR class folders, any ImageFolder).

    ``classes`` restricts and orders the class folders (default: all, sorted).
    """
    root = _require_dir(Path(root), "dataset")
    entries = list(root.iterdir())  # one listing: class folders, and links whose target is gone
    found = sorted(d.name for d in entries if d.is_dir() and not d.name.startswith("."))
    gone = sorted(d.name for d in entries if d.is_symlink() and not d.exists())
    if gone:  # a class folder on an unmounted disk: never a class left out without a word
        raise DataError(
            f"{root}/{gone[0]} is a link to a missing folder or file; restore its target or remove it"
        )
    if classes is not None:
        missing = sorted(set(classes) - set(found))
        if missing:
            raise DataError(f"{root} lacks class folders: {', '.join(missing[:8])}")
        found = list(classes)
    if not found:
        raise DataError(f"{root} has no class sub-folders (expected <root>/<class>/<image>)")
    items: list[str] = []
    targets: list[int] = []
    stats: list[tuple[int, int, int, int]] = []
    nested: list[str] = []
    hidden: list[str] = []
    other: list[str] = []
    for ci, cls in enumerate(found):
        for name, st in _list_images(root / cls, nested, hidden, other):
            items.append(f"{cls}/{name}")
            targets.append(ci)
            stats.append(st)
    _say_left_out(root, hidden, other)
    if nested:  # torchvision's ImageFolder would walk into them: say that rbvit does not
        log.warning(
            "%s: %d class folders hold sub-folders (e.g. %s) whose images are not evaluated; rbvit reads "
            "<root>/<class>/<image> only",
            root,
            len({n.split("/")[0] for n in nested}),
            sorted(nested)[0],
        )
    if not items:
        raise DataError(f"{root} has class folders but no images ({', '.join(IMAGE_EXTENSIONS)})")
    return _file_dataset("folder", root, tuple(found), items, targets, stats)


def flat_folder(root: str | Path, labels: str | Path) -> ImageDataset:
    """A flat folder of images plus a label file.

    Each label-file line is ``<file name or stem> <label>`` (whitespace or comma separated, a
    header line is skipped); the label is a wnid or class name, mapped onto the model's label
    space later. A file takes the line of its own name; a line naming no file here labels the file with
    its stem (Kaggle's ids, files converted to another format), never a sibling of a named file.
    Kaggle's ``LOC_val_solution.csv`` (label = first word of the second column) works as is.
    """
    root = _require_dir(Path(root), "image")
    labels = Path(labels)
    if not labels.is_file():
        raise DataError(f"label file not found: {labels}")
    by_name: dict[str, str] = {}
    for line in labels.read_text(encoding="utf-8-sig").splitlines():  # a BOM (Windows editors) is not a name
        parts = nfc(line).replace(",", " ").split()  # names compared composed: macOS stores them decomposed
        if len(parts) < 2 or parts[0].lower() in ("imageid", "file", "filename", "image"):
            continue
        name = Path(parts[0]).name
        if by_name.setdefault(name, parts[1]) != parts[1]:
            raise DataError(
                f"label file {labels} gives {parts[0]} two labels ({by_name[name]}, {parts[1]}); keep one line per image"
            )
    hidden: list[str] = []
    other: list[str] = []
    files = _list_images(root, hidden=hidden, other=other)
    _say_left_out(root, hidden, other)
    if not files:
        raise DataError(f"no images in {root}")
    present = {nfc(name) for name, _ in files}
    by_stem: dict[str, set[str]] = {}  # lines naming no file here: ids without extension, converted files
    for name, label in by_name.items():
        if name not in present:
            by_stem.setdefault(Path(name).stem, set()).add(label)
    found: list[str | None] = []
    for name, _ in files:
        # the file's own name first; else its stem (Kaggle's ids, or files converted to another format)
        stem_labels = by_stem.get(Path(nfc(name)).stem, set())
        if nfc(name) not in by_name and len(stem_labels) > 1:
            raise DataError(
                f"label file {labels} names {Path(name).stem} with several extensions and labels "
                f"({', '.join(sorted(stem_labels))}), none of them {name}; name the file as it is"
            )
        found.append(by_name.get(nfc(name)) or next(iter(stem_labels), None))
    missing = [name for (name, _), label in zip(files, found) if label is None]
    if missing:
        raise DataError(f"label file {labels} has no label for {len(missing)} images, e.g. {missing[0]}")
    classes = tuple(sorted({str(label) for label in found}))
    cidx = {c: i for i, c in enumerate(classes)}
    targets = [cidx[str(label)] for label in found]
    return _file_dataset("flat", root, classes, [n for n, _ in files], targets, [st for _, st in files])


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickles CIFAR batches (dicts of numpy arrays, lists, bytes) and refuses anything else."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):  # type: ignore[no-untyped-def]
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")


def cifar10_batches(root: str | Path, *, split: str = "test") -> ImageDataset:
    """The standard CIFAR-10 python batches (``test_batch`` or ``data_batch_1..5``), read safely."""
    root = _require_dir(Path(root), "CIFAR-10 batches")
    names = ["test_batch"] if split == "test" else [f"data_batch_{i}" for i in range(1, 6)]
    arrays, targets = [], []
    for n in names:
        p = root / n
        if not p.is_file():
            raise DataError(f"CIFAR-10 batch file missing: {p}")
        try:
            d = _ArrayOnlyUnpickler(io.BytesIO(p.read_bytes()), encoding="bytes").load()
        except pickle.UnpicklingError as e:
            raise DataError(f"{p} is not a CIFAR-10 python batch: {e}") from None
        arrays.append(np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        targets.extend(int(t) for t in d[b"labels"])
    data = np.concatenate(arrays)
    items = [f"{split}/{i:05d}" for i in range(len(data))]
    fp = _fingerprint("cifar10-batches", root, items)
    return ImageDataset(
        "cifar10-batches",
        root,
        CIFAR10_CLASSES,
        items,
        np.asarray(targets, dtype=np.int64),
        lambda i: torch.from_numpy(data[i].copy()),
        fp,
    )


def concat_datasets(parts: list[tuple[str, ImageDataset]], classes: tuple[str, ...]) -> ImageDataset:
    """One dataset of several (e.g. ImageNet-O followed by its in-distribution ImageNet val images):
    items keep their order and are prefixed ``<name>/``; every part's classes must be among ``classes``."""
    pos = {c: i for i, c in enumerate(classes)}
    items: list[str] = []
    targets: list[np.ndarray] = []
    owner: list[tuple[int, ImageDataset]] = []  # (first index, part) in order
    h = hashlib.sha256(b"concat")
    for name, ds in parts:
        extra = sorted(set(ds.classes) - set(pos))
        if extra:
            raise DataError(
                f"{ds.root}: classes {', '.join(extra[:5])} are not among the {len(classes)} expected"
            )
        owner.append((len(items), ds))
        items.extend(f"{name}/{it}" for it in ds.items)
        targets.append(np.asarray([pos[ds.classes[t]] for t in ds.targets], dtype=np.int64))
        h.update(f"{name}\0{ds.fingerprint}\n".encode())
    starts = np.asarray([o[0] for o in owner])

    def part(i: int) -> tuple[int, ImageDataset]:
        k = int(np.searchsorted(starts, i, side="right")) - 1
        return i - owner[k][0], owner[k][1]

    def read(i: int) -> torch.Tensor:
        j, ds = part(i)
        return ds.read(j)

    def encoded(i: int) -> torch.Tensor:
        j, ds = part(i)
        return ds.encoded(j)  # type: ignore[misc]

    def file(i: int) -> Path:
        j, ds = part(i)
        return ds.file(j)  # type: ignore[misc]

    files = all(ds.file is not None and ds.stats is not None for _, ds in parts)
    root = parts[0][1].root
    return ImageDataset(
        "concat",
        root,
        classes,
        items,
        np.concatenate(targets),
        read,
        h.hexdigest()[:16],
        encoded if files else None,
        file if files else None,
        np.concatenate([ds.stats for _, ds in parts]) if files else None,  # type: ignore[misc]
    )
