"""Helpers for splitting an image into a grid of cells."""

from __future__ import annotations

from robustbench_vit.errors import ConfigError

__all__ = ["as_grid", "cell_size"]


def as_grid(grid: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """``14`` -> (14, 14); ``(2, 4)`` -> (2, 4) (rows, columns)."""
    if isinstance(grid, int):
        return (grid, grid)
    g = tuple(int(v) for v in grid)
    if len(g) != 2 or min(g) < 1:
        raise ConfigError(f"grid must be an int or (rows, cols) >= 1, got {grid!r}")
    return g  # type: ignore[return-value]


def cell_size(h: int, w: int, grid: tuple[int, int]) -> tuple[int, int]:
    """Cell (height, width) of a grid that divides the image; otherwise a clear error."""
    gh, gw = grid
    if h % gh or w % gw:
        raise ConfigError(
            f"grid {gh}x{gw} does not divide the {h}x{w} input; pick a divisor of the input size "
            f"(or use crop mode for patch_shuffle)"
        )
    return h // gh, w // gw
