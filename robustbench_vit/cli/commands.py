"""``rbvit``: thin click commands over the runner, the store and the leaderboard.

Progress goes to stderr (live bars in a terminal, plain lines otherwise, nothing with ``-q``), results to
stdout (a table in a terminal, TSV when piped, JSON lines with ``--json``).
Errors a user can fix are one line on stderr with a distinct exit code.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import click
from rich.console import Console

from robustbench_vit import __version__
from robustbench_vit.cli.errors import DEBUG as _DEBUG
from robustbench_vit.cli.errors import OneLineErrorsGroup
from robustbench_vit.cli.errors import friendly as _friendly
from robustbench_vit.cli.output import UI, configure_logging, emit, format_option, json_line, resolve_format
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

    from robustbench_vit.cpu_allocator import keep_cpu_buffers

    keep_cpu_buffers()  # this process is rbvit's: CPU forward passes keep their buffers (env RBVIT_MALLOC)

    if max_image_pixels is not None:  # read by the decoder, in this process and the ones it starts
        os.environ["RBVIT_MAX_IMAGE_PIXELS"] = str(max_image_pixels)
    else:  # a malformed $RBVIT_MAX_IMAGE_PIXELS fails at once, not at the first image decoded
        from robustbench_vit.data.decode import max_image_pixels as image_pixel_limit

        try:
            image_pixel_limit()
        except RbvitError as e:
            raise click.UsageError(str(e)) from None
    _DEBUG["on"] = debug
    _UI["progress"] = "off" if quiet else progress
    level = logging.WARNING - 10 * min(verbose, 2)
    configure_logging(level)


def _parse_params(pairs: tuple[str, ...]) -> dict[str, str]:
    params = {}
    for p in pairs:
        if "=" not in p:
            raise RbvitError(f"--param {p!r} must look like key=value")
        k, v = p.split("=", 1)
        if k.strip() in params and params[k.strip()] != v.strip():
            raise RbvitError(
                f"--param {k.strip()} is given twice ({params[k.strip()]!r} and {v.strip()!r}); keep one"
            )
        params[k.strip()] = v.strip()
    return params


@main.command("eval")
@click.option(
    "--model",
    "-m",
    required=True,
    help="Zoo name, timm name, timm:/hf-hub:/torchvision:/robustbench: name, card .json, or module:factory.",
)
@click.option(
    "--suite",
    "-s",
    required=True,
    multiple=True,  # -s clean -s occlusion is -s clean,occlusion (a second -s used to replace the first)
    help="Suite name(s), comma-separated or repeated (rbvit ls suites).",
)
@click.option("--data", type=str, default=None, help="Dataset folder (default: the ImageNet sample set).")
@click.option("--dataset", type=str, default=None, help="Dataset name when auto-detection is not enough.")
@click.option("--labels", type=str, default=None, help="Label file for a flat image folder.")
@click.option(
    "--limit",
    type=int,
    default=None,
    help="Class-stratified subset of N images (the same images for every --seed).",
)
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
@click.option(
    "--checkpoint",
    type=str,
    default=None,
    help="Local weights (safetensors / weights-only .pth); FILE#KEY loads one set of several (run.pth#state_dict_ema).",
)
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
    suite: tuple[str, ...],
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
    df = evaluate(model, ",".join(suite), options, progress=_UI["progress"])
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
            click.echo(json_line(info))  # one object, on one line
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


# the commands that read results, and reproduce, live in their own modules
from robustbench_vit.cli.reproduce import reproduce_cmd  # noqa: E402
from robustbench_vit.cli.results_commands import RESULT_COMMANDS  # noqa: E402

for _command in (*RESULT_COMMANDS, reproduce_cmd):
    main.add_command(_command)


if __name__ == "__main__":  # pragma: no cover
    main()
