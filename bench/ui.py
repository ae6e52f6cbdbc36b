"""The jam screen's costs: CPU while jamming, time to the first frame, memory with the GMD library.

Figures (each with the peer it is compared with, measured in the same run):

- ``cpu``: the UI polling a fake engine that publishes realistic snapshots
  at 60 Hz (a riff at 124 BPM, grooves switching), for ``--seconds``:
  * headless, in this process, at 80×24 and 120×40: CPU time of the main
    thread (Textual's event loop: polling, widgets, compositing) as % of
    one core; the whole process; and the peer, the fake engine's publisher
    thread alone (what the engine side costs, not the UI);
  * in a real terminal (tmux) at 80×24 and 120×40: CPU of the whole
    ``python -m sjtui.ui.demo_fake`` process (UI + fake publisher + the
    thread writing escape codes) from /proc, as % of one core.
  Target: the UI at most 10% of one core.
- ``startup``: from launching the program in tmux to the first drawn frame
  (the key bar on screen), median of ``--repeats``: the UI over the
  fake engine; bare ``sjtui`` (the jam on the default input, the JACK
  ``system`` device here); ``sjtui demo``; ``sjtui jam`` on a file input
  (private JACK dummy server), and the same jam started through
  ``run_app(factory)`` (screen first, engine built behind it); peers: a
  shell and a bare interpreter printing one line, measured the same way. Also: seconds to import
  ``sjtui.ui.app`` and whether torch got imported. Target: at most 2 s.
- ``memory``: resident memory of ``sjtui jam`` with the shipped model and
  the whole Groove MIDI Dataset imported into its library (built in a
  temporary folder from ../shared/datasets/groove-midi, so the first jam
  embeds it), on the JACK ``system`` input and on a file input: VmRSS and
  VmHWM of the jam's process, and RSS and PSS summed over its process tree
  (the MIDI output and a device input run in child processes; PSS splits
  shared pages between the processes that map them), also without the JACK
  server's shared memory (/dev/shm/jack-*: its graph and port buffers, about
  100 MB here, mapped by every JACK client and owned by jackd); peer: the jam
  with the built-in grooves and no model. Target: under 300 MB, judged on the
  tree's PSS without the JACK server's memory. Also the CPU of the screen's
  process in the real jam (the engine runs in its child process).
- ``engine_timing``: the real engine (the whole GMD imported, the shipped
  model) on JACK without the UI, with the UI polling at 30 Hz in the same
  process (the GIL is shared: this is where a heavy UI would show), and with
  the UI over the engine in its child process (sjtui.engine_process, how
  ``sjtui jam`` runs it; the probe runs in the engine's process): note
  error p50/p99, xruns, input overflows, the engine's own decisions (one per
  4 bars) and a :class:`SelectionProbe` deciding every 5 ms beside them for a
  p99 worth the name (wall and thread CPU time). Target from the live
  engine issue: selection p99 at most 2 ms.

    .venv/bin/python bench/ui.py                 # text
    .venv/bin/python bench/ui.py --json
    .venv/bin/python bench/ui.py --seconds 5     # quicker, noisier
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PYTHON = sys.executable
SJTUI = str(Path(sys.executable).with_name("sjtui"))
SIZES = ((80, 24), (120, 40))
FIRST_FRAME = "q quit"  # the key bar: only the jam screen draws it (a command may print "BPM" before)


def shared_dir() -> Path:
    shared = os.environ.get("SJTUI_SHARED")
    return Path(shared) if shared else REPO.parent / "shared"


RECORDING = shared_dir() / "datasets" / "guitar-audio" / "berklee_guitar_riff_cutup1.wav"


# --- helpers ------------------------------------------------------------------------------------


def proc_cpu_s(pid: int) -> float:
    """utime + stime of a process (all its threads), seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(children.get(p, []))
    return tree


def _jack_shm_pss_mb(pid: int) -> float:
    """PSS of the JACK server's shared memory (/dev/shm/jack-*) mapped into ``pid``: the server's
    graph and port buffers, which every JACK client maps (about 100 MB here)."""
    total, in_jack = 0, False
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split()
        if head and "-" in head[0] and len(head) >= 5 and ":" not in head[0]:
            in_jack = len(head) >= 6 and head[5].startswith("/dev/shm/jack")
        elif in_jack and line.startswith("Pss:"):
            total += int(head[1])
    return total / 1024


