"""``rbvit reproduce``: rerun a paper card and print published vs rbvit (exit 9 when a cell is outside
its tolerance)."""

from __future__ import annotations

import click

from robustbench_vit.cli.errors import friendly
from robustbench_vit.cli.output import UI, emit, format_option, resolve_format
from robustbench_vit.errors import ConfigError

__all__ = ["reproduce_cmd", "OUTSIDE_TOLERANCE"]

#: the exit code of a reproduction with a cell outside its tolerance
OUTSIDE_TOLERANCE = 9


def _data(pairs: tuple[str, ...]) -> dict[str, str]:
    """``--data PATH`` (every protocol), ``--data PROTOCOL=PATH`` (one) and ``--data DATASET=PATH``."""
    out: dict[str, str] = {}
    for p in pairs:
        key, sep, path = p.partition("=")
        out[key if sep else ""] = path if sep else key
    return out


@click.command("reproduce")
@click.argument("card", required=False)
@click.option("--list", "list_cards", is_flag=True, help="List the shipped paper cards with their citations.")
@click.option(
    "--models", default=None, help="Comma-separated models of the card to run (default: all of them)."
)
@click.option(
    "--data",
    "data",
    multiple=True,
    help="Image folder for every protocol, PROTOCOL=PATH for one, or DATASET=PATH (e.g. imagenet-sketch=PATH).",
)
@click.option(
    "--out", "-o", default="results", show_default=True, help="Results folder (runs resume from it)."
)
@click.option("--dry-run", is_flag=True, help="Show what would run, what is missing and a rough GPU time.")
@click.option("--batch-size", "-b", type=int, default=None, help="Images per forward pass (default 64).")
@click.option("--device", default=None, help="auto (cuda > mps > cpu), cpu, cuda, cuda:1 ...")
@format_option
@friendly
def reproduce_cmd(
    card: str | None,
    list_cards: bool,
    models: str | None,
    data: tuple[str, ...],
    out: str,
    dry_run: bool,
    batch_size: int | None,
    device: str | None,
    fmt: str,
    as_json: bool,
) -> None:
    """Rerun the published numbers of a paper card and say how close rbvit comes."""
    from robustbench_vit.published.cards import card_names, load_card

    shown = resolve_format(fmt, as_json)
    if list_cards or not card:
        rows = []
        for name in card_names():
            c = load_card(name)
            rows.append(
                {"card": name, "cells": len(c.cells), "models": len(c.models()), "citation": c.citation}
            )
        emit(rows, ["card", "cells", "models", "citation"], shown, "rbvit paper cards")
        return
    paper = load_card(card)
    chosen = [m.strip() for m in models.split(",")] if models else None
    unknown = sorted(set(chosen or []) - set(paper.models()))
    if unknown:
        raise ConfigError(
            f"card {paper.name} has no cells for {', '.join(unknown)} (its models: rbvit reproduce {card} --dry-run)"
        )
    folders = _data(data)
    if dry_run:
        from robustbench_vit.reproduce.compare import plan

        rows = plan(paper, chosen, folders)
        emit(
            rows,
            ["protocol", "model", "suite", "images", "data", "missing", "gpu_minutes"],
            shown,
            f"rbvit reproduce {card} (dry run)",
        )
        return
    from robustbench_vit.reproduce.compare import COLUMNS, reproduce
    from robustbench_vit.storage.verified_parquet import atomic_write_table

    kwargs = {k: v for k, v in {"batch_size": batch_size, "device": device}.items() if v is not None}
    table = reproduce(paper, models=chosen, data=folders, out=out, progress=UI["progress"], **kwargs)
    if table.empty:
        raise ConfigError(
            f"nothing ran: give --data for a protocol of {paper.name} (rbvit reproduce {card} --dry-run)"
        )
    import pathlib

    import pyarrow as pa

    target = pathlib.Path(out) / "reproduce" / f"{paper.name}.parquet"
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_table(pa.Table.from_pandas(table, preserve_index=False), target, kind="reproduce")
    people = table.assign(
        published=(table.published * 100).round(2),
        rbvit=(table.rbvit * 100).round(2),
        ci=[f"[{lo * 100:.1f}, {hi * 100:.1f}]" for lo, hi in zip(table.ci_low, table.ci_high)],
        difference=(table.difference * 100).round(2),
        tolerance=(table.tolerance * 100).round(2),
        image_set=["same" if s else "other (sanity check)" for s in table.same_image_set],
    )
    cols = [
        "protocol",
        "model",
        "published",
        "rbvit",
        "ci",
        "difference",
        "tolerance",
        "image_set",
        "verdict",
    ]
    if shown == "json":
        emit(table.to_dict("records"), COLUMNS, "json")
    else:
        emit(people.to_dict("records"), cols, shown, f"{paper.title} (percent; {target})")
    outside = int((table.verdict == "outside").sum())
    if outside:
        click.echo(f"error: {outside} of {len(table)} cells outside their tolerance (see {target})", err=True)
        raise SystemExit(OUTSIDE_TOLERANCE)
