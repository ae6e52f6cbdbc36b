"""Drum MIDI files -> grooves on the 12-steps-per-beat grid (VHO).

Reading goes in three pure steps:

1. :func:`read_drum_performance` scans the file (:mod:`sjtui.grooves.smf`, a
   lean reader checked against mido) and returns the
   drum hits of one channel as arrays (tick positions are converted to grid
   steps through the file's ticks per quarter note, so tempo changes do not
   move notes on the grid; the tempo is metadata);
2. :func:`quantise_hits` puts every hit on the nearest of 12 steps per beat,
   keeping its offset from that step in [-0.5, 0.5) steps and its velocity / 127;
   two hits of one voice in one step keep the louder;
3. :func:`window_bars` chooses the bar-aligned windows a performance is cut into.

Windowing policy: a beat performance of at least 4 bars is cut into 4-bar
windows starting every **2 bars** (0-3, 2-5, 4-7, ...). A hop of 2 gives
every window a start on an even bar, where 2- and 4-bar phrases of a groove
begin far more often than on odd bars, and half-overlapping windows give
twice the material of disjoint ones (more variety of phrase position)
without the 4-fold near-duplicates of a 1-bar hop, which would weight long
performances 4 times and make the library 4 times larger to search.
A window is dropped when it is mostly empty: fewer than 3 of its 4 bars hold
at least 2 hits (count-ins, breaks, the silence after the last hit).
Beats shorter than 4 bars, and fills, are kept whole, padded with silence to
whole bars; fills are tagged ``kind="fill"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sjtui.constants import BARS_PER_WINDOW, STEPS_PER_BEAT
from sjtui.errors import GrooveError, MeterError
from sjtui.grooves.drum_map import NOTE_TO_VOICE
from sjtui.grooves.smf import SmfError, scan_smf
from sjtui.grooves.vho import N_VOICES, Groove
from sjtui.meter import Meter

DRUM_CHANNEL = 9
"""Zero-based MIDI channel of General MIDI drums ("channel 10"); the GMD files use it."""

MIN_BPM = 30.0
MAX_BPM = 300.0
"""Tempi outside this range are taken as broken files, not as music."""

WINDOW_HOP_BARS = 2
MIN_HITS_PER_ACTIVE_BAR = 2
MIN_ACTIVE_BARS_PER_WINDOW = 3


class MidiImportError(GrooveError):
    """A MIDI file that cannot become a groove; ``reason`` is the short cause for reports."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass
class DrumPerformance:
    """The quantised drum hits of one MIDI file.

    All hit arrays have shape ``(n_hits,)`` and are sorted by step, then voice.
    ``steps`` counts grid steps from the start of the file (bar 0 starts at
    tick 0); ``offsets`` are in steps, in [-0.5, 0.5); ``velocities`` in 0..1.
    """

    steps: np.ndarray  # int64
    voices: np.ndarray  # int8
    velocities: np.ndarray  # float32
    offsets: np.ndarray  # float32
    bpm: float
    meter: Meter
    tempo_from_file: bool
    unmapped_notes: int = 0
    duplicate_hits: int = 0

    @property
    def n_bars(self) -> int:
        """Whole bars holding every hit (the last bar padded with silence)."""
        if self.steps.size == 0:
            return 0
        return int(self.steps[-1]) // self.meter.steps_per_bar + 1

    def vho(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Dense ``(n_bars * steps_per_bar, n_voices)`` hits, velocities and offsets."""
        n_steps = self.n_bars * self.meter.steps_per_bar
        hits = np.zeros((n_steps, N_VOICES), dtype=bool)
        velocities = np.zeros((n_steps, N_VOICES), dtype=np.float32)
        offsets = np.zeros((n_steps, N_VOICES), dtype=np.float32)
        hits[self.steps, self.voices] = True
        velocities[self.steps, self.voices] = self.velocities
        offsets[self.steps, self.voices] = self.offsets
        return hits, velocities, offsets

    def to_groove(self, name: str, source: str, **metadata) -> Groove:
        """The whole performance as one groove (the caller slices windows with ``bar_slice``)."""
        hits, velocities, offsets = self.vho()
        return Groove(hits, velocities, offsets, meter=self.meter, bpm=self.bpm, name=name, source=source, **metadata)


def quantise_hits(
    ticks: np.ndarray, voices: np.ndarray, velocities_midi: np.ndarray, ticks_per_beat: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """Put hits on the 12-steps-per-beat grid.

    ``ticks``, ``voices``, ``velocities_midi``: ``(n,)`` absolute tick, voice
    index (0..8) and MIDI velocity (1..127) of each hit.
    Returns ``(steps, voices, velocities, offsets, n_duplicates)``: the hits
    sorted by (step, voice), one per (step, voice) -- the loudest when several
    fall in the same step -- with velocity / 127 and the offset from the step
    in [-0.5, 0.5) steps; ``n_duplicates`` counts the quieter hits dropped.
    """
    position = np.asarray(ticks, dtype=np.float64) * (STEPS_PER_BEAT / ticks_per_beat)
    steps = np.floor(position + 0.5).astype(np.int64)
    offsets = position - steps
    voices = np.asarray(voices, dtype=np.int64)
    velocities_midi = np.asarray(velocities_midi, dtype=np.int64)
    key = steps * N_VOICES + voices
    order = np.lexsort((velocities_midi, key))  # by key, louder last
    key_sorted = key[order]
    last_of_key = np.ones(key_sorted.size, dtype=bool)
    last_of_key[:-1] = key_sorted[1:] != key_sorted[:-1]
    keep = order[last_of_key]
    return (
        steps[keep],
        voices[keep].astype(np.int8),
        (velocities_midi[keep] / 127.0).astype(np.float32),
        offsets[keep].astype(np.float32),
        int(key.size - keep.size),
    )


def read_drum_performance(
    source: str | Path | bytes,
    *,
    channel: int = DRUM_CHANNEL,
    fallback_bpm: float | None = None,
    fallback_meter: Meter | None = None,
    path_label: str | None = None,
) -> DrumPerformance:
    """Read the drum hits of one MIDI channel of a file.

    ``source``: a path or the file's bytes; ``channel``: zero-based (9 is GM
    channel 10). The tempo is the file's first ``set_tempo``; when it is
    missing or outside ``MIN_BPM..MAX_BPM`` the file is refused unless
    ``fallback_bpm`` is given (the GMD passes the BPM of its info.csv). The
    meter is the first ``time_signature``, else ``fallback_meter``, else 4/4
    (the MIDI default). Raises :class:`MidiImportError` with the reason.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        label = path_label or "<bytes>"
    else:
        label = path_label or str(source)
        try:
            data = Path(source).read_bytes()
        except OSError as error:
            raise MidiImportError(label, f"cannot read: {error.strerror or error}") from None
    if len(data) == 0:
        raise MidiImportError(label, "empty file (0 bytes)")
    try:
        scan = scan_smf(data, channel)
    except SmfError as error:
        raise MidiImportError(label, str(error)) from None
    if scan.midi_format == 2:
        raise MidiImportError(
            label, "MIDI type 2 (independent sequential patterns) is not supported: save it as type 0 or 1"
        )
    if scan.midi_format > 2:
        raise MidiImportError(label, f"corrupted MIDI file: unknown format {scan.midi_format} (0, 1 or 2)")
    ticks_per_beat = scan.ticks_per_beat
    if ticks_per_beat <= 0 or ticks_per_beat >= 0x8000:
        raise MidiImportError(
            label, f"time division {ticks_per_beat} is SMPTE or invalid: sjtui needs ticks per quarter note"
        )
    tempo_events, meter_events = scan.tempo_events, scan.meter_events
    note_ticks, note_numbers, note_velocities = scan.note_ticks, scan.note_numbers, scan.note_velocities
    other_channel_notes = scan.other_channel_notes

    if note_ticks.size == 0:
        hint = (
            f" ({other_channel_notes} notes are on other channels: choose the drum channel with --channel)"
            if other_channel_notes
            else ""
        )
        raise MidiImportError(label, f"no drum notes on MIDI channel {channel + 1}{hint}")

    if tempo_events:
        first_tempo_us = min(tempo_events, key=lambda event: event[0])[1]  # earliest; file order on ties
        # 769230 us per beat -> 78.00003 BPM -> 78.0
        bpm = round(60_000_000 / first_tempo_us, 2) if first_tempo_us > 0 else float("inf")
        tempo_from_file = True
        if not MIN_BPM <= bpm <= MAX_BPM:
            if fallback_bpm is None:
                raise MidiImportError(
                    label, f"absurd tempo {bpm:.3g} BPM (usable: {MIN_BPM:g}-{MAX_BPM:g} BPM)"
                )
            bpm, tempo_from_file = float(fallback_bpm), False
    elif fallback_bpm is not None:
        bpm, tempo_from_file = float(fallback_bpm), False
    else:
        raise MidiImportError(label, "no tempo (no set_tempo event): the file does not say how fast it goes")

    if meter_events:
        _, numerator, denominator = min(meter_events, key=lambda event: event[0])
        try:
            meter = Meter(int(numerator), int(denominator))
            _ = meter.steps_per_bar
        except MeterError as error:
            raise MidiImportError(label, f"unusable time signature: {error}") from None
    else:
        meter = fallback_meter or Meter(4, 4)

    numbers = note_numbers
    voices = NOTE_TO_VOICE[numbers]
    mapped = voices >= 0
    unmapped = int(numbers.size - np.count_nonzero(mapped))
    if not mapped.any():
        raise MidiImportError(
            label, f"no kit drum notes on channel {channel + 1}: notes {sorted(set(note_numbers.tolist()))[:8]} are not drums"
        )
    steps, voices_q, velocities, offsets, duplicates = quantise_hits(
        note_ticks[mapped],
        voices[mapped],
        note_velocities[mapped],
        ticks_per_beat,
    )
    return DrumPerformance(
        steps=steps,
        voices=voices_q,
        velocities=velocities,
        offsets=offsets,
        bpm=bpm,
        meter=meter,
        tempo_from_file=tempo_from_file,
        unmapped_notes=unmapped,
        duplicate_hits=duplicates,
    )


