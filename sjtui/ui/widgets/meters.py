"""Level meters: input level with peak hold and a clip warning, and the three band energies.

The engine publishes raw levels per analysis batch; the ballistics (how
fast a bar falls, how long the peak marker holds) are the screen's
business and live here, driven by the time between polls.
"""

from __future__ import annotations

import numpy as np

from sjtui.constants import BAND_NAMES
from sjtui.snapshot import EngineSnapshot
from sjtui.ui.widgets.base import SnapshotView, StripBuilder
from sjtui.ui.widgets.cells import level_bar

FLOOR_DB = -60.0  # bottom of every meter scale (dBFS)
CLIP_HOLD_S = 2.0  # a clip warning stays up this long after the last clipped batch
FALL_REPAINT_S = 0.1  # a falling meter is redrawn at most 10 times a second (rises at once)


class Ballistics:
    """Peak-programme-style ballistics for ``n`` meters, in dB.

    Rises at once, falls at ``release_db_per_s``; the peak marker holds
    ``hold_s`` seconds and then falls at ``peak_fall_db_per_s``.
    """

    def __init__(
        self, n: int, *, release_db_per_s: float = 24.0, hold_s: float = 1.5, peak_fall_db_per_s: float = 12.0
    ) -> None:
        self.level_db = np.full(n, FLOOR_DB)
        self.peak_db = np.full(n, FLOOR_DB)
        self._peak_age_s = np.zeros(n)
        self.release_db_per_s = release_db_per_s
        self.hold_s = hold_s
        self.peak_fall_db_per_s = peak_fall_db_per_s
        self._last_s: float | None = None

    def update(self, values_db: np.ndarray, now_s: float) -> None:
        """Advance to ``now_s`` with the latest readings ``values_db`` ``(n,)``."""
        values_db = np.maximum(np.asarray(values_db, dtype=float), FLOOR_DB)
        if self._last_s is None:  # first reading: start where the signal is
            self.level_db[:] = values_db
            self.peak_db[:] = values_db
            self._last_s = now_s
            return
        dt = max(now_s - self._last_s, 0.0)
        self._last_s = now_s
        fallen = self.level_db - self.release_db_per_s * dt
        np.maximum(fallen, values_db, out=self.level_db)
        self._peak_age_s += dt
        falling = self._peak_age_s > self.hold_s
        self.peak_db[falling] -= self.peak_fall_db_per_s * dt
        new_peak = self.level_db >= self.peak_db
        self.peak_db[new_peak] = self.level_db[new_peak]
        self._peak_age_s[new_peak] = 0.0
        np.maximum(self.peak_db, FLOOR_DB, out=self.peak_db)


def fraction(db: float) -> float:
    """Position 0..1 of ``db`` on the meter scale from :data:`FLOOR_DB` to 0 dBFS."""
    return min(max((db - FLOOR_DB) / -FLOOR_DB, 0.0), 1.0)


class _Metered(SnapshotView):
    """A meter widget: keeps ballistics across polls; redraws when a drawn cell would change."""

    def __init__(self, n: int, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.ballistics = Ballistics(n)
        self.clip_until_s = -1.0
        self._now_s = 0.0

    def readings(self, snapshot: EngineSnapshot) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def view_key(self, snapshot: EngineSnapshot, now_s: float):
        self.ballistics.update(self.readings(snapshot), now_s)
        if snapshot.levels.clipping:
            self.clip_until_s = now_s + CLIP_HOLD_S
        self._now_s = now_s
        resolution = 8 * max(self.size.width, 1)  # eighth-cells: nothing finer can be drawn
        level = tuple(np.round((self.ballistics.level_db - FLOOR_DB) / -FLOOR_DB * resolution).tolist())
        peak = tuple(np.round((self.ballistics.peak_db - FLOOR_DB) / -FLOOR_DB * resolution / 8).tolist())
        key = (level, peak, now_s < self.clip_until_s, round(float(self.ballistics.peak_db[0]), 0), snapshot.silent,
               self.size.width, self.size.height)  # fmt: skip
        old = self._view_key
        # a bar only falling (release) is redrawn at most every FALL_REPAINT_S; a rise shows at once
        if (
            isinstance(old, tuple)
            and key[2:] == old[2:]
            and now_s - self._painted_s < FALL_REPAINT_S
            and all(new <= before for new, before in zip(level + peak, old[0] + old[1]))
        ):
            return old
        self._painted_s = now_s
        return key

    _painted_s = -1.0


class InputMeter(_Metered):
    """One line: ``in ████████▌     ┃   -12 dB  CLIP``: level bar, peak hold, peak figure, clip warning."""

    COMPONENT_CLASSES = {"input-meter--label", "input-meter--bar", "input-meter--hot", "input-meter--clip"}

    DEFAULT_CSS = """
    InputMeter { height: 1; }
    InputMeter > .input-meter--label { color: $foreground 70%; }
    InputMeter > .input-meter--bar { color: $success; }
    InputMeter > .input-meter--hot { color: $warning; }
    InputMeter > .input-meter--clip { color: $text; background: $error; text-style: bold; }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(1, id=id, classes=classes)

    def readings(self, snapshot: EngineSnapshot) -> np.ndarray:
        return np.array([snapshot.levels.peak_db])

    def draw(self, out: StripBuilder) -> None:
        label = self.style("input-meter--label")
        clipping = self._now_s < self.clip_until_s
        level_db, peak_db = float(self.ballistics.level_db[0]), float(self.ballistics.peak_db[0])
        tail = " CLIP! " if clipping else "       "
        figure = f" {peak_db:6.1f} dB pk" if peak_db > FLOOR_DB else "   -inf dB pk"
        width = max(self.size.width - 6 - len(figure) - len(tail) - 1, 4)
        bar = level_bar(fraction(level_db), width, marker=fraction(peak_db))
        hot_from = int(fraction(-6.0) * width)  # the last 6 dB of the scale are drawn as hot
        out.add("input ▕", label)
        out.add(bar[:hot_from], self.style("input-meter--bar"))
        out.add(bar[hot_from:], self.style("input-meter--hot"))
        out.add("▏" + figure, label)
        out.add(tail, self.style("input-meter--clip") if clipping else label)


class BandMeters(_Metered):
    """Low, mid and high band energies, one short bar per band (high on top, beside the onset rows)."""

    COMPONENT_CLASSES = {"band-meters--label", "band-meters--bar"}

    DEFAULT_CSS = """
    BandMeters { height: 1fr; width: 11; }
    BandMeters > .band-meters--label { color: $foreground 70%; }
    BandMeters > .band-meters--bar { color: $success; }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(len(BAND_NAMES), id=id, classes=classes)

    def readings(self, snapshot: EngineSnapshot) -> np.ndarray:
        return np.array(snapshot.levels.band_db)

    def draw(self, out: StripBuilder) -> None:
        from sjtui.ui.widgets.onsets import rows_per_band_for

        label = self.style("band-meters--label")
        bar_style = self.style("band-meters--bar")
        width = max(self.size.width - 6, 2)
        for row, band in enumerate(reversed(range(len(BAND_NAMES)))):
            if row:
                out.newline()
            for _ in range(
                rows_per_band_for(self.size.height) - 1
            ):  # the label sits on the band's bottom row
                out.newline()
            out.add(f"{BAND_NAMES[band]:>4} ", label)
            out.add(level_bar(fraction(float(self.ballistics.level_db[band])), width), bar_style)
