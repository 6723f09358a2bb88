"""What ``rbvit ls`` lists: one row per registered model, suite or dataset (registry data only; nothing
is built or downloaded), or the modules of one model (``ls layers MODEL``: built with random weights,
nothing downloaded)."""

from __future__ import annotations

from typing import Any, Literal

__all__ = ["catalog", "layers"]


def catalog(kind: Literal["models", "suites", "datasets"]) -> list[dict[str, Any]]:
    """Rows describing every entry of one registry."""
    if kind == "models":
        from robustbench_vit.models.zoo import MODELS

        return [
            {
                "name": s.name,
                "family": s.family,
                "params_m": s.params_m,
                "source": s.source,
                "arch": s.arch,
                "paper": s.paper,
            }
            for _, s in MODELS.items()
        ]
    if kind == "suites":
        from robustbench_vit.suites import SUITES

        return [
            {
                "name": n,
                "paper": c.paper,
                "metrics": ",".join(c.metrics),
                "doc": (c.__doc__ or "").strip().splitlines()[0],
            }
            for n, c in SUITES.items()
        ]
    from robustbench_vit.data.registry import DATASETS

    return [{"name": s.name, "description": s.description, "layouts": s.layouts} for _, s in DATASETS.items()]


def layers(model: str) -> list[dict[str, Any]]:
    """The modules of ``model`` a user may name in ``-p layers=`` (``representations``), marking the ones
    ``layers=auto`` reads; the architecture is built without weights."""
    from robustbench_vit.models import probes
    from robustbench_vit.models.loading import load_model

    return probes.layer_table(load_model(model, pretrained=False, device="cpu", remember_state=False).net)
