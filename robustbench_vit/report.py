"""``rbvit report``: one self-contained HTML page (leaderboards + figures inlined as base64 PNG)."""

from __future__ import annotations

import base64
import html
import tempfile
from pathlib import Path

import pandas as pd

from robustbench_vit import __version__
from robustbench_vit.leaderboard import build_leaderboard, suite_tables
from robustbench_vit.plots import plot_all
from robustbench_vit.store import load_results

__all__ = ["write_report"]

_CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:13px}td,th{border:1px solid #ccc;padding:3px 8px}
th{background:#f3f3f3}img{max-width:100%;border:1px solid #eee;margin:0.5em 0}.note{color:#666;font-size:12px}"""


def _board_html(board: pd.DataFrame) -> str:
    parts = []
    for suite, dataset, caption, wide, _ in suite_tables(board, cell=lambda v, lo, hi: f"{v:.4f}"):
        parts.append(
            f"<h3>{html.escape(suite)} on {html.escape(dataset)}</h3><p class='note'>{html.escape(caption)}</p>"
            + wide.to_html(escape=True)
        )
    return "\n".join(parts) or "<p>no results</p>"


def write_report(results: str | Path, out: str | Path) -> Path:
    """Render leaderboards and every supported figure of ``results`` into one HTML file."""
    df = load_results(results)
    board = build_leaderboard(load_results(results, expand_params=False))
    imgs = []
    with tempfile.TemporaryDirectory() as tmp:
        for p in plot_all(df, tmp):
            data = base64.b64encode(p.read_bytes()).decode()
            imgs.append(
                f'<figure><img alt="{p.stem}" src="data:image/png;base64,{data}"><figcaption>{p.stem}'
                "</figcaption></figure>"
            )
    body = (
        f"<h1>robustbench_vit report</h1><p class='note'>{len(df)} rows from {html.escape(str(results))}; "
        f"rbvit {__version__}. Values in [0, 1]; leaderboards show each suite's headline metrics.</p>"
        f"<h2>Leaderboards</h2>{_board_html(board)}<h2>Figures</h2>{''.join(imgs) or '<p>no figures</p>'}"
    )
    page = f"<!doctype html><html><head><meta charset='utf-8'><title>rbvit report</title><style>{_CSS}</style></head><body>{body}</body></html>"
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page)
    return out
