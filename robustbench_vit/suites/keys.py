"""A suite's part of the keys its numbers and artifacts are stored under: its configuration, the models it
builds, the libraries it computes with, and its code as it runs (its version, or what changed it). ``suite``
is a :class:`~robustbench_vit.suites.base.Suite`, whose methods call these."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from robustbench_vit.code_manifest import edited_code
from robustbench_vit.fingerprint import outside_code
from robustbench_vit.identity import digest, library_versions
from robustbench_vit.metrics.accumulators import METRICS
from robustbench_vit.models.referenced import referenced_identity
from robustbench_vit.replaced_code import replaced_code

__all__ = ["suite_code_key", "suite_identity"]


def suite_code_key(suite: Any) -> int | dict[str, Any]:
    """The suite's code as it runs, keying its runs and what it stores (adversarials, saliency maps,
    outcomes): its ``version`` while rbvit's code is as shipped, else with what a local edit
    (:func:`~robustbench_vit.code_manifest.edited_code`) or an in-memory replacement
    (:func:`~robustbench_vit.replaced_code.replaced_code`) changed."""
    changed = {}
    if edited := edited_code(f"suite/{suite.name}"):
        changed["edited"] = edited
    if swapped := replaced_code():
        changed["replaced"] = digest(swapped)
    return {"version": suite.version, **changed} if changed else suite.version


def suite_identity(suite: Any, cache_dir: str | Path | None = None) -> dict[str, Any]:
    """The suite's part of a run's identity: its configuration, the content identity of every model it
    references (a source checkpoint overwritten in place changes the key), the versions of the libraries it
    computes with (``Suite.libraries``) and its code where it is not rbvit's as shipped."""
    refs = {
        param: referenced_identity(ref, pretrained=pretrained, cache_dir=cache_dir)
        for param, (ref, pretrained) in suite.referenced_models().items()
    }
    libs = library_versions(used) if (used := suite.libraries()) else {}
    names = dict.fromkeys((*suite.metrics, *suite.calibration))
    theirs = {m: c for m in names if m in METRICS and (c := outside_code(METRICS.get(m).compute))}
    return {
        **suite.config(),
        **({"models": refs} if refs else {}),
        **({"libraries": libs} if libs else {}),
        # a suite or metric defined outside rbvit (a notebook's): no test bumps its version, its code keys it
        **({"code": own} if (own := outside_code(type(suite))) else {}),
        **({"metric_code": theirs} if theirs else {}),
        # rbvit's own code or tables replaced in memory (a notebook's OPS["fog"] = mine): keyed by content
        **({"replaced": swapped} if (swapped := replaced_code()) else {}),
        # ... or edited in a checkout (code_manifest): the edit is computed, never resumed as shipped code
        **({"edited": edited} if (edited := edited_code(f"suite/{suite.name}")) else {}),
    }
