"""The jam engine: owns the input, the analysis, the transport, the selector and the MIDI scheduler.

Threads (ARCHITECTURE.md):

- the audio input (a callback, or a file/synth source thread) only writes
  the ring; by default a shared-memory ring, written for a JACK device by a
  C JACK client (:mod:`sjtui.audio.jack_input`: no Python in JACK's thread),
  for other devices by the PortAudio callback in a child process with its
  own GIL (:mod:`sjtui.audio.device_process`); ``EngineOptions.input_process``
  and ``jack_input``;
- the *engine thread* (this module's :meth:`Engine._run`) is the ring's only
  reader: it analyses every waiting hop (:class:`~sjtui.audio.analysis_thread.AnalysisThread`
  stepped in place), applies commands at batch boundaries, keeps the
  fingerprint of the last bars, makes the groove decision ahead of each
  window, hands timed events to the scheduler, and publishes an immutable
  :class:`~sjtui.snapshot.EngineSnapshot` into a latest-value slot;
- the MIDI scheduler thread (:mod:`sjtui.midi.scheduler`) sends the events at
  their absolute deadlines (or the backend places them at their frame).

The UI (or the headless printer) reads :meth:`Engine.snapshot` whenever it
likes and sends :class:`~sjtui.snapshot.Command` objects with
:meth:`Engine.send`; neither call waits for the engine. This module never
imports Textual. Under the jam screen the whole engine runs in a child process
and the screen asks it over a pipe (:mod:`sjtui.engine_process`).

Time is the absolute sample index of the input ring (CONVENTIONS §3). The
scheduler's clock is the same timeline: for rtmidi it is the audio clock
fitted through the ring's anchors; for JACK and the built-in synth the
backend's frame clock shifted by ``frame_offset`` (measured at start).

Windows: grooves are chosen per 4-bar window. The first window starts on
the first bar line after the guitar is heard (after a count-in when the
tempo comes from the playing); later windows follow every 4 bars. The
decision for the window starting at bar ``B`` is made ``decision_lead_ms``
before bar ``B`` (before bar ``B - 1`` when fills are on, so a fill can take
that bar), over the fingerprint of the 4 whole bars before that point.
"""

from __future__ import annotations

import collections
import os
import queue
import threading
import time
import types
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sjtui import snapshot as snap
from sjtui.config import EngineConfig
from sjtui.constants import BARS_PER_WINDOW, DRUM_VOICES, HOP_SIZE
from sjtui.errors import SjtuiError
from sjtui.meter import parse_meter
from sjtui.select import NO_MODEL_MESSAGE, GrooveRanker, Ranking, SwitchPolicy
from sjtui.signals import start_thread

CLOCK_SOURCES = ("internal", "tap", "midi", "auto")
_TRANSPORT_SOURCE = {"internal": "internal", "tap": "internal", "midi": "midi_clock", "auto": "auto"}
MAX_LOG = 60
CLOSED_HAT = DRUM_VOICES.index("closed_hat")


class EngineError(SjtuiError):
    """The engine cannot start or run with these settings."""


@dataclass
class EngineOptions:
    """What the jam runs with (the CLI's options)."""

    input: str | None = None  # device name/index, a file path, or None for the default input device
    input_channel: int = 1
    loop: bool = False
    synth: bool = False  # drums to the built-in synth (audio out)
    synth_engine: str = "auto"  # "auto" | "fluidsynth" | "numpy"
    midi_out: str | None = None  # port name; None: the virtual port "sjtui"
    midi_api: str | None = None
    midi_backend: str = "auto"  # "auto" | "jack" | "rtmidi"
    bpm: float = 120.0
    meter: str = "4/4"
    clock: str = "internal"
    clock_in: str | None = None  # MIDI clock input port (clock "midi")
    clock_out: bool = False
    library: str | None = None  # groove library file or folder (default: the user's data dir)
    model: str | None = None  # model folder; "none": run without a model
    fast: bool = False  # file input as fast as possible on a simulated clock
    sample_rate_hz: int = 48000
    block_size: int = 256
    config: EngineConfig = field(default_factory=EngineConfig)
    samples: np.ndarray | None = None  # a signal to play as the input (the demo's song)
    input_name: str | None = None
    state_file: bool = True
    # live input in a child process (own GIL, shared-memory ring: no overflows while the UI and the
    # analysis run Python); False keeps the PortAudio callback in this process (comparison, fallback)
    input_process: bool = True
    # with input_process, a JACK device is read by the C JACK client (sjtui.audio.jack_input) when it
    # was built; False: PortAudio's JACK host API in the child process, as for other devices
    jack_input: bool = True


@dataclass
class BarPlan:
    """What the drums play in one bar: ``kind`` "groove" | "fill" | "count-in"."""

    kind: str
    index: int | None
    groove_bar: int
    score: float | None = None
    switched: bool = False
    window_start: int = 0
    dynamics: float = 1.0


# --- simulated output (fast mode) ------------------------------------------------------------


class SimulatedOutput:
    """The scheduler's interface without a thread or a port: events are kept at their intended sample.

    Used with ``--fast``: time is the analysed sample count, not a clock, so
    nothing is *sent*; timing figures are those of the plan (labelled
    "simulated" wherever they are shown).
    """

    simulated = True

    def __init__(self, sample_rate_hz: float):
        self.sample_rate_hz = float(sample_rate_hz)
        self.pending: list[tuple[int, int, bytes]] = []
        self.clock_commands: list[tuple] = []
        self.warnings: collections.deque = collections.deque(maxlen=64)
        self.error = None
        self.running = False
        self.sounding = np.zeros((16, 128), dtype=bool)

    def start(self):
        self.running = True
        return self

    def submit(self, events: np.ndarray) -> None:
        from sjtui.midi.events import event_priority

        prio = event_priority(events).tolist()
        for i, e in enumerate(events.tolist()):
            sample, status, d1, d2, size = e
            self.pending.append((int(sample), prio[i], bytes((status, d1, d2)[:size])))
        self.pending.sort(key=lambda e: (e[0], e[1]))

    def cancel_from(self, sample: int) -> None:
        kept = [e for e in self.pending if e[0] < sample]
        later = [e for e in self.pending if e[0] >= sample]
        on = np.zeros((16, 128), dtype=bool)
        for _, _, d in kept:
            if d[0] & 0xF0 == 0x90 and d[2] > 0:
                on[d[0] & 0x0F, d[1]] = True
            elif d[0] & 0xF0 in (0x80, 0x90):
                on[d[0] & 0x0F, d[1]] = False
        for e in later:
            d = e[2]
            if (d[0] & 0xF0 == 0x80 or (d[0] & 0xF0 == 0x90 and d[2] == 0)) and on[d[0] & 0x0F, d[1]]:
                kept.append(e)
                on[d[0] & 0x0F, d[1]] = False
        self.pending = sorted(kept, key=lambda e: (e[0], e[1]))

    def clock_start(self, tempo_map, tick: int = 0) -> None:
        self.clock_commands.append(("start", tempo_map, tick))

    def clock_stop(self, at_sample=None) -> None:
        self.clock_commands.append(("stop", at_sample))

    def set_tempo_map(self, tempo_map) -> None:
        self.clock_commands.append(("tempo", tempo_map))

    def panic(self) -> None:
        pass

    def stats(self) -> dict:
        return {"sent_events": len(self.pending), "simulated": True}

    def stop(self) -> None:
        self.running = False

    def close(self) -> None:
        self.running = False

    def note_ons(self) -> np.ndarray:
        """(n, 3) int64 rows (sample, note, velocity) of the planned note-ons."""
        rows = [(s, d[1], d[2]) for s, _, d in self.pending if d[0] & 0xF0 == 0x90 and d[2] > 0]
        return np.array(rows, dtype=np.int64).reshape(-1, 3)


# --- input analysis wrapper --------------------------------------------------------------------


class ProcessOutput:
    """A :class:`~sjtui.midi.process.MidiProcess` (scheduler + rtmidi/JACK backend in a child process
    with its own GIL) behind the engine's output interface.

    Commands go over the pipe and never block; :meth:`stats` returns the figures a poller
    thread fetched last (every ``poll_s``), so the engine thread never waits for the child.
    The timeline is the engine's line ``(time0_s, sample0, rate_hz)``: an rtmidi child's
    clock follows it (:meth:`set_clock_line` after each refit), a JACK child ties its
    ``frame_offset`` to it (:meth:`tie`). If the child dies, ``error`` says so and the
    parent silences what it left sounding (``cleanup_after`` of its state file).
    """

    simulated = False

    def __init__(self, kind: str, spec: dict, scheduler_options: dict, clock_line, poll_s: float = 0.25):
        from sjtui.midi.process import MidiProcess

        self.kind = kind
        self.poll_s = float(poll_s)
        self.process = MidiProcess(dict(spec, kind=kind, deferred_start=True), scheduler_options, clock_line=clock_line)
        info = self.process.description
        self.description = info
        self.sample_rate_hz = float(info["sample_rate_hz"])
        self.timed = bool(info["timed"])
        self.pid = int(self.process.process.pid)
        # what the parent knows of the child's backend (read-only; figures refreshed from its stats)
        self.backend = types.SimpleNamespace(
            name=kind, timed=self.timed, underflows=0, late_events=0, lost_events=0,
            full_port_name=info.get("port"), port_name=info.get("port"),
        )  # fmt: skip
        self.cleanup_reports: list[dict] = []
        self._begun = False
        self.warnings: collections.deque = collections.deque(maxlen=64)
        self.error: str | None = None
        self._stats: dict = {}
        self._line = None if clock_line is None else tuple(clock_line)
        self._closing = threading.Event()
        self._poller: threading.Thread | None = None
        self._seen = 0

    # commands (never block)
    def start(self) -> "ProcessOutput":
        if not self._begun:  # not tied by the engine (no clock yet): the child's own timeline
            self.tie((time.monotonic(), 0.0, self.sample_rate_hz))
        if self._poller is None:
            self._poller = start_thread(self._poll, "sjtui-midi-stats")
        return self

    def submit(self, events) -> None:
        if np.asarray(events).size and self.error is None:  # nothing piles up for a dead child
            self.process.submit(np.asarray(events).copy())

    def cancel_from(self, sample: int) -> None:
        self.process.cancel_from(sample)

    def set_tempo_map(self, tempo_map) -> None:
        self.process.set_tempo_map(tempo_map)

    def clock_start(self, tempo_map, tick: int = 0) -> None:
        self.process.clock_start(tempo_map, tick)

    def clock_stop(self, at_sample=None) -> None:
        self.process.clock_stop(at_sample)

    def panic(self) -> None:
        self.process.panic()

    def set_clock_line(self, line) -> None:
        line = tuple(float(v) for v in line)
        if self.timed and line != self._line:
            self._line = line
            self.process.set_clock_line(line)

    def tie(self, line) -> None:
        """The child's timeline follows ``line``; the first call starts its scheduler (a scheduler's loop
        keeps the clock it started on, so it starts only once tied). Waits for the answer: at start and
        device changes only."""
        if not self._begun:
            self._begun = True
            answer = self.process.begin(line)
            if answer is None:
                self.error = "the MIDI process did not answer when starting"
                return
            if answer.get("frame_offset") is not None:
                self.backend.frame_offset = int(answer["frame_offset"])
            self.cleanup_reports = list(answer.get("cleanup_reports") or [])
            self._line = tuple(float(v) for v in line)
            return
        if not self.timed:
            offset = self.process.tie(line)
            if offset is not None:
                self.backend.frame_offset = int(offset)

    def stats(self) -> dict:
        return self._stats

    def _poll(self) -> None:
        while not self._closing.wait(self.poll_s):
            if not self.process.process.is_alive():
                if not self._closing.is_set():
                    self._child_died()
                return
            try:
                stats = self.process.stats()
            except (EOFError, OSError):
                continue  # the child is going away: the liveness check above reports it
            if stats is None:
                continue
            self._take(stats)

    def _take(self, stats: dict) -> None:
        """Keeps the child's figures (poller thread, and once more at close)."""
        new = stats.get("warnings") or []
        self.warnings.extend(new[self._seen :] if len(new) >= self._seen else new)
        self._seen = len(new)
        if stats.get("error") and self.error is None:
            self.error = stats["error"]
        self.backend.late_events = int(stats.get("late_events_backend", 0))
        self.backend.lost_events = int(stats.get("lost_events_backend", 0))
        self._stats = stats

    def _child_died(self) -> None:
        code = self.process.process.exitcode
        self.error = f"the MIDI process (pid {self.pid}) died (exit code {code})"
        try:
            from sjtui.midi.state import cleanup_after

            report = cleanup_after(self.pid)
            if report is not None:
                reached = ", ".join(report.get("reached") or []) or "no port of it is left"
                self.warnings.append(f"{self.error}: all notes off to {reached}")
        except Exception as error:  # noqa: BLE001 - reported, the jam keeps going without drums
            self.warnings.append(f"cleaning up after the MIDI process failed: {error}")

    def stop(self) -> None:
        self.close()

    def close(self) -> None:
        """Stop the child: it sends Stop, note-offs and All Notes Off and removes its state file."""
        self._closing.set()
        poller, self._poller = self._poller, None
        if poller is not None and poller is not threading.current_thread():
            poller.join(2.0)
        if self.process.process.is_alive():
            try:
                final = self.process.stats()
            except (EOFError, OSError):
                final = None
            if final is not None:
                self._take(final)
        self.process.close()