def tree_memory_mb(pid: int) -> dict:
    """RSS and PSS (shared pages split between the processes that map them) of a process tree,
    and the PSS without the JACK server's shared memory."""
    rows = []
    for p in process_tree(pid):
        try:
            rollup = Path(f"/proc/{p}/smaps_rollup").read_text()
            name = Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:60]
            jack_shm = _jack_shm_pss_mb(p)
        except OSError:
            continue
        fields = {line.split(":")[0]: int(line.split()[1]) / 1024 for line in rollup.splitlines()[1:]}
        rows.append(
            {"pid": p, "cmd": name, "rss_mb": round(fields["Rss"], 1), "pss_mb": round(fields["Pss"], 1),
             "jack_shm_pss_mb": round(jack_shm, 1)}
        )  # fmt: skip
    return {
        "processes": rows,
        "rss_mb_sum": round(sum(r["rss_mb"] for r in rows), 1),
        "pss_mb_sum": round(sum(r["pss_mb"] for r in rows), 1),
        "pss_mb_sum_without_jack_shm": round(sum(r["pss_mb"] - r["jack_shm_pss_mb"] for r in rows), 1),
    }


def proc_memory_mb(pid: int) -> dict:
    status = Path(f"/proc/{pid}/status").read_text()
    out = {}
    for line in status.splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024
    return out


class Tmux:
    """A detached session on a private tmux server running ``command`` (exec'd: the pane's pid is it)."""

    def __init__(self, command: str, width: int, height: int, env: dict | None = None):
        self.socket = f"sjtui-bench-{os.getpid()}-{time.monotonic_ns()}"
        exports = " ".join(f"{k}={v}" for k, v in (env or {}).items())
        shell = f"cd {REPO} && exec env -u COLUMNS -u LINES {exports} {command}"
        self.started = time.perf_counter()
        self._tmux("new-session", "-d", "-s", "b", "-x", str(width), "-y", str(height), shell)
        self.pid = int(self._tmux("display-message", "-p", "-t", "b", "#{pane_pid}").strip())

    def _tmux(self, *args) -> str:
        return subprocess.run(
            ["tmux", "-L", self.socket, *args], check=False, capture_output=True, text=True, timeout=10
        ).stdout

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", "b")

    def wait_for(self, text: str, timeout_s: float = 30.0, poll_s: float = 0.01) -> float:
        """Seconds from the session's start until ``text`` is on screen."""
        deadline = time.perf_counter() + timeout_s
        while time.perf_counter() < deadline:
            if text in self.screen():
                return time.perf_counter() - self.started
            time.sleep(poll_s)
        raise RuntimeError(f"{text!r} did not appear within {timeout_s} s; screen:\n{self.screen()}")

    def keys(self, *keys) -> None:
        self._tmux("send-keys", "-t", "b", *keys)

    def close(self) -> None:
        self._tmux("kill-server")


class JackServer:
    """A private JACK dummy server (48 kHz / 256) for the real-engine figures (sjtui.audio.jack_server)."""

    def __init__(self):
        from sjtui.audio.jack_server import PrivateJackServer

        self.server = PrivateJackServer("sjtui-bench-ui", 48000, 256, set_env=False).start()
        self.name = self.server.name

    def close(self) -> None:
        self.server.stop()


# --- cpu ----------------------------------------------------------------------------------------


