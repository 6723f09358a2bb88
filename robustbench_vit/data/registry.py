"""Named datasets and ``--data`` resolution.

``rbvit eval --data PATH`` auto-detects the layout (class folders, CIFAR-10 python batches, or
a flat folder with ``--labels``); ``--dataset NAME`` names it explicitly. Without ``--data`` the
default is ``imagenet-samples`` (1000 ImageNet val-style images, one per class): looked up under
``$RBVIT_DATA/imagenet-samples/val`` and ``~/.cache/rbvit/data/imagenet-samples/val``, and, when
online, downloaded there from the public GitHub repository EliSchwartz/imagenet-sample-images.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from robustbench_vit.data.datasets import ImageDataset, cifar10_batches, flat_folder, image_folder
from robustbench_vit.data.labels import is_wnid
from robustbench_vit.errors import DataError
from robustbench_vit.registry import Registry

__all__ = [
    "DatasetSpec",
    "DATASETS",
    "open_dataset",
    "default_data_root",
    "SAMPLES_URL",
    "MASKED_DATASETS",
    "subset_synsets",
]

#: datasets whose evaluation must restrict the logits to their 200 classes
MASKED_DATASETS = ("imagenet-a", "imagenet-r")


def subset_synsets(name: str) -> tuple[list[str], list[int]]:
    """timm's shipped (wnids, ImageNet-1k indices) of the 200-class ImageNet-A / -R subsets."""
    from importlib import resources

    key = {"imagenet-a": "imagenet_a", "imagenet-r": "imagenet_r"}[name]
    info = resources.files("timm.data") / "_info"
    wnids = (info / f"{key}_synsets.txt").read_text().split()
    idx = [int(v) for v in (info / f"{key}_indices.txt").read_text().split()]
    return wnids, idx


log = logging.getLogger(__name__)

SAMPLES_URL = "https://github.com/EliSchwartz/imagenet-sample-images/archive/refs/heads/master.zip"


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    description: str
    layouts: str


DATASETS: Registry[DatasetSpec] = Registry("dataset")
for _spec in (
    DatasetSpec(
        "imagenet-val", "ImageNet-1k validation (50,000 images)", "<root>/<wnid>/*.JPEG, or flat + --labels"
    ),
    DatasetSpec(
        "imagenet-samples",
        "1000 ImageNet images, one per class (default when --data is omitted)",
        "<root>/<wnid>/*.JPEG",
    ),
    DatasetSpec("cifar10", "CIFAR-10 test set", "<root>/<class>/*.png, or the python batches (test_batch)"),
    DatasetSpec(
        "folder",
        "any ImageFolder whose class folders are wnids or label-space class names",
        "<root>/<class>/<image>",
    ),
    DatasetSpec(
        "imagenet-a",
        "ImageNet-A natural adversarial examples (200 classes; suite imagenet_a)",
        "<root>/<wnid>/*.jpg",
    ),
    DatasetSpec("imagenet-r", "ImageNet-R renditions (200 classes; suite imagenet_r)", "<root>/<wnid>/*.jpg"),
    DatasetSpec(
        "imagenet-c", "ImageNet-C corruptions (suite imagenet_c)", "<root>/<corruption>/<1-5>/<wnid>/*.JPEG"
    ),
    DatasetSpec(
        "imagenet-v2", "ImageNet-V2 (1000 classes, folders named 0..999 or wnids)", "<root>/<class>/*.jpeg"
    ),
    DatasetSpec("imagenet-sketch", "ImageNet-Sketch (1000 wnid folders)", "<root>/<wnid>/*.JPEG"),
    DatasetSpec(
        "imagenet-o",
        "ImageNet-O anomalies (200 wnid folders) + ImageNet val of the same classes (suite imagenet_o)",
        "<root>/<wnid>/*.jpg",
    ),
    DatasetSpec(
        "cue-conflict",
        "texture-vs-shape cue-conflict images (suite shape_bias)",
        "<root>/<category>/<shape><i>-<texture><j>.png (16 categories)",
    ),
    DatasetSpec(
        "shape16",
        "any folder of the 16 entry-level categories, e.g. Stylized-ImageNet or sketch (suite shape_bias)",
        "<root>/<category>/<image> (16 categories)",
    ),
):
    DATASETS.add(_spec.name, _spec)


def default_data_root() -> Path:
    """Find (or, online, download) the default ImageNet sample set."""
    candidates = []
    if os.environ.get("RBVIT_DATA"):
        candidates.append(Path(os.environ["RBVIT_DATA"]).expanduser() / "imagenet-samples" / "val")
    cache = Path.home() / ".cache" / "rbvit" / "data" / "imagenet-samples" / "val"
    candidates.append(cache)
    for c in candidates:
        if c.is_dir():
            return c
    try:
        _download_samples(cache)
    except OSError as e:
        raise DataError(
            f"no --data given and the default ImageNet sample set could not be downloaded ({e}); "
            "pass --data PATH (e.g. an ImageNet val folder with wnid sub-folders) or set RBVIT_DATA"
        ) from None
    return cache


def _download_samples(dest: Path, url: str = SAMPLES_URL) -> None:
    log.info("downloading the ImageNet sample set from %s", url)
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "samples.zip"
        with urllib.request.urlopen(url, timeout=30) as r, open(archive, "wb") as f:
            shutil.copyfileobj(r, f)
        staging = Path(tmp) / "val"
        with zipfile.ZipFile(archive) as z:
            for member in z.namelist():
                name = Path(member).name
                wnid = name.split("_", 1)[0]
                if is_wnid(wnid) and name.lower().endswith((".jpeg", ".jpg")):
                    (staging / wnid).mkdir(parents=True, exist_ok=True)
                    (staging / wnid / name).write_bytes(z.read(member))
        if not staging.is_dir():
            raise OSError("the downloaded archive held no <wnid>_*.JPEG images")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(staging), str(dest))


