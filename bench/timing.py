"""MIDI timing benchmark: note error, clock jitter and drift of sjtui's scheduler and backends.

Three parts (each a function returning plain data; ``main`` puts them in one
report):

``simulated``
    >= 10 minutes of music faster than real time: the scheduler runs on an
    injected clock whose sleeps oversleep like an OS wake-up (exponential,
    mean 60 us, plus a 1 % tail of up to 2 ms). Figures: note error at send
    time, clock jitter (std of tick intervals), drift (tick error in the last
    10 s minus the first 10 s). Peer in the same run: the same ticks sent by a
    loop of chained relative sleeps (``sleep(interval)`` after each tick), the
    pattern CONVENTIONS §7 forbids.

``realtime``
    60 s on a private JACK server (dummy backend, 48 kHz / 256) with a UI-like
    load in the same process: a thread doing numpy work at 30 Hz and a busy
    pure-Python thread. Both backends play the same grooves at the same time
    into a capture client in a child process that stamps arrivals with frame
    times. rtmidi: note error at send time (the target) and at arrival;
    JACK: note error at arrival in samples. Then a shorter run of the rtmidi
    backend without the tuning (5 ms GIL switch interval, no SCHED_FIFO) for
    comparison.

``selection_ms`` and ``jam`` (from bench/engine.py)
    selection over the imported Groove MIDI Dataset (fingerprint -> embedding
    -> best groove -> policy, 500 decisions in a row, the shipped model; the
    target is judged on these), the same decisions one at a time after 100 ms
    idle (``selection_ms_after_100ms_idle``: a jam decides once per 4 bars, and
    by then this VM's caches have dropped the model and the code), and the whole
    jam (audio input as sjtui's C JACK client, MIDI in its child process,
    UI-like load) on JACK for ``--jam-seconds``: JACK xruns (and which clients
    jackd named late), input the jam never received (counted exactly by the
    C client), the overflow count as PortAudio keeps it. The "no input
    overflow" target is judged on a run of 600 s or more: no input frame lost.
    Beside it, stricter: no xrun naming one of the jam's clients (input or
    MIDI out), also apart from stalls of the machine. (PortAudio's JACK host
    API raises its input-overflow flag for every xrun of the server, whichever
    client was late, so the flag alone cannot tell.)

Run: ``.venv/bin/python bench/timing.py [--json] [--minutes 10] [--seconds 60] [--jam-seconds 600]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sjtui.midi.backends import MidiBackend, RtMidiBackend, jack_midi_backend
from sjtui.midi.events import CLOCK, NOTE_ON, groove_events, sort_events
from sjtui.midi.scheduler import MidiScheduler
from sjtui.model.runtime import SHIPPED_MODEL_DIR
from sjtui.transport.timebase import TempoMap

RATE = 48000
TARGETS = {
    "rtmidi_note_error_ms_p99": 1.0,
    "jack_note_error_samples_max": 0,
    "clock_jitter_ms": 0.5,
    "drift_ms": 1.0,
    "selection_ms_p99": 2.0,
    "input_overflows_per_10_min": 0,
}


def library_grooves():
    from sjtui.grooves.textgrid import BUILTIN_GROOVES_DIR, parse_text

    grooves = []
    for name in ("rock.groove", "funk.groove", "pop.groove", "latin.groove"):
        grooves += [g for g in parse_text((BUILTIN_GROOVES_DIR / name).read_text()) if str(g.meter) == "4/4"]
    return grooves


def song_events(tempo_map: TempoMap, n_bars: int) -> np.ndarray:
    """Library grooves one after another (4-bar windows, looped) for ``n_bars`` bars."""
    grooves = library_grooves()
    parts, bar, k = [], 0, 0
    while bar < n_bars:
        groove = grooves[k % len(grooves)]
        n = min(groove.bars, n_bars - bar)
        parts.append(groove_events(groove, tempo_map, bar, n_bars=n, dynamics=0.9))
        bar += n
        k += 1
    return sort_events(np.concatenate(parts))


def stats_ms(values_ms: np.ndarray) -> dict:
    values_ms = np.asarray(values_ms, dtype=np.float64)
    return {
        "p50": round(float(np.percentile(values_ms, 50)), 4),
        "p99": round(float(np.percentile(values_ms, 99)), 4),
        "max": round(float(values_ms.max()), 4),
        "n": int(values_ms.size),
    }


# --- simulated -------------------------------------------------------------------------


class OsLikeClock:
    """Injected clock: sleeps oversleep by exp(60 us), with a 1 % tail up to 2 ms."""

    def __init__(self, seed: int = 0):
        self.now = 0.0
        self.rng = np.random.default_rng(seed)

    def __call__(self) -> float:
        return self.now

    def oversleep(self) -> float:
        extra = self.rng.exponential(60e-6)
        if self.rng.random() < 0.01:
            extra += self.rng.uniform(0, 2e-3)
        return extra

    def sleep(self, seconds: float) -> None:
        self.now += (max(seconds, 0.0) + self.oversleep()) * RATE


class RecordingBackend(MidiBackend):
    name = "recording"
    timed = True
    sample_rate_hz = RATE

    def __init__(self, clock):
        self.clock = clock
        self.times: list[float] = []
        self.ticks: list[float] = []

    def send(self, data) -> None:
        if data[0] == CLOCK:
            self.ticks.append(self.clock())

    def send_now(self, messages, timeout_s=0.5, silence=False) -> bool:
        return True


def run_simulated(minutes: float = 10.0, bpm: float = 120.0) -> dict:
    clock = OsLikeClock()
    backend = RecordingBackend(clock)
    scheduler = MidiScheduler(
        backend,
        sample_rate_hz=RATE,
        clock=clock,
        sleep=clock.sleep,
        state=False,
        cleanup_at_start=False,
        realtime_priority=None,
        switch_interval_s=None,
    )
    scheduler.note_errors_ms.data = np.zeros(1 << 20)
    tempo_map = TempoMap.constant(RATE, bpm, anchor_sample=RATE // 10)
    n_bars = int(np.ceil(minutes * bpm / 4))
    events = song_events(tempo_map, n_bars)
    end = float(tempo_map.bar_to_sample(n_bars))
    scheduler.submit(events)
    scheduler.clock_start(tempo_map)
    scheduler.clock_stop(end)
    wall = time.perf_counter()
    scheduler.start()
    while clock.now < end + RATE:
        time.sleep(0.05)
    scheduler.close()
    wall = time.perf_counter() - wall
    errors = scheduler.note_errors_ms.values()
    ticks = np.array(backend.ticks)
    tick_error_ms = (ticks - np.rint(tempo_map.tick_to_sample(np.arange(ticks.size)))) * 1e3 / RATE
    n10 = int(10 * bpm / 60 * 24)
    out = {
        "musical_minutes": round((end - RATE // 10) / RATE / 60, 2),
        "wall_s": round(wall, 2),
        "speed_vs_realtime": round((end / RATE) / wall, 1),
        "note_error_ms": stats_ms(errors),
        "clock_jitter_ms": round(float(np.std(np.diff(ticks)) * 1e3 / RATE), 4),
        "drift_ms": round(float(tick_error_ms[-n10:].mean() - tick_error_ms[:n10].mean()), 4),
    }
    # peer: chained relative sleeps on the same clock model
    peer = OsLikeClock(seed=1)
    interval_s = 60.0 / bpm / 24
    sent = np.empty(ticks.size)
    peer.now = float(tempo_map.tick_to_sample(0))
    for i in range(ticks.size):
        sent[i] = peer.now
        peer.sleep(interval_s)
    peer_error_ms = (sent - tempo_map.tick_to_sample(np.arange(ticks.size))) * 1e3 / RATE
    out["peer_chained_sleeps"] = {
        "clock_jitter_ms": round(float(np.std(np.diff(sent)) * 1e3 / RATE), 4),
        "drift_ms": round(float(peer_error_ms[-n10:].mean() - peer_error_ms[:n10].mean()), 3),
    }
    out["drift_ratio_peer_vs_sjtui"] = round(
        abs(out["peer_chained_sleeps"]["drift_ms"]) / max(abs(out["drift_ms"]), 1e-3), 1
    )
    return out


# --- real time on JACK -------------------------------------------------------------------

CAPTURE = textwrap.dedent(
    """
    import json, sys, time
    import jack
    client = jack.Client("bench-capture", no_start_server=True)
    ports = {name: client.midi_inports.register(name) for name in sys.argv[1:]}
    events = {name: [] for name in ports}
    anchors = []
    xruns = [0]
    def process(frames):
        base = client.last_frame_time
        if len(anchors) < 3000:
            anchors.append((base, time.monotonic()))
        for name, port in ports.items():
            for offset, data in port.incoming_midi_events():
                data = bytes(data)
                if data[0] == 0xF8 or data[0] & 0xF0 == 0x90:
                    events[name].append((base + offset, data[0], data[2] if len(data) > 2 else 0))
    client.set_process_callback(process)
    client.set_xrun_callback(lambda delay: xruns.__setitem__(0, xruns[0] + 1))
    client.activate()
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() == "dump":
            print(json.dumps({"events": events, "anchors": anchors, "xruns": xruns[0]}), flush=True)
        elif line.strip() == "quit":
            break
    client.deactivate(); client.close()
    """
)


class UiLikeLoad:
    """A numpy thread at 30 Hz (FFT + matrix work, like drawing a spectrum) and a busy Python thread."""

    def __init__(self):
        self.stop = threading.Event()
        self.frames = 0
        self.busy_loops = 0

    def _numpy(self):
        rng = np.random.default_rng(0)
        signal = rng.standard_normal(16384).astype(np.float32)
        matrix = rng.standard_normal((128, 128))
        start = time.monotonic()
        n = 0
        while not self.stop.is_set():
            np.abs(np.fft.rfft(signal))
            matrix @ matrix
            np.sort(signal)
            self.frames += 1
            n += 1
            delay = start + n / 30.0 - time.monotonic()
            if delay > 0:
                time.sleep(delay)

    def _busy(self):
        while not self.stop.is_set():
            sum(i * i for i in range(2000))
            self.busy_loops += 1

    def __enter__(self):
        self.threads = [
            threading.Thread(target=self._numpy, daemon=True),
            threading.Thread(target=self._busy, daemon=True),
        ]
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(2)


class Capture:
    def __init__(self, names):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CAPTURE, *names], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout.readline().strip() == "ready"

    def dump(self) -> dict:
        self.proc.stdin.write("dump\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
            self.proc.wait(10)


def arrival_figures(captured, tempo_map: TempoMap, events: np.ndarray, end: float) -> dict:
    ons = events[(events["status"] & 0xF0) == NOTE_ON]
    got_on = np.array([f for f, status, vel in captured if status & 0xF0 == 0x90 and vel > 0], dtype=np.int64)
    ticks = np.array([f for f, status, _ in captured if status == CLOCK], dtype=np.int64)
    n = min(got_on.size, ons.size)
    error = got_on[:n] - ons["sample"][:n]
    intended_ticks = np.rint(tempo_map.tick_to_sample(np.arange(ticks.size)))
    tick_error = ticks - intended_ticks
    n10 = min(ticks.size // 2, 10 * 48)
    return {
        "notes_captured": int(got_on.size),
        "notes_sent": int(ons.size),
        "note_error_samples": {
            "min": int(error.min()),
            "max": int(error.max()),
            "n_exact": int((error == 0).sum()),
        },
        "note_error_ms": stats_ms(error * 1e3 / RATE),
        "clock_jitter_ms": round(float(np.std(np.diff(ticks)) * 1e3 / RATE), 4),
        "drift_ms": round(float((tick_error[-n10:].mean() - tick_error[:n10].mean()) * 1e3 / RATE), 4),
        "ticks_captured": int(ticks.size),
        "ticks_sent": int(np.ceil(float(tempo_map.sample_to_tick(end)))),
        "tick_intervals_samples": dict(
            sorted(
                ((int(v), int(c)) for v, c in zip(*np.unique(np.diff(ticks), return_counts=True))),
                key=lambda vc: -vc[1],
            )[:6]
        ),
    }


def start_jackd(name_prefix: str):
    """A private JACK dummy server (sjtui.audio.jack_server: a pool of fixed names, dies with us)."""
    from sjtui.audio.jack_server import JackServerError, PrivateJackServer

    try:
        return PrivateJackServer(name_prefix, RATE, 256).start()
    except JackServerError as error:
        raise SystemExit(str(error)) from None


def run_realtime(seconds: float = 60.0, bpm: float = 120.0, untuned_seconds: float = 20.0) -> dict:
    os.environ.setdefault("SJTUI_RUNTIME_DIR", f"/tmp/sjtui-bench-{os.getpid()}")
    server = start_jackd("sjtui-bench")  # fixed names: JACK reclaims a dead run's registry slot
    try:
        out = {"seconds": seconds, "bpm": bpm, "load": "numpy thread at 30 Hz + busy Python thread"}
        out["isolated"] = _play_both(seconds, bpm, mode="isolated")
        out["in_process_tuned"] = _play_both(untuned_seconds, bpm, mode="tuned")
        out["in_process_untuned"] = _play_both(untuned_seconds, bpm, mode="untuned")
        return out
    finally:
        server.stop()


def _line(anchors):
    anchors = np.array(anchors[50:], dtype=np.float64)
    t0 = anchors[0, 1]
    t, f = anchors[:, 1] - t0, anchors[:, 0]
    slope, intercept = np.polyfit(t, f, 1)
    residual = f - (intercept + slope * t)
    mad = np.median(np.abs(residual - np.median(residual)))
    keep = np.abs(residual - np.median(residual)) <= 3 * mad + 1
    slope, intercept = np.polyfit(t[keep], f[keep], 1)
    return float(t0), float(intercept), float(slope)


def _play_both(seconds: float, bpm: float, mode: str) -> dict:
    """mode: "isolated" (MidiProcess children), "tuned" (in process, SCHED_FIFO + 1 ms switch
    interval), "untuned" (in process, 5 ms switch interval, normal priority)."""
    from sjtui.midi.process import MidiProcess

    capture = Capture(["rt", "jk"])
    switch = sys.getswitchinterval()
    options = {} if mode != "untuned" else {"realtime_priority": None, "switch_interval_s": None}
    sys.setswitchinterval(0.005)
    try:
        while len(capture.dump()["anchors"]) < 400:
            time.sleep(0.1)
        line = _line(capture.dump()["anchors"])
        if mode == "isolated":
            rt = MidiProcess(
                {
                    "kind": "rtmidi",
                    "port": "bench-capture:rt",
                    "api": "jack",
                    "client_name": "sjtui-bench-rt",
                },
                {"sample_rate_hz": RATE},
                clock_line=line,
            )
            jk = MidiProcess(
                {"kind": "jack", "client_name": "sjtui-bench-jack", "connect_to": "bench-capture:jk"}
            )
            now = {"rtmidi": rt.now_sample, "jack": jk.now_sample}
        else:
            t0, s0, rate = line
            clock = lambda: s0 + (time.monotonic() - t0) * rate
            # rtmidi first: it holds the GIL while opening its JACK client (see RtMidiBackend)
            rt_backend = RtMidiBackend("bench-capture:rt", api="jack", client_name="sjtui-bench-rt")
            rt = MidiScheduler(rt_backend, sample_rate_hz=RATE, clock=clock, **options)
            rt.note_errors_ms.data = np.zeros(1 << 18)
            jk_backend = jack_midi_backend(client_name="sjtui-bench-jack", connect_to="bench-capture:jk")
            jk = MidiScheduler(jk_backend, **options)
            rt.start()
            jk.start()
            now = {"rtmidi": rt.clock, "jack": jk.clock}
        schedulers = {"rtmidi": rt, "jack": jk}
        plans = {}
        with UiLikeLoad() as load:
            time.sleep(0.5)
            for name, scheduler in schedulers.items():
                start = float(now[name]()) + 0.3 * RATE
                tempo_map = TempoMap.constant(RATE, bpm, anchor_sample=start)
                n_bars = int(np.ceil(seconds * bpm / 240))
                events = song_events(tempo_map, n_bars)
                end = float(tempo_map.bar_to_sample(n_bars))
                scheduler.submit(events)
                scheduler.clock_start(tempo_map)
                scheduler.clock_stop(end)
                plans[name] = (tempo_map, events, end)
            time.sleep(seconds + 0.8)
            load_figures = {
                "numpy_frames_per_s": round(load.frames / (seconds + 1.3), 1),
                "busy_loops": load.busy_loops,
            }
        if mode == "isolated":
            rt_stats, jk_stats = rt.stats(with_errors=True), jk.stats()
            rt_errors = np.array(rt_stats["note_errors_ms"])
            jk_late, jk_lead = jk_stats["late_events_backend"], jk_stats["min_lead_samples"]
        else:
            rt_stats = rt.stats()
            rt_stats["realtime"] = rt.realtime
            rt_errors = rt.note_errors_ms.values()
            jk_late, jk_lead = jk.backend.late_events, jk.min_lead_samples
        jk.close()
        rt.close()
        time.sleep(0.2)
        captured = capture.dump()
        return {
            "mode": mode,
            "seconds": seconds,
            "load_achieved": load_figures,
            "capture_xruns": captured["xruns"],
            "rtmidi": {
                "at_send": {
                    "note_error_ms": stats_ms(rt_errors),
                    "clock_jitter_ms": round(rt_stats.get("clock_jitter_ms", float("nan")), 4),
                    "realtime_priority": rt_stats.get("realtime"),
                },
                "at_arrival": arrival_figures(captured["events"]["rt"], *plans["rtmidi"]),
            },
            "jack": {
                "at_arrival": arrival_figures(captured["events"]["jk"], *plans["jack"]),
                "late_events": int(jk_late),
                "min_lead_ms": round(jk_lead * 1e3 / RATE, 2),
            },
        }
    finally:
        capture.close()
        sys.setswitchinterval(switch)


def verdict(report: dict) -> dict:
    sim, rt = report.get("simulated", {}), report.get("realtime", {})
    out = {}
    if "selection_ms" in report:
        out["selection_ms_p99"] = report["selection_ms"]["p99"] <= TARGETS["selection_ms_p99"]
    jam = report.get("jam") or {}
    if jam.get("input_frames_lost") is not None and jam.get("seconds", 0) >= 600:
        # judged only on a 10-minute run. The target: the input lost nothing (an overflow is input that
        # never reached the ring; PortAudio's flag, reported as input_overflows, fires on JACK for
        # anyone's xrun, so it is not the measure)
        out["no_input_overflow_in_10_min"] = jam["input_frames_lost"] == 0 and jam.get("input_gaps", 0) == 0
        # stricter, beyond the target: jackd named no client of the jam (input or MIDI out) at an xrun
        out["no_xrun_naming_the_jams_clients_in_10_min"] = jam["sjtui_late_xruns"] == 0
        if jam.get("sjtui_late_xruns_apart_from_stalls") is not None:
            # the same, leaving out what fell at a stall of the machine (cyclictest's C thread late too)
            out["no_xrun_naming_the_jams_clients_in_10_min_apart_from_machine_stalls"] = (
                jam["sjtui_late_xruns_apart_from_stalls"] == 0
            )
    if sim:
        out["simulated_drift_ms"] = abs(sim["drift_ms"]) <= TARGETS["drift_ms"]
        out["simulated_clock_jitter_ms"] = sim["clock_jitter_ms"] <= TARGETS["clock_jitter_ms"]
    for mode in ("isolated", "in_process_tuned", "in_process_untuned"):
        run = rt.get(mode)
        if not run:
            continue
        send = run["rtmidi"]["at_send"]
        jack = run["jack"]["at_arrival"]
        out[mode] = {
            "rtmidi_note_error_p99_at_send": send["note_error_ms"]["p99"]
            <= TARGETS["rtmidi_note_error_ms_p99"],
            "rtmidi_clock_jitter_at_send": send["clock_jitter_ms"] <= TARGETS["clock_jitter_ms"],
            "jack_note_error_0_samples": jack["note_error_samples"]["min"] == 0
            and jack["note_error_samples"]["max"] == 0
            and jack["notes_captured"] == jack["notes_sent"],
            "jack_clock_jitter": jack["clock_jitter_ms"] <= TARGETS["clock_jitter_ms"],
            "jack_drift": abs(jack["drift_ms"]) <= TARGETS["drift_ms"],
        }
    return out


def engine_figures(model_dir: Path, jam_seconds: float) -> dict:
    """``selection_ms`` and the whole jam's ``xruns`` / input overflows, from bench/engine.py (same process).

    Selection: fingerprint -> embedding -> best groove -> switching policy over the Groove MIDI Dataset
    imported into a temporary library, 500 decisions. The jam: the real engine on a private JACK server
    for ``jam_seconds`` under a UI-like load, fed and captured by C clients."""
    import tempfile

    sys.path.insert(0, str(REPO / "bench"))
    import engine as engine_bench

    with tempfile.TemporaryDirectory(prefix="sjtui-bench-timing-") as tmp:
        library_dir = engine_bench.make_library(Path(tmp) / "library")
        selection = engine_bench.bench_selection(library_dir, model_dir, 500)
        out = {
            "selection_ms": selection["selection_ms"],
            "selection_ms_after_100ms_idle": selection["selection_ms_after_100ms_idle"],
            "selection_library_grooves": selection["library_grooves"],
        }
        if jam_seconds > 0:
            jam = engine_bench.bench_realtime(library_dir, model_dir, jam_seconds)
            out["jam"] = {
                key: jam.get(key)
                for key in ("seconds", "xruns", "sjtui_late_xruns", "input_frames_lost", "input_gaps",
                            "input_overflows", "backend_late_events", "tick_intervals_exact_share",
                            "selection_ms_in_run", "selection_cpu_ms_in_run", "jack_late_clients", "rt_thread_wakeup",
                            "sjtui_late_xruns_apart_from_stalls", "input_gaps_apart_from_stalls",
                            "cpu_steal_s", "load_average_1min_before", "error")
            }  # fmt: skip
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--minutes", type=float, default=10.0, help="musical minutes of the simulated run")
    parser.add_argument("--seconds", type=float, default=60.0, help="seconds of the real-time run (0: skip)")
    parser.add_argument(
        "--in-process-seconds",
        type=float,
        default=20.0,
        help="seconds of each in-process run (tuned, untuned)",
    )
    parser.add_argument(
        "--jam-seconds", type=float, default=60.0,
        help="seconds of the whole jam on JACK (bench/engine.py --only-realtime) for xruns and input overflows (0: skip)",
    )  # fmt: skip
    parser.add_argument("--model", type=Path, default=SHIPPED_MODEL_DIR, help="model for selection_ms (default: the shipped one)")
    args = parser.parse_args(argv)
    report = {"targets": TARGETS, "simulated": run_simulated(args.minutes)}
    if args.seconds > 0:
        report["realtime"] = run_realtime(args.seconds, untuned_seconds=args.in_process_seconds)
    report.update(engine_figures(args.model, args.jam_seconds))
    report["pass"] = verdict(report)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
