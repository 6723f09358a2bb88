"""Checks a run makes before any work: where it writes, and whether the model fits its inputs and its label
space. Each failure is one line naming what to fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from robustbench_vit.data.cache import default_cache_dir
from robustbench_vit.data.labels import no_classifier
from robustbench_vit.engine.options import RunOptions
from robustbench_vit.errors import ConfigError, RbvitError
from robustbench_vit.models.loading import LoadedModel
from robustbench_vit.suites.seeding import caller_rng_kept

__all__ = [
    "refuse_writing_into_data",
    "check_geometry",
    "check_output_width",
    "refuse_fresh_processes",
    "options_for_loaded",
]


def refuse_writing_into_data(root: Path, opts: RunOptions) -> None:
    """Results or a cache written inside the dataset folder would become part of it: the next run would list
    their folders as classes (or corruptions), or evaluate the files as images. Refused before any work."""
    data = Path(root).expanduser().resolve()
    if not data.is_dir():
        return
    for flag, where in (("--out", opts.out), ("--cache-dir", opts.cache_dir or default_cache_dir())):
        if not where:
            continue
        path = Path(where).expanduser().resolve()
        if path == data or data in path.parents:
            raise ConfigError(
                f"{flag} {where} is in the dataset folder {root}: the next run would read what rbvit writes "
                f"there as part of the dataset; choose a {flag} outside it"
            )


def check_geometry(data_cfg: Any) -> None:
    """An image resized larger than the decoder's pixel limit (``--crop-pct 1e-6`` resizes a 224 px crop's
    short side to 224 million pixels) is refused by name before any image is decoded, never an allocator
    failure deep in a resize."""
    from robustbench_vit.data.decode import max_image_pixels

    limit = max_image_pixels()
    for what, (h, w) in (
        ("resizes images to", data_cfg.resize_size),
        ("feeds the model", data_cfg.image_size),
    ):
        if h * w > limit:
            raise ConfigError(
                f"preprocessing {what} {h}x{w} px (input {data_cfg.image_size[0]}x{data_cfg.image_size[1]}, "
                f"crop_pct {data_cfg.crop_pct:g}), above the {limit:,} pixel limit (--max-image-pixels); "
                "check --img-size / --crop-pct or the card's input_size / crop_pct"
            )


def check_output_width(loaded: LoadedModel, data_cfg: Any, scoring_suite: str | None = None) -> None:
    """One forward of a black image: the model's logits must have one column per class of its label space
    (1000 logits on CIFAR-10 would score 0 silently; 7 would fail deep inside a metric). A model without a
    classifier (label space ``none``: DINO, MAE) is refused by ``scoring_suite``, a suite that scores class
    predictions."""
    classes = loaded.label_space.num_classes
    if loaded.label_space.name == "none" and scoring_suite:
        raise no_classifier(loaded.spec.name, scoring_suite)
    if loaded.label_space.name == "none" or not classes:
        return
    size = data_cfg.image_size
    try:  # a randomized model draws from the global RNG: the caller's state is put back
        with torch.no_grad(), caller_rng_kept(loaded.device):
            width = loaded(torch.zeros((1, 3, *size), device=loaded.device)).shape[-1]
    except (AssertionError, RuntimeError, ValueError) as e:
        if isinstance(e, (torch.OutOfMemoryError, RbvitError)):  # out of memory; a message of our own
            raise
        why = " ".join(str(e).split())[:200] or type(e).__name__
        raise ConfigError(
            f"model {loaded.spec.name} cannot run on {size[0]}x{size[1]} inputs ({why}); give it the input size "
            "it was built for (--img-size, the card's input_size or its kwargs)"
        ) from None
    if width != classes:
        raise ConfigError(
            f"model {loaded.spec.name} returns {width} logits but its label space "
            f"{loaded.label_space.name!r} has {classes} classes; give the model its label space "
            "(preprocessing={'label_space': ...} or the card's label_space)"
        )


def refuse_fresh_processes(refs: list[str], workers: str, instead: str) -> None:
    """Work handed to fresh processes (``--devices``, Ray) runs the shipped code under the names this process
    gives it: refused in one line when code was replaced in memory here (rbvit's or a package's) or a model of
    ``refs`` (the evaluated ones and those their suites build) names a timm architecture registered outside
    timm in this process, which ``workers`` would build as timm's own."""
    from robustbench_vit.models.identity import refuse_registered_elsewhere
    from robustbench_vit.replaced_code import refuse_replaced_code

    refuse_replaced_code(workers, instead)
    refuse_registered_elsewhere(refs, workers, instead)


def options_for_loaded(loaded: LoadedModel, opts: RunOptions, *, dtype_asked: bool) -> RunOptions:
    """The options a model the caller loaded runs under: its own precision and device, which its rows and
    their key name. Another precision asked for (``dtype_asked``) or another device named is refused in one
    line, where the loaded model's would silently have been used."""
    import dataclasses

    from robustbench_vit.device import select_device

    if opts.dtype != loaded.dtype:
        if dtype_asked:
            raise ConfigError(
                f"{loaded.spec.name} was loaded with dtype {loaded.dtype}, not {opts.dtype}: pass dtype= to "
                "load_model, or leave dtype out"
            )
        opts = dataclasses.replace(opts, dtype=loaded.dtype)
    if opts.device not in (None, "auto"):
        asked, there = select_device(opts.device), loaded.device
        other_index = None not in (asked.index, there.index) and asked.index != there.index
        if asked.type != there.type or other_index:
            raise ConfigError(
                f"{loaded.spec.name} was loaded on {there}, not {opts.device}: pass device= to load_model, or "
                "leave device out"
            )
    return opts
