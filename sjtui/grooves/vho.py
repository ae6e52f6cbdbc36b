"""A groove as hits / velocities / offsets (VHO) on the 12-steps-per-beat grid.

The form of GrooVAE (Gillick et al. 2019): for each grid step and each of
the 9 canonical voices (:data:`sjtui.constants.DRUM_VOICES`), a hit flag, a
velocity in 0..1 and the micro-timing offset of the hit from its step in
fractions of a step (-0.5 .. 0.5). The offsets and velocities keep the
drummer's real timing and dynamics.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from sjtui.constants import DRUM_VOICES
from sjtui.meter import Meter

N_VOICES = len(DRUM_VOICES)


@dataclass(eq=False)
class Groove:
    """A bar-aligned drum pattern.

    ``hits``: (n_steps, n_voices) bool; ``velocities``: (n_steps, n_voices)
    float32 in 0..1 (0 where there is no hit); ``offsets``: (n_steps,
    n_voices) float32 in [-0.5, 0.5) steps (0 where there is no hit).
    ``n_steps`` is a whole number of bars of ``meter``.
    """

    hits: np.ndarray
    velocities: np.ndarray
    offsets: np.ndarray
    meter: Meter
    bpm: float
    name: str
    source: str  # "builtin" | "gmd" | "midi"
    style: str = "unknown"
    kind: str = "beat"  # "beat" | "fill"
    split: str | None = None  # dataset split where the source has one
    drummer: str | None = None
    session: str | None = None
    source_path: str | None = None  # file it came from, relative to its source root
    start_bar: int = 0  # first bar of this window in the source performance
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.hits = np.asarray(self.hits, dtype=bool)
        self.velocities = np.asarray(self.velocities, dtype=np.float32)
        self.offsets = np.asarray(self.offsets, dtype=np.float32)
        shape = self.hits.shape
        if len(shape) != 2 or shape[1] != N_VOICES:
            raise ValueError(f"groove {self.name!r}: hits must be (n_steps, {N_VOICES}), got {shape}")
        if self.velocities.shape != shape or self.offsets.shape != shape:
            raise ValueError(f"groove {self.name!r}: hits, velocities and offsets must share shape {shape}")
        if shape[0] % self.meter.steps_per_bar:
            raise ValueError(
                f"groove {self.name!r}: {shape[0]} steps is not a whole number of {self.meter} bars "
                f"({self.meter.steps_per_bar} steps each)"
            )

    @property
    def n_steps(self) -> int:
        return self.hits.shape[0]

    @property
    def bars(self) -> int:
        return self.n_steps // self.meter.steps_per_bar

    def bar_slice(self, start_bar: int, n_bars: int) -> "Groove":
        """Bars ``start_bar .. start_bar + n_bars`` as a groove of their own (views, no copy)."""
        if start_bar < 0 or n_bars < 1 or start_bar + n_bars > self.bars:
            raise IndexError(f"groove {self.name!r} has {self.bars} bars; asked for {start_bar}+{n_bars}")
        spb = self.meter.steps_per_bar
        rows = slice(start_bar * spb, (start_bar + n_bars) * spb)
        return replace(
            self,
            hits=self.hits[rows],
            velocities=self.velocities[rows],
            offsets=self.offsets[rows],
            start_bar=self.start_bar + start_bar,
        )
