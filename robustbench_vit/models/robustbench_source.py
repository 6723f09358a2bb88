"""RobustBench's model zoo as a model source: ``robustbench:<threat>/<model_id>`` (ImageNet) or
``robustbench:<dataset>/<threat>/<model_id>`` (``cifar10``), e.g. ``robustbench:Linf/Salman2020Do_R50``.

Names are parsed offline; when the optional ``robustbench`` package is installed they are also checked
against its zoo (with "did you mean"). Loading goes through ``robustbench.utils.load_model`` (its own
download and architecture code), so a number here is the model RobustBench evaluates. RobustBench
models take [0, 1] RGB and normalise inside, so our wrapper's mean/std are 0/1; resize and crop are
read from RobustBench's own eval transform for the model, never retyped.
"""

from __future__ import annotations

import difflib
import glob
import logging
import os
from pathlib import Path
from typing import Any

from robustbench_vit.data.preprocessing import DataConfig
from robustbench_vit.errors import ConfigError, UnknownNameError, WeightsUnavailableError
from robustbench_vit.models.zoo import ModelSpec

__all__ = [
    "parse_robustbench_ref",
    "robustbench_spec",
    "load_robustbench",
    "config_from_transforms",
    "cached_files",
]

log = logging.getLogger(__name__)

PREFIX = "robustbench:"
#: RobustBench dataset name -> our label space (CIFAR-100 needs a class list we do not ship yet)
DATASETS = {"imagenet": "imagenet1k", "cifar10": "cifar10"}
THREATS = ("Linf", "L2", "corruptions")
INSTALL = "pip install 'robustbench_vit[robustbench]' (RobustBench pins timm==1.0.9: use its own environment)"


def parse_robustbench_ref(ref: str) -> tuple[str, str, str]:
    """``robustbench:[dataset/]threat/model_id`` -> ``(dataset, threat, model_id)`` (threat canonical case)."""
    parts = ref[len(PREFIX) :].split("/")
    if len(parts) == 2:
        parts = ["imagenet", *parts]
    if len(parts) != 3 or not all(parts):
        raise ConfigError(
            f"{ref!r}: write robustbench:<threat>/<model_id> (ImageNet) or robustbench:cifar10/<threat>/<model_id>, "
            "e.g. robustbench:Linf/Salman2020Do_R50"
        )
    dataset, threat, model_id = parts
    if dataset.lower() not in DATASETS:
        raise ConfigError(f"{ref!r}: RobustBench dataset {dataset!r} not in {', '.join(DATASETS)}")
    canonical = {t.lower(): t for t in THREATS}
    if threat.lower() not in canonical:
        raise ConfigError(f"{ref!r}: RobustBench threat model {threat!r} not in {', '.join(THREATS)}")
    return dataset.lower(), canonical[threat.lower()], model_id


def _zoo() -> Any:
    """RobustBench's ``model_dicts`` and its enums, or ``None`` when the package is not installed."""
    try:
        from robustbench.model_zoo import model_dicts
        from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel
    except ImportError:
        return None
    return model_dicts, BenchmarkDataset, ThreatModel


def robustbench_spec(ref: str) -> ModelSpec:
    """The spec of a RobustBench reference, built without downloading anything."""
    from robustbench_vit.models.zoo import guess_family

    dataset, threat, model_id = parse_robustbench_ref(ref)
    zoo = _zoo()
    if zoo is not None:
        model_dicts, bench_ds, bench_threat = zoo
        known = list(model_dicts[bench_ds(dataset)][bench_threat(threat)])
        if model_id not in known:
            close = difflib.get_close_matches(model_id, known, n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(close)}?" if close else f" ({len(known)} models listed there)"
            raise UnknownNameError(f"RobustBench has no {dataset} {threat} model {model_id!r}{hint}")
    else:
        log.info("robustbench is not installed: %s is checked when it is loaded", ref)
    return ModelSpec(
        name=f"{model_id}.rb_{dataset}_{threat.lower()}",
        source="robustbench",
        arch=f"{dataset}/{threat}/{model_id}",
        family=guess_family(model_id),  # type: ignore[arg-type]
        label_space=DATASETS[dataset],
        paper=f"RobustBench {dataset} {threat}: {model_id}",
    )


