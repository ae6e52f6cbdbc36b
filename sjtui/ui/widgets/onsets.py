"""The onset grid: what the guitar played in the current 4 bars, band by band.

Rows are the bands (high on top, as on a spectrum), columns are grid
cells; each cell shows the strongest onset that fell in it as a block whose
height is its strength, where it fell (not quantised to the beat). A
ruler row carries the bar numbers and the playhead ``▲``.

The previous window is shown faded: beside the current one when the
terminal is wide enough for both at 16th-note resolution, otherwise in the
cells the playhead has not reached yet (a sweeping radar: the last pass
fades where the new one has not drawn).
"""

from __future__ import annotations

import numpy as np

from sjtui.constants import BAND_NAMES, BARS_PER_WINDOW, STEPS_PER_BEAT
from sjtui.snapshot import EngineSnapshot
from sjtui.ui.widgets.base import SnapshotView, StripBuilder
from sjtui.ui.widgets.cells import block_glyphs, columns_per_bar, playhead_cell, pool_max

_ROWS = tuple(reversed(range(len(BAND_NAMES))))  # high, mid, low


def window_width(columns: int) -> int:
    """Cells taken by one 4-bar window at ``columns`` per bar (bars separated by one cell)."""
    return BARS_PER_WINDOW * columns + BARS_PER_WINDOW - 1


