"""Turning grids of steps into terminal cells: column choice, max-pooling, glyphs, styled runs.

Pure functions on numpy arrays, shared by the onset grid and
the drum pattern. Intensity is drawn with the height of a block glyph, so
it reads the same without colour (NO_COLOR) and on any background.
"""

from __future__ import annotations

import numpy as np

BLOCKS = " ▁▂▃▄▅▆▇█"
_BLOCK_ARRAY = np.array(list(BLOCKS))
PARTIAL_BLOCKS = " ▏▎▍▌▋▊▉"  # horizontal eighths, for level bars


def columns_per_bar(steps_per_bar: int, max_columns: int) -> int:
    """The largest divisor of ``steps_per_bar`` that is at most ``max_columns`` (at least 1).

    A divisor keeps every cell the same number of steps wide, so 16ths in
    4/4 (48 steps) land on 16 columns, and 8ths of 7/8 (42 steps) on 14.
    """
    best = 1
    for columns in range(1, min(steps_per_bar, max(max_columns, 1)) + 1):
        if steps_per_bar % columns == 0:
            best = columns
    return best


def pool_max(values: np.ndarray, n_columns: int) -> np.ndarray:
    """Strongest value per cell: ``(rows, n_steps)`` -> ``(rows, n_columns)``.

    ``n_steps`` must be a multiple of ``n_columns`` (see :func:`columns_per_bar`).
    """
    rows, n_steps = values.shape
    return values.reshape(rows, n_columns, n_steps // n_columns).max(axis=2)


def block_glyphs(levels: np.ndarray, threshold: float = 0.05) -> np.ndarray:
    """Glyph per cell ``(...)`` of ``str`` from levels 0..1: blank below ``threshold``, else 1 to 8 eighths."""
    index = np.clip(np.ceil(levels * 8.0), 1, 8).astype(np.int8)
    index[levels < threshold] = 0
    return _BLOCK_ARRAY[index]


def level_bar(fraction: float, width: int, marker: float | None = None) -> str:
    """A horizontal bar ``width`` cells long filled to ``fraction`` (0..1) in eighths.

    ``marker`` (0..1) puts a peak-hold line ``┃`` in the empty part.
    """
    width = max(width, 0)
    eighths = round(min(max(fraction, 0.0), 1.0) * width * 8)
    full, remainder = divmod(eighths, 8)
    cells = ["█"] * full
    if full < width:
        cells.append(PARTIAL_BLOCKS[remainder])
        cells.extend(" " * (width - full - 1))
    if marker is not None and width:
        position = min(int(min(max(marker, 0.0), 1.0) * width), width - 1)
        if position >= len(cells) or cells[position] == " " or position > full:
            cells[position] = "┃"
    return "".join(cells)


SIXTEENTH_STEPS = 3  # grid steps per 16th note (12 steps per quarter)


def playhead_cell(step: int, cell_steps: int) -> int:
    """The cell the playhead is drawn in: it moves by 16th notes at most (finer cells on wide
    screens would only repaint more often without telling the player more)."""
    quantum = max(cell_steps, SIXTEENTH_STEPS)
    return (step // quantum) * quantum // cell_steps