def cpu_headless(size: tuple[int, int], seconds: float, publish_hz: float) -> dict:
    """The app over a publishing fake engine, headless in this process; CPU per thread over ``seconds``."""
    from sjtui.ui.app import JamApp
    from sjtui.ui.fake import FakeEngine

    engine = FakeEngine("jamming", publish_hz=publish_hz)
    marks: dict = {}

    class BenchApp(JamApp):
        def on_mount(self) -> None:  # Textual calls JamApp.on_mount too (handlers run along the MRO)
            self.set_timer(1.0, self._begin)  # skip start-up

        def _begin(self) -> None:
            marks["begin"] = (time.perf_counter(), time.process_time(), time.thread_time(), engine.publisher_cpu_s,
                              self.polls, sum(v.repaints for v in self._views))  # fmt: skip
            self.set_timer(seconds, self._end)

        def _end(self) -> None:
            marks["end"] = (time.perf_counter(), time.process_time(), time.thread_time(), engine.publisher_cpu_s,
                            self.polls, sum(v.repaints for v in self._views))  # fmt: skip
            self.exit()

    app = BenchApp(engine)
    app.run(headless=True, size=size)
    engine.close()
    (w0, p0, m0, e0, n0, r0), (w1, p1, m1, e1, n1, r1) = marks["begin"], marks["end"]
    wall = w1 - w0
    return {
        "size": f"{size[0]}x{size[1]}",
        "seconds": round(wall, 2),
        "ui_main_thread_pct": round(100 * (m1 - m0) / wall, 2),
        "whole_process_pct": round(100 * (p1 - p0) / wall, 2),
        "peer_fake_engine_publisher_pct": round(100 * (e1 - e0) / wall, 2),
        "polls_per_s": round((n1 - n0) / wall, 1),
        "widget_repaints_per_s": round((r1 - r0) / wall, 1),
    }


def cpu_terminal(size: tuple[int, int], seconds: float, publish_hz: float) -> dict:
    """The demo in a real terminal (tmux): whole-process CPU from /proc over ``seconds``."""
    term = Tmux(
        f"{PYTHON} -m sjtui.ui.demo_fake jamming --publish-hz {publish_hz}",
        *size,
        env={"TERM": "xterm-256color"},
    )
    try:
        term.wait_for(FIRST_FRAME)
        time.sleep(1.0)
        t0, c0 = time.perf_counter(), proc_cpu_s(term.pid)
        time.sleep(seconds)
        t1, c1 = time.perf_counter(), proc_cpu_s(term.pid)
        memory = proc_memory_mb(term.pid)
        term.keys("q")
    finally:
        time.sleep(0.5)
        term.close()
    return {
        "size": f"{size[0]}x{size[1]}",
        "seconds": round(t1 - t0, 2),
        "whole_process_pct": round(100 * (c1 - c0) / (t1 - t0), 2),
        "rss_mb": round(memory.get("VmRSS", 0.0), 1),
    }


# --- startup ------------------------------------------------------------------------------------


def startup(repeats: int, jack: JackServer | None, library_dir: Path) -> dict:
    out: dict = {}
    env = {"TERM": "xterm-256color"}
    times = []
    for _ in range(repeats):
        term = Tmux("sh -c 'echo READY; sleep 5'", 100, 30)  # peer: a shell printing one line
        try:
            times.append(term.wait_for("READY"))
        finally:
            term.close()
    out["peer_shell_echo_s"] = round(statistics.median(times), 3)
    times = []
    for _ in range(repeats):
        term = Tmux(f"{PYTHON} -c 'print(\"READY\"); import time; time.sleep(5)'", 100, 30)
        try:
            times.append(term.wait_for("READY"))
        finally:
            term.close()
    out["peer_python_print_s"] = round(statistics.median(times), 3)
    times = []
    for _ in range(repeats):
        term = Tmux(f"{PYTHON} -m sjtui.ui.demo_fake jamming", 100, 30, env=env)
        try:
            times.append(term.wait_for(FIRST_FRAME))
            term.keys("q")
            time.sleep(0.3)
        finally:
            term.close()
    out["ui_fake_engine_first_frame_s"] = round(statistics.median(times), 3)
    if jack is not None:
        times = []
        for _ in range(repeats):
            jam_env = dict(env, JACK_DEFAULT_SERVER=jack.name, SJTUI_DATA_DIR=str(library_dir / "data"))
            term = Tmux(
                f"{SJTUI} jam --input {RECORDING} --loop --library {library_dir} --model none",
                100,
                30,
                env=jam_env,
            )
            try:
                times.append(term.wait_for(FIRST_FRAME))
                term.keys("q")
                time.sleep(0.5)
            finally:
                term.close()
        out["sjtui_jam_first_frame_s"] = round(statistics.median(times), 3)
        for name, command in (
            ("sjtui_bare_first_frame_s", SJTUI),
            ("sjtui_demo_first_frame_s", f"{SJTUI} demo"),
        ):
            times = []
            for _ in range(repeats):
                jam_env = dict(env, JACK_DEFAULT_SERVER=jack.name, SJTUI_DATA_DIR=str(library_dir / "data"))
                term = Tmux(command, 100, 30, env=jam_env)
                try:
                    times.append(term.wait_for(FIRST_FRAME))
                    term.keys("q")
                    time.sleep(0.5)
                finally:
                    term.close()
            out[name] = round(statistics.median(times), 3)
        times = []
        for _ in range(repeats):
            jam_env = dict(env, JACK_DEFAULT_SERVER=jack.name, SJTUI_DATA_DIR=str(library_dir / "data"))
            term = Tmux(
                f"{PYTHON} {Path(__file__).resolve()} --run-jam-factory {library_dir}", 100, 30, env=jam_env
            )
            try:
                times.append(term.wait_for(FIRST_FRAME))
                term.wait_for("PLAYING")
                term.keys("q")
                time.sleep(0.5)
            finally:
                term.close()
        out["jam_via_run_app_factory_first_frame_s"] = round(statistics.median(times), 3)
    probe = subprocess.run(
        [PYTHON, "-c", ("import sys, time; t = time.perf_counter(); import sjtui.ui.app; "
                        "print(time.perf_counter() - t, 'torch' in sys.modules, 'textual' in sys.modules)")],
        capture_output=True, text=True, cwd=REPO, check=True,
    )  # fmt: skip
    seconds, torch, _ = probe.stdout.split()
    out["import_sjtui_ui_app_s"] = round(float(seconds), 3)
    out["torch_imported"] = torch == "True"
    return out


