"""The ``rbvit`` commands that read a results folder: ``leaderboard``, ``plot``, ``compare``, ``worst-case``
and ``report`` (registered on the ``rbvit`` group by :mod:`robustbench_vit.cli.commands`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click
from rich.console import Console

from robustbench_vit.cli.errors import friendly as _friendly
from robustbench_vit.cli.output import emit, format_option, json_line, resolve_format
from robustbench_vit.errors import RbvitError

__all__ = ["RESULT_COMMANDS"]

err = Console(stderr=True)


#: the per-sample results folder of compare and worst-case
_samples_folder = click.option(
    "--results",
    "-r",
    default="results",
    show_default=True,
    help="Results folder with per-sample rows (--save-samples).",
)


def _legacy(value: str | None, new: str) -> str | None:
    """An output path given with the old -o/--out of leaderboard, plot or report (-o/--out now always
    names a results folder): still honoured, with a one-line note."""
    if value is not None:
        click.echo(f"note: -o/--out of this command is now {new} (-o/--out names a results folder)", err=True)
    return value


@click.command("leaderboard")
@click.argument("results", default="results")
@click.option("--parquet", default=None, help="Parquet file to write (default RESULTS/leaderboard.parquet).")
@click.option(
    "--out", "-o", "legacy_out", default=None, hidden=True
)  # before 0.3; -o/--out is a results folder
@click.option("--markdown", default=None, help="Markdown path (default RESULTS/LEADERBOARD.md).")
@click.option(
    "--all",
    "all_variants",
    is_flag=True,
    help="Show every image set of a model (default: the largest one per model, weights, preprocessing and config).",
)
@format_option
@_friendly
def leaderboard_cmd(
    results: str,
    parquet: str | None,
    legacy_out: str | None,
    markdown: str | None,
    all_variants: bool,
    fmt: str,
    as_json: bool,
) -> None:
    """Aggregate a results folder into ranked tables (Parquet + Markdown)."""
    out = parquet or _legacy(legacy_out, "--parquet")
    from robustbench_vit.results.leaderboard import build_leaderboard
    from robustbench_vit.results.tables import write_leaderboard
    from robustbench_vit.storage.reading import require_results

    board = build_leaderboard(require_results(results), all_variants=all_variants)
    pq_path, md_path = write_leaderboard(board, results, parquet=out, markdown=markdown)
    if as_json or fmt == "json":
        for record in board.to_dict("records"):  # one object per line, every digit of each value kept
            click.echo(json_line(record))
        return
    cols = [
        "suite",
        "dataset",
        "condition",
        "metric",
        "rank",
        "label",
        "value",
        "ci_low",
        "ci_high",
        "n",
        "n_seeds",
    ]
    emit(board.to_dict("records"), cols, resolve_format(fmt), "leaderboard")
    err.print(f"wrote {pq_path} and {md_path}")


@click.command("plot")
@click.argument("results", default="results")
@click.option("--figures", default=None, help="Folder for the PNG files (default RESULTS/figures).")
@click.option(
    "--out", "-o", "legacy_out", default=None, hidden=True
)  # before 0.3; -o/--out is a results folder
@click.option(
    "--kind", "-k", multiple=True, help="Figure kind(s): occlusion, patch_shuffle, ... (default all)."
)
@_friendly
def plot_cmd(results: str, figures: str | None, legacy_out: str | None, kind: tuple[str, ...]) -> None:
    """Render the standard figures (one curve per model) from a results folder to PNG."""
    out = figures or _legacy(legacy_out, "--figures")
    from robustbench_vit.results.figures.plots import PLOTTERS, figure_rows, plot_all
    from robustbench_vit.storage.reading import load_results

    unknown = [k for k in kind if k not in PLOTTERS]
    if unknown:
        raise RbvitError(f"unknown figure kind {unknown[0]!r}; known: {', '.join(PLOTTERS)}")
    files = plot_all(figure_rows(load_results(results)), out or f"{results}/figures", list(kind) or None)
    if not files:
        raise RbvitError(f"no rows in {results} that the requested figures can draw")
    for f in files:
        click.echo(str(f))


@click.command("compare")
@click.argument("model_a")
@click.argument("model_b")
@_samples_folder
@click.option("--suite", "-s", default="clean", show_default=True, help="Suite whose per-image rows to pair.")
@click.option(
    "--condition",
    default=None,
    help="Condition to compare (default: every shared one: a sign test over images, and each condition's "
    "McNemar test, Holm-adjusted).",
)
@click.option("--dataset", default=None, help="Dataset to compare on (default: every shared one).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
@_friendly
def compare_cmd(
    model_a: str,
    model_b: str,
    results: str,
    suite: str,
    condition: str | None,
    dataset: str | None,
    as_json: bool,
) -> None:
    """Paired exact McNemar test: do two models differ on the same images, and by how much (95% interval)?"""

    from robustbench_vit.results.analysis import mcnemar

    r = mcnemar(
        results, model_a, model_b, suite=suite, condition=condition, dataset=dataset, refuse_same=True
    )
    if as_json:
        click.echo(json_line({"model_a": model_a, "model_b": model_b, **dataclasses.asdict(r)}))
        return
    if len(r.conditions) <= 1:
        click.echo(f"{model_a}: {r.acc_a:.4f}   {model_b}: {r.acc_b:.4f}   on {r.n} shared images ({suite})")
        click.echo(f"only {model_a} correct: {r.a_only}   only {model_b} correct: {r.b_only}")
        click.echo(f"exact McNemar p-value: {r.p_value:.4g}")
        click.echo(f"{_difference(r)} (Newcombe's paired score interval)")
    else:
        _echo_pooled(r, model_a, model_b, suite)
    if r.content_differs:
        click.echo(
            f"left out: {r.content_differs} images named alike whose content or label differs between the two "
            "runs (or whose content an older rbvit did not record)"
        )


def _echo_pooled(r, model_a: str, model_b: str, suite: str) -> None:
    """A comparison over several conditions: the sign test over images, then each condition's McNemar."""
    k = len(r.conditions)
    click.echo(
        f"{model_a}: {r.acc_a:.4f}   {model_b}: {r.acc_b:.4f}   over {k} conditions of {suite}: "
        f"{r.n} shared images, {r.pairs} image-condition pairs"
    )
    click.echo(
        f"images {model_a} answers correctly under more conditions: {r.a_only}   {model_b}: {r.b_only}"
    )
    click.echo(
        f"exact sign test over images p-value: {r.p_value:.4g} (an image counts once, not once per condition)"
    )
    click.echo(f"{_difference(r)} over the pairs (t interval with the image as the unit)")
    click.echo(
        f"per condition: exact McNemar, p_holm adjusted over the {k} conditions; the difference acc_a - acc_b "
        "with its 95% interval (Newcombe's paired score interval, not adjusted)"
    )
    click.echo("condition\tn\tacc_a\tacc_b\tonly_a\tonly_b\tp\tp_holm\tdiff\tdiff_low\tdiff_high")
    for c in r.conditions:
        name = "/".join(x for x in (c.dataset, c.condition, c.source_model and f"from {c.source_model}") if x)
        click.echo(
            f"{name}\t{c.n}\t{c.acc_a:.4f}\t{c.acc_b:.4f}\t{c.a_only}\t{c.b_only}\t{c.p_value:.4g}\t{c.p_holm:.4g}"
            f"\t{c.acc_a - c.acc_b:+.4f}\t{c.diff_low:+.4f}\t{c.diff_high:+.4f}"
        )