class _LevelingAnalyzer:
    """Wraps :class:`OnlineAnalyzer`: measures each batch's peak and mean power, feeds the recorder."""

    def __init__(self, analyzer):
        self.analyzer = analyzer
        self.hop_size = analyzer.hop_size
        self.sample_rate_hz = analyzer.sample_rate_hz
        self.peak = 0.0
        self.power = 0.0
        self.n = 0
        self.recorder = None

    def reset(self) -> None:
        self.analyzer.reset()

    def process(self, block):
        if block.size:
            self.peak = float(np.max(np.abs(block)))
            self.power = float(np.dot(block, block)) / block.size
            self.n = block.size
            recorder = self.recorder
            if recorder is not None:
                recorder.write_audio(block)
        return self.analyzer.process(block)


class _Shifted:
    """Features with absolute sample indices (analyzer samples + the segment start)."""

    __slots__ = ("frame_sample", "energy_db", "flux", "onsets")

    def __init__(self, features, offset: int):
        self.frame_sample = features.frame_sample + offset
        self.energy_db = features.energy_db
        self.flux = features.flux
        onsets = features.onsets
        if onsets.size:
            onsets = onsets.copy()
            onsets["sample"] += offset
            onsets["decided_at"] += offset
        self.onsets = onsets


def _db(power: float) -> float:
    return float(10.0 * np.log10(max(power, 1e-12)))


# --- the engine ----------------------------------------------------------------------------------