# --- memory -------------------------------------------------------------------------------------


def build_gmd_store(folder: Path) -> int:
    from sjtui.grooves.gmd import import_gmd
    from sjtui.grooves.store import GrooveStore

    store = GrooveStore(folder)
    try:
        import_gmd(store, shared_dir() / "datasets" / "groove-midi")
        return store.count()
    finally:
        store.close()


def jam_memory(
    jack: JackServer, library_dir: Path, settle_s: float, model: str = "none", device: bool = False,
    cpu_seconds: float = 10.0,
) -> dict:  # fmt: skip
    """Memory of ``sjtui jam``: its own process and the whole tree (the MIDI output runs in a
    child process, a device input in another). ``device``: the JACK ``system`` input, as a
    guitarist plays (silent here: the screen, library and model are loaded, no groove plays);
    else the recording as a file input, looping (resampled from 44.1 kHz, which loads scipy.signal).
    Then the CPU of the screen's process alone over ``cpu_seconds`` (the engine is its child)."""
    env = {
        "TERM": "xterm-256color",
        "JACK_DEFAULT_SERVER": jack.name,
        "SJTUI_DATA_DIR": str(library_dir / "data"),
    }
    term = Tmux(
        f"{SJTUI} jam --input {'system' if device else f'{RECORDING} --loop'} --library {library_dir} --model {model}",
        100, 30, env=env,
    )  # fmt: skip
    try:
        term.wait_for(FIRST_FRAME if device else "kick", timeout_s=120)
        time.sleep(settle_s)
        memory = proc_memory_mb(term.pid)
        tree = tree_memory_mb(term.pid)
        # the screen's own process (the engine runs in a child of it): the UI's CPU in a real jam
        t0, c0 = time.perf_counter(), proc_cpu_s(term.pid)
        time.sleep(cpu_seconds)
        screen_cpu_pct = 100 * (proc_cpu_s(term.pid) - c0) / (time.perf_counter() - t0)
        term.keys("q")
        time.sleep(0.5)
    finally:
        term.close()
    return {
        "input": "system" if device else "file",
        "model": model,
        "rss_mb": round(memory["VmRSS"], 1),
        "hwm_mb": round(memory["VmHWM"], 1),
        "tree": tree,
        "screen_process_cpu_pct": round(screen_cpu_pct, 2),
        "screen_cpu_seconds": cpu_seconds,
    }


# --- the real engine's timing with and without the UI ------------------------------------------------