def _difference(r) -> str:  # noqa: ANN001 - a McNemar result
    return f"difference acc_a - acc_b: {r.acc_a - r.acc_b:+.4f}, 95% interval [{r.diff_low:+.4f}, {r.diff_high:+.4f}]"


@click.command("worst-case")
@_samples_folder
@click.option("--model", "-m", required=True, help="Model whose per-image worst case to take.")
@click.option(
    "--suite",
    "-s",
    "suites",
    multiple=True,
    help="Attack suites to combine (default: autoattack, pgd, transfer).",
)
@click.option("--dataset", default=None, help="Restrict to one dataset (default: each separately).")
@click.option("--per-image", default=None, help="Also write each image's outcome to this Parquet file.")
@format_option
@_friendly
def worst_case_cmd(
    results: str,
    model: str,
    suites: tuple[str, ...],
    dataset: str | None,
    per_image: str | None,
    fmt: str,
    as_json: bool,
) -> None:
    """Per-image worst case over every attack at the same norm and epsilon."""
    from robustbench_vit.results.worst_case import ATTACK_SUITES, worst_case

    summary, images = worst_case(results, model, suites=suites or ATTACK_SUITES, dataset=dataset)
    if per_image:  # atomically, saying what it holds: never half a file, never read back as runs
        import pyarrow as pa

        from robustbench_vit.storage.verified_parquet import atomic_write_table

        atomic_write_table(
            pa.Table.from_pandas(images, preserve_index=False), Path(per_image), kind="worst-case"
        )
    emit(
        summary.to_dict("records"),
        list(summary.columns),
        resolve_format(fmt, as_json),
        f"worst case of {model}",
    )


@click.command("report")
@click.argument("results", default="results")
@click.option("--html", "html_path", default="report.html", show_default=True, help="HTML file to write.")
@click.option(
    "--out", "-o", "legacy_out", default=None, hidden=True
)  # before 0.3; -o/--out is a results folder
@_friendly
def report_cmd(results: str, html_path: str, legacy_out: str | None) -> None:
    """Write one self-contained HTML page with the leaderboards and figures."""
    out = _legacy(legacy_out, "--html") or html_path
    from robustbench_vit.results.report import write_report
    from robustbench_vit.storage.reading import require_results

    require_results(results)
    click.echo(str(write_report(results, out)))


RESULT_COMMANDS = (leaderboard_cmd, plot_cmd, compare_cmd, worst_case_cmd, report_cmd)