class Engine:
    """The live jam (see the module docstring). Build with :func:`create_engine` or give the parts.

    Parts: ``ring`` and ``source`` (an object with ``start()``/``stop()`` feeding the ring),
    ``library`` (GrooveLibrary), ``model`` (EncoderPair or None) with
    ``groove_embeddings``, ``output`` (a started-or-not
    :class:`~sjtui.midi.scheduler.MidiScheduler` or :class:`SimulatedOutput`).
    """

    def __init__(
        self,
        *,
        ring,
        source,
        library,
        output,
        options: EngineOptions,
        model=None,
        groove_embeddings=None,
        input_name: str = "",
        output_name: str = "",
        model_version: str = "",
        notes: list[str] | None = None,
        groove_store_path=None,
    ):
        from sjtui.audio.analysis_thread import AnalysisThread
        from sjtui.dsp.analysis import OnlineAnalyzer
        from sjtui.dsp.fingerprint import FingerprintAccumulator
        from sjtui.transport.transport import Transport

        self.options = options
        self.config = options.config
        self.sample_rate_hz = int(options.sample_rate_hz)
        self.ring = ring
        self.source = source
        self.library = library
        self.model = model
        self.output = output
        self.simulated = bool(getattr(output, "simulated", False))
        self.input_name = input_name
        self.output_name = output_name
        self.model_version = model_version
        self.groove_store_path = groove_store_path
        self.ranker = GrooveRanker(library, model, groove_embeddings, self.config)
        self.policy = SwitchPolicy(self.config)
        if options.clock not in CLOCK_SOURCES:
            raise EngineError(f"clock {options.clock!r} is unknown; choose one of {', '.join(CLOCK_SOURCES)}")
        meter = parse_meter(options.meter)
        if not (self.ranker.is_beat & self.ranker.meter_mask(meter)).any():
            raise EngineError(self.ranker.describe_no_fit(options.bpm, meter))
        self.ranker.warm_up(options.bpm, meter)
        self.transport = Transport(
            self.sample_rate_hz, bpm=options.bpm, meter=meter, source=_TRANSPORT_SOURCE[options.clock]
        )
        self.clock_choice = options.clock
        self.leveler = _LevelingAnalyzer(OnlineAnalyzer(self.sample_rate_hz))
        # batches of at most 4 hops in fast mode (decisions are made per batch, so this bounds their
        # lateness on the simulated clock); 8192 samples live, enough to catch up after a stall
        max_batch = 4 * HOP_SIZE if getattr(output, "simulated", False) else 32 * HOP_SIZE
        self.analysis = AnalysisThread(ring, self.leveler, start_index=ring.write_index, max_batch_samples=max_batch)
        self.accumulator = FingerprintAccumulator(self.sample_rate_hz, HOP_SIZE)
        self.channel = int(self.config.channel) - 1
        from sjtui.midi.kits import kit_map

        self.kit = kit_map(self.config.kit)

        # cross-thread hand-offs
        self._commands: queue.SimpleQueue = queue.SimpleQueue()
        self._snapshot = snap.EngineSnapshot(input_name=input_name, midi_destination=output_name)
        self.bar_reports: queue.SimpleQueue = queue.SimpleQueue()
        self.finished = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

        # clock for the audio timeline (rtmidi) published as (t0, s0, slope)
        from sjtui.transport.timebase import SampleClock

        self.sample_clock = SampleClock(self.sample_rate_hz)
        self._clock_params = (time.monotonic(), float(ring.write_index), float(self.sample_rate_hz))
        self._clock_refit_at = 0.0
        self.t_start = time.monotonic()
        self.start_sample = int(ring.write_index)

        # jam state (engine thread only)
        self.state = "idle"
        self.user_stopped = False
        self.locked = False
        self.plan: dict[int, BarPlan] = {}
        self.current: int | None = None
        self.current_score: float | None = None
        self.next_window_bar: int | None = None
        self.window_start: int | None = None
        self.bars_since_switch = 0
        self.stop_at_bar: int | None = None
        self.last_ranking: Ranking | None = None
        self.pending_next: tuple[int | None, float | None] | None = None
        self.clock_running = False
        self.clock_beat0 = 0.0
        self._map = self.transport.tempo_map
        self._epoch = self.transport.epoch
        self._last_bar_reported: int | None = None
        self._bars_played: dict[int, int] = collections.Counter()
        self.last_onset_sample = -(10**12)
        self._onset_times: collections.deque = collections.deque(maxlen=64)
        self.power_short = 0.0
        self.power_long = 0.0
        self.levels = snap.Levels()
        self.dynamics = 1.0
        self.onset_grid = None
        self.previous_onset_grid = None
        self._grid_window = None
        self.selection_ms: collections.deque = collections.deque(maxlen=4096)
        # the same decisions in this thread's CPU time: wall minus CPU is waiting (GIL, cores)
        self.selection_cpu_ms: collections.deque = collections.deque(maxlen=4096)
        self.log: collections.deque = collections.deque(maxlen=MAX_LOG)
        self.warnings_standing: dict[str, str] = {}
        self.recorder = None
        self.last_rating: int | None = None
        self._last_publish = 0.0
        self._patterns: dict[int, np.ndarray] = {}
        self._last_off: dict[int, int] = {}  # channel * 128 + note -> latest note-off submitted
        self._transport_dirty = False
        self._transport_applied_at = -float("inf")
        self._decision_cache: tuple = (None, None, 0.0)
        self._next_bar_cache: tuple = (None, 0.0)
        self._anchors_seen, self._anchors_seen_at = 0, time.monotonic()
        self._grooves: dict[int, object] = {}
        self.midi_clock_input = None
        # hot reload: the manifests load_model() reads, their stat signature, a reload being prepared
        self._model_manifests = _model_manifests(options.model)
        self._model_signature = _stat_signature(self._model_manifests)
        self._model_identity = _model_identity(model)
        self._model_loader: threading.Thread | None = None
        self._model_ready: tuple | None = None  # (model, version, ranker, notes, seconds) from the loader
        self.model_reloads = 0
        self.notes = list(notes or [])
        self.report_bars = True
        for note in self.notes:
            self._log("info", note)
        if model is None:
            self._log("warning", NO_MODEL_MESSAGE)
            self.warnings_standing["model"] = NO_MODEL_MESSAGE
        if self.simulated:
            self._log("info", "fast mode: simulated clock, MIDI timing is simulated (nothing is sent)")

    # -- public API (any thread) --------------------------------------------------------------

    def snapshot(self) -> snap.EngineSnapshot:
        return self._snapshot

    def send(self, command: snap.Command) -> None:
        self._commands.put(command)

    def list_inputs(self) -> list[str]:
        try:
            from sjtui.audio.device import list_input_devices

            return [d.name for d in list_input_devices()]
        except Exception:
            return []

    def list_midi_outputs(self) -> list[str]:
        try:
            from sjtui.midi.ports import choose_api, list_ports

            return list_ports(choose_api(self.options.midi_api))["outputs"]
        except Exception:
            return []

    def list_midi_inputs(self) -> list[str]:
        try:
            from sjtui.midi.ports import choose_api, list_ports

            return list_ports(choose_api(self.options.midi_api))["inputs"]
        except Exception:
            return []

    def start(self) -> "Engine":
        if self._thread is not None:
            return self
        if not self.simulated:
            import gc
            import sys

            sys.setswitchinterval(self.config.switch_interval_ms * 1e-3)  # see EngineConfig
            # Everything loaded so far (library, model, embeddings) lives as long as the jam: out of
            # the collector's sight, a full collection no longer walks it. Measured with the GMD
            # library and the UI: one 74 ms full collection in 30 s, in whichever thread allocated.
            # Collected first, so no garbage is frozen with them (at the start, before any audio).
            gc.collect()
            gc.freeze()
        self.source.start()
        if not self.simulated:
            # the audio clock first (a few blocks of anchors), then the output's timeline is tied to it
            deadline = time.monotonic() + 2.0
            while self.ring.anchor_count < 4 and time.monotonic() < deadline:
                time.sleep(0.005)
            if self.ring.anchor_count == 0:
                self._log("warning", f"the input ({self.input_name}) delivers no audio")
            self._clock_refit_at = 0.0
            self._refit_clock()
            self._tie_output_clock(self.output)
        self.output.start()
        for warning in list(getattr(self.output, "warnings", ())):
            self._log("info", warning)
        for report in getattr(self.output, "cleanup_reports", []) or []:
            reached = ", ".join(report.get("reached") or []) or "no port of it is left"
            self._log("info", f"cleaned up after an earlier run (pid {report.get('pid')}): all notes off to {reached}")
        self._thread = start_thread(self._run, "sjtui-engine")
        return self

    def close(self, timeout_s: float = 3.0) -> None:
        """Stop everything; every sounding note gets its note-off (idempotent)."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)
        try:
            self.source.stop()
        except Exception as error:  # noqa: BLE001 - reported, shutdown goes on
            self._log("error", f"input stopped with an error: {error}")
        try:
            self.output.close()
        finally:
            if self.recorder is not None:
                self._stop_recording()
            if self.midi_clock_input is not None:
                try:
                    self.midi_clock_input.close()
                except Exception:
                    pass
        self.finished.set()

    def __enter__(self) -> "Engine":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the engine thread -------------------------------------------------------------------------

    def now_sample(self) -> float:
        """The engine's 'now' on the input timeline."""
        if self.simulated:
            return float(self.analysis.next_index)
        t0, s0, slope = self._clock_params
        return s0 + (time.monotonic() - t0) * slope

    def _refit_clock(self) -> None:
        now = time.monotonic()
        if now < self._clock_refit_at:
            return
        self._clock_refit_at = now + 0.1
        anchors = self.ring.anchors()
        if self.sample_clock.add_anchors(anchors, "monotonic_s"):
            sc = self.sample_clock
            # the anchor is the first sample of a block that arrived at monotonic_s: its end is now
            # (the source's block: on JACK the server's period, whatever was asked)
            block = self.source.block_size
            self._clock_params = (sc._offset_time, sc._offset_sample + block, sc._slope)
            set_line = getattr(self.output, "set_clock_line", None)
            if set_line is not None:  # an rtmidi child process follows the same line
                set_line(self._clock_params)

    def _run(self) -> None:
        poll_s = 0.5 * HOP_SIZE / self.sample_rate_hz
        try:
            while not self._stop.is_set():
                # commands first: what they start (a recording) begins with the next batch
                if not self.simulated:
                    self._refit_clock()
                self._apply_commands(self.now_sample())
                update = self.analysis.step()
                self._tick(update)
                if update is None:
                    if self.simulated and getattr(self.source, "finished", None) is not None and self.source.finished.is_set():
                        if self.analysis.reader.available() < HOP_SIZE:
                            self._log("info", "the input file ended")
                            break
                    self._stop.wait(poll_s)
                elif self.simulated:
                    continue
        except BaseException as error:  # noqa: BLE001 - surfaced via snapshot and .error
            self.error = error
            self.state = "error"
            self._log("error", f"the engine stopped: {error!r}")
            self._publish(force=True)
            try:
                self.output.panic()
            except Exception:
                pass
        finally:
            self._publish(force=True)
            self.finished.set()

    def _tick(self, update) -> None:
        if not self.simulated:
            self._refit_clock()
        now = self.now_sample()
        self._apply_commands(now)
        if self.midi_clock_input is not None:
            self.midi_clock_input.drain(self.transport.midi_clock, self.sample_clock)
        # the transport applies its queue at block boundaries; it only has work after a command
        # of ours or while following a MIDI clock (the playing's lock changes its map directly)
        t = self.transport
        if self._transport_dirty or t.source == "midi_clock" or now - self._transport_applied_at > 0.1 * self.sample_rate_hz:
            t.apply_pending(now)
            self._transport_dirty = False
            self._transport_applied_at = now
        if t.tempo_map is not self._map:
            self._map_changed(t, now)
        if update is not None:
            self._take_features(update)
        self._step_jam(now)
        self._report_bars(now)
        self._publish()

    # -- features ------------------------------------------------------------------------------------

    def _take_features(self, update) -> None:
        features = _Shifted(update.features, update.segment_start_index)
        if update.lost_samples:
            self._log("warning", f"analysis fell behind: {update.lost_samples} samples skipped")
        self.accumulator.push(features)
        onsets = features.onsets
        lv = self.leveler
        seconds = lv.n / self.sample_rate_hz
        a_short = 1.0 - np.exp(-seconds / 0.3)
        a_long = 1.0 - np.exp(-seconds / 2.0)
        self.power_short += a_short * (lv.power - self.power_short)
        self.power_long += a_long * (lv.power - self.power_long)
        if features.energy_db.shape[1]:
            band = tuple(float(v) for v in features.energy_db.mean(axis=1))
        else:
            band = self.levels.band_db
        self.levels = snap.Levels(
            peak_db=_db(lv.peak**2), rms_db=_db(lv.power), clipping=lv.peak >= 0.999, band_db=band
        )
        if onsets.size:
            self.last_onset_sample = int(onsets["sample"][-1])
            self._onset_times.extend(onsets["sample"].tolist())
            self.transport.feed_onsets(onsets["sample"], onsets["strength"], onsets["band"])
            self._grid_onsets(onsets)

    def _grid_onsets(self, onsets) -> None:
        if self.window_start is None:
            return
        tm = self.transport.tempo_map
        placed = self.transport.onsets_to_grid(onsets["sample"])
        spb = tm.meter.steps_per_bar
        for band, bar, step, strength in zip(
            onsets["band"].tolist(), placed["bar"].tolist(), placed["step"].tolist(), onsets["strength"].tolist()
        ):
            # windows by their first bar (window_start moves to the next window at its decision)
            first = self.window_start + BARS_PER_WINDOW * ((bar - self.window_start) // BARS_PER_WINDOW)
            self._ensure_grid(first, spb)
            if first == self._grid_window and 0 <= step < spb:
                k = bar - first
                self.onset_grid[band, k, step] = max(self.onset_grid[band, k, step], strength)

    def _ensure_grid(self, first_bar: int, spb: int) -> None:
        if self._grid_window == first_bar and self.onset_grid is not None and self.onset_grid.shape[2] == spb:
            return
        if self._grid_window is not None and first_bar < self._grid_window:
            return  # a late onset of an older window: dropped
        if self._grid_window is not None and self.onset_grid is not None:
            self.previous_onset_grid = self.onset_grid
        self.onset_grid = np.zeros((3, BARS_PER_WINDOW, spb), dtype=np.float32)
        self._grid_window = first_bar

    def _silent(self, now: float) -> bool:
        tm = self.transport.tempo_map
        bar_samples = float(tm.bar_to_sample(tm.sample_to_bar(now))) - float(tm.bar_to_sample(tm.sample_to_bar(now) - 1))
        quiet = _db(self.power_short) < self.config.silence_db
        no_onsets = now - self.last_onset_sample > self.config.silence_bars * bar_samples
        return quiet and no_onsets

    def _playing(self, now: float) -> bool:
        tm = self.transport.tempo_map
        bar_start = float(tm.bar_to_sample(tm.sample_to_bar(now) - 1))
        recent = sum(1 for s in self._onset_times if s >= bar_start)
        return recent >= self.config.resume_onsets and _db(self.power_short) >= self.config.silence_db

    # -- the jam -----------------------------------------------------------------------------------

    def _ready_transport(self) -> str | None:
        """None when the grid can be trusted, else what we are waiting for."""
        t = self.transport
        if t.source == "auto" and not t.state.startswith("locked"):
            return "listening for the tempo"
        if t.source == "midi_clock" and not (t.running and t.state == "running"):
            return "waiting for the MIDI clock"
        return None

    def _lead_samples(self) -> float:
        return self.config.decision_lead_ms * 1e-3 * self.sample_rate_hz

    def _next_bar_line(self, now: float) -> int:
        tm = self.transport.tempo_map
        return int(np.ceil(float(tm.sample_to_bar(now + self._lead_samples())) - 1e-9))

    def _decision_sample(self, window_bar: int) -> float:
        tm = self.transport.tempo_map
        key_bar, key_map, value = self._decision_cache
        if key_bar == window_bar and key_map is tm:
            return value
        bar = window_bar - (1 if self.config.fill_before_switch else 0)
        value = float(tm.bar_to_sample(bar)) - self._lead_samples()
        self._decision_cache = (window_bar, tm, value)
        return value

    def _step_jam(self, now: float) -> None:
        if self.state in ("idle", "stopped"):
            if self.user_stopped:
                self.state = "stopped"
                return
            waiting = self._ready_transport()
            if waiting is not None:
                self.warnings_standing["transport"] = waiting
                return
            self.warnings_standing.pop("transport", None)
            if self._playing(now):
                self._begin(now)
            return
        if self.state == "stopping":
            if self.stop_at_bar is not None and now >= float(self.transport.tempo_map.bar_to_sample(self.stop_at_bar)):
                self.state = "stopped" if self.user_stopped else "idle"
                self._log("info", "drums stopped" + (" (guitar silent)" if not self.user_stopped else ""))
                self.stop_at_bar = None
                self.next_window_bar = None
            return
        if self.state in ("count-in", "playing"):
            if self.state == "count-in" and self.window_start is not None:
                if now >= float(self.transport.tempo_map.bar_to_sample(self.window_start)):
                    self.state = "playing"
            if self.next_window_bar is not None and now >= self._decision_sample(self.next_window_bar):
                self._decide_window(self.next_window_bar, now)

    def _begin(self, now: float) -> None:
        bar = self._next_bar_line(now)
        count_in = self.config.count_in_bars if self.transport.source == "auto" else 0
        self.current = None
        self.bars_since_switch = 0
        for k in range(count_in):
            self.plan[bar + k] = BarPlan("count-in", None, k, window_start=bar + count_in)
        first = bar + count_in
        self.window_start = first
        if not self._choose_and_plan(first, now, first_window=True):
            return
        self._submit_bars(bar, first + BARS_PER_WINDOW)
        self._start_clock(bar)
        self.state = "count-in" if count_in else "playing"
        self._log("info", f"drums in at bar {bar}" + (f" after a {count_in}-bar count-in" if count_in else ""))

    def _fingerprint(self, end_bar: int):
        tm = self.transport.tempo_map
        if self.accumulator.last_sample < 0:
            return None
        return self.accumulator.fingerprint(tm, end_bar - BARS_PER_WINDOW, BARS_PER_WINDOW, self.transport.latency_ms)

    def _rank(self, end_bar: int):
        t0, cpu0 = time.perf_counter(), time.thread_time()
        tm = self.transport.tempo_map
        fp = self._fingerprint(end_bar)
        sample = float(tm.bar_to_sample(end_bar))
        ranking = self.ranker.rank(fp if self.model is not None else None, tm.bpm_at(sample), tm.meter_at(sample), self.current)
        self.selection_ms.append((time.perf_counter() - t0) * 1e3)
        self.selection_cpu_ms.append((time.thread_time() - cpu0) * 1e3)
        self.last_ranking = ranking
        return ranking, fp

    def _dynamics(self) -> float:
        c = self.config
        level_db = _db(self.power_long)
        scale = 10.0 ** ((level_db - c.dynamics_reference_db) / c.dynamics_db_per_decade)
        return float(np.clip(scale, c.dynamics_min, c.dynamics_max))

    # -- hot reload of the model --------------------------------------------------------------------

    def _check_model(self) -> None:
        """At a decision: switch to a model a loader prepared, or start one when a manifest changed.

        Cheap on the engine thread: one ``os.stat`` per watched manifest; loading the model and
        embedding the library happen in a worker thread."""
        ready, self._model_ready = self._model_ready, None
        if ready is not None:
            model, version, ranker, notes, seconds = ready
            old = self.model_version or "no model"
            self.model, self.ranker, self.model_version = model, ranker, version
            self._model_identity = _model_identity(model)
            self.model_reloads += 1
            self.warnings_standing.pop("model", None)
            self.warnings_standing.pop("model_reload", None)
            for note in notes:
                self._log("info", note)
            self._log("info", f"model switched from {old} to {version} at this decision (prepared in {seconds:.1f} s)")
            return
        if not self._model_manifests or (self._model_loader is not None and self._model_loader.is_alive()):
            return
        signature = _stat_signature(self._model_manifests)
        if signature == self._model_signature:
            return
        self._model_signature = signature
        self._model_loader = start_thread(self._load_new_model, "sjtui-model-reload")

    def _load_new_model(self) -> None:
        """Worker: load what load_model() would now return; if it is another model, embed the library."""
        start = time.perf_counter()
        try:
            from sjtui.model.errors import ModelError
            from sjtui.model.runtime import EncoderPair, load_model

            notes: list[str] = []
            try:
                if self.options.model is not None:
                    model = EncoderPair(self.options.model)
                else:
                    loaded = load_model(None)
                    if loaded.fallback_reason:  # the new preferred model is broken: keep ours
                        raise ModelError(loaded.fallback_reason.split("\nusing ")[0])
                    model = loaded.model
            except ModelError as error:
                text = f"a new model was found but cannot be used ({error}); keeping {self.model_version or 'no model'}"
                self.warnings_standing["model_reload"] = text
                self._log("warning", text)
                return
            if _model_identity(model) == self._model_identity:
                return  # touched, not changed
            embeddings = embed_library(self.groove_store_path, self.library, model, notes)
            ranker = GrooveRanker(self.library, model, embeddings, self.config)
            ranker.warm_up(self.transport.tempo_map.bpm, self.transport.tempo_map.meter)
            version = f"{model.name} {model.version}"
            notes.insert(0, f"model: {model.describe()}")
            self._model_ready = (model, version, ranker, notes, time.perf_counter() - start)
        except Exception as error:  # noqa: BLE001 - the current model keeps working
            text = f"loading the new model failed ({error!r}); keeping {self.model_version or 'no model'}"
            self.warnings_standing["model_reload"] = text
            self._log("warning", text)

    def _choose_and_plan(self, window_bar: int, now: float, first_window: bool = False) -> bool:
        """Decide the groove of the window starting at ``window_bar`` and put it in the plan."""
        self._check_model()
        fill_bar = window_bar - 1
        fp_end = window_bar if first_window or not self.config.fill_before_switch else fill_bar
        ranking, _ = self._rank(fp_end)
        decision = self.policy.decide(ranking, self.current, self.bars_since_switch, self.locked)
        if decision.index is None:
            tm = self.transport.tempo_map
            text = self.ranker.describe_no_fit(tm.bpm, tm.meter)
            if "fit" not in self.warnings_standing:
                self._log("warning", text)
            self.warnings_standing["fit"] = text
            self.plan = {b: p for b, p in self.plan.items() if b < window_bar}
            return False
        self.warnings_standing.pop("fit", None)
        self.dynamics = self._dynamics()
        switched = decision.switched
        if switched and not first_window and self.current is not None and self.config.fill_before_switch:
            fill = self.ranker.fill_for(self.current, self.transport.tempo_map.bpm, self.transport.tempo_map.meter)
            if fill is not None and fill_bar in self.plan and fill_bar >= self._next_bar_line(now):
                groove = self._groove(fill)
                old = self.plan[fill_bar]
                self.plan[fill_bar] = BarPlan("fill", fill, groove.bars - 1, None, False, old.window_start, old.dynamics)
                self._resubmit_from(fill_bar, now, upto=window_bar)
        if switched:
            self.bars_since_switch = 0
            name = self.library.names[decision.index]
            why = {"first": "first groove", "better": "better fit", "forced": "tempo/meter changed", "skip": "skip"}.get(
                decision.reason, decision.reason
            )
            score = "" if decision.score is None else f" (score {decision.score:.3f})"
            self._log("info", f"bar {window_bar}: {name}{score}: {why}")
        self.current = decision.index
        self.current_score = decision.score
        self.policy.note_played(decision.index)
        for k in range(BARS_PER_WINDOW):
            groove_bar = k % self._groove(decision.index).bars
            self.plan[window_bar + k] = BarPlan(
                "groove", decision.index, groove_bar, decision.score, switched and k == 0, window_bar, self.dynamics
            )
        self.window_start = window_bar
        self.next_window_bar = window_bar + BARS_PER_WINDOW
        return True

    def _decide_window(self, window_bar: int, now: float) -> None:
        c = self.config
        if c.on_silence == "finish" and self._silent(now):
            self.state = "stopping"
            self.stop_at_bar = window_bar
            self.next_window_bar = None
            self._stop_clock(window_bar)
            self._log("info", f"guitar silent: the drums finish the phrase and stop at bar {window_bar}")
            return
        self.bars_since_switch += BARS_PER_WINDOW
        if self._choose_and_plan(window_bar, now):
            self._submit_bars(window_bar, window_bar + BARS_PER_WINDOW)
        else:
            self.state = "stopping"
            self.stop_at_bar = window_bar
            self.next_window_bar = None
            self._stop_clock(window_bar)

    def _groove(self, index: int):
        groove = self._grooves.get(index)
        if groove is None:
            groove = self.library.groove(index)
            self._grooves[index] = groove
        return groove

    def _bar_events(self, bar: int, plan: BarPlan):
        from sjtui.midi.events import groove_events

        tm = self.transport.tempo_map
        if plan.kind == "count-in":
            spb = tm.meter_at(float(tm.bar_to_sample(bar))).steps_per_bar
            beats = spb // 12
            from sjtui.grooves.vho import Groove
            hits = np.zeros((spb, len(DRUM_VOICES)), dtype=bool)
            hits[np.arange(beats) * 12, CLOSED_HAT] = True
            vel = hits.astype(np.float32) * 0.8
            groove = Groove(hits, vel, np.zeros_like(vel), tm.meter_at(float(tm.bar_to_sample(bar))), tm.bpm, "count-in", "engine")
            return groove_events(groove, tm, bar, channel=self.channel, kit=self.kit, note_length_ms=self.config.note_length_ms)
        groove = self._groove(plan.index)
        return groove_events(
            groove, tm, bar, from_bar=plan.groove_bar, n_bars=1, channel=self.channel, kit=self.kit,
            dynamics=plan.dynamics, note_length_ms=self.config.note_length_ms,
        )  # fmt: skip

    def _submit_bars(self, first_bar: int, stop_bar: int) -> None:
        from sjtui.midi.events import merge_events

        parts = [self._bar_events(b, self.plan[b]) for b in range(first_bar, stop_bar) if b in self.plan]
        if parts:
            events = self._no_overlaps(merge_events(*parts))
            self.output.submit(events)
            if self.recorder is not None:
                self.recorder.add_events(events)

    def _no_overlaps(self, events: np.ndarray) -> np.ndarray:
        """Every note-on of a note that is still sounding gets a note-off first.

        Bars are rendered one by one, so a note's note-off can fall after the
        same note's next hit in the following bar (or the next submission):
        within ``events`` the earlier note-off is moved to the later note-on;
        against what was submitted before, a note-off is added at the note-on.
        The receiver then always sees off before the next on of a note.
        """
        from sjtui.midi.events import NOTE_OFF, NOTE_ON, empty_events, sort_events

        kind = events["status"] & 0xF0
        is_on = (kind == NOTE_ON) & (events["data2"] > 0)
        is_off = (kind == NOTE_OFF) | ((kind == NOTE_ON) & (events["data2"] == 0))
        key = (events["status"].astype(np.int32) & 0x0F) * 128 + events["data1"]
        extra = []
        last_off = self._last_off
        for k in np.unique(key[is_on]).tolist():
            ons = np.flatnonzero(is_on & (key == k))
            offs = np.flatnonzero(is_off & (key == k))
            on_s = events["sample"][ons]
            if offs.size == ons.size and ons.size > 1:
                off_s = events["sample"][offs]
                order_on, order_off = np.argsort(on_s, kind="stable"), np.argsort(off_s, kind="stable")
                clipped = np.minimum(off_s[order_off][:-1], on_s[order_on][1:])
                events["sample"][offs[order_off][:-1]] = clipped
            first_on = int(on_s.min())
            if last_off.get(k, -1) > first_on:
                e = empty_events(1)
                e["sample"], e["status"], e["data1"], e["size"] = first_on, NOTE_OFF | (k // 128), k % 128, 3
                extra.append(e)
            last_off[k] = int(events["sample"][offs].max()) if offs.size else last_off.get(k, -1)
        if extra:
            events = np.concatenate([events, *extra])
        return sort_events(events)

    def _resubmit_from(self, bar: int, now: float, upto: int | None = None) -> None:
        """Replace what is queued from ``bar`` on by the plan (after a change of plan or of the tempo map)."""
        tm = self.transport.tempo_map
        sample = int(np.ceil(float(tm.bar_to_sample(bar))))
        self.output.cancel_from(sample)
        if self.recorder is not None:
            self.recorder.cancel_from(sample)
        last = max(self.plan) + 1 if self.plan else bar
        self._submit_bars(bar, last)

    # -- clock out -------------------------------------------------------------------------------

    def _clock_map(self, bar: int):
        tm = self.transport.tempo_map
        sample = float(tm.bar_to_sample(bar))
        return tm.relocated(sample, 0.0, bar=0.0, bpm=tm.bpm_at(sample), meter=tm.meter_at(sample))

    def _start_clock(self, bar: int) -> None:
        if not self.options.clock_out:
            return
        tm = self.transport.tempo_map
        self.clock_beat0 = float(tm.bar_to_beat(bar))
        self.output.clock_start(self._clock_map(bar), 0)
        self.clock_running = True

    def _stop_clock(self, bar: int) -> None:
        if not (self.options.clock_out and self.clock_running):
            return
        self.output.clock_stop(float(self.transport.tempo_map.bar_to_sample(bar)))
        self.clock_running = False

    # -- map changes ---------------------------------------------------------------------------------

    def _transport_submit(self, command) -> None:
        self.transport.submit(command)
        self._transport_dirty = True

    def _map_changed(self, tsnap, now: float) -> None:
        old, self._map = self._map, tsnap.tempo_map
        relocated = tsnap.epoch != self._epoch
        self._epoch = tsnap.epoch
        if relocated:
            self._last_bar_reported = None  # bar numbers restart on the new grid
            self.window_start = None
            self._grid_window = None
        if self.state not in ("playing", "count-in", "stopping") or not self.plan:
            return
        tm = tsnap.tempo_map
        bar = self._next_bar_line(now)
        if not relocated:
            at = float(tm.bar_to_sample(bar))
            same_bpm = abs(tm.bpm_at(at) - old.bpm_at(at)) <= 1e-3 * old.bpm_at(at)
            if same_bpm and tm.meter_at(at) == old.meter_at(at) and abs(float(tm.bar_to_sample(bar)) - float(old.bar_to_sample(bar))) < 1.0:
                return  # the grid did not move where events are queued (a followed clock's small steer)
        if relocated:
            # a locate: the bar numbers changed; start again from the next bar line
            self.output.cancel_from(int(now + self._lead_samples()))
            if self.recorder is not None:
                self.recorder.cancel_from(int(now + self._lead_samples()))
            self.plan = {}
            self.state = "idle"
            self.next_window_bar = None
            self._stop_clock_now()
            self._log("info", "the grid moved (tap/clock/tempo lock): drums re-enter at the next bar")
            return
        meter = tm.meter_at(float(tm.bar_to_sample(bar)))
        current_fits = self.current is not None and bool(self.ranker.allowed(tm.bpm, meter)[self.current])
        if not current_fits and self.state != "stopping":
            # the groove no longer fits the tempo/meter: a new window from the next bar line
            self.plan = {b: p for b, p in self.plan.items() if b < bar}
            self.current = None if not self.locked else self.current
            if self._choose_and_plan(bar, now, first_window=True):
                self._resubmit_from(bar, now)
            else:
                self.output.cancel_from(int(np.ceil(float(tm.bar_to_sample(bar)))))
                self.state = "stopping"
                self.stop_at_bar = bar
            if self.options.clock_out and self.clock_running:
                self.output.set_tempo_map(self._shifted_clock_map())
            return
        self._resubmit_from(bar, now)
        if self.options.clock_out and self.clock_running:
            self.output.set_tempo_map(self._shifted_clock_map())

    def _shifted_clock_map(self):
        """The transport's map with beat 0 at the clock's Start (for ticks after a tempo change)."""
        from sjtui.transport.timebase import TempoMap, TempoSegment

        tm = self.transport.tempo_map
        segs = tuple(
            TempoSegment(s.start_sample, s.start_beat - self.clock_beat0, s.start_bar, s.bpm, s.meter)
            for s in tm.segments
        )
        return TempoMap(tm.sample_rate_hz, segs, tm.max_segments)

    def _stop_clock_now(self) -> None:
        if self.options.clock_out and self.clock_running:
            self.output.clock_stop(None)
            self.clock_running = False

    # -- commands ------------------------------------------------------------------------------------

    def _apply_commands(self, now: float) -> None:
        while True:
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                return
            try:
                self._apply(command, now)
            except SjtuiError as error:
                self._log("warning", str(error))
            except Exception as error:  # noqa: BLE001 - a bad command must not end the jam
                self._log("error", f"{type(command).__name__} failed: {error!r}")

    def _apply(self, command, now: float) -> None:
        from sjtui.transport import transport as tr

        if isinstance(command, snap.Start):
            self.user_stopped = False
            if self.state == "stopped":
                self.state = "idle"
            self._log("info", "start: drums come in when you play")
        elif isinstance(command, snap.Stop):
            self.user_stopped = True
            if self.state in ("playing", "count-in"):
                bar = self._next_bar_line(now)
                self.plan = {b: p for b, p in self.plan.items() if b < bar}
                self.output.cancel_from(int(np.ceil(float(self.transport.tempo_map.bar_to_sample(bar)))))
                if self.recorder is not None:
                    self.recorder.cancel_from(int(np.ceil(float(self.transport.tempo_map.bar_to_sample(bar)))))
                self.state = "stopping"
                self.stop_at_bar = bar
                self.next_window_bar = None
                self._stop_clock(bar)
            self._log("info", "stop")
        elif isinstance(command, snap.ToggleLock):
            self.locked = not self.locked
            self._log("info", "groove locked" if self.locked else "groove unlocked")
        elif isinstance(command, snap.Skip):
            self._skip(now)
        elif isinstance(command, snap.FillNow):
            self._fill_now(now)
        elif isinstance(command, snap.Tap):
            if self.clock_choice != "tap":
                self.clock_choice = "tap"
            sample = now - (time.monotonic() - command.time_s) * self.sample_rate_hz
            self._transport_submit(tr.Tap(sample))
        elif isinstance(command, snap.SetTempo):
            self._transport_submit(tr.SetTempo(command.bpm))
        elif isinstance(command, snap.NudgeTempo):
            self._transport_submit(tr.SetTempo(float(np.clip(self.transport.bpm + command.delta_bpm, 20, 400))))
        elif isinstance(command, snap.SetMeter):
            meter = parse_meter(command.meter)
            if not (self.ranker.is_beat & self.ranker.meter_mask(meter)).any():
                raise EngineError(self.ranker.describe_no_fit(self.transport.bpm, meter))
            self._transport_submit(tr.SetMeter(meter))
        elif isinstance(command, snap.SetClockSource):
            if command.source not in CLOCK_SOURCES:
                raise EngineError(f"clock source {command.source!r} is unknown; choose one of {', '.join(CLOCK_SOURCES)}")
            self.clock_choice = command.source
            self._transport_submit(tr.SetSource(_TRANSPORT_SOURCE[command.source]))
        elif isinstance(command, snap.Rate):
            self._rate(command.rating, now)
        elif isinstance(command, snap.ToggleRecord):
            if self.recorder is None:
                self._start_recording(now)
            else:
                self._stop_recording()
        elif isinstance(command, snap.ChooseMidiClockInput):
            self._choose_clock_input(command.port)
        elif isinstance(command, snap.ChooseMidiOutput):
            self._choose_output(command.port, now)
        elif isinstance(command, snap.ChooseInput):
            self._choose_input(command.device, now)
        else:
            raise EngineError(f"unknown command {command!r}")

    def _skip(self, now: float) -> None:
        if self.state not in ("playing", "count-in") or self.last_ranking is None:
            self._log("info", "skip: nothing is playing")
            return
        decision = self.policy.skip(self.last_ranking, self.current)
        if decision.index is None or decision.index == self.current:
            self._log("info", "skip: no other groove fits the tempo and meter")
            return
        bar = self._next_bar_line(now)
        new = decision.index
        for b, p in self.plan.items():
            if b >= bar and p.kind == "groove":
                p.index = new
                p.groove_bar = (b - p.window_start) % self._groove(new).bars
                p.score = decision.score
                p.switched = b == bar
        self.current = new
        self.current_score = decision.score
        self.bars_since_switch = 0
        self.policy.note_played(new)
        self._resubmit_from(bar, now)
        self._log("info", f"skip: {self.library.names[new]} from bar {bar}")

    def _fill_now(self, now: float) -> None:
        bar = self._next_bar_line(now)
        if bar not in self.plan or self.state not in ("playing",):
            self._log("info", "fill: not playing")
            return
        tm = self.transport.tempo_map
        fill = self.ranker.fill_for(self.current, tm.bpm, tm.meter)
        if fill is None:
            self._log("info", f"fill: the library has no fill in {tm.meter}")
            return
        p = self.plan[bar]
        self.plan[bar] = BarPlan("fill", fill, self._groove(fill).bars - 1, None, False, p.window_start, p.dynamics)
        self._resubmit_from(bar, now)
        self._log("info", f"fill {self.library.names[fill]} at bar {bar}")

    # -- device changes ------------------------------------------------------------------------------

    def _tie_output_clock(self, output) -> None:
        """A buffered backend's frame clock is tied to the input timeline by its frame_offset."""
        if isinstance(output, ProcessOutput):  # the child ties it, against our line
            output.tie(self._clock_params)
            output.set_clock_line(self._clock_params)
            return
        backend = getattr(output, "backend", None)
        if backend is not None and not backend.timed and hasattr(backend, "frame_offset"):
            frames_now = backend.now_sample() + backend.frame_offset
            backend.frame_offset = int(round(frames_now - self.now_sample()))

    def _reopen_output(self, now: float, options: EngineOptions) -> None:
        """Open the output ``options`` name, then close the old one (all notes off) and re-queue the plan."""
        if self.simulated:
            raise EngineError("fast mode has no MIDI output to change")
        new, name, rate = open_output(options, self.sample_rate_hz, self.now_sample)
        if rate != self.sample_rate_hz:
            new.close()
            raise EngineError(f"{name} runs at {rate} Hz but the jam runs at {self.sample_rate_hz} Hz; restart with it")
        old = self.output
        try:
            old.close()
        except Exception as error:  # noqa: BLE001 - the new output takes over anyway
            self._log("warning", f"closing the previous output: {error}")
        self._tie_output_clock(new)
        new.start()
        self.output, self.output_name, self.options = new, name, options
        self._last_off = {}
        if self.state in ("playing", "count-in") and self.plan:
            bar = self._next_bar_line(now)
            self._submit_bars(bar, max(self.plan) + 1)
            if options.clock_out and self.clock_running:
                tm = self.transport.tempo_map
                tick = int(round((float(tm.bar_to_beat(bar)) - self.clock_beat0) * 24))
                self.output.clock_start(self._shifted_clock_map(), tick)

    def _choose_output(self, port: str | None, now: float) -> None:
        from dataclasses import replace as dc_replace

        if port is None:
            options = dc_replace(self.options, synth=True, midi_out=None)
        elif port == "sjtui":
            options = dc_replace(self.options, synth=False, midi_out=None)
        else:
            options = dc_replace(self.options, synth=False, midi_out=port)
        self._reopen_output(now, options)
        self._log("info", f"drums now go to {self.output_name}")

    def _choose_input(self, device: str, now: float) -> None:
        """Another input into the same ring (the sample index goes on); the output is re-tied to it."""
        if self.simulated:
            raise EngineError("fast mode plays its file; restart to change the input")
        old = self.source
        old.stop()
        switch_index = self.ring.write_index
        try:
            if _is_file(device):
                from sjtui.audio.file_source import FileSource

                source = FileSource(self.ring, device, sample_rate_hz=self.sample_rate_hz, block_size=self.options.block_size, loop=True)
                name = f"file {Path(device).name} (looping)"
            else:
                device = int(device) if device.isdigit() else device
                source = _device_input(self.ring, device, 1, self.sample_rate_hz, self.options)
                name = f"{source.device.name} input 1"
            source.start()
        except BaseException:
            old.start()
            raise
        self.source, self.input_name = source, name
        self.sample_clock.reset()
        self.sample_clock._last_anchor_sample = switch_index - 1  # fit only the new device's anchors
        count = self.ring.anchor_count
        deadline = time.monotonic() + 1.0
        while self.ring.anchor_count < count + 4 and time.monotonic() < deadline:
            time.sleep(0.005)
        self._clock_refit_at = 0.0
        self._refit_clock()
        self._reopen_output(self.now_sample(), self.options)
        self._log("info", f"listening to {name}")

    def _choose_clock_input(self, port: str | None) -> None:
        """Open a MIDI clock input while jamming. With the JACK API this can deadlock against our own
        JACK/synth output (see create_engine): then it is refused with advice, never risked."""
        backend = getattr(self.output, "backend", None)
        if port is not None and backend is not None and backend.name in ("jack", "synth"):
            raise EngineError(
                "a MIDI clock input cannot be opened while the drums play through JACK or the built-in synth "
                "(rtmidi can hang there); restart with --clock midi --clock-in PORT"
            )
        from sjtui.transport.midi_clock import RtMidiClockInput

        if self.midi_clock_input is not None:
            self.midi_clock_input.close()
            self.midi_clock_input = None
        if port is None:
            return
        self.midi_clock_input = RtMidiClockInput(port)
        self._log("info", f"MIDI clock in from {self.midi_clock_input.port_name}")

    # -- rating and recording ------------------------------------------------------------------------

    def _last_bars_audio(self, now: float, n_bars: int = BARS_PER_WINDOW):
        tm = self.transport.tempo_map
        end = min(int(self.ring.write_index), int(now))
        start = int(float(tm.bar_to_sample(float(tm.sample_to_bar(end)) - n_bars)))
        start = max(start, self.ring.oldest_index, 0)
        if end - start < self.sample_rate_hz // 2:
            raise EngineError("not enough guitar audio yet to rate (play a few bars first)")
        return self.ring.read(start, end)

    def _rate(self, rating: int, now: float) -> None:
        if self.current is None:
            raise EngineError("nothing to rate: no groove is playing")
        if not isinstance(rating, int) or not 0 <= rating <= 5:
            raise EngineError(f"rating {rating!r} must be 0..5")
        try:
            from sjtui.labels.store import LabelStore
        except ImportError as error:
            raise EngineError(f"the label store is not available: {error}") from None
        audio = self._last_bars_audio(now)
        tm = self.transport.tempo_map
        fp_end = int(np.floor(float(tm.sample_to_bar(now))))
        fp = self._fingerprint(fp_end)
        groove = self._groove(self.current)
        groove_id = int(self.library.ids[self.current])
        bpm, meter = float(tm.bpm), str(tm.meter)
        model_version = self.model_version or None
        store_path = self.groove_store_path
        sr = self.sample_rate_hz
        self.last_rating = rating

        def save():
            try:
                from sjtui.grooves.store import GrooveStore

                with GrooveStore(store_path, builtin=False) as gs:
                    store = LabelStore.open(groove_store=gs)
                    try:
                        store.save_jam_rating(audio, sr, groove_id, bpm, meter, fp, model_version, rating)
                    finally:
                        store.close()
                self._log("info", f"rated {groove.name} {rating}/5 (saved with the last 4 bars)")
            except Exception as error:  # noqa: BLE001 - reported, the jam goes on
                self._log("error", f"could not save the rating: {error}")

        start_thread(save, "sjtui-rate")

    def _start_recording(self, now: float) -> None:
        from sjtui.grooves.store import default_data_dir

        directory = default_data_dir() / "recordings"
        self.recorder = SessionRecorder(directory, self.sample_rate_hz, int(self.analysis.next_index))
        self.leveler.recorder = self.recorder
        self._log("info", f"recording to {self.recorder.audio_path}")

    def _stop_recording(self) -> None:
        recorder, self.recorder = self.recorder, None
        self.leveler.recorder = None
        if recorder is not None:
            try:
                recorder.close()
                self._log("info", f"recording saved: {recorder.audio_path.name}, {recorder.midi_path.name}")
            except Exception as error:  # noqa: BLE001
                self._log("error", f"recording could not be saved: {error}")

    # -- reports and snapshots -------------------------------------------------------------------------

    def _log(self, level: str, text: str) -> None:
        self.log.append(snap.LogEntry(time.monotonic() - self.t_start, level, text))

    def _report_bars(self, now: float) -> None:
        tm = self.transport.tempo_map
        cached_map, next_line = self._next_bar_cache
        if cached_map is tm and self._last_bar_reported is not None and now < next_line:
            return  # no bar line crossed since the last tick (the common case: no conversions)
        bar = int(np.floor(float(tm.sample_to_bar(now))))
        self._next_bar_cache = (tm, float(tm.bar_to_sample(bar + 1)))
        if self._last_bar_reported is None:
            self._last_bar_reported = bar
            return
        while self._last_bar_reported < bar:
            self._last_bar_reported += 1
            b = self._last_bar_reported
            plan = self.plan.get(b)
            if plan is not None and plan.index is not None and plan.kind == "groove":
                self._bars_played[plan.index] += 1
            sample = float(tm.bar_to_sample(b))
            groove = None
            if plan is not None and plan.index is not None:
                groove = {
                    "id": int(self.library.ids[plan.index]),
                    "name": self.library.names[plan.index],
                    "kind": plan.kind,
                    "score": None if plan.score is None else round(float(plan.score), 4),
                }
            elif plan is not None:
                groove = {"id": None, "name": plan.kind, "kind": plan.kind, "score": None}
            self.bar_reports.put(
                {
                    "bar": b,
                    "time_s": round((sample - self.start_sample) / self.sample_rate_hz, 4),
                    "sample": int(round(sample)),
                    "bpm": round(float(tm.bpm_at(sample)), 3),
                    "meter": str(tm.meter_at(sample)),
                    "groove": groove,
                    "switched": bool(plan.switched) if plan is not None else False,
                    "window_start": None if plan is None else int(plan.window_start),
                    "groove_bar": None if plan is None else int(plan.groove_bar),
                    "dynamics": None if plan is None else float(plan.dynamics),
                    "locked": self.locked,
                    "level_db": round(_db(self.power_long), 1),
                    "state": self.state,
                }
            )
            for old in [k for k in self.plan if k < b - 8]:
                del self.plan[old]

    def _groove_info(self, index: int | None, score: float | None, with_pattern: bool = False):
        if index is None:
            return None
        lib = self.library
        pattern = None
        if with_pattern:
            pattern = self._patterns.get(index)
            if pattern is None:
                groove = self._groove(index)
                spb = groove.meter.steps_per_bar
                reps = -(-BARS_PER_WINDOW // groove.bars)
                vel = np.tile(groove.velocities, (reps, 1))[: BARS_PER_WINDOW * spb].T.copy()
                vel.flags.writeable = False
                pattern = vel
                self._patterns[index] = pattern
        return snap.GrooveInfo(
            id=int(lib.ids[index]), name=lib.names[index], style=str(lib.styles[index]), bpm=float(lib.bpm[index]),
            meter=str(lib.meters[index]), score=score, kind=str(lib.kinds[index]),
            bars_played=int(self._bars_played.get(index, 0)), pattern=pattern,
        )  # fmt: skip

    def _publish(self, force: bool = False) -> None:
        t = time.monotonic()
        if not force and t - self._last_publish < self.config.snapshot_interval_ms * 1e-3:
            return
        self._last_publish = t
        now = self.now_sample()
        tm = self.transport.tempo_map
        pos = tm.position(now)
        spb = pos.meter.steps_per_bar
        window_start = self.window_start if self.window_start is not None else 0
        step = ((pos.bar - window_start) % BARS_PER_WINDOW) * spb + int(pos.step_in_bar)
        if self.next_window_bar is not None:
            decision = self._decision_sample(self.next_window_bar)
            s_to = max(0.0, (decision - now) / self.sample_rate_hz)
            b_to = max(0.0, float(tm.sample_to_bar(decision)) - float(tm.sample_to_bar(now)))
        else:
            s_to, b_to = 0.0, 0.0
        tsrc = self.transport.source
        source = {"internal": "tap" if self.clock_choice == "tap" else "internal", "midi_clock": "midi", "auto": "detected"}[tsrc]
        tstate = self.transport.state
        clock_state = "ok"
        if tsrc == "midi_clock":
            clock_state = {"running": "ok", "stopped": "stopped", "lost": "lost"}.get(tstate, "waiting")
        elif tsrc == "auto" and not tstate.startswith("locked"):
            clock_state = "waiting"
        transport = snap.TransportInfo(
            bpm=float(tm.bpm_at(now)), source=source, confidence=self.transport.confidence if tsrc == "auto" else None,
            meter=str(pos.meter), bar=int(pos.bar), beat=float(pos.beat_in_bar), step=int(step), steps_per_bar=spb,
            clock_state=clock_state, bars_to_decision=b_to, seconds_to_decision=s_to,
        )  # fmt: skip
        nxt = None
        if self.next_window_bar is not None:
            p = self.plan.get(self.next_window_bar)
            if p is not None and p.index is not None and p.index != self.current:
                nxt = self._groove_info(p.index, p.score)
        playing_plan = self.plan.get(int(pos.bar))
        current_index = playing_plan.index if playing_plan is not None and playing_plan.kind == "groove" else self.current
        if self.state not in ("playing", "count-in", "stopping"):
            current_index = None
        candidates = ()
        if self.last_ranking is not None:
            r = self.last_ranking
            candidates = tuple(
                self._groove_info(int(i), None if r.scores is None else float(r.scores[k]))
                for k, i in enumerate(r.indices.tolist())
            )
        stats = self.output.stats()
        sel = np.array(self.selection_ms) if self.selection_ms else None
        timing = snap.TimingStats(
            note_error_ms_p50=stats.get("note_error_ms_p50"),
            note_error_ms_p99=stats.get("note_error_ms_p99"),
            clock_jitter_ms=stats.get("clock_jitter_ms"),
            selection_ms_p99=None if sel is None else float(np.percentile(sel, 99)),
            input_overflows=int(getattr(self.ring, "overflow_count", 0)),
            input_frames_lost=int(getattr(self.ring, "frames_lost", 0)),
            xruns=int(self.analysis.overrun_count) + int(getattr(getattr(self.output, "backend", None), "underflows", 0)),
        )
        warnings = list(self.warnings_standing.values())
        warnings += list(self.transport.warnings[-3:])
        out_warnings = list(getattr(self.output, "warnings", ()))
        warnings += out_warnings[-3:]
        if getattr(self.output, "error", None) is not None:
            warnings.append(f"MIDI output stopped: {self.output.error}")
        if timing.input_frames_lost:
            lost_ms = 1e3 * timing.input_frames_lost / self.sample_rate_hz
            warnings.append(f"input lost {lost_ms:.0f} ms of audio in {self.ring.gap_count} gap(s)")
        if timing.input_overflows:  # on JACK PortAudio flags every xrun of the server, anyone's
            warnings.append(f"audio driver reported {timing.input_overflows} overflow(s)/xrun(s)")
        if not self.simulated:
            count = self.ring.anchor_count
            if count != self._anchors_seen:
                self._anchors_seen, self._anchors_seen_at = count, t
            elif t - self._anchors_seen_at > 1.0 and not getattr(self.source, "finished", threading.Event()).is_set():
                warnings.append(f"input device gone? {self.input_name} has delivered no audio for {t - self._anchors_seen_at:.0f} s")
        grid = None
        if self.onset_grid is not None:
            grid = self.onset_grid.copy()
            grid.flags.writeable = False
        prev = None
        if self.previous_onset_grid is not None:
            prev = self.previous_onset_grid.copy()
            prev.flags.writeable = False
        self._snapshot = snap.EngineSnapshot(
            state=self.state,
            time_s=t - self.t_start,
            levels=self.levels,
            transport=transport,
            onset_grid=grid,
            previous_onset_grid=prev,
            current=self._groove_info(current_index, self.current_score, with_pattern=True),
            next=nxt,
            candidates=candidates,
            locked=self.locked,
            silent=self._silent(now) if self.state != "error" else False,
            input_name=self.input_name,
            midi_destination=self.output_name,
            clock_out=self.options.clock_out,
            recording=self.recorder is not None,
            recording_path=None if self.recorder is None else str(self.recorder.audio_path),
            model_version=self.model_version,
            library_size=len(self.library),
            timing=timing,
            warnings=tuple(dict.fromkeys(warnings)),
            log=tuple(self.log),
            last_rating=self.last_rating,
        )


# --- session recording -----------------------------------------------------------------------------


class SessionRecorder:
    """The guitar as FLAC and the drums as a MIDI file, on one timeline starting at ``start_sample``.

    Audio comes from the engine thread batch by batch; drum events as they are
    submitted (cancelled ones are removed again). MIDI times are seconds from
    the first recorded sample, written at 120 BPM / 960 ticks per beat so any
    DAW places them at the right time.
    """

    def __init__(self, directory: Path, sample_rate_hz: int, start_sample: int):
        import soundfile as sf

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.audio_path = directory / f"sjtui-{stamp}-guitar.flac"
        self.midi_path = directory / f"sjtui-{stamp}-drums.mid"
        self.sample_rate_hz = int(sample_rate_hz)
        self.start_sample = int(start_sample)
        self._file = sf.SoundFile(str(self.audio_path), "w", self.sample_rate_hz, 1, "PCM_24", format="FLAC")
        self.events: list[tuple[int, int, bytes]] = []

    def write_audio(self, block: np.ndarray) -> None:
        self._file.write(np.clip(block, -1.0, 1.0))

    def add_events(self, events: np.ndarray) -> None:
        for e in events.tolist():
            sample, status, d1, d2, size = e
            if sample >= self.start_sample:
                self.events.append((int(sample), status, bytes((status, d1, d2)[:size])))

    def cancel_from(self, sample: int) -> None:
        kept = [e for e in self.events if e[0] < sample]
        on = set()
        for _, _, d in sorted(kept):
            if d[0] & 0xF0 == 0x90 and d[2] > 0:
                on.add((d[0] & 0x0F, d[1]))
            elif d[0] & 0xF0 in (0x80, 0x90):
                on.discard((d[0] & 0x0F, d[1]))
        for e in sorted(e for e in self.events if e[0] >= sample):
            d = e[2]
            key = (d[0] & 0x0F, d[1])
            if (d[0] & 0xF0 == 0x80 or (d[0] & 0xF0 == 0x90 and d[2] == 0)) and key in on:
                kept.append(e)
                on.discard(key)
        self.events = kept

    def close(self) -> None:
        import mido

        self._file.close()
        mid = mido.MidiFile(type=0, ticks_per_beat=960)
        track = mido.MidiTrack()
        mid.tracks.append(track)
        track.append(mido.MetaMessage("set_tempo", tempo=500000, time=0))
        ticks_per_sample = 960 * 2.0 / self.sample_rate_hz  # 120 BPM: 1920 ticks per second
        last = 0
        for sample, _, data in sorted(self.events, key=lambda e: (e[0], 0 if e[2][0] & 0xF0 == 0x80 else 1)):
            tick = int(round((sample - self.start_sample) * ticks_per_sample))
            track.append(mido.Message.from_bytes(list(data), time=max(0, tick - last)))
            last = max(last, tick)
        track.append(mido.MetaMessage("end_of_track", time=0))
        mid.save(str(self.midi_path))


# --- building an engine from options -----------------------------------------------------------------


def _model_manifests(spec: str | None) -> tuple[Path, ...]:
    """The manifests whose change may change what the engine's model spec loads (none for ``none``)."""
    if spec is not None and spec.lower() == "none":
        return ()
    try:
        from sjtui.model.manifest import MANIFEST_FILE
        from sjtui.model.runtime import SHIPPED_MODEL_DIR, user_model_dir
    except Exception:  # noqa: BLE001 - no model runtime: nothing to watch
        return ()
    if spec is not None:
        return (Path(spec) / MANIFEST_FILE,)
    return (user_model_dir() / MANIFEST_FILE, Path(SHIPPED_MODEL_DIR) / MANIFEST_FILE)


def _stat_signature(manifests) -> tuple:
    """(name, mtime_ns, size, inode) of every file in each manifest's folder (a handful of stats; empty
    where the folder is missing): changes when a model is (re)written, whatever order its files come in."""
    out = []
    for manifest in manifests:
        folder = []
        try:
            with os.scandir(manifest.parent) as entries:
                for entry in entries:
                    if entry.is_file():
                        st = entry.stat()
                        folder.append((entry.name, st.st_mtime_ns, st.st_size, st.st_ino))
        except OSError:
            pass
        out.append(tuple(sorted(folder)))
    return tuple(out)


def _model_identity(model) -> tuple | None:
    if model is None:
        return None
    return (model.name, model.version, model.groove_encoder_id, str(getattr(model, "directory", "")))


def _is_file(spec: str | None) -> bool:
    if spec is None:
        return False
    path = Path(spec)
    return path.suffix.lower() in (".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff") or path.is_file()


def load_groove_library(path: str | None, model=None, notes: list[str] | None = None):
    """(library, groove_embeddings or None, store path): the library, embedded by ``model`` where needed."""
    from sjtui.grooves.store import GrooveStore

    if path is not None:
        p = Path(path)
        if not p.exists():
            raise EngineError(
                f"groove library {path} does not exist; give the library file (grooves.sqlite) or its folder, "
                "or leave --library out for the default library"
            )
    store = GrooveStore(path)
    try:
        key = None if model is None else f"{model.name}@{model.groove_encoder_id[:16]}"
        try:
            library = store.load_library(key)
        except Exception as error:  # sqlite3.DatabaseError on a damaged file
            raise EngineError(
                f"the groove library {store.path} cannot be read ({error}); move it away and re-import "
                "(`sjtui grooves import`), or give another --library"
            ) from None
        if store.builtin_error and notes is not None:
            notes.append(f"built-in grooves: {store.builtin_error}")
        if len(library) == 0:
            raise EngineError(f"the groove library {store.path} is empty; run `sjtui grooves import` or drop --library")
        embeddings = None if model is None else _embed_library(store, key, library, model, notes)
        return library, embeddings, store.path
    finally:
        store.close()


def _first_bars(groove, bars: int = 4):
    return groove.bar_slice(0, min(bars, groove.bars))


def _embed_library(store, key: str, library, model, notes: list[str] | None, cached=None):
    """``(n_grooves, embedding_dim)`` float32 embeddings of ``library`` under ``model``: the store's cached
    vectors (``cached``, else the library's own), the missing ones embedded now and saved."""
    embeddings = library.embeddings if cached is None else cached
    missing = ~np.isfinite(embeddings).all(axis=1) if embeddings.size else np.ones(len(library), bool)
    if embeddings.size == 0:
        embeddings = np.full((len(library), model.embedding_dim), np.nan, np.float32)
    if missing.any():
        from sjtui.model.inputs import model_steps_per_bar

        embeddable = {}
        for meter in set(np.asarray(library.meters).astype(str).tolist()):
            try:
                model_steps_per_bar(parse_meter(meter))
                embeddable[meter] = True
            except Exception:  # a meter longer than the model's bar: never chosen with this model
                embeddable[meter] = False
                if notes is not None:
                    notes.append(f"grooves in {meter} are not used: the model takes bars of at most 5 beats")
        missing &= np.array([embeddable[m] for m in np.asarray(library.meters).astype(str)], dtype=bool)
    if missing.any():
        from sjtui.model.runtime import GROOVE_BATCH

        rows = np.flatnonzero(missing)
        vectors = np.empty((rows.size, model.embedding_dim), np.float32)
        # a batch of grooves at a time: all 11,076 of the GMD as dense arrays at once left ~190 MB
        # of freed small blocks in the process's heap for the rest of the jam (measured RSS)
        for start in range(0, rows.size, GROOVE_BATCH):
            batch = rows[start : start + GROOVE_BATCH]
            grooves = [_first_bars(library.groove(int(i))) for i in batch]
            vectors[start : start + batch.size] = model.embed_grooves(grooves, library.descriptors[batch])
        embeddings[rows] = vectors
        try:
            store.set_embeddings(key, library.ids[rows], vectors)
        except Exception:  # a read-only library still works, it just embeds again next time
            pass
    return embeddings


def embed_library(store_path, library, model, notes: list[str] | None = None) -> np.ndarray:
    """The embeddings of an already loaded ``library`` under another ``model`` (hot reload; off the
    engine thread): cached vectors from the store at ``store_path``, the missing ones embedded and saved."""
    from sjtui.grooves.store import GrooveStore

    store = GrooveStore(store_path)
    try:
        key = f"{model.name}@{model.groove_encoder_id[:16]}"
        try:
            cached = store._embedding_matrix(key, library)
        except Exception:  # noqa: BLE001 - a damaged cache: embed everything
            cached = np.zeros((0, 0), np.float32)
        return _embed_library(store, key, library, model, notes, cached)
    finally:
        store.close()


def _load_model(spec: str | None, notes: list[str]):
    """(EncoderPair or None, version text)."""
    if spec is not None and spec.lower() == "none":
        return None, ""
    from sjtui.model.errors import ModelError
    from sjtui.model.runtime import load_model

    if spec is not None and not Path(spec).exists():
        raise EngineError(f"model {spec} does not exist; give a model folder (with manifest.json) or --model none")
    if spec is not None:  # the model asked for, or nothing: no silent fallback to another one
        from sjtui.model.runtime import EncoderPair

        try:
            pair = EncoderPair(spec)
        except ModelError as error:
            raise EngineError(f"model {spec} cannot be used: {error}") from None
        notes.append(f"model: {pair.describe()}")
        return pair, f"{pair.name} {pair.version}"
    try:
        loaded = load_model(None)
    except ModelError as error:
        reasons = " ".join(line.strip("- ") for line in str(error).splitlines()[1:2])
        notes.append(f"{NO_MODEL_MESSAGE} ({reasons or error})")
        return None, ""
    if loaded.fallback_reason:
        notes.append(loaded.fallback_reason)
    notes.append(f"model: {loaded.model.describe()}")
    return loaded.model, f"{loaded.model.name} {loaded.model.version}"


def open_output(options: EngineOptions, sample_rate_hz: int, clock):
    """(scheduler-like output, destination text, sample rate)."""
    if options.fast:
        return SimulatedOutput(sample_rate_hz), "simulated (fast mode)", sample_rate_hz
    from sjtui.midi.scheduler import MidiScheduler

    channel = options.config.channel - 1
    if not options.synth and options.config.midi_process:
        return _open_process_output(options, sample_rate_hz, clock)
    if options.synth:
        from sjtui.synth.backend import SynthBackend

        backend = SynthBackend(engine=options.synth_engine, sample_rate_hz=sample_rate_hz)
        name = f"built-in synth ({backend.engine.name})"
    else:
        from sjtui.midi.backends import open_backend

        backend = open_backend(options.midi_backend, port=options.midi_out, api=options.midi_api)
        if backend.name == "jack":
            name = options.midi_out or f"{backend.full_port_name} (virtual)"
        else:
            name = options.midi_out or "sjtui (virtual)"
    rate = backend.sample_rate_hz or sample_rate_hz
    scheduler = MidiScheduler(
        backend,
        sample_rate_hz=rate,
        # buffered backends (JACK, synth) get events this far ahead: more than the scheduler's
        # default 40 ms absorbs a JACK/PortAudio clock that runs behind on a loaded machine; it
        # stays below decision_lead_ms, so plan changes at the next bar line are never too late
        lookahead_ms=None if backend.timed else min(80.0, 0.6 * options.config.decision_lead_ms),
        clock=None if not backend.timed else clock,
        channels=(channel,),
        state=options.state_file,
    )
    return scheduler, name, int(rate)


def _open_process_output(options: EngineOptions, sample_rate_hz: int, clock):
    """The rtmidi or JACK output in a child process (:class:`ProcessOutput`)."""
    from sjtui.midi.ports import choose_api

    kind = options.midi_backend
    if kind == "auto":
        kind = "jack" if choose_api(options.midi_api) == "UNIX_JACK" else "rtmidi"
    if kind == "jack":
        spec = {"connect_to": options.midi_out}
    elif kind == "rtmidi":
        spec = {"port": options.midi_out, "api": options.midi_api}
    else:
        from sjtui.midi.events import MidiError

        raise MidiError(f"MIDI backend {kind!r} is unknown; use auto, jack, rtmidi (or --synth for the built-in synth)")
    scheduler_options = {
        "sample_rate_hz": None if kind == "jack" else float(sample_rate_hz),
        "lookahead_ms": None if kind == "rtmidi" else min(80.0, 0.6 * options.config.decision_lead_ms),
        "channels": (options.config.channel - 1,),
        "state": options.state_file,
    }
    # rtmidi: the child's clock is the engine's audio line (updated after every refit); JACK: its frames
    line = (time.monotonic(), float(clock()), float(sample_rate_hz)) if kind == "rtmidi" else None
    output = ProcessOutput(kind, spec, scheduler_options, line)
    if kind == "jack":
        name = options.midi_out or f"{output.description['port']} (virtual)"
    else:
        name = options.midi_out or "sjtui (virtual)"
    return output, name, int(output.sample_rate_hz)


def _device_input(ring, device, channel: int, rate: int, options: EngineOptions):
    """The (not yet started) input for ``device`` (as the user named it) writing into ``ring``.

    A shared ring (the default, ``EngineOptions.input_process``) keeps Python out of the audio
    callback's way: for a JACK device, JackDeviceInput (a C JACK client: no Python in JACK's thread
    at all) when it was built and ``options.jack_input``, else ProcessDeviceInput (PortAudio's
    callback in a child process with its own GIL). A plain ring: DeviceInput, the PortAudio callback
    in this process. The device is looked up once (each lookup scans PortAudio's devices)."""
    from sjtui.audio.device import DeviceInput, find_input_device
    from sjtui.audio.ring import SharedRingBuffer

    input_class = DeviceInput
    if isinstance(ring, SharedRingBuffer):
        from sjtui.audio import jack_input
        from sjtui.audio.device_process import ProcessDeviceInput

        device = find_input_device(device)
        use_c_client = options.jack_input and jack_input.available() and jack_input.is_jack_device(device)
        input_class = jack_input.JackDeviceInput if use_c_client else ProcessDeviceInput
    return input_class(device, channel, rate, options.block_size, ring)


def create_engine(options: EngineOptions) -> Engine:
    """Open the input, library, model and output named by ``options``; errors are :class:`SjtuiError`."""
    from sjtui.audio.ring import RingBuffer, SharedRingBuffer, capacity_for
    from sjtui.transport.timebase import check_bpm

    options.config.validate()
    check_bpm(options.bpm)
    parse_meter(options.meter)
    if options.clock not in CLOCK_SOURCES:
        raise EngineError(f"clock {options.clock!r} is unknown; choose one of {', '.join(CLOCK_SOURCES)}")
    notes: list[str] = []
    model, model_version = _load_model(options.model, notes)
    library, embeddings, store_path = load_groove_library(options.library, model, notes)
    # cheap checks before any device is opened
    meter = parse_meter(options.meter)
    ranker = GrooveRanker(library, model, embeddings, options.config)
    if not (ranker.is_beat & ranker.meter_mask(meter)).any():
        raise EngineError(ranker.describe_no_fit(options.bpm, meter))
    if options.samples is None and options.input is not None and _is_file(options.input) and not Path(options.input).is_file():
        raise EngineError(f"input file {options.input} does not exist; give an audio file (WAV, FLAC, OGG, MP3) or a device")
    holder: dict = {}

    def clock():
        engine = holder.get("engine")
        return engine.now_sample() if engine is not None else 0.0

    clock_input = None
    if options.clock == "midi" and not options.fast:
        # opened before the output: rtmidi's JACK open_port holds the GIL while JACK reorders its
        # graph, which waits for every client's process callback, and the JACK/synth backends'
        # callbacks are Python: with one of them already running in this process it can deadlock
        from sjtui.transport.midi_clock import RtMidiClockInput

        clock_input = RtMidiClockInput(options.clock_in)
        notes.append(f"MIDI clock in from {clock_input.port_name}")
    try:
        output, output_name, rate = open_output(options, options.sample_rate_hz, clock)
    except BaseException:
        if clock_input is not None:
            clock_input.close()
        raise
    try:
        options.sample_rate_hz = rate
        if options.input_process and not options.fast:
            # shared memory even for a file or the demo: a device chosen mid-jam then gets the child too
            ring = SharedRingBuffer.create(capacity_for(options.config.ring_seconds, rate))
        else:
            ring = RingBuffer(capacity_for(options.config.ring_seconds, rate))
        is_file = options.samples is None and _is_file(options.input)
        if options.fast and options.samples is None and not is_file:
            raise EngineError("--fast needs a file as --input (a live input cannot run faster than real time)")
        if options.samples is not None:
            from sjtui.audio.file_source import ArraySource

            source = ArraySource(ring, options.samples, rate, options.block_size, realtime=not options.fast, loop=options.loop)
            input_name = options.input_name or "synthesized guitar"
        elif is_file:
            from sjtui.audio.file_source import FileSource

            source = FileSource(
                ring, options.input, sample_rate_hz=rate, block_size=options.block_size, realtime=not options.fast,
                loop=options.loop, channel=None,
            )  # fmt: skip
            notes.extend(source.notes)
            input_name = f"file {Path(options.input).name}" + (" (looping)" if options.loop else "")
        else:
            device = options.input
            if device is not None and device.isdigit():
                device = int(device)
            source = _device_input(ring, device, options.input_channel, rate, options)
            input_name = f"{source.device.name} input {options.input_channel}"
        engine = Engine(
            ring=ring, source=source, library=library, output=output, options=options, model=model,
            groove_embeddings=embeddings, input_name=input_name, output_name=output_name,
            model_version=model_version, notes=notes, groove_store_path=store_path,
        )  # fmt: skip
    except BaseException:
        output.close()
        if clock_input is not None:
            clock_input.close()
        raise
    holder["engine"] = engine
    engine.midi_clock_input = clock_input
    if options.fast:
        source.reader_index = lambda: engine.analysis.next_index
    return engine
