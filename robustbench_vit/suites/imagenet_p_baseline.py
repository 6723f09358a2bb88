"""The baseline rows ImageNet-P's flip rates are normalised by (``-p baseline=<results folder>``): the
baseline model's flip probability and top-5 distance per (perturbation, difficulty), from one model's
rows computed on the run's own images and seed, never a mix of two weights or precisions under one name."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from robustbench_vit.errors import DataError

__all__ = ["Baseline", "baseline_rows", "read_baseline"]


@dataclass(frozen=True)
class Baseline:
    """``(perturbation, difficulty, metric) -> value`` and what it was computed with."""

    table: dict[tuple[str, int, str], float]
    weights: str  # the baseline rows' ``weights`` column (and their dtype when not fp32)


def baseline_rows(df: pd.DataFrame, typed: str, folder: str) -> pd.DataFrame:
    """The baseline model's rows, found by what the user typed (``alexnet``) or by the name rows record for
    it (``torchvision:alexnet`` -> ``alexnet.tv_imagenet1k_v1``)."""
    from robustbench_vit.models.names import row_key

    names = {typed, row_key(typed)}
    if ":" not in typed:
        names.add(row_key(f"torchvision:{typed}"))
    models = sorted(m for m in set(df.model) if m in names or m.split(".")[0] == typed)
    if len(models) > 1:
        raise DataError(
            f"baseline {folder}: {typed!r} names several models ({', '.join(models)}); "
            "pass -p baseline_model=<one of them>"
        )
    return df[df.model.isin(models)]


def read_baseline(
    folder: str,
    typed: str,
    *,
    suite: str,
    source: str,
    images: str | None,
    seed: int | None,
    codec: str = "none",
    x264: str = "",
) -> Baseline:
    """The baseline table from ``folder``: rows of ``suite`` with ``source`` sequences (generated ones
    coded with ``codec``, and ``x264``'s settings for ``h264``: rows of an rbvit before the parameter were
    not coded); with ``images`` (the run's
    ``image_set``) only rows of those images and ``seed``, and only of one weights and dtype."""
    from robustbench_vit.storage.reading import load_results, oldest_first

    df = load_results(folder)
    df = baseline_rows(df[df.suite == suite], typed, folder)
    if "sequences" in df:
        df = df[df["sequences"] == source]
    df = df[~df.condition.str.startswith("summary")]
    if source == "generated":
        coded = df["codec"].fillna("none") if "codec" in df else pd.Series("none", index=df.index)
        if codec != "none":  # coded alike: the same x264 settings (rows before them coded irreproducibly)
            settings = df["x264"].fillna("") if "x264" in df else pd.Series("", index=df.index)
            coded = coded.where(settings == x264, coded + " with other x264 settings")
        if not df.empty and not (coded == codec).any():
            raise DataError(
                f"baseline {folder}: the {typed} rows were computed on sequences coded {sorted(set(coded))[0]!r}, "
                f"this run's are coded {codec!r}: rerun the baseline with -p codec={codec}"
            )
        df = df[coded == codec]
    if df.empty:
        raise DataError(f"baseline {folder}: no {suite} rows of model {typed!r} with source={source}")
    if images is not None:
        same = df[(df.image_set == images) & (df.seed == seed)]
        if same.empty:
            raise DataError(
                f"baseline {folder}: the {typed} rows were computed on other images or "
                f"another seed (image_set {sorted(set(df.image_set))[:3]}, seeds {sorted(set(df.seed))}; this "
                f"run: image_set {images}, seed {seed}); rerun the baseline with the same --data, --limit, "
                "--subset and --seed"
            )
        df = same
    made = sorted({(str(w), str(d)) for w, d in zip(df.weights, df.dtype)})
    if len(made) > 1:
        raise DataError(
            f"baseline {folder}: the {typed} rows on these images come from {len(made)} weights or precisions "
            f"({'; '.join(f'{w} {d}' for w, d in made[:3])}): a normalisation by a mix of them means nothing; "
            "keep one model's rows in that folder"
        )
    df = oldest_first(df).drop_duplicates(["condition", "metric"], keep="last")
    table = {
        (r.perturbation, int(r.difficulty), r.metric): float(r.value)
        for r in df.itertuples()
        if r.metric in ("flip_probability", "top5_distance")
    }
    weights, dtype = made[0]
    return Baseline(table, weights if dtype == "fp32" else f"{weights} {dtype}")
