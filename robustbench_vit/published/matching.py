"""Which leaderboard rows follow a paper card's protocol: the same suite, condition and metric, a model the
card lists, and the card's image set (its content id where the card records one, else its image count).
Those rows can be read beside the published table (``rbvit reproduce`` compares them cell by cell)."""

from __future__ import annotations

import functools

import pandas as pd

from robustbench_vit.published.cards import card_names, load_card

__all__ = ["comparable_with"]


@functools.lru_cache(maxsize=1)
def _protocols() -> dict[tuple[str, str, str], list[tuple[str, frozenset[str], int, str]]]:
    """(suite, condition, metric) -> [(card/protocol, model keys, image count, image-set id)]."""
    from robustbench_vit.models.names import row_key

    out: dict[tuple[str, str, str], list[tuple[str, frozenset[str], int, str]]] = {}
    for name in card_names():
        card = load_card(name)
        for pid, p in card.protocols.items():
            models = frozenset(row_key(c.model) for c in card.cells if c.protocol == pid)
            out.setdefault((p.suite, p.condition, p.metric), []).append(
                (f"{name}/{pid}", models, p.images, p.image_set_id)
            )
    return out


def comparable_with(board: pd.DataFrame) -> pd.Series:
    """Per row of a leaderboard (or of result rows): the ``card/protocol`` entries whose protocol it follows
    on the card's image set, comma-separated ('' for none)."""
    table = _protocols()
    marks = []
    for r in board[["suite", "condition", "metric", "model", "n_images", "image_set"]].itertuples(
        index=False
    ):
        hits = [
            ref
            for ref, models, images, set_id in table.get((r.suite, r.condition, r.metric), [])
            if r.model in models and (r.image_set == set_id if set_id else int(r.n_images) == images)
        ]
        marks.append(", ".join(hits))
    return pd.Series(marks, index=board.index, dtype=object)
