"""``rbvit``: thin click commands over the runner, the store and the leaderboard.

Progress goes to stderr (live bars in a terminal, plain lines otherwise, nothing with ``-q``), results to
stdout (a table in a terminal, TSV when piped, JSON lines with ``--json``).
Errors a user can fix are one line on stderr with a distinct exit code.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import click
from rich.console import Console

from robustbench_vit import __version__
from robustbench_vit.cli.errors import DEBUG as _DEBUG
from robustbench_vit.cli.errors import OneLineErrorsGroup
from robustbench_vit.cli.errors import friendly as _friendly
from robustbench_vit.cli.output import UI, configure_logging, emit, format_option, resolve_format
from robustbench_vit.errors import ConfigError, RbvitError

__all__ = ["main"]

err = Console(stderr=True)
#: display choices made by the group options (-q, --progress) for the subcommands
_UI = UI  # the progress mode every command passes on (cli.output.UI)


@click.group(cls=OneLineErrorsGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rbvit")
@click.option(
    "-v",
    "--verbose",
    count=True,
    help="More log output on stderr (-v info, -vv debug; default: warnings only).",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress output (errors and results only).")
@click.option(
    "--progress",
    type=click.Choice(["auto", "rich", "log", "off"]),
    default="auto",
    show_default=True,
    help="auto: live bars in a terminal, plain lines every few seconds otherwise.",
)
@click.option("--debug", is_flag=True, help="Show the full traceback of an error instead of one line.")
@click.option(
    "--max-image-pixels",
    type=click.IntRange(1),
    default=None,
    help="Largest image (width x height) to decode; larger ones are refused as decompression bombs "
    "(default: PIL's limit, 89,478,485; env RBVIT_MAX_IMAGE_PIXELS).",
)
def main(verbose: int, quiet: bool, progress: str, debug: bool, max_image_pixels: int | None) -> None:
    """Robustness benchmark for Vision Transformers and CNNs."""
    import os

    if max_image_pixels is not None:  # read by the decoder, in this process and the ones it starts
        os.environ["RBVIT_MAX_IMAGE_PIXELS"] = str(max_image_pixels)
    _DEBUG["on"] = debug
    _UI["progress"] = "off" if quiet else progress
    level = logging.WARNING - 10 * min(verbose, 2)
    configure_logging(level)


def _legacy(value: str | None, new: str) -> str | None:
    """An output path given with the old -o/--out of leaderboard, plot or report (-o/--out now always
    names a results folder): still honoured, with a one-line note."""
    if value is not None:
        click.echo(f"note: -o/--out of this command is now {new} (-o/--out names a results folder)", err=True)
    return value


def _parse_params(pairs: tuple[str, ...]) -> dict[str, str]:
    params = {}
    for p in pairs:
        if "=" not in p:
            raise RbvitError(f"--param {p!r} must look like key=value")
        k, v = p.split("=", 1)
        params[k.strip()] = v.strip()
    return params


@main.command("eval")
@click.option(
    "--model",
    "-m",
    required=True,
    help="Zoo name, timm name, timm:/hf-hub:/torchvision:/robustbench: name, card .json, or module:factory.",
)
@click.option("--suite", "-s", required=True, help="Suite name(s), comma-separated (rbvit ls suites).")
@click.option("--data", type=str, default=None, help="Dataset folder (default: the ImageNet sample set).")
@click.option("--dataset", type=str, default=None, help="Dataset name when auto-detection is not enough.")
@click.option("--labels", type=str, default=None, help="Label file for a flat image folder.")
@click.option("--limit", type=int, default=None, help="Class-stratified seeded subset of N images.")
@click.option("--subset", type=str, default=None, help="File (or shipped list name) of item ids to evaluate.")
@click.option("--batch-size", "-b", type=int, default=None, help="Images per forward pass (default 64).")
@click.option("--device", type=str, default=None, help="auto (cuda > mps > cpu), cpu, cuda, cuda:1 ...")
@click.option(
    "--devices",
    type=str,
    default=None,
    help="Split the conditions over local devices, one process each: 0,1,2,3 or cuda:0,cuda:1.",
)
@click.option(
    "--dtype",
    type=click.Choice(["fp32", "bf16", "fp16"]),
    default=None,
    help="Autocast precision (default fp32).",
)
@click.option("--seed", type=int, default=None, help="Seed of every random draw (default 0).")
@click.option("--out", "-o", type=str, default="results", show_default=True, help="Results folder.")
@click.option("--param", "-p", "params", multiple=True, help="Suite parameter key=value (repeatable).")
@click.option("--checkpoint", type=str, default=None, help="Local weights (safetensors / weights-only .pth).")
@click.option("--random-weights", is_flag=True, help="Do not load pretrained weights (tests, timing).")
@click.option("--save-samples", is_flag=True, help="Also write per-sample rows (index, label, pred, loss).")
@click.option("--workers", type=int, default=None, help="Decode threads for the image cache.")
@click.option(
    "--decode",
    type=click.Choice(["auto", "cpu", "device"]),
    default=None,
    help="Decode image files on CPU threads, or in batches on the model's device (auto: on a GPU if any).",
)
@click.option("--cache-dir", type=str, default=None, help="Decoded-image cache (default $RBVIT_CACHE).")
@click.option(
    "--img-size", type=click.IntRange(1), default=None, help="Override the input side (timm validate.py)."
)
@click.option(
    "--crop-pct", type=float, default=None, help="Override the centre-crop fraction (timm validate.py)."
)
@click.option(
    "--interpolation",
    type=click.Choice(["bilinear", "bicubic", "nearest", "lanczos"]),
    default=None,
    help="Override the resize filter (timm validate.py).",
)
@click.option("--mean", type=str, default=None, help="Override the normalisation mean, e.g. 0.5,0.5,0.5.")
@click.option("--std", type=str, default=None, help="Override the normalisation std, e.g. 0.5,0.5,0.5.")
@format_option(long=True)
@_friendly
def eval_cmd(
    model: str,
    suite: str,
    params: tuple[str, ...],
    random_weights: bool,
    fmt: str,
    as_json: bool,
    **opts: Any,
) -> None:
    """Evaluate one model under one or more suites (-s a,b) and write Parquet rows."""
    from robustbench_vit.api import evaluate
    from robustbench_vit.cli.summary import SUMMARY_COLUMNS, reuse_line, summary_rows
    from robustbench_vit.engine.multidevice import parse_devices
    from robustbench_vit.engine.runner import RunOptions

    pre = {k: opts.pop(k) for k in ("img_size", "crop_pct", "interpolation", "mean", "std")}
    for k in ("mean", "std"):
        if pre[k] is not None:
            try:
                pre[k] = tuple(float(v) for v in pre[k].split(","))
            except ValueError:
                raise ConfigError(
                    f"--{k} takes comma-separated numbers, e.g. 0.5,0.5,0.5; got {pre[k]!r}"
                ) from None
    kwargs = {k: v for k, v in opts.items() if v is not None and v is not False}
    kwargs["override_preprocessing"] = {k: v for k, v in pre.items() if v is not None}
    if "devices" in kwargs:
        kwargs["devices"] = parse_devices(kwargs["devices"])
    options = RunOptions(pretrained=not random_weights, suite_params=_parse_params(params), **kwargs)
    df = evaluate(model, suite, options, progress=_UI["progress"])
    note = reuse_line(df)
    if note and _UI["progress"] != "off":
        click.echo(note, err=True)
    out = "table" if fmt == "long" else resolve_format(fmt, as_json)
    if out == "table" and fmt != "long":  # people read the headline; the files hold every row
        title = f"{df.model.iat[0]}: headline metrics (percent; fractions in the Parquet files; --format long: every row)"
        emit(summary_rows(df), SUMMARY_COLUMNS, "table", title)
        return
    cols = ["model", "suite", "dataset", "condition", "metric", "value", "n"]
    emit(df.to_dict("records"), cols + (["preprocessing", "run_id"] if out == "json" else []), out)


@main.command("ls")
@click.argument("kind", type=click.Choice(["models", "suites", "datasets", "layers"]))
@click.argument("name", required=False)
@format_option
@_friendly
def ls_cmd(kind: str, name: str | None, fmt: str, as_json: bool) -> None:
    """List the model zoo, the suites, or the datasets; "ls suites NAME" shows one suite's parameters,
    "ls layers MODEL" the modules that -p layers= may name."""
    if kind == "layers":
        if not name:
            raise ConfigError("ls layers needs a model: rbvit ls layers MODEL")
        from robustbench_vit.cli.catalog import layers

        rows = layers(name)
        cols = ["name", "type", "params", "auto"]
        emit(rows, cols, resolve_format(fmt, as_json), f"rbvit layers {name}")
        return
    if kind == "suites" and name:
        from robustbench_vit.suites.describe import describe_suite

        info = describe_suite(name)
        if as_json or fmt == "json":
            click.echo(json.dumps(info, default=str))  # one object, on one line
            return
        click.echo(f"{info['name']} v{info['version']}: {info['summary']}\n{info['paper']}")
        params = [
            {**p, "default": str(p["default"]), "allowed values": p["choices"] or p["range"] or ""}
            for p in info["parameters"]
        ]
        emit(
            params, ["name", "type", "default", "allowed values"], resolve_format(fmt), f"rbvit suite {name}"
        )
        return
    from robustbench_vit.cli.catalog import catalog

    rows = catalog(kind)  # type: ignore[arg-type]
    emit(rows, list(rows[0]), resolve_format(fmt, as_json), f"rbvit {kind}")  # json: one object per line


@main.command("leaderboard")
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
    from robustbench_vit.results.leaderboard import build_leaderboard, write_leaderboard
    from robustbench_vit.storage.store import require_results

    board = build_leaderboard(require_results(results), all_variants=all_variants)
    pq_path, md_path = write_leaderboard(board, results, parquet=out, markdown=markdown)
    if as_json or fmt == "json":
        for line in board.to_json(orient="records", lines=True).splitlines():  # one object per line
            click.echo(line)
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


@main.command("plot")
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
    from robustbench_vit.results.figures.plots import PLOTTERS, plot_all
    from robustbench_vit.storage.store import load_results

    unknown = [k for k in kind if k not in PLOTTERS]
    if unknown:
        raise RbvitError(f"unknown figure kind {unknown[0]!r}; known: {', '.join(PLOTTERS)}")
    files = plot_all(load_results(results), out or f"{results}/figures", list(kind) or None)
    if not files:
        raise RbvitError(f"no rows in {results} that the requested figures can draw")
    for f in files:
        click.echo(str(f))


@main.command("sweep")
@click.argument("file")
@click.option(
    "--out", "-o", default=None, help="Results folder (default: the file's [sweep] out, else results/)."
)
@click.option(
    "--executor",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="Run the cells in this process, or as Ray tasks.",
)
@click.option("--address", default=None, help="Ray cluster address (default: start a local Ray).")
@click.option(
    "--num-gpus",
    type=float,
    default=None,
    help="GPUs per Ray task (default 1 where CUDA is visible, else 0).",
)
@click.option(
    "--shards",
    type=int,
    default=1,
    show_default=True,
    help="With --executor ray: split each cell's conditions over this many tasks (GPUs).",
)
@click.option("--dry-run", is_flag=True, help="Only validate the file and print the plan.")
@click.option(
    "--allow-entrypoints",
    is_flag=True,
    help="Let the file name module:factory models (imported and called); off by default: a sweep file is data.",
)
@format_option
@_friendly
def sweep_cmd(
    file: str,
    out: str | None,
    executor: str,
    address: str | None,
    num_gpus: float | None,
    shards: int,
    dry_run: bool,
    allow_entrypoints: bool,
    fmt: str,
    as_json: bool,
) -> None:
    """Run a declarative sweep (models x suites x datasets), skipping complete cells."""
    from robustbench_vit.engine.progress import make_progress
    from robustbench_vit.sweeps.run import load_sweep, plan, run_sweep

    spec = load_sweep(file, allow_entrypoints=allow_entrypoints)
    target = out or spec.out
    if dry_run:
        statuses = plan(spec, target)
    else:
        if num_gpus is None:
            import torch

            num_gpus = 1.0 if torch.cuda.is_available() else 0.0
        progress = make_progress(_UI["progress"])
        try:
            statuses = run_sweep(
                spec,
                target,
                executor=executor,
                address=address,
                num_gpus=num_gpus,
                progress=progress,
                shards=shards,
            )
        finally:
            progress.close()
    rows = [
        {
            "cell": st.cell.label(),
            "status": st.status,
            "seconds": round(st.seconds, 1),
            "rows": st.rows,
            "error": st.error,
        }
        for st in statuses
    ]
    emit(
        rows,
        ["cell", "status", "seconds", "rows", "error"],
        resolve_format(fmt, as_json),
        f"sweep {file} -> {target}",
    )
    kinds = ("done", "skipped", "failed", "config-failed", "todo")
    counts = {k: sum(s.status == k for s in statuses) for k in kinds}
    err.print(" ".join(f"{k}={v}" for k, v in counts.items()), highlight=False)
    if counts["failed"] or counts["config-failed"]:
        sys.exit(1)


@main.command("compare")
@click.argument("model_a")
@click.argument("model_b")
@click.option(
    "--results",
    "-r",
    default="results",
    show_default=True,
    help="Results folder with per-sample rows (--save-samples).",
)
@click.option("--suite", "-s", default="clean", show_default=True, help="Suite whose per-image rows to pair.")
@click.option(
    "--condition", default=None, help="Condition to compare (default: all shared conditions pooled)."
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
    """Paired exact McNemar test: do two models differ on the same images?"""
    import dataclasses

    from robustbench_vit.results.analysis import mcnemar

    r = mcnemar(results, model_a, model_b, suite=suite, condition=condition, dataset=dataset)
    if as_json:
        click.echo(json.dumps({"model_a": model_a, "model_b": model_b, **dataclasses.asdict(r)}))
        return
    click.echo(f"{model_a}: {r.acc_a:.4f}   {model_b}: {r.acc_b:.4f}   on {r.n} shared images ({suite})")
    click.echo(f"only {model_a} correct: {r.a_only}   only {model_b} correct: {r.b_only}")
    click.echo(f"exact McNemar p-value: {r.p_value:.4g}")


@main.command("worst-case")
@click.option(
    "--results",
    "-r",
    default="results",
    show_default=True,
    help="Results folder with per-sample rows (--save-samples).",
)
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
    if per_image:
        images.to_parquet(per_image, index=False)
    emit(
        summary.to_dict("records"),
        list(summary.columns),
        resolve_format(fmt, as_json),
        f"worst case of {model}",
    )


@main.command("report")
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
    from robustbench_vit.storage.store import require_results

    require_results(results)
    click.echo(str(write_report(results, out)))


from robustbench_vit.cli.reproduce import reproduce_cmd  # noqa: E402 - one command per file from here on

main.add_command(reproduce_cmd)


if __name__ == "__main__":  # pragma: no cover
    main()