def open_dataset(
    data: str | Path | None = None, *, dataset: str | None = None, labels: str | Path | None = None
) -> tuple[str, ImageDataset]:
    """Resolve ``--data`` / ``--dataset`` / ``--labels`` to ``(dataset name, ImageDataset)``."""
    if dataset is not None:
        DATASETS.get(dataset)  # unknown name -> did-you-mean error
    if data is None:
        if dataset not in (None, "imagenet-samples"):
            raise DataError(f"dataset {dataset!r} has no default location; pass --data PATH")
        return "imagenet-samples", image_folder(default_data_root())
    root = Path(data).expanduser()
    if not root.exists():
        raise DataError(f"data folder not found: {root}")
    if root.is_file():
        raise DataError(f"--data must be a folder, got the file {root}")
    if (root / "test_batch").is_file() or (root / "data_batch_1").is_file():
        return dataset or "cifar10", cifar10_batches(root)
    if labels is not None:
        ds = flat_folder(root, labels)  # named from its labels' classes, like a class-folder layout
        return dataset or _guess_name(ds, root), ds
    ds = image_folder(root)
    if _is_class_index_layout(ds):
        ds = _with_imagenet_wnids(ds)  # ImageNet-V2's release: folder i holds ImageNet-1k class i
        return dataset or "imagenet-v2", ds
    if dataset == "imagenet-v2" and not all(is_wnid(c) for c in ds.classes):
        raise DataError(
            f"{root}: ImageNet-V2 needs class folders named 0..999 (its release) or wnids, "
            f"found e.g. {ds.classes[0]!r}"
        )
    if dataset is None:
        dataset = _guess_name(ds, root)
    return dataset, ds


def _is_class_index_layout(ds: ImageDataset) -> bool:
    """Exactly 1000 class folders named ``0`` .. ``999`` (ImageNet-V2's release layout)."""
    return len(ds.classes) == 1000 and set(ds.classes) == {str(i) for i in range(1000)}


def _with_imagenet_wnids(ds: ImageDataset) -> ImageDataset:
    """``ds`` with each class-index folder named by its ImageNet-1k wnid (folder ``i`` is class ``i``),
    so labels map onto any model's label space like wnid folders do; the files are unchanged."""
    import dataclasses

    from robustbench_vit.data.labels import get_label_space

    wnids = get_label_space("imagenet1k").wnids
    return dataclasses.replace(ds, classes=tuple(wnids[int(c)] for c in ds.classes))


#: folder-name spellings of the masked datasets (``imagenet-r``, ``imagenet_rendition``, ``imagenet-a``)
_MASKED_HINTS = {
    "imagenet-a": ("imageneta", "imagenetadversarial"),
    "imagenet-r": ("imagenetr", "imagenetrendition"),
}


#: folder-name spellings of datasets released in ImageNet's wnid layout that are not ImageNet val: named so,
#: their rows never pass for ImageNet-val numbers and match the published protocols of their benchmark
_WNID_LAYOUT_HINTS = {
    "imagenet-sketch": ("imagenetsketch", "sketch"),
    "imagenet-v2": ("imagenetv2",),
}


def _guess_name(ds: ImageDataset, root: Path) -> str:
    """The dataset a folder holds, from its classes (class folders, or a flat folder's labels file). The
    200-class sets (ImageNet-A/-R, scored 200-way) are recognised by their exact class set; a folder *named* like one of them but holding only some of
    its classes, or other classes besides, is refused (1000-way scores would pass for its numbers), and 100 or more classes that all
    fall in one of them get a warning naming the flag."""
    classes = set(ds.classes)
    spelled = "".join(ch for ch in root.resolve().name.lower() if ch.isalnum())
    for name in MASKED_DATASETS:
        mask = set(subset_synsets(name)[0])
        if classes == mask:
            return name
        if classes < mask and spelled in _MASKED_HINTS[name]:
            raise DataError(
                f"{root} is named like {name} but holds {len(classes)} of its 200 classes; pass "
                f"--dataset {name} to score it 200-way as the benchmark does, or --dataset imagenet-val for 1000-way"
            )
        if classes > mask and spelled in _MASKED_HINTS[name]:  # a stray class folder copied in
            extra = sorted(classes - mask)
            raise DataError(
                f"{root} is named like {name} but holds {len(extra)} class folders outside its 200 (e.g. "
                f"{extra[0]}); remove them to score it 200-way as the benchmark does, or pass --dataset "
                "imagenet-val for 1000-way"
            )
        if classes < mask and len(classes) >= 100:
            log.warning(
                "%s: all %d classes are %s classes; scoring 1000-way as imagenet-val (pass --dataset %s "
                "for its 200-way protocol)",
                root,
                len(classes),
                name,
                name,
            )
    if all(is_wnid(c) for c in ds.classes):
        for name, spellings in _WNID_LAYOUT_HINTS.items():  # other images in ImageNet's layout
            if spelled.startswith(spellings):
                log.info("%s: wnid folders named like %s: evaluated as %s", root, name, name)
                return name
        return "imagenet-samples" if len(ds) == len(ds.classes) == 1000 else "imagenet-val"
    from robustbench_vit.data.labels import CIFAR10_CLASSES

    return "cifar10" if tuple(ds.classes) == CIFAR10_CLASSES else "folder"
