"""A whole recording on the beat grid: the offline path shared by ``analyze``,
``match``, the labelling loops and training.

Given a recording's features, :func:`grid_for_recording` decides the tempo
(given, or estimated from the playing) and where bar 0 starts, and returns
the :class:`~sjtui.transport.timebase.TempoMap`; :func:`fingerprints_of`
then cuts the 4-bar windows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sjtui.errors import AudioError, SjtuiError
from sjtui.meter import Meter, parse_meter
from sjtui.transport.tempo_estimate import TempoEstimate, estimate_from_features
from sjtui.transport.timebase import TempoMap

MIN_BPM, MAX_BPM = 20.0, 400.0


@dataclass(frozen=True)
class RecordingGrid:
    tempo_map: TempoMap
    bpm: float
    meter: Meter
    source: str  # "given" | "estimated"
    downbeat_sample: float  # bar 0 starts here (the first bar line at or after the recording's start)
    estimate: TempoEstimate | None  # None when the tempo was given and not estimated

    def tempo_json(self) -> dict:
        """``{"bpm", "confidence", "downbeat_s", "source", "meter", ...}`` for ``--json`` output."""
        rate = self.tempo_map.sample_rate_hz
        out = self.estimate.as_dict(rate) if self.estimate is not None else {"confidence": None}
        out.update(
            bpm=round(self.bpm, 2),
            downbeat_s=round(self.downbeat_sample / rate, 4),
            source=self.source,
            meter=str(self.meter),
        )
        return out


def grid_for_recording(
    features,
    sample_rate_hz: int,
    bpm: float | None = None,
    meter: Meter | str = "4/4",
    downbeat_s: float | None = None,
) -> RecordingGrid:
    """The beat grid of a recording.

    ``bpm`` given: the first downbeat is at ``downbeat_s`` or, without it, at
    the first onset (a player usually starts on the one). ``bpm`` not given:
    tempo and downbeat are estimated from the playing; a recording too
    short or too sparse for that raises :class:`AudioError` asking for
    ``--bpm``. Bar 0 is moved to the first bar line at or after the start of
    the recording, so no whole bar is lost before it.
    """
    meter = parse_meter(meter)
    estimate = None
    if bpm is None:
        estimate = estimate_from_features(features, sample_rate_hz, meter)
        if estimate.bpm is None:
            raise AudioError(
                f"cannot estimate the tempo of this recording ({estimate.message or estimate.state}); "
                "give the tempo with --bpm"
            )
        bpm, source = float(estimate.bpm), "estimated"
        anchor = None if estimate.downbeat_sample is None else float(estimate.downbeat_sample)
    else:
        if not (np.isfinite(bpm) and MIN_BPM <= bpm <= MAX_BPM):
            raise SjtuiError(f"tempo {bpm} BPM is outside {MIN_BPM:g}..{MAX_BPM:g}; give a tempo in that range")
        bpm, source = float(bpm), "given"
        anchor = None
    if downbeat_s is not None:
        anchor = float(downbeat_s) * sample_rate_hz
    elif anchor is None:
        anchor = float(features.onsets["sample"][0]) if features.onsets.size else 0.0
    bar_samples = float(meter.beats_per_bar) * 60.0 / bpm * sample_rate_hz
    anchor = float(np.mod(anchor, bar_samples))
    tempo_map = TempoMap.constant(sample_rate_hz, bpm, meter, anchor_sample=anchor, anchor_beat=0.0)
    return RecordingGrid(tempo_map, bpm, meter, source, anchor, estimate)