def _bench_engine():
    """bench/engine.py (imported here, not at start: this file's --run-jam-factory is timed to its first frame)."""
    sys.path.insert(0, str(REPO / "bench"))
    import engine

    return engine


class SelectionProbe:
    """Decisions 5 ms apart in a thread of the jam's process: a fingerprint of a rendered riff's
    4 bars, then the engine's own ranker (model, full library), as bench/timing.py's
    selection_ms times them in a row. The engine decides once per 4 bars (every 8 s at
    120 BPM), too rarely for a p99 in a minute; the probe shares the GIL and the cores with
    the engine and the UI in the same way."""

    GAP_S = 0.005

    def __init__(self, ranker):
        self.bench = _bench_engine()
        self.accumulator, self.tempo_map = self.bench.riff_accumulator(120.0, 64)
        self.ranker = ranker
        self.wall_ms: list[float] = []
        self.cpu_ms: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        i = 0
        while not self._stop.wait(self.GAP_S):
            t, c = time.perf_counter(), time.thread_time()
            fingerprint = self.accumulator.fingerprint(self.tempo_map, i % 56)
            self.ranker.rank(fingerprint, 120.0, "4/4", None)
            self.wall_ms.append((time.perf_counter() - t) * 1e3)
            self.cpu_ms.append((time.thread_time() - c) * 1e3)
            i += 1

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(2)

    def figures(self) -> dict:
        return {
            "wall_ms": self.bench.percentiles(self.wall_ms),
            "cpu_ms": self.bench.percentiles(self.cpu_ms),
        }


class ProbeInEngineProcess:
    """A :class:`SelectionProbe` beside the engine in its child process (``EngineProcess(probe=...)``)."""

    def __init__(self, engine):
        self.probe = SelectionProbe(engine.ranker).__enter__()

    def stop(self) -> dict:
        self.probe.__exit__(None, None, None)
        return self.probe.figures()


def engine_timing(jack: JackServer, library_dir: Path, seconds: float, model_dir: Path) -> dict:
    """Engine timing after ``seconds`` of jamming (library and model as given, decisions timed by
    the engine and by a :class:`SelectionProbe`): without the UI, with the UI polling in the same
    process, and with the UI over the engine in its child process (as ``sjtui jam`` runs it)."""
    os.environ["JACK_DEFAULT_SERVER"] = jack.name
    os.environ["SJTUI_DATA_DIR"] = str(library_dir / "data")
    from sjtui.engine import EngineOptions, create_engine
    from sjtui.ui.app import JamApp

    class TimedApp(JamApp):
        def on_mount(self) -> None:  # JamApp.on_mount runs as well
            self.set_timer(seconds, self.exit)

    def options():
        return EngineOptions(input=str(RECORDING), loop=True, library=str(library_dir), model=str(model_dir),
                             midi_backend="jack", state_file=False)  # fmt: skip

    def run_engine_in_child() -> dict:
        from sjtui.engine_process import EngineProcess

        engine = EngineProcess(options(), probe=ProbeInEngineProcess).start()
        try:
            TimedApp(engine).run(headless=True, size=(100, 30))
        finally:
            engine.close()
        final = engine.final or {}
        timing = final.get("timing")
        return {
            "note_error_ms_p50": None if timing is None else timing.note_error_ms_p50,
            "note_error_ms_p99": None if timing is None else timing.note_error_ms_p99,
            "library_grooves": final.get("library_grooves"),
            "engine_decisions_ms": [round(ms, 3) for ms in final.get("selection_ms", [])],
            "engine_decisions_cpu_ms": [round(ms, 3) for ms in final.get("selection_cpu_ms", [])],
            "selection_probe": final.get("probe"),
            "xruns": None if timing is None else timing.xruns,
            "input_overflows": None if timing is None else timing.input_overflows,
            "input_frames_lost": None if timing is None else timing.input_frames_lost,
        }

    def run(with_ui: bool) -> dict:
        engine = create_engine(options())
        engine.start()
        try:
            with SelectionProbe(engine.ranker) as probe:
                if with_ui:
                    TimedApp(engine).run(headless=True, size=(100, 30))
                else:
                    threading.Event().wait(seconds)
            timing = engine.snapshot().timing
            decisions = [round(ms, 3) for ms in engine.selection_ms]
            decisions_cpu = [round(ms, 3) for ms in engine.selection_cpu_ms]
        finally:
            engine.close()
        return {
            "note_error_ms_p50": timing.note_error_ms_p50,
            "note_error_ms_p99": timing.note_error_ms_p99,
            "library_grooves": len(engine.library),
            "engine_decisions_ms": decisions,
            "engine_decisions_cpu_ms": decisions_cpu,
            "selection_probe": probe.figures(),
            "xruns": timing.xruns,
            "input_overflows": timing.input_overflows,
            "input_frames_lost": timing.input_frames_lost,
        }

    return {
        "seconds_each": seconds,
        "model": str(model_dir),
        "without_ui": run(False),
        "with_ui_30hz_same_process": run(True),
        "with_ui_30hz_engine_in_child_process": run_engine_in_child(),
    }


