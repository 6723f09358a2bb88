"""``rbvit report``: one self-contained HTML page, one section per suite and dataset with its ranked table
(values with their 95% intervals) beside its figure, figures inlined as base64 PNG.

Tables scroll inside their own box, so a wide table never widens the page; at narrow widths the
figure moves under its table.
"""

from __future__ import annotations

import base64
import html
import math
import re
import struct
import tempfile
from pathlib import Path

import pandas as pd

from robustbench_vit import __version__
from robustbench_vit.results.figures.plots import FIGURE_SUITES, Figure, figure_rows, render_figures
from robustbench_vit.results.figures.reproduction import plot_reproduction
from robustbench_vit.results.leaderboard import build_leaderboard
from robustbench_vit.results.tables import suite_tables
from robustbench_vit.storage.reading import load_results
from robustbench_vit.storage.verified_parquet import read_verified

__all__ = ["write_report", "inline_markdown"]

_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;max-width:1600px}
h1{font-size:1.5em}h2{font-size:1.25em;margin-top:1.6em}h3{font-size:1.05em;margin:1.2em 0 .3em}
section{border-top:1px solid #ddd;padding-top:.4em}
.pair{display:flex;flex-wrap:wrap;gap:1.2em;align-items:flex-start}
.scroll{overflow-x:auto;max-width:100%;flex:1 1 520px;min-width:0}
table{border-collapse:collapse;font-size:13px;white-space:nowrap}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3;position:sticky;top:0}
td.name,th.name{text-align:left}
.ci{color:#777;font-size:11px}
figure{margin:0;flex:0 1 560px;max-width:100%}figure.wide{flex:1 1 100%}
figure img{width:100%;height:auto;border:1px solid #eee}
figcaption,.note{color:#666;font-size:12px}
code{background:#f5f5f5;padding:0 3px;border-radius:3px}
"""


def inline_markdown(text: str) -> str:
    """HTML of the inline Markdown the leaderboard captions use: ``code`` spans and _emphasis_."""
    out = html.escape(text)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return re.sub(r"(?<![\w])_(\S(?:.*?\S)?)_(?![\w])", r"<em>\1</em>", out)


def _value_html(cell: object) -> str:
    """A leaderboard cell ``(value, low, high)`` as the value with its interval in small grey type."""
    if not isinstance(cell, tuple):
        return (
            "" if cell is None or (isinstance(cell, float) and math.isnan(cell)) else html.escape(str(cell))
        )
    v, lo, hi = cell
    if not math.isfinite(v):
        return ""
    ci = f' <span class="ci">[{lo:.3f}, {hi:.3f}]</span>' if math.isfinite(lo) else ""
    return f"{v:.4f}{ci}"


def table_html(wide: pd.DataFrame) -> str:
    """A flat HTML table: the index levels as name columns, then one column per headline metric."""
    names = [str(n) for n in wide.index.names]
    head = "".join(f'<th class="name">{html.escape(n)}</th>' for n in names)
    head += "".join(f"<th>{html.escape(str(c))}</th>" for c in wide.columns)
    body = []
    for idx, row in wide.iterrows():
        idx = idx if isinstance(idx, tuple) else (idx,)
        cells = "".join(f'<td class="name">{html.escape(str(i))}</td>' for i in idx)
        cells += "".join(f"<td>{_value_html(v)}</td>" for v in row)
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _figure_html(fig: Figure) -> str:
    raw = fig.path.read_bytes()
    data = base64.b64encode(raw).decode()
    alt = f"{fig.kind} on {fig.dataset}"
    width, height = struct.unpack(">II", raw[16:24])  # the PNG header's IHDR size
    wide = " class='wide'" if width > 2 * height else ""
    return (
        f'<figure{wide}><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{html.escape(alt)}</figcaption></figure>"
    )


def _sections(board: pd.DataFrame, figures: list[Figure]) -> tuple[str, list[Figure]]:
    """One section per table with the figure of its suite and dataset; returns the figures left over."""
    left = list(figures)
    parts = []
    for suite, dataset, caption, wide, _ in suite_tables(board, cell=lambda v, lo, hi: (v, lo, hi)):
        mine = [f for f in left if suite in FIGURE_SUITES.get(f.kind, ()) and f.dataset == dataset]
        left = [f for f in left if f not in mine]
        figs = "".join(_figure_html(f) for f in mine)
        parts.append(
            f"<section><h3>{html.escape(suite)} on {html.escape(dataset)}</h3>"
            f"<p class='note'>{inline_markdown(caption)}</p>"
            f"<div class='pair'><div class='scroll'>{table_html(wide)}</div>{figs}</div></section>"
        )
    return "\n".join(parts) or "<p>no results</p>", left


def _reproductions(results: str | Path, tmp: str) -> str:
    """One section per ``rbvit reproduce`` table under ``RESULTS/reproduce``: published vs rbvit, with its
    scatter; a file that fails its checksum is left out with a note, never shown."""
    folder = Path(results) / "reproduce"
    parts = []
    for f in sorted(folder.glob("*.parquet")) if folder.is_dir() else []:
        try:
            t = read_verified(f).to_pandas()
        except Exception as e:  # noqa: BLE001 - a damaged file is named, the rest of the report stands
            parts.append(f"<p class='note'>{html.escape(f.name)} left out: {html.escape(str(e))}</p>")
            continue
        shown = pd.DataFrame(
            {
                "protocol": t.protocol,
                "model": t.model,
                "published": (t.published * 100).round(2),
                "rbvit": [
                    f"{v * 100:.2f} [{lo * 100:.1f}, {hi * 100:.1f}]"
                    for v, lo, hi in zip(t.rbvit, t.ci_low, t.ci_high)
                ],
                "difference": (t.difference * 100).round(2),
                "tolerance": (t.tolerance * 100).round(2),
                "images": ["same" if v else "other" for v in t.same_image_set],
                "verdict": t.verdict,
            }
        )
        png = plot_reproduction(t, Path(tmp) / f"reproduce-{f.stem}.png", f"{f.stem}: published vs rbvit")
        fig = _figure_html(Figure("reproduction", f.stem, png)) if png else ""
        within = int((t.verdict == "within").sum())
        parts.append(
            f"<section><h3>{html.escape(f.stem)}</h3><p class='note'>{within} of {len(t)} cells within their "
            "tolerance (percent; rbvit with its 95% interval; other images: a sanity check, not a reproduction)"
            f"</p><div class='pair'><div class='scroll'>{table_html(shown.set_index(['protocol', 'model']))}</div>{fig}</div>"
            f"{_sources_html(t)}</section>"
        )
    return "\n".join(parts)


def _sources_html(t: pd.DataFrame) -> str:
    """Where the published values of a reproduction table were read (tables since the source column)."""
    sources = sorted(set(t["source"].dropna())) if "source" in t else []
    if not sources:
        return ""
    return f"<p class='note'>Published values from: {html.escape('; '.join(sources))}</p>"


def write_report(results: str | Path, out: str | Path) -> Path:
    """Render leaderboards and every supported figure of ``results`` into one HTML file."""
    df = load_results(results)
    board = build_leaderboard(load_results(results, expand_params=False))
    with tempfile.TemporaryDirectory() as tmp:
        figures = render_figures(figure_rows(df), tmp)
        sections, others = _sections(board, figures)
        extra = "".join(_figure_html(f) for f in others)
        reproductions = _reproductions(results, tmp)
    body = (
        f"<h1>robustbench_vit report</h1><p class='note'>{len(df)} rows from {html.escape(str(results))}; "
        f"rbvit {__version__}. Values are fractions of images in [0, 1] unless the metric says otherwise; "
        "grey brackets are 95% Wilson intervals over images.</p>"
        f"<h2>Leaderboards</h2>{sections}"
        + (f"<h2>Other figures</h2><div class='pair'>{extra}</div>" if extra else "")
        + (f"<h2>Published vs rbvit (rbvit reproduce)</h2>{reproductions}" if reproductions else "")
    )
    page = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>rbvit report</title><style>{_CSS}</style></head><body>{body}</body></html>"
    )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page)
    return out
