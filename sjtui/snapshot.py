"""What the engine publishes and what it accepts: pure data, no threads.

The engine (``sjtui/engine.py``) owns the audio, analysis, selection and
MIDI threads. Once per analysis batch it publishes an immutable
:class:`EngineSnapshot` into a latest-value slot; the UI (or the headless
printer) reads it whenever it likes, about 30 times a second, and never
waits for the engine. Keys become :class:`Command` objects put on the
engine's command queue, which the engine applies at block or grid-step
boundaries (CONVENTIONS §5).

This module imports nothing heavy so the UI, the engine and tests can all
share it; arrays in a snapshot are read-only numpy arrays owned by the
snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

# --- snapshot ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Levels:
    """Input levels of the last analysis batch (UI applies its own ballistics)."""

    peak_db: float = -120.0  # sample peak of the input
    rms_db: float = -120.0
    clipping: bool = False  # a sample reached full scale in this batch
    band_db: tuple[float, float, float] = (-120.0, -120.0, -120.0)  # low, mid, high band energy


@dataclass(frozen=True)
class TransportInfo:
    bpm: float = 120.0
    source: str = "internal"  # "internal" | "tap" | "midi" | "detected"
    confidence: float | None = None  # for "detected": 0..1
    meter: str = "4/4"
    bar: int = 0  # current bar (0-based, since the jam started)
    beat: float = 0.0  # beat within the bar (0-based, fractional)
    step: int = 0  # grid step within the current 4-bar window
    steps_per_bar: int = 48
    clock_state: str = "ok"  # "ok" | "lost" | "stopped" | "waiting"
    bars_to_decision: float = 4.0
    seconds_to_decision: float = 0.0


@dataclass(frozen=True)
class GrooveInfo:
    id: int
    name: str
    style: str
    bpm: float
    meter: str
    score: float | None = None
    kind: str = "beat"
    bars_played: int = 0
    # Pattern for display: (n_voices, n_steps) velocities 0..1 of the 4-bar window.
    pattern: np.ndarray | None = None


@dataclass(frozen=True)
class LogEntry:
    time_s: float  # seconds since the engine started
    level: str  # "info" | "warning" | "error"
    text: str


@dataclass(frozen=True)
class TimingStats:
    note_error_ms_p50: float | None = None
    note_error_ms_p99: float | None = None
    clock_jitter_ms: float | None = None
    selection_ms_p99: float | None = None
    input_overflows: int = 0  # the driver's flag; on JACK every xrun on the server (StreamGapDetector)
    input_frames_lost: int = 0  # input the driver never delivered to sjtui
    xruns: int = 0


@dataclass(frozen=True)
class EngineSnapshot:
    """Everything a screen shows, at one moment. Immutable."""

    state: str = "idle"  # "idle" | "count-in" | "playing" | "stopping" | "stopped" | "error"
    time_s: float = 0.0
    levels: Levels = field(default_factory=Levels)
    transport: TransportInfo = field(default_factory=TransportInfo)
    # Onset strengths of the current and the previous 4-bar windows: (3 bands, 4 bars, steps_per_bar).
    onset_grid: np.ndarray | None = None
    previous_onset_grid: np.ndarray | None = None
    current: GrooveInfo | None = None
    next: GrooveInfo | None = None  # chosen for the next window, if it differs
    candidates: tuple[GrooveInfo, ...] = ()  # best first, with scores
    locked: bool = False
    silent: bool = False  # the guitar is not playing
    input_name: str = ""
    midi_destination: str = ""  # port name, "sjtui (virtual)", "built-in synth" or "" for none
    clock_out: bool = False
    recording: bool = False
    recording_path: str | None = None
    model_version: str = ""
    library_size: int = 0
    timing: TimingStats = field(default_factory=TimingStats)
    warnings: tuple[str, ...] = ()  # standing conditions: "clock lost", "input device gone", ...
    log: tuple[LogEntry, ...] = ()  # the most recent events, oldest first
    last_rating: int | None = None  # rating given to the current pairing, if any


# --- commands ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    """Base of every command the engine accepts."""


@dataclass(frozen=True)
class Start(Command):
    pass


@dataclass(frozen=True)
class Stop(Command):
    pass


@dataclass(frozen=True)
class ToggleLock(Command):
    pass


@dataclass(frozen=True)
class Skip(Command):
    pass


@dataclass(frozen=True)
class FillNow(Command):
    pass


@dataclass(frozen=True)
class Tap(Command):
    time_s: float  # time.monotonic() of the key press


@dataclass(frozen=True)
class SetTempo(Command):
    bpm: float


@dataclass(frozen=True)
class NudgeTempo(Command):
    delta_bpm: float


@dataclass(frozen=True)
class SetMeter(Command):
    meter: str


@dataclass(frozen=True)
class SetClockSource(Command):
    source: str  # "internal" | "tap" | "midi" | "auto"


@dataclass(frozen=True)
class Rate(Command):
    rating: int  # 0..5


@dataclass(frozen=True)
class ToggleRecord(Command):
    pass


@dataclass(frozen=True)
class ChooseMidiOutput(Command):
    port: str | None  # None: built-in synth; "sjtui": virtual port


@dataclass(frozen=True)
class ChooseInput(Command):
    device: str  # device name or index as text, or a file path


@dataclass(frozen=True)
class ChooseMidiClockInput(Command):
    port: str | None


class EngineLike(Protocol):
    """What a screen needs from an engine (the real one or a test fake)."""

    def snapshot(self) -> EngineSnapshot: ...

    def send(self, command: Command) -> None: ...

    def list_inputs(self) -> list[str]: ...

    def list_midi_outputs(self) -> list[str]: ...

    def list_midi_inputs(self) -> list[str]: ...

    def close(self) -> None: ...
