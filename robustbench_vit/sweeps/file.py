"""Sweep files: the TOML that names models x suites x datasets, parsed and validated into cells.

Every key, type, model name, suite, suite parameter and data folder is checked before any cell runs
(``--dry-run`` included), with "did you mean" errors. A model may be a table of per-model overrides
(``{ ref, pretrained, batch_size, dtype, params = { <suite> = {...} } }``). Running the cells is
:mod:`robustbench_vit.sweeps.run`'s job.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import glob
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from robustbench_vit import __version__
from robustbench_vit.engine.rows import SPLIT_OPTIONS
from robustbench_vit.engine.runner import RunOptions
from robustbench_vit.errors import ConfigError, DataError
from robustbench_vit.registry import first_unknown

__all__ = ["Cell", "SweepSpec", "ModelEntry", "load_sweep", "validate_sweep"]


@dataclass(frozen=True)
class Cell:
    """One (model x suite x dataset x seed) evaluation of a sweep: what :func:`runner.evaluate` is called with
    (the results folder is the sweep's, set when the cell runs)."""

    model: str
    suite: str
    options: RunOptions
    #: sha256 of the sweep file the cell came from (not part of the key: a config failure is retried
    #: only when the file changes)
    sweep_digest: str = field(default="", compare=False)

    def key(self) -> str:
        """Hash of the cell's full configuration and the rbvit version (its marker file's name)."""
        skip = ("out", *SPLIT_OPTIONS)
        opts = {k: v for k, v in dataclasses.asdict(self.options).items() if k not in skip}
        blob = json.dumps(
            {"model": self.model, "suite": self.suite, "options": opts, "rbvit": __version__},
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def label(self) -> str:
        """``model | suite (its parameters) | data folder | seed``: two [[suite]] entries of one suite with
        other parameters are two lines a reader tells apart."""
        data = self.options.data
        params = self.options.suite_params
        suite = self.suite
        if params:
            shown = (",".join(map(str, v)) if isinstance(v, (list, tuple)) else v for v in params.values())
            suite += " (" + ", ".join(f"{k}={v}" for k, v in zip(params, shown)) + ")"
        return f"{self.model} | {suite} | {Path(data).name if data else 'default'} | seed {self.options.seed}"


@dataclass(frozen=True)
class SweepSpec:
    path: Path
    cells: tuple[Cell, ...]
    out: str
    digest: str = ""


@dataclass(frozen=True)
class ModelEntry:
    """One model of a sweep with its per-model overrides."""

    ref: str
    pretrained: bool = True
    batch_size: int | None = None
    dtype: str | None = None
    #: suite name -> parameters that override the [[suite]] params for this model
    params: dict[str, dict[str, Any]] = field(default_factory=dict)


_MODEL_KEYS = {"ref": str, "pretrained": bool, "batch_size": int, "dtype": str, "params": dict}


def _model_entry(e: Any, where: str) -> ModelEntry:
    if isinstance(e, str):
        return ModelEntry(e)
    if not (isinstance(e, dict) and isinstance(e.get("ref"), str)):
        raise ConfigError(f"{where}: each model is a name or {{ ref = ..., pretrained = ... }}, got {e!r}")
    _check_table(e, _MODEL_KEYS, f"{where} model {e['ref']!r}")
    params = e.get("params", {})
    for suite, p in params.items():
        if not isinstance(p, dict):
            raise ConfigError(
                f"{where} model {e['ref']!r}: params.{suite} must be a table of suite parameters"
            )
    return ModelEntry(e["ref"], e.get("pretrained", True), e.get("batch_size"), e.get("dtype"), params)


def _expand_models(entries: list[Any], base: Path, where: str) -> list[ModelEntry]:
    from robustbench_vit.models.zoo import MODELS

    out: list[ModelEntry] = []
    for raw in entries:
        e = _model_entry(raw, where)
        ref = e.ref
        if ref.endswith(".json"):
            p = ref if Path(ref).is_absolute() else str(base / ref)
            matches = sorted(glob.glob(p)) if any(ch in p for ch in "*?[") else [p]
            if not matches:
                raise ConfigError(f"sweep model {ref!r} matches no model card")
            out += [dataclasses.replace(e, ref=m) for m in matches]
        elif any(ch in ref for ch in "*?[") and ":" not in ref:
            names = [n for n in MODELS.names() if fnmatch.fnmatch(n, ref)]
            if not names:
                raise ConfigError(f"sweep model pattern {ref!r} matches no zoo model")
            out += [dataclasses.replace(e, ref=n) for n in names]
        else:
            out.append(e)
    return out


_TOP_KEYS = {
    "out": str,
    "data": str,
    "labels": str,
    "dataset": str,
    "limit": int,
    "seeds": list,
    "batch_size": int,
    "dtype": str,
    "device": str,
    "models": list,
    "save_samples": bool,
}
#: a [[suite]] may override the per-cell keys of [sweep]
_SUITE_KEYS = {
    "name": str,
    "params": dict,
    **{k: t for k, t in _TOP_KEYS.items() if k not in ("out", "device", "models")},
}


def _check_table(table: Any, allowed: dict[str, type], where: str) -> None:
    """Unknown keys (with "did you mean") and wrong value types in one TOML table are one-line errors."""
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table")
    unknown = first_unknown(table, list(allowed))
    if unknown:
        key, close = unknown
        hint = f"; did you mean {close!r}?" if close else f" (known: {', '.join(sorted(allowed))})"
        raise ConfigError(f"{where} has no key {key!r}{hint}")
    for key, value in table.items():
        typ = allowed[key]
        ok = isinstance(value, typ) and not (typ is int and isinstance(value, bool))
        if not ok:
            raise ConfigError(
                f"{where}: {key} must be {'an' if typ is int else 'a'} {typ.__name__}, got {value!r}"
            )
        if typ is int and value < (0 if key == "seed" else 1):
            raise ConfigError(f"{where}: {key} must be >= 1, got {value}")
    for seed in table.get("seeds", []):
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ConfigError(f"{where}: seeds must be integers >= 0, got {seed!r}")


def _names_code(ref: str) -> bool:
    """Whether a model reference is an entry point (``module:factory``): importing it runs code."""
    from robustbench_vit.errors import RbvitError
    from robustbench_vit.models.loading import resolve_spec

    try:
        return resolve_spec(ref).source == "entrypoint"
    except RbvitError:  # the evaluated model's own name: the cell's model, checked above
        return False


def validate_sweep(spec: SweepSpec, *, allow_entrypoints: bool = False) -> None:
    """Every cell's model name, suite, parameters and data folder, checked before any cell runs
    (no model is built and no image read): a typo fails the whole sweep at once, --dry-run included.

    A sweep file is data, like a model card: a ``module:factory`` model would import and call code, so it
    is refused unless the user passes ``--allow-entrypoints`` on the command line."""
    from robustbench_vit.models.loading import resolve_spec
    from robustbench_vit.suites import make_suite

    def refuse_code(what: str) -> None:
        raise ConfigError(
            f"sweep file {spec.path}: {what} names code to run (module:factory); a sweep file is data: name "
            "timm/torchvision models or cards, or pass --allow-entrypoints"
        )

    seen: set[str] = set()
    for cell in spec.cells:
        if cell.model not in seen:
            if resolve_spec(cell.model).source == "entrypoint" and not allow_entrypoints:
                refuse_code(f"model {cell.model!r}")
            seen.add(cell.model)
        suite = make_suite(cell.suite, cell.options.suite_params)
        for param, (ref, _) in suite.referenced_models().items():  # a transfer source, a saliency model
            if _names_code(ref) and not allow_entrypoints:
                refuse_code(f"{cell.suite} {param}={ref!r}")
        cell.options.validate()
        data = cell.options.data
        if data and not Path(data).expanduser().exists():
            raise DataError(f"sweep {spec.path}: data folder not found: {data}")


def load_sweep(path: str | Path, *, allow_entrypoints: bool = False) -> SweepSpec:
    """Parse a sweep TOML into its cells (relative paths are relative to the file's folder's parent
    project root, i.e. the current working directory, as on the command line)."""
    path = Path(path)
    try:
        text = path.read_text()
        raw = tomllib.loads(text)
    except FileNotFoundError:
        raise ConfigError(f"sweep file not found: {path}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"sweep file {path} is not valid TOML: {e}") from None
    unknown = sorted(set(raw) - {"sweep", "suite"})
    if unknown:
        raise ConfigError(
            f"sweep file {path}: unknown section(s) {', '.join(unknown)} (use [sweep] and [[suite]])"
        )
    top = raw.get("sweep", {})
    suites = raw.get("suite", [])
    _check_table(top, _TOP_KEYS, f"{path} [sweep]")
    if not isinstance(suites, list):
        raise ConfigError(f"sweep file {path}: write suites as [[suite]] tables")
    for i, s in enumerate(suites):
        _check_table(s, _SUITE_KEYS, f"{path} [[suite]] #{i + 1}")
    if not top.get("models") or not suites:
        raise ConfigError(f"sweep file {path} needs [sweep] models = [...] and at least one [[suite]]")
    models = _expand_models(top["models"], Path.cwd(), f"sweep file {path}")
    suite_names = {s.get("name") for s in suites}
    for m in models:
        extra = sorted(set(m.params) - suite_names)
        if extra:
            raise ConfigError(
                f"sweep file {path}: model {m.ref!r} sets params for {extra[0]!r}, which is not a [[suite]] here"
            )
    digest = hashlib.sha256(text.encode()).hexdigest()
    cells = []
    for s in suites:
        if "name" not in s:
            raise ConfigError(f"every [[suite]] in {path} needs a name")
        for m in models:
            params = {**s.get("params", {}), **m.params.get(s["name"], {})}
            params = {k: tuple(v) if isinstance(v, list) else v for k, v in params.items()}
            for seed in s.get("seeds", top.get("seeds", [0])):
                opts = RunOptions(
                    data=s.get("data", top.get("data")),
                    dataset=s.get("dataset", top.get("dataset")),
                    labels=s.get("labels", top.get("labels")),
                    limit=s.get("limit", top.get("limit")),
                    seed=int(seed),
                    batch_size=int(m.batch_size or s.get("batch_size", top.get("batch_size", 64))),
                    dtype=m.dtype or s.get("dtype", top.get("dtype", "fp32")),
                    device=top.get("device"),
                    pretrained=m.pretrained,
                    save_samples=bool(s.get("save_samples", top.get("save_samples", False))),
                    suite_params=params,
                )
                cells.append(Cell(model=m.ref, suite=s["name"], options=opts, sweep_digest=digest))
    first: dict[str, Cell] = {}
    for cell in cells:  # a model, seed or [[suite]] listed twice: one cell run twice, counted twice
        if first.setdefault(cell.key(), cell) is not cell:
            raise ConfigError(
                f"sweep file {path}: the cell {cell.label()!r} is listed twice (a model, a seed or a [[suite]] "
                "with the same parameters appears twice); keep one"
            )
    spec = SweepSpec(path, tuple(cells), str(top.get("out", "results")), digest)
    validate_sweep(spec, allow_entrypoints=allow_entrypoints)
    return spec