# --- main ---------------------------------------------------------------------------------------------


def run_jam_factory(library_dir: str) -> int:
    """The same jam as ``sjtui jam``, started through ``run_app(factory)``: the screen first, the engine behind."""
    from sjtui.ui.app import run_app

    def factory():
        from sjtui.engine import EngineOptions, create_engine

        options = EngineOptions(input=str(RECORDING), loop=True, library=library_dir, model="none")
        return create_engine(options).start()

    return run_app(factory)


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--run-jam-factory":  # used by the start-up measurement
        return run_jam_factory(sys.argv[2])
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each CPU measurement")
    parser.add_argument(
        "--publish-hz", type=float, default=60.0, help="snapshots per second from the fake engine"
    )
    parser.add_argument("--repeats", type=int, default=3, help="start-up runs (median)")
    parser.add_argument("--no-real", action="store_true", help="skip what needs jackd (real engine, memory)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--only", choices=("cpu", "startup", "memory", "engine_timing"), action="append",
        help="measure only these sections (repeatable; default: all)",
    )  # fmt: skip
    args = parser.parse_args()
    only = set(args.only or ("cpu", "startup", "memory", "engine_timing"))
    if shutil.which("tmux") is None:
        print("bench/ui.py needs tmux (make test installs it)", file=sys.stderr)
        return 2

    result: dict = {"cpu_headless": [], "cpu_terminal": []}
    for size in SIZES if "cpu" in only else ():
        result["cpu_headless"].append(cpu_headless(size, args.seconds, args.publish_hz))
    for size in SIZES if "cpu" in only else ():
        result["cpu_terminal"].append(cpu_terminal(size, args.seconds, args.publish_hz))

    from sjtui.model.runtime import SHIPPED_MODEL_DIR

    jack = None if args.no_real or shutil.which("jackd") is None else JackServer()
    try:
        with tempfile.TemporaryDirectory(prefix="sjtui-bench-ui-") as tmp:
            builtin_dir = Path(tmp) / "builtin"
            builtin_dir.mkdir()
            if "startup" in only:
                result["startup"] = startup(args.repeats, jack, builtin_dir)
            gmd_dir = Path(tmp) / "gmd"
            if jack is not None and only & {"memory", "engine_timing"}:
                gmd_dir.mkdir()
                start = time.perf_counter()
                n = build_gmd_store(gmd_dir)
                import_s = time.perf_counter() - start
            if jack is not None and "memory" in only:
                result["memory"] = {
                    "gmd_grooves": n,
                    "gmd_import_s": round(import_s, 1),
                    "jam_with_gmd_library_device_input": jam_memory(
                        jack, gmd_dir, 5.0, str(SHIPPED_MODEL_DIR), device=True
                    ),
                    "jam_with_gmd_library_file_input": jam_memory(jack, gmd_dir, 5.0, str(SHIPPED_MODEL_DIR)),
                    "peer_jam_with_builtin_library_no_model": jam_memory(jack, builtin_dir, 5.0),
                }
            if jack is not None and "engine_timing" in only:
                seconds = max(args.seconds, 20.0)
                result["engine_timing"] = engine_timing(jack, gmd_dir, seconds, SHIPPED_MODEL_DIR)
    finally:
        if jack is not None:
            jack.close()

    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for section, value in result.items():
            print(f"{section}:")
            for row in value if isinstance(value, list) else [value]:
                print("  " + json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
