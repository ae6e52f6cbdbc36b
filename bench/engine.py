"""Engine figures: selection time over a full library, and a real-time jam under UI-like load.

1. ``selection_ms``: what the engine does at each decision, timed call by
   call: the fingerprint of the last 4 bars from the live accumulator ->
   guitar embedding (ONNX, one thread) -> best grooves among the fitting
   ones of the whole library (the Groove MIDI Dataset imported: ~11k
   windows, plus the built-in grooves) -> switching policy. Peers in the
   same process: the same ranking without a model (tempo/meter order only)
   and the bare dot product + top-k (``best_grooves``) alone.
2. ``realtime``: the real engine on a private JACK server for ``--seconds``
   (default 60): the jam in its own process (engine + a UI-like thread
   polling the snapshot at 30 Hz and spending ~3 ms of Python per poll, as
   the Textual screen would), the guitar fed into the jam's input (sjtui's
   C JACK client, ``sjtui-input``; ``--portaudio-input``: PortAudio in a child
   process, the path before it) by
   FluidSynth on JACK (a riff's MIDI, clean guitar), drums out through the
   sample-accurate JACK MIDI backend into ``jack_midi_dump``: C test clients
   (``--test-clients python``: JACK-Client feeder and capture in this
   process, as before). Reported: JACK xruns and the clients jackd named
   late at each (``sjtui_late_xruns``: those naming the jam's own clients),
   input the jam never received (``input_frames_lost``: counted from the
   frame clock by the C client, estimated from the stream's clock by
   :class:`sjtui.audio.device.StreamGapDetector` on PortAudio), PortAudio's
   overflow flag (on JACK raised for every xrun of the server, whoever was
   late), analysis overruns, events the backend got late,
   the share of clock ticks exactly on their frame, selection_ms in the run,
   and the load average of the machine (other jobs share its cores).
3. ``input_isolation`` (``--only-input-isolation``): the same real-time jam
   with the audio input's PortAudio callback in the jam's process
   (``EngineOptions.input_process=False``) and in its own child process (the
   default, :mod:`sjtui.audio.device_process`), alternating, ``--rounds``
   pairs of ``--seconds`` each; input overflows and JACK xruns of each run and
   their totals per variant.
4. ``environment`` (``--only-environment``): the same JACK server and C test
   clients for ``--seconds`` without the jam: the xruns this machine has
   with no sjtui client in the graph; with ``--load-percent P``, beside an
   ordinary process using P % of one core (as much as the jam reports in
   ``cpu_percent_of_one_core``), the xruns an ordinary load costs C clients.

Beside the JACK runs (2 and 4), ``rt_thread_wakeup``: ``cyclictest`` (rt-tests)
wakes a SCHED_FIFO thread at the JACK clients' priority every period and
counts wake-ups 1 ms and half a period late, and how many xruns fell within
0.2 s of one of the latter (a machine that cannot wake a C thread in time makes every
client late); ``cpu_steal_s``: CPU time the hypervisor took from this VM.
The environment run also times one small workload right after the last and
after 0.01-3 s asleep (``cold_start``): how much slower this machine runs code
after an idle spell.

Without ``--model`` a seeded untrained model is exported to a temporary
folder (weights do not change the speed; needs torch, the ``train`` extra).
The GMD is imported into a temporary library unless ``--library`` is given.

    .venv/bin/python bench/engine.py --json
    .venv/bin/python bench/engine.py --seconds 600 --library ~/.local/share/sjtui
    .venv/bin/python bench/engine.py --json --seconds 60 --only-input-isolation --rounds 2
    .venv/bin/python bench/engine.py --seconds 600 --only-realtime --model models   # the 10-minute run
    .venv/bin/python bench/engine.py --seconds 600 --only-environment   # the same graph without the jam
    .venv/bin/python bench/engine.py --seconds 600 --only-environment --load-percent 40   # ... with a jam's CPU load
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sjtui.audio.jack_server import die_with_parent, end_process  # test clients die with the bench

SR = 48000


def shared_dir() -> Path:
    shared = os.environ.get("SJTUI_SHARED")
    return Path(shared) if shared else REPO.parent / "shared"


def percentiles(values) -> dict:
    a = np.asarray(values, dtype=np.float64)
    if a.size == 0:
        return {"n": 0}
    return {"p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)), "max": float(a.max()), "n": int(a.size)}


def make_model(directory: Path) -> Path:
    from training.export import export_model, untrained_summary
    from training.towers import build_two_tower

    export_model(build_two_tower(seed=3), directory, version="0.0.0-bench", training=untrained_summary(3))
    return directory


def make_library(directory: Path) -> Path:
    gmd = shared_dir() / "datasets" / "groove-midi"
    env = dict(os.environ, SJTUI_DATA_DIR=str(directory))
    subprocess.run([sys.executable, "-m", "sjtui", "grooves", "import", "--gmd", str(gmd)], env=env, check=True,
                   capture_output=True)  # fmt: skip
    return directory


def bench_reembed(library_dir: Path, tmp: Path) -> dict:
    """Hot reload's background work: a new model version's load + embedding of the whole library
    (nothing cached under it yet), then the same call again (all cached: the next start's cost)."""
    from sjtui.engine import embed_library, load_groove_library
    from sjtui.model.runtime import EncoderPair

    new_dir = tmp / "model-reload"
    from training.export import export_model, untrained_summary
    from training.towers import build_two_tower

    export_model(build_two_tower(seed=4), new_dir, version="0.0.1-reload", training=untrained_summary(3))
    library, _, store_path = load_groove_library(str(library_dir), None)
    start = time.perf_counter()
    model = EncoderPair(new_dir)
    load_s = time.perf_counter() - start
    start = time.perf_counter()
    embeddings = embed_library(store_path, library, model)
    cold_s = time.perf_counter() - start
    start = time.perf_counter()
    embed_library(store_path, library, model)
    cached_s = time.perf_counter() - start
    return {
        "library_grooves": len(library),
        "embedded": int(np.isfinite(embeddings).all(axis=1).sum()),
        "model_load_s": round(load_s, 3),
        "embed_library_s": round(cold_s, 2),
        "peer_embed_library_cached_s": round(cached_s, 3),
    }


def riff_audio(bpm: float, bars: int, seed: int = 0) -> np.ndarray:
    from sjtui.audio.riffs import generate_riff
    from sjtui.audio.synth_guitar import render_notes

    riff = generate_riff("straight8", bpm=bpm, bars=bars, seed=seed)
    return render_notes(riff.notes, SR, "clean", seed=1, length_s=riff.duration_s, wrap_tail=True, peak=0.5)


def riff_accumulator(bpm: float, bars: int):
    """(FingerprintAccumulator, TempoMap): a rendered riff of ``bars`` 4/4 bars analysed in live-sized
    blocks, ready for ``accumulator.fingerprint(tempo_map, first_bar)`` of any 4 of its bars."""
    from sjtui.dsp.analysis import OnlineAnalyzer
    from sjtui.dsp.fingerprint import FingerprintAccumulator
    from sjtui.transport.timebase import TempoMap

    audio = riff_audio(bpm, bars)
    analyzer = OnlineAnalyzer(SR)
    accumulator = FingerprintAccumulator(SR, analyzer.hop_size)
    for k in range(0, audio.size - 256, 256):
        accumulator.push(analyzer.process(audio[k : k + 256]))
    return accumulator, TempoMap.constant(SR, bpm, "4/4")


def bench_selection(library_dir: Path, model_dir: Path, repeats: int) -> dict:
    from sjtui.config import EngineConfig
    from sjtui.engine import load_groove_library
    from sjtui.model.runtime import EncoderPair, best_grooves
    from sjtui.select import GrooveRanker, SwitchPolicy

    model = EncoderPair(model_dir)
    t0 = time.perf_counter()
    library, embeddings, _ = load_groove_library(str(library_dir), model, [])
    load_s = time.perf_counter() - t0
    config = EngineConfig()
    ranker = GrooveRanker(library, model, embeddings, config)
    plain = GrooveRanker(library, None, None, config)
    policy = SwitchPolicy(config)
    bpm = 120.0
    acc, tm = riff_accumulator(bpm, 64)
    allowed = ranker.allowed(bpm, "4/4")
    full, plain_ms, best_ms, fp_ms, embed_ms = [], [], [], [], []
    current = None
    for i in range(repeats):
        end_bar = 4 + i % 56
        t = time.perf_counter()
        fp = acc.fingerprint(tm, end_bar - 4)
        t1 = time.perf_counter()
        ranking = ranker.rank(fp, bpm, "4/4", current)
        decision = policy.decide(ranking, current, 8, False)
        t2 = time.perf_counter()
        current = decision.index
        full.append((t2 - t) * 1e3)
        fp_ms.append((t1 - t) * 1e3)
        t = time.perf_counter()
        query = model.embed_guitar(fp)[0]
        t1 = time.perf_counter()
        best_grooves(query, ranker.embeddings, config.top_k, allowed)
        t2 = time.perf_counter()
        embed_ms.append((t1 - t) * 1e3)
        best_ms.append((t2 - t1) * 1e3)
        t = time.perf_counter()
        plain.rank(None, bpm, "4/4", None)
        plain_ms.append((time.perf_counter() - t) * 1e3)
    sel = percentiles(full)
    # the same decisions one at a time after 100 ms idle, as in a jam (one decision per 4 bars): on this
    # VM the caches no longer hold the model, the embeddings or the code by then
    after_idle = []
    for i in range(max(20, repeats // 5)):
        time.sleep(0.1)
        t = time.perf_counter()
        fp = acc.fingerprint(tm, i % 56)
        policy.decide(ranker.rank(fp, bpm, "4/4", current), current, 8, False)
        after_idle.append((time.perf_counter() - t) * 1e3)
    return {
        "library_grooves": len(library),
        "library_fitting_120bpm_4_4": int(allowed.sum()),
        "library_load_and_embed_s": round(load_s, 3),
        "selection_ms": sel,
        "selection_ms_after_100ms_idle": percentiles(after_idle),
        "parts_ms_p50": {
            "fingerprint": float(np.median(fp_ms)),
            "embed_guitar": float(np.median(embed_ms)),
            "best_grooves": float(np.median(best_ms)),
        },
        "peer_no_model_rank_ms": percentiles(plain_ms),
        "ratio_selection_p50_vs_no_model": sel["p50"] / max(1e-9, float(np.median(plain_ms))),
    }


class LoopFeeder:
    """A JACK client playing one signal in a loop into PortAudio's input ports."""

    def __init__(self, signal: np.ndarray):
        import jack

        self.client = jack.Client("sjtui-bench-feeder", no_start_server=True)
        self.signal = np.ascontiguousarray(signal, dtype=np.float32)
        self.port = self.client.outports.register("out_1")
        self.position = 0
        self.client.set_process_callback(self._process)
        self.client.activate()

    def _process(self, frames: int) -> None:
        buf = self.port.get_array()
        n = self.signal.size
        idx = (self.position + np.arange(frames)) % n
        buf[:] = self.signal[idx]
        self.position = (self.position + frames) % n

    def connect(self) -> None:
        for target in self.client.get_all_connections("system:capture_1"):
            self.client.disconnect("system:capture_1", target)
            self.client.connect(self.port, target)

    def close(self) -> None:
        self.client.deactivate()
        self.client.close()


class Capture:
    def __init__(self):
        import jack

        self.client = jack.Client("sjtui-bench-capture", no_start_server=True)
        self.port = self.client.midi_inports.register("in")
        self.port_name = self.port.name
        self.ticks: list[int] = []
        self.notes = 0
        self.xruns = 0
        self.client.set_process_callback(self._process)
        self.client.set_xrun_callback(self._xrun)
        self.client.activate()

    def _xrun(self, delay) -> None:
        self.xruns += 1

    def _process(self, frames: int) -> None:
        base = self.client.last_frame_time
        for offset, data in self.port.incoming_midi_events():
            data = bytes(data)
            if data[0] == 0xF8:
                self.ticks.append(base + offset)
            elif data[0] & 0xF0 == 0x90:
                self.notes += 1

    def close(self) -> None:
        self.client.deactivate()
        self.client.close()


def _wait_for_ports(client, name: str) -> list[str]:
    """The names of the JACK ports of client ``name``, once it registered them (20 s at most)."""
    deadline = time.monotonic() + 20
    while not client.get_ports(f"{name}:") and time.monotonic() < deadline:
        time.sleep(0.05)
    return [port.name for port in client.get_ports(f"{name}:")]


class FluidFeeder:
    """The guitar from a C client: FluidSynth on JACK playing a rendered riff's MIDI (clean guitar, 120 BPM).

    The Python feeder (:class:`LoopFeeder`) runs its callback in this process and needs the GIL each
    cycle; FluidSynth renders in its own C callback. It can still be late on this VM (jackd names it
    at some xruns; ``--only-environment`` counts them without the jam)."""

    def __init__(self, seconds: float, workdir: Path):
        import jack

        from sjtui.audio.render import find_soundfont
        from sjtui.audio.riffs import generate_riff, riff_to_midi

        bars = int(np.ceil((seconds + 60.0) / 2.0))  # 2 s per bar at 120 BPM 4/4; the file outlasts the run
        path = workdir / "feeder.mid"
        riff_to_midi(generate_riff("straight8", bpm=120.0, bars=bars, seed=0), program=27).save(path)
        self.name = "sjtui-bench-feeder"
        self.proc = subprocess.Popen(
            ["fluidsynth", "-a", "jack", "-n", "-i", "-g", "0.5", "-o", f"audio.jack.id={self.name}",
             "-o", "audio.jack.autoconnect=0", str(find_soundfont()), str(path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=die_with_parent,  # noqa: PLW1509 - prctl only
        )  # fmt: skip
        self.control = jack.Client("sjtui-bench-connect", no_start_server=True)  # never activated: not in the graph
        if not _wait_for_ports(self.control, self.name):
            self.close()
            raise RuntimeError("fluidsynth did not register its JACK ports")

    def connect(self) -> None:
        left = self.control.get_ports(f"{self.name}:", is_output=True)[0]
        for target in self.control.get_all_connections("system:capture_1"):
            self.control.disconnect("system:capture_1", target)
            self.control.connect(left, target)

    def close(self) -> None:
        end_process(self.proc)  # a client left behind would join the next server of its name
        self.control.close()


class DumpCapture:
    """sjtui's MIDI captured by a C client, ``jack_midi_dump -a`` (frame times from its first cycle)."""

    def __init__(self):
        import jack

        self.name = "sjtui-bench-capture"
        self.proc = subprocess.Popen(
            ["stdbuf", "-oL", "jack_midi_dump", "-a", self.name], stdout=subprocess.PIPE, text=True,
            preexec_fn=die_with_parent,  # noqa: PLW1509 - prctl only
        )  # fmt: skip
        self.ticks: list[int] = []
        self.notes = 0
        self.xruns = None  # a C client has no xrun callback: the caller counts jackd's XRun lines
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        control = jack.Client("sjtui-bench-probe", no_start_server=True)
        names = _wait_for_ports(control, self.name)
        control.close()
        if not names:
            self.close()
            raise RuntimeError("jack_midi_dump did not register its JACK port")
        self.port_name = names[0]

    def _read(self) -> None:
        for line in self.proc.stdout:  # "  28933: 90 24 64 note on ..." / "  33541: f8"
            frame, _, data = line.partition(":")
            fields = data.split()
            if not fields or not frame.strip().isdigit():
                continue
            status = int(fields[0], 16)
            if status == 0xF8:
                self.ticks.append(int(frame))
            elif status & 0xF0 == 0x90 and len(fields) > 2 and int(fields[2], 16) > 0:
                self.notes += 1

    def close(self) -> None:
        time.sleep(0.2)
        end_process(self.proc)
        self._reader.join(5)


PERIOD_FRAMES = 256  # the bench server's period: 5.33 ms at 48 kHz
WAKEUP_PROBE = True  # --no-wakeup-probe: no cyclictest beside the graph


class WakeupLatency:
    """How late this machine wakes a real-time thread: ``cyclictest`` (rt-tests), the usual peer tool.

    One SCHED_FIFO thread at the JACK clients' priority (5), memory locked, woken every JACK period
    on an absolute timer for the whole run, beside the graph. A wake-up half a period late leaves a
    JACK client half its cycle, whatever language it is written in: the histogram ends there, so
    cyclictest lists when those happened (cycle numbers; the first 30) and the xruns near them count."""

    def __init__(self, seconds: float, period_us: int = PERIOD_FRAMES * 1_000_000 // SR):
        self.period_us = period_us
        self.proc = None
        self.stalls_s: list[float] | None = None  # time.monotonic() of each wake-up half a period late
        if not WAKEUP_PROBE or shutil.which("cyclictest") is None:
            return
        self.proc = subprocess.Popen(
            ["cyclictest", "-t1", "-p5", f"-i{period_us}", f"-D{int(seconds)}", "-m", "-q", f"-h{period_us // 2}"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=die_with_parent,  # noqa: PLW1509 - prctl only
        )  # fmt: skip
        self.started_s = time.monotonic()

    def result(self, xrun_times_s: list[float] | None = None) -> dict:
        """Wait for the run's end; xruns that fell within 0.2 s of a wake-up half a period late, if given."""
        if self.proc is None:
            return {"skipped": "--no-wakeup-probe" if not WAKEUP_PROBE else "cyclictest not installed (apt install rt-tests)"}
        out, _ = self.proc.communicate(timeout=60 + self.period_us)
        histogram = np.zeros(self.period_us // 2, dtype=np.int64)
        summary: dict = {}
        for line in out.splitlines():
            fields = line.split()
            if len(fields) == 2 and fields[0].isdigit() and fields[1].isdigit():
                histogram[int(fields[0])] = int(fields[1])
            elif line.startswith("# ") and ":" in line:
                key, _, value = line[2:].partition(":")
                summary[key.strip()] = value.split()
        if "Total" not in summary:
            return {"error": out[-500:]}
        late_cycles = [int(v) for v in summary.get("Thread 0", []) if v.isdigit()]
        late_s = [self.started_s + k * self.period_us / 1e6 for k in late_cycles]
        overflows = int(summary["Histogram Overflows"][0])
        self.stalls_s = late_s if len(late_s) == overflows else None  # cyclictest lists the first 30 only
        result = {
            "tool": "cyclictest -t1 -p5 -m (rt-tests), SCHED_FIFO 5 as the JACK clients",
            "period_us": self.period_us,
            "wakeups": int(summary["Total"][0]),
            "latency_us": {"avg": int(summary["Avg Latencies"][0]), "max": int(summary["Max Latencies"][0])},
            "p99_us": int(np.searchsorted(np.cumsum(histogram), 0.99 * histogram.sum())),
            "late_by_1_ms": int(histogram[1000:].sum()) + overflows,
            "late_by_half_a_period": overflows,
        }  # fmt: skip
        if xrun_times_s is not None and self.stalls_s is not None:
            result["xruns_within_0_2_s_of_such_a_wakeup"] = sum(near_stall(x, self.stalls_s) for x in xrun_times_s)
        return result


def near_stall(t_s: float, stalls_s: list[float], before_s: float = 0.2, after_s: float = 0.2) -> bool:
    """Whether a stall of the machine (a wake-up half a period late) fell in [t - before, t + after]."""
    return any(t_s - before_s <= stall <= t_s + after_s for stall in stalls_s)


def cold_start_cpu_ms(gaps_s=(0.0, 0.01, 0.1, 1.0, 3.0), repeats: int = 5) -> dict:
    """CPU time of one small fixed workload (~0.3 ms warm) right after the last and after sleeping ``gap`` s.

    A jam's decision thread sleeps seconds between decisions, a JACK client milliseconds between
    cycles. On some machines (VMs especially) code that ran after an idle spell takes many times
    its warm CPU time: cold caches and TLBs, and whatever the hypervisor does with an idle vCPU.
    Numpy (BLAS and vector units) and pure Python, median of ``repeats`` per gap."""
    weights = np.random.default_rng(0).random((64, 64)).astype(np.float32)

    def numpy_work():
        x = weights
        for _ in range(40):
            x = np.tanh(x @ weights * 0.01)

    def python_work():
        total = 0
        for i in range(20000):
            total += i

    result = {}
    for name, work in (("numpy", numpy_work), ("python", python_work)):
        for _ in range(20):
            work()
        medians = {}
        for gap in gaps_s:
            times = []
            for _ in range(repeats):
                time.sleep(gap)
                t0 = time.thread_time()
                work()
                times.append((time.thread_time() - t0) * 1e3)
            medians[f"after_{gap:g}_s"] = round(float(np.median(times)), 3)
        result[f"{name}_cpu_ms"] = medians
    return result


def watch_jackd(server, seconds: float, poll_s: float = 0.05) -> list[tuple[float, str]]:
    """Wait ``seconds``, noting when jackd wrote each line: (time.monotonic() to ``poll_s``, line)."""
    lines: list[tuple[float, str]] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(poll_s)
        messages = server.messages()
        now = time.monotonic()
        lines += [(now, line) for line in messages[len(lines) :]]
    return lines


def xrun_times(lines: list[tuple[float, str]]) -> list[float]:
    return [t for t, line in lines if "XRun" in line]


def apart_from_stalls(result: dict, lines: list[tuple[float, str]], stalls_s: list[float] | None) -> None:
    """What the jam's own clients lost while the machine was *not* stalled, into ``result``.

    An xrun that names the jam's input or MIDI client within 0.2 s of a stall, and an input gap
    found up to one detector window (1.4 s) after one, are the machine's; the rest are sjtui's."""
    if stalls_s is None:
        return
    result["sjtui_late_xruns_apart_from_stalls"] = sum(
        _late_client(line) in SJTUI_CLIENTS and not near_stall(t, stalls_s) for t, line in lines
    )
    gaps = result.get("input_gaps_found_s")
    if gaps is not None:
        result["input_gaps_apart_from_stalls"] = sum(not near_stall(t, stalls_s, before_s=1.7) for t in gaps)


def ui_like_load(engine, stop: threading.Event, stats: dict) -> None:
    """30 Hz: read the snapshot and do ~3 ms of Python (formatting), as a Textual screen would."""
    period = 1.0 / 30.0
    next_t = time.monotonic()
    polls = 0
    gaps = stats.setdefault("input_gaps_found_s", [])  # time.monotonic() when the input found each gap
    while not stop.is_set():
        snap = engine.snapshot()
        gaps += [time.monotonic()] * (int(engine.ring.gap_count) - len(gaps))
        t = time.perf_counter()
        text = []
        while time.perf_counter() - t < 0.003:
            text.append(f"{snap.transport.bar}:{snap.transport.beat:.2f} {snap.levels.rms_db:.1f} {len(snap.log)}")
            if snap.current is not None and snap.current.pattern is not None:
                text.append("".join("x" if v > 0 else "." for v in snap.current.pattern[0, :48].tolist()))
        polls += 1
        next_t += period
        stop.wait(max(0.0, next_t - time.monotonic()))
    stats["ui_polls"] = polls


def child_jam(
    library_dir: Path, model_dir: Path, seconds: float, capture_port: str, switch_ms: float | None,
    backend_kind: str = "jack", midi_process: bool = True, input_process: bool = True, jack_input: bool = True,
) -> dict:  # fmt: skip
    """In the jam's own process: the engine and the UI-like load, nothing else (no test clients).

    ``midi_process``: the MIDI scheduler in its own child process (the default) or in this one;
    ``input_process``: the same for the audio input's PortAudio callback; ``jack_input``: with
    ``input_process``, the input as sjtui's C JACK client (the default) or PortAudio in a child."""
    from sjtui.config import EngineConfig
    from sjtui.engine import EngineOptions, create_engine

    config = EngineConfig(midi_process=midi_process)
    if switch_ms is not None:
        config = EngineConfig(switch_interval_ms=switch_ms, midi_process=midi_process)
    engine = create_engine(
        EngineOptions(
            input="system", midi_out=capture_port, midi_backend=backend_kind, midi_api="UNIX_JACK", clock_out=True,
            bpm=120.0, model=str(model_dir), library=str(library_dir), config=config, state_file=False,
            input_process=input_process, jack_input=jack_input,
        )
    )  # fmt: skip
    stop = threading.Event()
    ui_stats: dict = {}
    ui = threading.Thread(target=ui_like_load, args=(engine, stop, ui_stats), daemon=True)
    try:
        engine.start()
        print("READY", flush=True)
        ui.start()
        time.sleep(seconds)
    finally:
        stop.set()
        ui.join(2)
        snap = engine.snapshot()
        engine.close()
    cpu_s = _process_tree_cpu_s()  # the jam's children (input, MIDI) are reaped by engine.close()
    backend = engine.output.backend
    stats = engine.output.stats() or {}  # the child's last figures when the scheduler ran in a child
    errors = getattr(getattr(engine.output, "note_errors_ms", None), "values", lambda: np.zeros(0))()
    note_error = percentiles(errors) if len(errors) else {
        k: stats.get(f"note_error_ms_{k}") for k in ("p50", "p99", "max")
    }  # fmt: skip
    return {
        "backend": backend_kind,
        "midi_process": midi_process,
        "input_process": input_process,
        "input_class": type(engine.source).__name__,
        "switch_interval_ms": config.switch_interval_ms,
        "input_overflows": int(engine.ring.overflow_count),
        "input_last_overflow_at_s": round(engine.ring.last_overflow_index / SR, 3) if engine.ring.overflow_count else None,
        "input_seconds_received": round(engine.ring.write_index / SR, 3),
        "input_frames_lost": int(engine.ring.frames_lost),
        "input_gaps": int(engine.ring.gap_count),
        "input_last_gap_at_s": round(engine.ring.last_gap_index / SR, 3) if engine.ring.gap_count else None,
        "analysis_overruns": int(engine.analysis.overrun_count),
        "backend_late_events": int(getattr(backend, "late_events", 0)),
        "backend_lost_events": int(getattr(backend, "lost_events", 0)),
        "scheduler_late_events": int(stats.get("late_events", 0)),
        "scheduler_realtime_priority": bool(stats.get("realtime")),
        "note_error_ms_at_send": note_error if backend_kind == "rtmidi" else None,
        # tick intervals as sent (rtmidi: at its deadline; JACK: at its frame); the capture's own
        # clock_jitter_ms/drift_ms below are at arrival, where rtmidi-on-JACK rounds to the cycle
        "clock_jitter_ms_at_send": stats.get("clock_jitter_ms"),
        "selection_ms_in_run": percentiles(list(engine.selection_ms)),
        "selection_cpu_ms_in_run": percentiles(list(engine.selection_cpu_ms)),
        "ui_polls": ui_stats.get("ui_polls"),
        "input_gaps_found_s": ui_stats.get("input_gaps_found_s"),
        "engine_error": None if engine.error is None else repr(engine.error),
        "warnings": list(snap.warnings),
        "cpu_s": round(cpu_s, 2),  # the jam's process and its children, user + system
        "cpu_percent_of_one_core": round(100.0 * cpu_s / seconds, 1),
    }


def _process_tree_cpu_s() -> float:
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def child_load(percent: float, seconds: float) -> dict:
    """Ordinary (SCHED_OTHER) CPU load like a jam's without its JACK clients, for the environment run.

    Two threads as in the jam: numpy work every 5.3 ms (the analysis thread's cadence) and pure
    Python at 30 Hz (the screen's), each spending half of ``percent`` of one core."""
    weights = np.random.default_rng(0).random((2048,)).astype(np.float32)
    stop = time.monotonic() + seconds

    def numpy_work():
        np.abs(np.fft.rfft(weights * np.hanning(weights.size)))

    def python_work():
        "".join(f"{i}:{i * 0.5:.2f}" for i in range(50))

    def duty(work, period_s):
        budget_s = period_s * percent / 200.0
        next_t = time.monotonic()
        while next_t < stop:
            t0 = time.thread_time()
            while time.thread_time() - t0 < budget_s:
                work()
            next_t += period_s
            time.sleep(max(0.0, next_t - time.monotonic()))

    threads = [threading.Thread(target=duty, args=args) for args in ((numpy_work, 256 / SR), (python_work, 1 / 30))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"cpu_percent_of_one_core": round(100.0 * _process_tree_cpu_s() / seconds, 1)}


def steal_s() -> float:
    """CPU time the hypervisor gave to others while this VM wanted to run, all CPUs (/proc/stat)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    return int(fields[8]) / os.sysconf("SC_CLK_TCK") if len(fields) > 8 else 0.0


def _late_client(line: str) -> str | None:
    """The client a jackd line names as not finished at an xrun ("XRun: client = X ..."), if any."""
    import re

    match = re.search(r"client = (.+?) was not (finished|run)", line)
    return match.group(1) if match else None


def _late_clients(lines: list[str]) -> dict:
    """How often jackd named each client as not finished at an xrun."""
    counts: dict = {}
    for name in filter(None, map(_late_client, lines)):
        counts[name] = counts.get(name, 0) + 1
    if not counts and lines:
        counts["(last jackd lines)"] = lines[-3:]
    return counts


SJTUI_CLIENTS = ("sjtui-input", "PortAudio", "sjtui")  # the jam's input (its C JACK client, or PortAudio's) and MIDI out


def bench_environment(seconds: float, load_percent: float = 0.0) -> dict:
    """The bench's JACK server and C test clients for ``seconds`` with no jam: the machine's own xruns.

    ``load_percent`` > 0: with a process spending that share of one core at normal priority
    (:func:`child_load`, what the jam reports as ``cpu_percent_of_one_core``): the xruns an
    ordinary load costs C clients on this machine, with no Python in the graph."""
    if shutil.which("jackd") is None:
        return {"skipped": "jackd not installed"}
    from sjtui.audio.jack_server import PrivateJackServer

    server = PrivateJackServer("sjtui-bench-engine", SR, 256).start()
    feeder = capture = None
    workdir = tempfile.TemporaryDirectory(prefix="sjtui-bench-feeder-")
    try:
        capture = DumpCapture()
        feeder = FluidFeeder(seconds, Path(workdir.name))
        load_before = os.getloadavg()
        steal_before = steal_s()
        load = None
        if load_percent > 0:
            load = subprocess.Popen(
                [sys.executable, __file__, "--child-load", str(load_percent), "--seconds", str(seconds)],
                stdout=subprocess.PIPE, text=True, preexec_fn=die_with_parent,  # noqa: PLW1509 - prctl only
            )  # fmt: skip
        wakeups = WakeupLatency(seconds)
        lines = watch_jackd(server, seconds)
        messages = server.messages()
        load_result = json.loads(load.communicate(timeout=60)[0]) if load is not None else None
        return {
            "cold_start": cold_start_cpu_ms(),
            "load": load_result,
            "seconds": seconds,
            "xruns": sum("XRun" in m for m in messages),
            "jack_late_clients": _late_clients(messages),
            "rt_thread_wakeup": wakeups.result(xrun_times(lines)),
            "cpu_steal_s": round(steal_s() - steal_before, 2),
            "load_average_1min_before": load_before[0],
            "cpu_count": os.cpu_count(),
        }
    finally:
        for client in (feeder, capture):
            if client is not None:
                client.close()
        server.stop()
        workdir.cleanup()


def bench_realtime(
    library_dir: Path, model_dir: Path, seconds: float, switch_ms: float | None = None,
    backend_kind: str = "jack", midi_process: bool = True, input_process: bool = True, test_clients: str = "c",
    jack_input: bool = True,
) -> dict:  # fmt: skip
    """A private JACK server; the jam (engine + UI-like load) in a child process; feeder and capture outside it.

    ``test_clients``: "c" (default) FluidSynth feeds the guitar and ``jack_midi_dump`` captures, C clients
    that are never late themselves; "python": the JACK-Client feeder and capture of this process, whose
    late callbacks are xruns the jam's input then reports as overflows."""
    if shutil.which("jackd") is None:
        return {"skipped": "jackd not installed"}
    from sjtui.audio.jack_server import PrivateJackServer

    # fixed names (a killed run's JACK registry slot is reclaimed by the next); JACK_DEFAULT_SERVER set
    server = PrivateJackServer("sjtui-bench-engine", SR, 256).start()
    child = feeder = capture = None
    workdir = tempfile.TemporaryDirectory(prefix="sjtui-bench-feeder-")
    try:
        if test_clients == "c":
            capture = DumpCapture()
            feeder = FluidFeeder(seconds, Path(workdir.name))
        else:
            capture = Capture()
            feeder = LoopFeeder(riff_audio(120.0, 8))
        load_before = os.getloadavg()
        child = subprocess.Popen(
            [sys.executable, __file__, "--child-jam", str(seconds), "--library", str(library_dir), "--model",
             str(model_dir), "--capture-port", capture.port_name]
            + ([] if switch_ms is None else ["--switch-ms", str(switch_ms)])
            + ["--backend", backend_kind, "--midi-process", "1" if midi_process else "0"]
            + ["--input-process", "1" if input_process else "0", "--jack-input", "1" if jack_input else "0"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ),
        )  # fmt: skip
        line = child.stdout.readline()
        if not line.startswith("READY"):
            return {"error": "the jam did not start", "stderr": child.stderr.read()[-2000:]}
        time.sleep(0.3)
        feeder.connect()
        steal_before = steal_s()
        wakeups = WakeupLatency(seconds)
        lines: list[tuple[float, str]] = []
        watcher = threading.Thread(target=lambda: lines.extend(watch_jackd(server, seconds)), daemon=True)
        watcher.start()
        out, _ = child.communicate(timeout=seconds + 60)
        watcher.join(5)
        time.sleep(0.2)
        feeder.close()
        capture.close()
        captured_ticks, notes_received, capture_xruns = capture.ticks, capture.notes, capture.xruns
        feeder = capture = None
        messages = server.messages()
        xruns = sum("XRun" in m for m in messages) if test_clients == "c" else capture_xruns
        result = json.loads(out.strip().splitlines()[-1])
        ticks = np.array(captured_ticks, dtype=np.int64)
        diffs = np.diff(ticks) if ticks.size > 1 else np.zeros(0)
        # 120 BPM, 24 PPQN at 48 kHz: a tick every 1000 frames; drift = last tick vs first + k * 1000
        drift_ms = float((ticks[-1] - ticks[0] - 1000 * (ticks.size - 1)) / SR * 1e3) if ticks.size > 1 else None
        result.update(
            note_error_frames_jack=(
                "every event at its frame (backend late/lost events 0, ticks exact)"
                if backend_kind == "jack" and result["backend_late_events"] == 0 and diffs.size and (diffs == 1000).all()
                else None
            ),
            clock_jitter_ms=float(diffs.std() / SR * 1e3) if diffs.size else None,
            drift_ms=drift_ms,
            xruns=xruns,
            test_clients=test_clients,
            seconds=seconds,
            load_average_1min_before=load_before[0],
            cpu_count=os.cpu_count(),
            notes_received=notes_received,
            ticks_received=int(ticks.size),
            tick_intervals_exact_share=float(np.mean(diffs == 1000)) if diffs.size else None,
            tick_interval_frames_std=float(diffs.std()) if diffs.size else None,
            jack_late_clients=_late_clients(messages),  # jackd names the late client at each xrun
            rt_thread_wakeup=wakeups.result(xrun_times(lines)),
            cpu_steal_s=round(steal_s() - steal_before, 2),
        )
        late = result["jack_late_clients"]
        result["sjtui_late_xruns"] = sum(int(late.get(name, 0)) for name in SJTUI_CLIENTS)
        apart_from_stalls(result, lines, wakeups.stalls_s)
        return result
    finally:
        if child is not None and child.poll() is None:
            child.kill()
        for client in (feeder, capture):
            if client is not None:
                client.close()
        server.stop()
        workdir.cleanup()


def bench_input_isolation(
    library_dir: Path, model_dir: Path, seconds: float, rounds: int, test_clients: str = "c"
) -> dict:
    """The jam with its audio input in process and in a child process: same load and length, alternating.

    Round k runs in-process first when k is even, the child first when k is odd, so a change
    of the machine's load during the session falls on both variants alike."""
    runs: list[dict] = []
    for k in range(rounds):
        order = (False, True) if k % 2 == 0 else (True, False)
        for input_process in order:
            load = os.getloadavg()
            run = bench_realtime(
                library_dir, model_dir, seconds, input_process=input_process, test_clients=test_clients, jack_input=False
            )  # PortAudio's callback in the jam's process vs in a child
            run["round"] = k
            run["variant"] = "child_process" if input_process else "in_process"
            run["load_average_1_5_15_before"] = [round(v, 2) for v in load]
            runs.append(run)
    summary = {}
    for variant in ("in_process", "child_process"):
        mine = [r for r in runs if r.get("variant") == variant]
        summary[variant] = {
            "runs": len(mine),
            "seconds_each": seconds,
            "input_overflows": [r.get("input_overflows") for r in mine],
            "jack_xruns": [r.get("jack_xruns_seen_by_capture") for r in mine],
            "analysis_overruns": [r.get("analysis_overruns") for r in mine],
            "input_overflows_total": sum(int(r.get("input_overflows") or 0) for r in mine),
            "jack_xruns_total": sum(int(r.get("jack_xruns_seen_by_capture") or 0) for r in mine),
            "load_average_1min_before": [r.get("load_average_1min_before") for r in mine],
            "errors": [r.get("error") or r.get("engine_error") for r in mine if r.get("error") or r.get("engine_error")],
        }
    return {"summary": summary, "runs": runs, "cpu_count": os.cpu_count(), "load_average_after": list(os.getloadavg())}


def _input_isolation_text(result: dict) -> str:
    lines = ["audio input in the jam's process vs in a child process (real-time jam + UI-like load):"]
    for variant, s in result["summary"].items():
        lines.append(
            f"  {variant:14s} {s['runs']} x {s['seconds_each']:g} s: input overflows {s['input_overflows']} "
            f"(total {s['input_overflows_total']}), JACK xruns {s['jack_xruns']} (total {s['jack_xruns_total']}), "
            f"load avg 1 min before {s['load_average_1min_before']}"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--library", type=Path, default=None, help="data folder with grooves.sqlite (default: GMD imported into a temp folder)")
    parser.add_argument("--model", type=Path, default=None, help="model folder (default: an untrained model exported to a temp folder)")
    parser.add_argument("--repeats", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=60.0, help="real-time run length (0: skip)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child-jam", type=float, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--capture-port", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--switch-ms", type=float, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--reembed", action="store_true", help="also time a hot reload's embedding of the library")
    parser.add_argument("--backend", default="jack", choices=("jack", "rtmidi"), help=argparse.SUPPRESS)
    parser.add_argument("--midi-process", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--input-process", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--jack-input", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument(
        "--portaudio-input", action="store_true",
        help="with --only-realtime: the jam's input through PortAudio in a child process, not sjtui's C JACK client",
    )  # fmt: skip
    parser.add_argument(
        "--only-input-isolation", action="store_true",
        help="only the real-time runs: the audio input in the jam's process vs in a child process, alternating",
    )  # fmt: skip
    parser.add_argument("--rounds", type=int, default=1, help="pairs of runs for --only-input-isolation")
    parser.add_argument(
        "--only-midi-isolation", action="store_true",
        help="only the real-time runs: JACK and rtmidi, MIDI scheduler in a child process vs in the jam's process",
    )  # fmt: skip
    parser.add_argument(
        "--test-clients", choices=("c", "python"), default="c",
        help="the bench's guitar feeder and MIDI capture: FluidSynth and jack_midi_dump (c) or JACK-Client callbacks here",
    )  # fmt: skip
    parser.add_argument(
        "--only-realtime", action="store_true",
        help="only one real-time run with the defaults (input and MIDI in child processes, JACK backend)",
    )  # fmt: skip
    parser.add_argument(
        "--only-environment", action="store_true",
        help="only the JACK server and the C test clients for --seconds, no jam: the machine's own xruns",
    )  # fmt: skip
    parser.add_argument(
        "--load-percent", type=float, default=0.0,
        help="with --only-environment: an ordinary process using this share of one core beside the graph (a jam's own share: its cpu_percent_of_one_core)",
    )  # fmt: skip
    parser.add_argument("--child-load", type=float, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--no-peer", action="store_true", help="skip the peer real-time run with Python's default 5 ms switch interval")
    parser.add_argument("--no-wakeup-probe", action="store_true", help="no cyclictest beside the JACK runs")
    args = parser.parse_args()
    global WAKEUP_PROBE
    WAKEUP_PROBE = not args.no_wakeup_probe
    if args.child_jam is not None:
        print(json.dumps(child_jam(args.library, args.model, args.child_jam, args.capture_port, args.switch_ms,
                                   args.backend, bool(args.midi_process), bool(args.input_process),
                                   bool(args.jack_input))), flush=True)  # fmt: skip
        return 0
    if args.child_load is not None:
        print(json.dumps(child_load(args.child_load, args.seconds)), flush=True)
        return 0
    if args.only_environment:
        print(json.dumps({"environment": bench_environment(args.seconds, args.load_percent)}, indent=2))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dir = args.model or make_model(tmp / "model")
        library_dir = args.library or make_library(tmp / "library")
        if args.only_input_isolation:
            result = {"input_isolation": bench_input_isolation(library_dir, model_dir, args.seconds, args.rounds, args.test_clients)}
            print(json.dumps(result, indent=2) if args.json else _input_isolation_text(result["input_isolation"]))
            return 0
        if args.only_realtime:
            result = {
                "realtime": bench_realtime(
                    library_dir, model_dir, args.seconds, test_clients=args.test_clients,
                    jack_input=not args.portaudio_input,
                )
            }  # fmt: skip
            print(json.dumps(result, indent=2))
            return 0
        result = {"selection": bench_selection(library_dir, model_dir, args.repeats)}
        if args.reembed:
            result["hot_reload_reembed"] = bench_reembed(library_dir, tmp)
        if args.seconds > 0:
            # the MIDI scheduler isolated in a child process (default) vs in the jam's process (the peer)
            result["midi_isolation"] = {
                f"{kind}_{'child_process' if isolated else 'in_process'}": bench_realtime(
                    library_dir, model_dir, args.seconds, backend_kind=kind, midi_process=isolated,
                    test_clients=args.test_clients,
                )
                for kind in ("jack", "rtmidi")
                for isolated in (True, False)
            }  # fmt: skip
        if args.seconds > 0 and not args.only_midi_isolation:
            result["realtime"] = bench_realtime(library_dir, model_dir, args.seconds, test_clients=args.test_clients)
            if not args.no_peer:
                result["realtime_peer_switch_interval_5ms"] = bench_realtime(
                    library_dir, model_dir, args.seconds, 5.0, test_clients=args.test_clients
                )
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        sel = result["selection"]
        print(f"selection over {sel['library_grooves']} grooves ({sel['library_fitting_120bpm_4_4']} fit 120 BPM 4/4):")
        print(f"  selection_ms p50 {sel['selection_ms']['p50']:.3f}  p99 {sel['selection_ms']['p99']:.3f}  max {sel['selection_ms']['max']:.3f}")
        print(f"  parts p50 (ms): {sel['parts_ms_p50']}")
        print(f"  peer: no-model ranking p50 {sel['peer_no_model_rank_ms']['p50']:.3f} ms (ratio {sel['ratio_selection_p50_vs_no_model']:.1f}x)")
        for key in ("midi_isolation", "realtime", "realtime_peer_switch_interval_5ms"):
            if key in result:
                print(f"{key}:", json.dumps(result[key], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
