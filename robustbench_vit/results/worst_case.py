"""Per-image worst case over attacks: an image is robust at a threat (norm, eps) only if every attack
run on it at that threat (PGD, AutoAttack, transfer from any source) left it correctly classified.

Reads the per-sample rows (``--save-samples``) of the attack suites and the conditions' parameters
from the metric rows; only images that every selected attack evaluated count, so the worst case is
never taken over a mix of image sets. One worst case is one network: runs of other weights (a card's file
overwritten between two attacks), precision or preprocessing under the model's name are another row, never
combined.

Example:
    >>> from robustbench_vit.results.worst_case import worst_case
    >>> summary, per_image = worst_case("results", "vit_b16")   # doctest: +SKIP
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from robustbench_vit.errors import DataError
from robustbench_vit.results.selection import NETWORK, runs_of_model, with_network
from robustbench_vit.storage.reading import latest_runs, load_results, load_samples

__all__ = ["ATTACK_SUITES", "worst_case", "final_attack_rows"]

#: suites whose adversarial per-sample rows take part, in the order "broken by" is reported
ATTACK_SUITES = ("autoattack", "pgd", "transfer")


def final_attack_rows(conditions: pd.Series) -> pd.Series:
    """Mask of an attack suite's final adversarial conditions: not the ``/clean`` variants, not AutoAttack's
    per-stage ``/after=`` rows."""
    return ~conditions.str.endswith("/clean") & ~conditions.str.contains("/after=", regex=False)


def _threats(rows: pd.DataFrame) -> pd.DataFrame:
    """(run_id, condition) -> norm and eps (rounded, so 4/255 from two suites is one threat)."""
    out = []
    for r in rows.drop_duplicates(["run_id", "condition"]).itertuples():
        p = json.loads(r.params or "{}")
        if "eps" in p:
            out.append((r.run_id, r.condition, str(p.get("norm", "linf")).lower(), round(float(p["eps"]), 8)))
    return pd.DataFrame(out, columns=["run_id", "condition", "norm", "eps"])


def worst_case(
    results: str | Path,
    model: str,
    *,
    suites: tuple[str, ...] = ATTACK_SUITES,
    dataset: str | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(summary, per_image)`` of ``model``'s worst case per network (:data:`~robustbench_vit.results.
    selection.NETWORK`: weights, dtype, preprocessing, mean, std) and (dataset, norm, eps): attacks run on
    other weights under one name are never combined.

    ``summary``: images evaluated by every attack, the attacks, the worst-case robust accuracy and each
    attack's own robust accuracy on those images. ``per_image``: each image's label, whether it
    survived every attack, and the first attack (in ``suites`` order) that broke it.
    """
    rows = load_results(results, expand_params=False)
    s = load_samples(results, runs=rows)
    key, ids = runs_of_model(model, s.model.unique(), rows)
    s = s[(s.model == key) & s.suite.isin(suites)]
    if ids is not None:  # one card of several that share the name
        s = s[s.run_id.isin(ids)]
    if dataset:
        s = s[s.dataset == dataset]
    s = s[final_attack_rows(s.condition)]
    s = with_network(s, rows)
    s = latest_runs(
        s.assign(source_model=s.source_model.fillna("")),
        ["dataset", "suite", "condition", "source_model", *NETWORK],
    )
    if s.empty:
        raise DataError(
            f"no adversarial per-sample rows for {key} in {results}; run {', '.join(suites)} with --save-samples"
        )
    s = s.merge(_threats(rows), on=["run_id", "condition"], how="inner")
    s["attack"] = (
        s.suite + ":" + s.condition + s.source_model.fillna("").map(lambda m: f" from {m}" if m else "")
    )
    s["order"] = s.suite.map({n: i for i, n in enumerate(suites)})
    s = s.sort_values(["order", "attack"], kind="stable")
    # an image is its name, its content and its label: a file replaced or relabelled between two attacks'
    # runs is two images, and neither was evaluated by every attack
    s["image_sha256"] = s.image_sha256.fillna("")
    image = ["item", "image_sha256", "label"]
    s = s.drop_duplicates(["dataset", "norm", "eps", "attack", *image], keep="last")
    summaries, images = [], []
    for (*variant, ds, norm, eps), g in s.groupby([*NETWORK, "dataset", "norm", "eps"], sort=True):
        attacks = list(dict.fromkeys(g.attack))
        counts = g.groupby(image).attack.nunique()
        shared = counts[counts == len(attacks)].index
        g = g[g.set_index(image).index.isin(shared)]
        robust = g.groupby(image).correct.all()
        first_broken = g[~g.correct].groupby(image).attack.first()
        per = pd.DataFrame({"robust": robust, "broken_by": first_broken}).reset_index()  # label: in the key
        per.insert(0, "eps", eps)
        per.insert(0, "norm", norm)
        per.insert(0, "dataset", ds)
        for col, value in reversed(list(zip(NETWORK, variant))):
            per.insert(0, col, value)
        images.append(per)
        own = g.groupby("attack").correct.mean()
        summaries.append(
            {
                **dict(zip(NETWORK, variant)),
                "dataset": ds,
                "norm": norm,
                "eps": eps,
                "n_images": len(shared),
                "attacks": len(attacks),
                "worst_case_robust_accuracy": float(robust.mean()) if len(robust) else float("nan"),
                "strongest_single_attack": float(own.min()) if len(own) else float("nan"),
                **{f"robust_accuracy[{a}]": float(own.get(a, float("nan"))) for a in attacks},
            }
        )
    return pd.DataFrame(summaries), pd.concat(images, ignore_index=True)