def layout(steps_per_bar: int, width: int) -> tuple[int, bool]:
    """``(columns_per_bar, side_by_side)`` for a grid ``width`` cells wide.

    Side by side when both windows fit with at least 16th-note resolution
    (a cell per 3 steps).
    """
    fine = max(steps_per_bar // (STEPS_PER_BEAT // 4), 1)
    pair = columns_per_bar(steps_per_bar, (width - 3 - 2 * (BARS_PER_WINDOW - 1)) // (2 * BARS_PER_WINDOW))
    if pair >= fine:
        return pair, True
    single = columns_per_bar(steps_per_bar, (width - (BARS_PER_WINDOW - 1)) // BARS_PER_WINDOW)
    return single, False


def rows_per_band_for(height: int) -> int:
    """Two rows per band (16 levels instead of 8) when the widget is at least 7 rows tall."""
    return 2 if height >= 2 * len(BAND_NAMES) + 1 else 1


def _slice(levels: np.ndarray, part: int, parts: int) -> np.ndarray:
    """The part of ``levels`` (0..1) drawn by row ``part`` of a band ``parts`` rows tall, rescaled to 0..1."""
    if parts == 1:
        return levels
    sliced = np.clip(levels * parts - part, 0.0, 1.0)
    if part > 0:  # upper rows draw nothing for a level that ends below them (no threshold blank at 0)
        sliced[levels * parts - part <= 0.0] = 0.0
    return sliced


class OnsetGrid(SnapshotView):
    """Bands × grid cells of the current (and previous) 4-bar window, with a playhead."""

    COMPONENT_CLASSES = {
        "onset-grid--hit",
        "onset-grid--faded",
        "onset-grid--grid",
        "onset-grid--playhead",
        "onset-grid--ruler",
        "onset-grid--empty",
    }

    DEFAULT_CSS = """
    OnsetGrid { height: 1fr; }
    OnsetGrid > .onset-grid--hit { color: $text-accent; text-style: bold; }
    OnsetGrid > .onset-grid--faded { color: $foreground 45%; }
    OnsetGrid > .onset-grid--grid { color: $foreground 30%; }
    OnsetGrid > .onset-grid--playhead { background: $accent 35%; }
    OnsetGrid > .onset-grid--ruler { color: $foreground 60%; }
    OnsetGrid > .onset-grid--empty { color: $foreground 60%; text-style: italic; }
    """

    def view_key(self, snapshot: EngineSnapshot, now_s: float):
        t = snapshot.transport
        current, previous = snapshot.onset_grid, snapshot.previous_onset_grid
        if current is None:
            return ("empty", snapshot.state, snapshot.silent)
        columns, _ = layout(t.steps_per_bar, self.size.width)
        cell_steps = t.steps_per_bar // columns
        # a new array with the same content (and the same playhead cell) draws the same: compare it
        # with the arrays last drawn (cheap: 3 x 4 x 48 values) and keep their identity in the key
        current = self._same_as(current, "_drawn_current")
        previous = self._same_as(previous, "_drawn_previous")
        return (
            id(current),
            id(previous),
            playhead_cell(t.step, cell_steps),
            t.bar,
            t.steps_per_bar,
            self.size.width,
            self.size.height,
        )

    _drawn_current: np.ndarray | None = None
    _drawn_previous: np.ndarray | None = None

    def _same_as(self, array: np.ndarray | None, attribute: str) -> np.ndarray | None:
        drawn = getattr(self, attribute)
        if (
            array is not None
            and drawn is not None
            and array is not drawn
            and array.shape == drawn.shape
            and np.array_equal(array, drawn)
        ):
            return drawn
        setattr(self, attribute, array)
        return array

    def draw(self, out: StripBuilder) -> None:
        snapshot = self.snapshot
        t = snapshot.transport
        current = snapshot.onset_grid
        if current is None:
            if snapshot.state in ("idle", "stopped"):
                message = "onsets appear here while you play (space starts the jam)"
            else:
                message = "listening: play something"
            out.newline()
            out.add(message, self.style("onset-grid--empty"))
            return
        steps_per_bar = current.shape[2]
        width = self.size.width
        columns, side_by_side = layout(steps_per_bar, width)
        cell_steps = steps_per_bar // columns
        n_cells = BARS_PER_WINDOW * columns
        play_cell = min(playhead_cell(t.step, cell_steps), n_cells - 1)

        scale = float(current.max())
        previous = snapshot.previous_onset_grid
        if previous is not None and previous.shape == current.shape:
            scale = max(scale, float(previous.max()))
        else:
            previous = None
        scale = scale if scale > 1e-9 else 1.0
        now_cells = pool_max(current.reshape(current.shape[0], -1), n_cells) / scale
        before_cells = (
            pool_max(previous.reshape(previous.shape[0], -1), n_cells) / scale
            if previous is not None
            else None
        )
        rows_per_band = rows_per_band_for(self.size.height)

        hit = self.style("onset-grid--hit")
        faded = self.style("onset-grid--faded")
        grid = self.style("onset-grid--grid")
        playhead = self.style("onset-grid--playhead", partial=True)
        ruler = self.style("onset-grid--ruler")
        hit_at_playhead, faded_at_playhead, grid_at_playhead = (
            hit + playhead,
            faded + playhead,
            grid + playhead,
        )
        beat_cells = max(columns * STEPS_PER_BEAT // steps_per_bar, 1)

        for row_number, (band, part) in enumerate(
            (b, p) for b in _ROWS for p in reversed(range(rows_per_band))
        ):
            if row_number:
                out.newline()
            # a band `rows_per_band` rows tall: row `part` (0 = bottom) shows its slice of the level
            now_glyphs = block_glyphs(_slice(now_cells, part, rows_per_band))
            before_glyphs = (
                block_glyphs(_slice(before_cells, part, rows_per_band)) if before_cells is not None else None
            )
            if side_by_side:
                self._draw_window(
                    out,
                    before_glyphs,
                    band,
                    None,
                    columns,
                    beat_cells,
                    faded,
                    faded,
                    grid,
                    None,
                    dots=part == 0,
                )
                out.add(" ┃ ", grid)
                self._draw_window(
                    out,
                    now_glyphs,
                    band,
                    play_cell,
                    columns,
                    beat_cells,
                    hit,
                    hit_at_playhead,
                    grid,
                    grid_at_playhead,
                    faded_after=None,
                    dots=part == 0,
                )
            else:
                self._draw_window(
                    out,
                    now_glyphs,
                    band,
                    play_cell,
                    columns,
                    beat_cells,
                    hit,
                    hit_at_playhead,
                    grid,
                    grid_at_playhead,
                    faded_after=before_glyphs,
                    faded=faded,
                    faded_at_playhead=faded_at_playhead,
                    dots=part == 0,
                )
        out.newline()
        first_bar = t.bar - (t.step // steps_per_bar) + 1  # 1-based bar number shown at the window's start
        if side_by_side:
            out.add(self._ruler(first_bar - BARS_PER_WINDOW, columns, None), ruler)
            out.add("   ", ruler)
        out.add(self._ruler(first_bar, columns, play_cell), ruler)

    @staticmethod
    def _draw_window(
        out: StripBuilder, glyphs, band, play_cell, columns, beat_cells, hit, hit_at_playhead, grid, grid_at_playhead,
        *, faded_after=None, faded=None, faded_at_playhead=None, dots: bool = True,
    ) -> None:  # fmt: skip
        """One band row of one window; cells after ``play_cell`` come from ``faded_after`` if given."""
        for bar in range(BARS_PER_WINDOW):
            if bar:
                out.add("│", grid)
            for column in range(columns):
                cell = bar * columns + column
                at_playhead = cell == play_cell
                source, style = glyphs, (hit_at_playhead if at_playhead else hit)
                if faded_after is not None and play_cell is not None and cell > play_cell:
                    source, style = faded_after, faded
                char = source[band, cell] if source is not None else " "
                if char == " ":
                    char = "·" if dots and column % beat_cells == 0 else " "
                    style = grid_at_playhead if at_playhead and grid_at_playhead is not None else grid
                out.add(char, style)

    @staticmethod
    def _ruler(first_bar: int, columns: int, play_cell: int | None) -> str:
        cells = [" "] * window_width(columns)
        for bar in range(BARS_PER_WINDOW):
            label = str(first_bar + bar) if first_bar + bar > 0 else ""
            start = bar * (columns + 1)
            for k, char in enumerate(label[:columns]):
                cells[start + k] = char
        if play_cell is not None:
            position = play_cell + play_cell // columns  # skip the bar separators
            cells[position] = "▲"
        return "".join(cells)
