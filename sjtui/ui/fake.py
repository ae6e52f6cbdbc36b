"""An in-memory engine for the screen: realistic snapshots, recorded commands.

The real engine (``sjtui/engine.py``) needs audio, MIDI and a model; this
fake needs nothing. It serves three purposes:

- tests: states that are hard to reach for real (MIDI clock lost, input
  device gone, no model) and a record of the :class:`Command` objects the
  screen sent;
- snapshot tests: with a frozen clock every snapshot is identical;
- demos and the UI benchmark: with the real clock it plays a riff at
  124 BPM, switches grooves every 4 bars and publishes snapshots from a
  thread at a chosen rate, as the engine would.

Commands change the fake's state the way the engine would (Start plays,
ToggleLock locks, NudgeTempo moves the tempo ...), so a person trying the
demo sees the screen respond.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np

from sjtui.constants import BAND_NAMES, BARS_PER_WINDOW, DRUM_VOICES, STEPS_PER_BEAT
from sjtui.signals import start_thread
from sjtui.snapshot import (
    ChooseInput,
    ChooseMidiClockInput,
    ChooseMidiOutput,
    Command,
    EngineSnapshot,
    FillNow,
    GrooveInfo,
    Levels,
    LogEntry,
    NudgeTempo,
    Rate,
    SetClockSource,
    SetMeter,
    SetTempo,
    Skip,
    Start,
    Stop,
    Tap,
    TimingStats,
    ToggleLock,
    ToggleRecord,
    TransportInfo,
)

SCENARIOS = ("idle", "jamming", "locked", "clock-lost", "no-device", "no-model", "no-midi", "clipping")

_GROOVES = (
    # id, name, style, original bpm, meter, score
    (412, "funk/groove3 (4-4)", "funk", 98.0, "4/4", 0.82),
    (77, "rock/groove12 (4-4)", "rock", 120.0, "4/4", 0.79),
    (903, "hiphop/groove7 (4-4)", "hiphop", 92.0, "4/4", 0.74),
    (1288, "latin/groove2 (4-4)", "latin", 110.0, "4/4", 0.69),
    (35, "jazz/groove1 (4-4)", "jazz", 135.0, "4/4", 0.61),
)


def _read_only(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


def riff_onsets(steps_per_bar: int, *, seed: int = 0) -> np.ndarray:
    """A 4-bar riff as onset strengths ``(3 bands, 4 bars, steps_per_bar)``, off the grid a little.

    Palm-muted low notes on the 8ths, chord stabs (mid) on 2 and 4, pick
    attack (high) on most 16ths; each onset lands up to one step early or
    late, as a human plays.
    """
    rng = np.random.default_rng(seed)
    grid = np.zeros((len(BAND_NAMES), BARS_PER_WINDOW, steps_per_bar), dtype=np.float32)
    sixteenth = STEPS_PER_BEAT // 4
    for bar in range(BARS_PER_WINDOW):
        for position in range(0, steps_per_bar, sixteenth):
            slot = position // sixteenth
            jitter = int(rng.integers(-1, 2))
            step = min(max(position + jitter, 0), steps_per_bar - 1)
            if slot % 2 == 0 and rng.random() < 0.85:
                grid[0, bar, step] = 0.5 + 0.5 * rng.random()
            if slot % 8 == 4 or (bar == 3 and slot in (13, 14, 15)):
                grid[1, bar, step] = 0.6 + 0.4 * rng.random()
            if rng.random() < 0.7:
                grid[2, bar, step] = 0.2 + 0.6 * rng.random()
    return grid


def drum_pattern(steps_per_bar: int, variant: int = 0) -> np.ndarray:
    """A 4-bar drum pattern ``(len(DRUM_VOICES), 4 * steps_per_bar)`` of velocities 0..1."""
    n_steps = BARS_PER_WINDOW * steps_per_bar
    pattern = np.zeros((len(DRUM_VOICES), n_steps), dtype=np.float32)
    beat = STEPS_PER_BEAT
    eighth = beat // 2
    voice = {name: k for k, name in enumerate(DRUM_VOICES)}
    hat = voice["ride"] if variant % 3 == 2 else voice["closed_hat"]
    pattern[hat, ::eighth] = 0.55
    pattern[hat, ::beat] = 0.8
    pattern[voice["kick"], ::steps_per_bar] = 1.0
    pattern[voice["kick"], 2 * beat + (variant % 2) * eighth :: steps_per_bar] = 0.9
    pattern[voice["snare"], beat :: 2 * beat] = 0.95
    if variant % 2:
        pattern[voice["snare"], 3 * beat + 3 * eighth // 2 :: steps_per_bar] = 0.35  # ghost note
    pattern[voice["crash"], 0] = 1.0
    last_bar = 3 * steps_per_bar
    pattern[voice["open_hat"], last_bar + 3 * beat + eighth] = 0.7
    pattern[voice["high_tom"], last_bar + 3 * beat] = 0.8
    pattern[voice["mid_tom"], last_bar + 3 * beat + eighth // 2] = 0.8
    pattern[voice["low_tom"], last_bar + 3 * beat + eighth] = 0.9
    return pattern


class FakeEngine:
    """Implements :class:`sjtui.snapshot.EngineLike` without audio or MIDI.

    ``scenario`` picks the starting state (one of :data:`SCENARIOS`).
    ``clock`` returns seconds (``time.monotonic`` by default); pass
    ``frozen_at_s`` to stop time for snapshot tests. ``publish_hz`` > 0
    starts a thread that builds a snapshot that often into a latest-value
    slot, like the engine's analysis thread; otherwise :meth:`snapshot`
    builds one when asked.
    """

    def __init__(
        self,
        scenario: str = "jamming",
        *,
        clock: Callable[[], float] = time.monotonic,
        frozen_at_s: float | None = None,
        publish_hz: float = 0.0,
        inputs: list[str] | None = None,
        midi_outputs: list[str] | None = None,
        midi_inputs: list[str] | None = None,
        seed: int = 0,
    ) -> None:
        if scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {scenario!r}; one of {', '.join(SCENARIOS)}")
        self.scenario = scenario
        self.commands: list[Command] = []
        self.close_calls = 0
        self.list_calls: list[str] = []
        self._clock = clock
        self._frozen_at_s = frozen_at_s
        self._start_s = clock()
        self._lock = threading.Lock()
        self._seed = seed
        playing = scenario not in ("idle", "no-device")
        self.inputs = (
            list(inputs)
            if inputs is not None
            else ([] if scenario == "no-device" else ["system (JACK, 2 in)", "Scarlett 2i2 USB (hw:1,0)"])
        )
        self.midi_outputs = (
            list(midi_outputs)
            if midi_outputs is not None
            else ([] if scenario == "no-midi" else ["FLUID Synth:midi_00", "Hydrogen:midi_in"])
        )
        self.midi_inputs = (
            list(midi_inputs)
            if midi_inputs is not None
            else (["Digitakt:midi_out"] if scenario == "clock-lost" else [])
        )
        self.state = {
            "state": "playing" if playing else "idle",
            "bpm": 124.0,
            "source": {"locked": "tap", "clock-lost": "midi"}.get(
                scenario, "detected" if playing else "internal"
            ),
            "confidence": 0.87,
            "meter": "4/4",
            "locked": scenario == "locked",
            "recording": scenario == "jamming",
            "midi_destination": {"no-midi": "sjtui (virtual)", "no-device": ""}.get(
                scenario, "FLUID Synth:midi_00"
            ),
            "input_name": "" if scenario == "no-device" else "system (JACK, 2 in)",
            "clock_state": "lost" if scenario == "clock-lost" else "ok",
            "model_version": "" if scenario == "no-model" else "guitar-encoder v3",
            "groove_index": 0,
            "last_rating": None,
            "started_at_s": 0.0,
        }
        self._log: list[LogEntry] = []
        self._warnings: list[str] = []
        self._seed_log()
        self._riffs = {}
        self._patterns = {}
        self._latest: EngineSnapshot | None = None
        self._stop_publishing = threading.Event()
        self._publisher: threading.Thread | None = None
        self.publisher_cpu_s = 0.0
        self.published = 0
        if publish_hz > 0:
            self._latest = self._build()
            self._publisher = start_thread(self._publish, "fake-engine-publisher", args=(publish_hz,))

    # --- EngineLike ------------------------------------------------------------------------

    def snapshot(self) -> EngineSnapshot:
        latest = self._latest
        if latest is not None and self._publisher is not None:
            return latest
        return self._build()

    def send(self, command: Command) -> None:
        with self._lock:
            self.commands.append(command)
            self._apply(command)
        if self._publisher is not None:
            self._latest = self._build()

    def list_inputs(self) -> list[str]:
        self.list_calls.append("inputs")
        return list(self.inputs)

    def list_midi_outputs(self) -> list[str]:
        self.list_calls.append("midi_outputs")
        return list(self.midi_outputs)

    def list_midi_inputs(self) -> list[str]:
        self.list_calls.append("midi_inputs")
        return list(self.midi_inputs)

    def close(self) -> None:
        self.close_calls += 1
        self._stop_publishing.set()
        if self._publisher is not None and self._publisher is not threading.current_thread():
            self._publisher.join(timeout=2.0)

    # --- test helpers ------------------------------------------------------------------------

    def set_state(self, **changes) -> None:
        """Change the fake's state directly (e.g. ``clock_state="lost"``) to reach odd states."""
        with self._lock:
            self.state.update(changes)

    def warn(self, text: str, *, standing: bool = False, level: str = "warning") -> None:
        """Log an event; ``standing`` also lists it among the snapshot's warnings."""
        with self._lock:
            self._log.append(LogEntry(self._now(), level, text))
            if standing:
                self._warnings.append(text)

    # --- internals ---------------------------------------------------------------------------

    def _now(self) -> float:
        if self._frozen_at_s is not None:
            return self._frozen_at_s
        return self._clock() - self._start_s

    def _seed_log(self) -> None:
        log = self._log
        if self.scenario == "idle":
            log.append(
                LogEntry(0.0, "info", "ready: 1,150 grooves, model guitar-encoder v3; press space to jam")
            )
            return
        log.append(LogEntry(0.0, "info", "listening on system (JACK, 2 in) at 48000 Hz, 256 frames"))
        if self.scenario == "no-device":
            log.append(LogEntry(3.2, "error", "input device gone: 'Scarlett 2i2 USB' stopped answering"))
            self._warnings.append("input device gone: press d to choose another")
            return
        log.append(LogEntry(8.1, "info", "tempo 124.0 BPM detected (confidence 0.87)"))
        log.append(LogEntry(15.6, "info", "playing funk/groove3 (4-4), score 0.82"))
        if self.scenario == "clock-lost":
            log.append(LogEntry(31.0, "warning", "MIDI clock lost from Digitakt:midi_out: holding 124.0 BPM"))
            self._warnings.append("MIDI clock lost: holding 124.0 BPM")
        elif self.scenario == "no-model":
            log.append(LogEntry(0.1, "warning", "no model found: choosing grooves by rhythm descriptors"))
            self._warnings.append("no model: choosing by descriptors")
        elif self.scenario == "no-midi":
            log.append(
                LogEntry(0.2, "warning", "no MIDI ports: created virtual port sjtui (connect a synth to it)")
            )
        elif self.scenario == "clipping":
            log.append(LogEntry(30.2, "warning", "input clipping: turn the interface gain down"))
        else:
            log.append(LogEntry(30.8, "warning", "1 xrun (input overflow) at 30.8 s"))

    def _riff(self, steps_per_bar: int, window: int) -> np.ndarray:
        key = (steps_per_bar, window % 3)
        if key not in self._riffs:
            self._riffs[key] = _read_only(riff_onsets(steps_per_bar, seed=self._seed + window % 3))
        return self._riffs[key]

    def _pattern(self, steps_per_bar: int, variant: int) -> np.ndarray:
        key = (steps_per_bar, variant)
        if key not in self._patterns:
            self._patterns[key] = _read_only(drum_pattern(steps_per_bar, variant))
        return self._patterns[key]

    def _apply(self, command: Command) -> None:
        s = self.state
        now = self._now()
        log = self._log
        if isinstance(command, Start):
            s["state"] = "playing"
            s["started_at_s"] = now
            log.append(LogEntry(now, "info", "started"))
        elif isinstance(command, Stop):
            s["state"] = "stopped"
            log.append(LogEntry(now, "info", "stopped: all notes off"))
        elif isinstance(command, ToggleLock):
            s["locked"] = not s["locked"]
            log.append(LogEntry(now, "info", "groove locked" if s["locked"] else "groove unlocked"))
        elif isinstance(command, Skip):
            s["groove_index"] = (s["groove_index"] + 1) % len(_GROOVES)
            log.append(LogEntry(now, "info", f"skipped to {_GROOVES[s['groove_index']][1]}"))
        elif isinstance(command, FillNow):
            log.append(LogEntry(now, "info", "fill at the next bar"))
        elif isinstance(command, Tap):
            s["source"] = "tap"
        elif isinstance(command, SetTempo):
            s["bpm"] = command.bpm
        elif isinstance(command, NudgeTempo):
            s["bpm"] = round(s["bpm"] + command.delta_bpm, 1)
            if s["source"] == "detected":
                s["source"] = "internal"
        elif isinstance(command, SetMeter):
            s["meter"] = command.meter
        elif isinstance(command, SetClockSource):
            s["source"] = {"auto": "detected"}.get(command.source, command.source)
            s["clock_state"] = "waiting" if command.source == "midi" else "ok"
            log.append(LogEntry(now, "info", f"clock source: {command.source}"))
        elif isinstance(command, Rate):
            s["last_rating"] = command.rating
            log.append(LogEntry(now, "info", f"rated this pairing {command.rating}/5"))
        elif isinstance(command, ToggleRecord):
            s["recording"] = not s["recording"]
        elif isinstance(command, ChooseMidiOutput):
            s["midi_destination"] = {None: "built-in synth", "sjtui": "sjtui (virtual)"}.get(
                command.port, command.port
            )
            log.append(LogEntry(now, "info", f"MIDI out: {s['midi_destination']}"))
        elif isinstance(command, ChooseInput):
            s["input_name"] = command.device
            self._warnings = [w for w in self._warnings if not w.startswith("input device gone")]
            log.append(LogEntry(now, "info", f"input: {command.device}"))
        elif isinstance(command, ChooseMidiClockInput):
            log.append(LogEntry(now, "info", f"MIDI clock in: {command.port}"))

    def _build(self) -> EngineSnapshot:
        with self._lock:
            return self._build_locked()

    def _build_locked(self) -> EngineSnapshot:
        s = self.state
        now = self._now()
        steps_per_bar = 48 if s["meter"] == "4/4" else round(float(eval_meter(s["meter"])) * STEPS_PER_BEAT)
        beats_per_bar = steps_per_bar / STEPS_PER_BEAT
        playing = s["state"] == "playing"
        silent = not playing or s["input_name"] == ""
        beats = max(now - s["started_at_s"], 0.0) * s["bpm"] / 60.0 if playing else 0.0
        window_beats = beats_per_bar * BARS_PER_WINDOW
        window = int(beats // window_beats)
        in_window = beats - window * window_beats
        step = int(in_window * STEPS_PER_BEAT)
        bar = int(beats // beats_per_bar)
        bars_to_decision = BARS_PER_WINDOW - in_window / beats_per_bar

        # levels: a picked riff's envelope, louder on the onsets
        if silent:
            levels = Levels()
        else:
            phase = (beats * 4.0) % 1.0  # 16ths
            envelope = float(np.exp(-4.0 * phase))
            wobble = 3.0 * np.sin(now * 1.7)
            rms_db = -26.0 + 10.0 * envelope + wobble
            peak_db = min(rms_db + 9.0, -0.5)
            clipping = self.scenario == "clipping"
            if clipping:
                peak_db = 0.0
            levels = Levels(
                peak_db=peak_db,
                rms_db=rms_db,
                clipping=clipping,
                band_db=(rms_db - 4.0 + 2.0 * np.sin(now * 3.1), rms_db - 1.0, rms_db - 9.0 + 4.0 * envelope),
            )

        onset_grid = previous = None
        current = None
        candidates: tuple[GrooveInfo, ...] = ()
        if playing or s["state"] == "stopped":
            full = self._riff(steps_per_bar, window)
            grid = np.zeros_like(full)
            grid[:, :, :] = full
            flat = grid.reshape(len(BAND_NAMES), -1)
            flat[:, step + 1 :] = 0.0  # what has not been played yet
            onset_grid = _read_only(grid)
            previous = self._riff(steps_per_bar, window - 1) if window > 0 or self._frozen_at_s else None
            index = (s["groove_index"] + (0 if s["locked"] else window // 2)) % len(_GROOVES)
            gid, name, style, bpm, meter, score = _GROOVES[index]
            current = GrooveInfo(
                id=gid, name=name, style=style, bpm=bpm, meter=meter, score=score,
                bars_played=bar % 8 + 1, pattern=self._pattern(steps_per_bar, index),
            )  # fmt: skip
            others = [g for k, g in enumerate(_GROOVES) if k != index]
            candidates = tuple(
                GrooveInfo(id=g[0], name=g[1], style=g[2], bpm=g[3], meter=g[4], score=g[5] - 0.03 * k)
                for k, g in enumerate(others[:4])
            )
        clock_state = s["clock_state"]
        warnings = tuple(self._warnings)
        transport = TransportInfo(
            bpm=s["bpm"],
            source=s["source"],
            confidence=s["confidence"] if s["source"] == "detected" else None,
            meter=s["meter"],
            bar=bar,
            beat=beats % beats_per_bar,
            step=step,
            steps_per_bar=steps_per_bar,
            clock_state=clock_state,
            bars_to_decision=bars_to_decision,
            seconds_to_decision=bars_to_decision * beats_per_bar * 60.0 / s["bpm"],
        )
        return EngineSnapshot(
            state=s["state"],
            time_s=now,
            levels=levels,
            transport=transport,
            onset_grid=onset_grid,
            previous_onset_grid=previous,
            current=current,
            next=candidates[0] if candidates and not s["locked"] and bars_to_decision < 1.0 else None,
            candidates=candidates,
            locked=s["locked"],
            silent=silent,
            input_name=s["input_name"],
            midi_destination=s["midi_destination"],
            clock_out=s["midi_destination"] not in ("", "built-in synth"),
            recording=s["recording"],
            recording_path="~/.local/share/sjtui/takes/2026-11-26_1342.flac" if s["recording"] else None,
            model_version=s["model_version"],
            library_size=1150,
            timing=TimingStats(note_error_ms_p50=0.4, note_error_ms_p99=1.9, clock_jitter_ms=0.2, xruns=1),
            warnings=warnings,
            log=tuple(self._log[-50:]),
            last_rating=s["last_rating"],
        )

    def _publish(self, rate_hz: float) -> None:
        period_s = 1.0 / rate_hz
        start = time.perf_counter()
        cpu_start = time.thread_time()
        n = 0
        while not self._stop_publishing.is_set():
            self._latest = self._build()
            self.published += 1
            self.publisher_cpu_s = time.thread_time() - cpu_start
            n += 1
            delay = start + n * period_s - time.perf_counter()  # absolute deadlines
            if delay > 0:
                self._stop_publishing.wait(delay)


def eval_meter(text: str) -> float:
    """Quarter notes per bar of ``"n/d"``."""
    from sjtui.meter import parse_meter

    return float(parse_meter(text).beats_per_bar)


def frozen(scenario: str, at_s: float = 37.3, **kwargs) -> FakeEngine:
    """A fake whose time stands still at ``at_s``: every snapshot identical (for snapshot tests)."""
    return FakeEngine(scenario, frozen_at_s=at_s, **kwargs)


__all__ = ["SCENARIOS", "FakeEngine", "drum_pattern", "frozen", "riff_onsets"]