def window_bars(
    performance: DrumPerformance,
    kind: str = "beat",
    *,
    window_bars_count: int = BARS_PER_WINDOW,
    hop_bars: int = WINDOW_HOP_BARS,
) -> list[tuple[int, int]]:
    """The ``(start_bar, n_bars)`` windows a performance is cut into (see the module docstring).

    Fills and beats shorter than a window give one window holding everything.
    """
    n_bars = performance.n_bars
    if n_bars == 0:
        return []
    if kind == "fill" or n_bars < window_bars_count:
        return [(0, n_bars)]
    bar_hits = np.bincount(performance.steps // performance.meter.steps_per_bar, minlength=n_bars)
    active = np.concatenate(([0], np.cumsum(bar_hits >= MIN_HITS_PER_ACTIVE_BAR)))
    starts = np.arange(0, n_bars - window_bars_count + 1, hop_bars)
    active_in_window = active[starts + window_bars_count] - active[starts]
    kept = starts[active_in_window >= MIN_ACTIVE_BARS_PER_WINDOW]
    return [(int(start), window_bars_count) for start in kept]


def read_grooves(
    source: str | Path | bytes,
    *,
    name: str,
    source_name: str,
    kind: str = "beat",
    channel: int = DRUM_CHANNEL,
    fallback_bpm: float | None = None,
    fallback_meter: Meter | None = None,
    path_label: str | None = None,
    **metadata,
) -> tuple[list[Groove], DrumPerformance]:
    """Read a file and cut it into grooves (windows); ``metadata`` goes to every :class:`Groove`.

    Raises :class:`MidiImportError` when the file cannot be used or no window
    holds enough hits.
    """
    performance = read_drum_performance(
        source, channel=channel, fallback_bpm=fallback_bpm, fallback_meter=fallback_meter, path_label=path_label
    )
    windows = window_bars(performance, kind)
    label = path_label or (str(source) if not isinstance(source, (bytes, bytearray)) else "<bytes>")
    if not windows:
        raise MidiImportError(
            label,
            f"no 4-bar window with at least {MIN_ACTIVE_BARS_PER_WINDOW} bars of drums "
            f"({performance.steps.size} hits over {performance.n_bars} bars)",
        )
    whole = performance.to_groove(name, source_name, kind=kind, **metadata)
    if windows == [(0, performance.n_bars)]:
        return [whole], performance
    grooves = []
    for start_bar, n_bars in windows:
        window = whole.bar_slice(start_bar, n_bars)
        window.name = f"{name} bars {start_bar + 1}-{start_bar + n_bars}"
        grooves.append(window)
    return grooves, performance
