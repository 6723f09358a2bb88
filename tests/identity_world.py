"""The world the identity tests change one part of: a CIFAR card, a class-folder dataset of same-size PPM
files and a flat copy with a labels file, the evaluation helpers, and the table of input changes."""

from __future__ import annotations

import json
import os
import shutil

from PIL import Image

from robustbench_vit.data import digests
from robustbench_vit.engine import runner
from robustbench_vit.engine.runner import evaluate
from tests.helpers import CIFAR10_TEST, write_cifar_card

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def trust_young_files(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Trust stat tuples at once (files written by a test are seconds young): this exercises the stat
    tuple itself, not the racy-file rule that would re-hash them anyway."""
    monkeypatch.setattr(digests, "SETTLED_NS", -(10**12))


def make_world(tmp_path):  # type: ignore[no-untyped-def]
    """A CIFAR card, a class-folder dataset of uncompressed PPM files (every file the same size), and a flat
    copy with a labels file."""
    card = write_cifar_card(tmp_path / "card")
    data = tmp_path / "data"
    flat = tmp_path / "flat"
    flat.mkdir()
    lines = []
    for c in CLASSES:
        (data / c).mkdir(parents=True)
        for k, src in enumerate(sorted((CIFAR10_TEST / c).iterdir())[:3]):
            img = Image.open(src).convert("RGB")
            img.save(data / c / f"{k}.ppm")
            img.save(flat / f"{c}-{k}.ppm")
            lines.append(f"{c}-{k}.ppm {c}")
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(lines) + "\n")
    return {"root": tmp_path, "card": card, "data": data, "flat": flat, "labels": labels}


class Counter:
    """Counts the conditions computed (not resumed) in this process. It wraps the runner's row builder,
    never a suite's code: code replaced in a suite is another run (``robustbench_vit.replaced_code``)."""

    def __init__(self, monkeypatch):
        self.names: list[str] = []
        real = runner.records

        def counting(base, measured, **kw):  # type: ignore[no-untyped-def]
            self.names += [c.name for c, _ in measured[:1] if not c.name.startswith("summary")]
            return real(base, measured, **kw)

        monkeypatch.setattr(runner, "records", counting)

    @property
    def conditions(self) -> int:
        return len(self.names)


def nll(df) -> float:
    return float(df.query("metric == 'nll'").value.iloc[0])


def run(world, out, cache, **kw):
    kw.setdefault("data", str(world["data"]))
    return evaluate(str(world["card"]), "clean", out=str(out), cache_dir=str(cache), progress=False, **kw)


def run_suite(world, model, suite, params, where, **kw):
    """``model`` under ``suite`` on the world's images into ``<root>/<where>-out`` with cache
    ``<root>/<where>-cache``: ``{(condition, metric): value}`` (NaN as -1, so two runs compare with ==)."""
    root = world["root"]
    df = evaluate(
        str(model),
        suite,
        suite_params=params,
        data=str(world["data"]),
        out=str(root / f"{where}-out"),
        cache_dir=str(root / f"{where}-cache"),
        progress=False,
        **kw,
    )
    return df.set_index(["condition", "metric"]).value.fillna(-1).sort_index().to_dict()


def truth(world, tag, **kw):
    """A from-scratch evaluation: a brand-new cache and results folder."""
    return nll(run(world, world["root"] / f"truth-{tag}", world["root"] / f"truth-cache-{tag}", **kw))


def _rewrite_card(world, **changes):
    card = json.loads(world["card"].read_text())
    card.update(changes)
    world["card"].write_text(json.dumps(card))


def _swap_image(world):
    """Replace one image by another of the same byte size (PPM): the name and size stay."""
    a, b = world["data"] / "cat" / "0.ppm", world["data"] / "dog" / "1.ppm"
    assert a.stat().st_size == b.stat().st_size
    st = a.stat()
    a.write_bytes(b.read_bytes())
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns))  # as cp -p / touch -r would leave it


def overwrite_weights(world):
    """New weights in place, with the old size and mtime (only ctime betrays the change)."""
    import timm
    import torch
    from safetensors.torch import save_file

    path = world["card"].parent / "weights.safetensors"
    st = path.stat()
    torch.manual_seed(123)
    net = timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, num_classes=10, img_size=32, patch_size=4, depth=2
    )
    save_file(net.state_dict(), str(path))
    assert path.stat().st_size == st.st_size
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def _swap_class_folders(world):
    """The cat and dog folders trade names: every file keeps its name and bytes, half change class."""
    data = world["data"]
    (data / "cat").rename(data / "tmp")
    (data / "dog").rename(data / "cat")
    (data / "tmp").rename(data / "dog")


def _add_image(world):
    shutil.copyfile(world["data"] / "dog" / "1.ppm", world["data"] / "cat" / "9.ppm")


def _retarget_weights_link(world):
    """The card's weights file becomes a symlink to other weights: same path, other bytes."""
    path = world["card"].parent / "weights.safetensors"
    other = write_cifar_card(world["root"] / "other", seed=5).parent / "weights.safetensors"
    path.unlink()
    path.symlink_to(other)


CHANGES = {
    "weights_same_size_and_mtime": lambda w: overwrite_weights(w),
    "weights_symlink_retargeted": _retarget_weights_link,
    "card_crop_pct": lambda w: _rewrite_card(w, crop_pct=0.875),
    "class_folders_swapped": _swap_class_folders,
    "image_added": _add_image,
    "card_kwargs": lambda w: _rewrite_card(
        w, kwargs={"img_size": 32, "patch_size": 4, "depth": 2, "act_layer": "relu"}
    ),
    "label_order": lambda w: _rewrite_card(w, label_space=list(reversed(CLASSES))),
    "same_size_image_replaced": _swap_image,
}