def config_from_transforms(transform: Any, *, dataset: str, source: str) -> DataConfig:
    """Our :class:`DataConfig` from a RobustBench eval transform (torchvision ``Compose`` of ``Resize``,
    ``CenterCrop``, ``ToTensor``): resize short side + centre crop, a square resize (``squash``), or
    nothing (CIFAR at 32 px). A crop without a resize depends on each file's size and is refused."""
    from torchvision import transforms as T

    steps = [t for t in getattr(transform, "transforms", [transform]) if not isinstance(t, T.ToTensor)]
    resize = next((t for t in steps if isinstance(t, T.Resize)), None)
    crop = next((t for t in steps if isinstance(t, T.CenterCrop)), None)
    unknown = [type(t).__name__ for t in steps if not isinstance(t, (T.Resize, T.CenterCrop))]
    if unknown:
        raise ConfigError(f"{source}: RobustBench preprocessing step {unknown[0]} is not supported")
    zero_one = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0), "source": source}
    if resize is None and crop is None:
        side = 32 if dataset.startswith("cifar") else 224
        return DataConfig(input_size=(3, side, side), crop_pct=1.0, interpolation="bilinear", **zero_one)
    if resize is None:
        raise ConfigError(
            f"{source}: RobustBench crops {list(crop.size)} px without resizing (a fixed crop of each file at its "
            "own resolution), which rbvit's resize-then-crop cache cannot reproduce"
        )
    interp = str(resize.interpolation.value).lower()
    size = resize.size if isinstance(resize.size, (list, tuple)) else [resize.size]
    if len(size) == 2:  # both sides given: resize to a fixed shape (no crop, or a crop of that shape)
        h, w = int(size[0]), int(size[1])
        return DataConfig(
            input_size=(3, h, w), crop_pct=1.0, interpolation=interp, crop_mode="squash", **zero_one
        )
    short = int(size[0])
    side = int(crop.size[0]) if crop is not None else short
    return DataConfig(input_size=(3, side, side), crop_pct=side / short, interpolation=interp, **zero_one)


def _model_dir() -> Path:
    from robustbench_vit.data.cache import default_cache_dir

    return Path(os.environ.get("RBVIT_ROBUSTBENCH_DIR", default_cache_dir() / "robustbench"))


def cached_files(spec: ModelSpec) -> list[Path]:
    """The checkpoint files RobustBench's loader reads for ``spec`` from the model folder, as it lays them out
    (``<dataset>/<threat>/<model_id>.pt``, an ensemble's members ``<model_id>.pt_m<i>.pt``); empty when
    nothing is downloaded yet (or RobustBench loads the model through timm's hub)."""
    dataset, threat, model_id = parse_robustbench_ref(PREFIX + spec.arch)
    folder = _model_dir() / dataset / threat
    if not folder.is_dir():
        return []
    members = sorted(folder.glob(f"{glob.escape(model_id)}.pt_m*.pt"))
    return [p for p in [folder / f"{model_id}.pt", *members] if p.is_file()]


def load_robustbench(spec: ModelSpec, *, pretrained: bool, checkpoint: str | None) -> tuple:
    """(net, data_cfg, label_space, weights tag) of a RobustBench model through the package's own loader."""
    import torch

    from robustbench_vit.data.labels import get_label_space
    from robustbench_vit.models.checkpoint import load_state_dict_strict, read_state_dict

    dataset, threat, model_id = parse_robustbench_ref(PREFIX + spec.arch)
    zoo = _zoo()
    if zoo is None:
        raise ConfigError(f"{spec.name} needs the RobustBench package: {INSTALL}")
    model_dicts, bench_ds, bench_threat = zoo
    from robustbench.data import get_preprocessing

    entry = model_dicts[bench_ds(dataset)][bench_threat(threat)][model_id]
    data_cfg = config_from_transforms(
        get_preprocessing(bench_ds(dataset), bench_threat(threat), model_id, None),
        dataset=dataset,
        source=f"robustbench:{spec.arch}",
    )
    label_space = get_label_space(spec.label_space)
    if checkpoint or not pretrained:
        net = entry["model"]()
        if checkpoint:
            load_state_dict_strict(net, read_state_dict(checkpoint), checkpoint)
        return net, data_cfg, label_space, f"checkpoint:{checkpoint}" if checkpoint else "random"
    if tuple(int(v) for v in torch.__version__.split(".")[:2]) < (2, 6):
        # robustbench calls torch.load without weights_only; only torch >= 2.6 makes that safe by default
        raise ConfigError(
            "loading RobustBench weights needs torch >= 2.6 (weights-only unpickling by default); "
            "or pass --checkpoint FILE.safetensors"
        )
    from robustbench.utils import load_model

    try:
        net = load_model(model_id, model_dir=str(_model_dir()), dataset=dataset, threat_model=threat)
    except Exception as e:  # gdown / requests / zenodo errors have no common base class
        raise WeightsUnavailableError(
            f"cannot fetch RobustBench weights for {spec.name}: {type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}. "
            f"Offline? download them once online (into {_model_dir()}, or $RBVIT_ROBUSTBENCH_DIR), or pass --checkpoint FILE"
        ) from None
    return net, data_cfg, label_space, f"robustbench:{spec.arch}"
