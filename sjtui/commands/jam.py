"""``sjtui jam``: the live jam (the default command). The TUI when it exists, else headless lines.

``--headless`` prints one status line per bar (``--json``: one JSON object
per bar) and shuts down cleanly on SIGTERM/SIGINT/SIGHUP: the scheduler
silences every sounding note and sends All Notes Off before the process ends.
"""

from __future__ import annotations

import json
import signal
import sys
import time


def add_jam_options(parser) -> None:
    """The options shared by ``jam`` and ``demo``."""
    parser.add_argument("--headless", action="store_true", help="no TUI: one status line per bar on stdout")
    parser.add_argument("--json", action="store_true", help="with --headless: one JSON object per bar")
    parser.add_argument("--channel", type=int, default=None, help="MIDI channel of the drums, 1-16 (default 10)")
    parser.add_argument("--midi-out", metavar="PORT", default=None, help="send the drums to this MIDI port (default: a virtual port `sjtui`)")
    parser.add_argument("--midi-api", default=None, help="MIDI API: alsa, jack, coremidi, winmm (default: what works here; MIDO_BACKEND overrides)")
    parser.add_argument("--midi-backend", default="auto", choices=("auto", "jack", "rtmidi"), help="JACK-Client (sample-accurate) or rtmidi (default: JACK where the API is JACK)")
    parser.add_argument("--synth", action="store_true", help="play the drums on the built-in synth (audio out)")
    parser.add_argument("--synth-engine", default="auto", choices=("auto", "fluidsynth", "numpy"), help="built-in synth engine (default: FluidSynth where a SoundFont is installed)")
    parser.add_argument("--bpm", type=float, default=None, help="tempo in BPM (quarter notes), 20-400 (default 120)")
    parser.add_argument("--meter", default=None, help="time signature: 4/4, 3/4, 6/8, 5/4, 7/8 (default 4/4)")
    parser.add_argument("--clock", default=None, choices=("internal", "tap", "midi", "auto"), help="where the tempo comes from (default internal; auto: from the playing)")
    parser.add_argument("--clock-in", metavar="PORT", default=None, help="MIDI clock input port for --clock midi")
    parser.add_argument("--clock-out", action="store_true", help="send MIDI clock (24 PPQN, Start/Stop/SPP) with the drums")
    parser.add_argument("--bars", type=int, default=None, help="stop after N bars")
    parser.add_argument("--library", default=None, help="groove library file or folder (default: your data folder)")
    parser.add_argument("--model", default=None, help="model folder (default: yours, else the shipped one); `none` for no model")
    parser.add_argument("--config", default=None, help="engine settings file (TOML, [engine] table; default: config.toml in your config folder)")
    parser.add_argument("--fast", action="store_true", help="file input as fast as possible on a simulated clock (tests, benchmarks): MIDI timing is simulated, nothing is sent")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "jam",
        help="jam: listen to the guitar and play drums (the default command)",
        description=(
            "Listen to the guitar and play drum grooves in time, chosen every 4 bars. Starts the terminal UI; "
            "--headless runs the same engine for a rig, one line per bar."
        ),
    )
    parser.add_argument("--input", default=None, help="audio input device (name or index, see `sjtui devices`) or an audio file played as if live")
    parser.add_argument("--input-channel", type=int, default=1, help="input channel of the guitar, counted from 1")
    parser.add_argument("--loop", action="store_true", help="with a file --input: loop it")
    parser.add_argument(
        "--input-in-process", action="store_true",
        help="run the audio input in the jam's own process (default: a child process, so the UI and analysis "
        "cannot delay it; use this where starting that process fails)",
    )  # fmt: skip
    parser.add_argument(
        "--portaudio-input", action="store_true",
        help="on JACK, take the input through PortAudio's JACK host API (in a child process) instead of sjtui's "
        "own C JACK client",
    )  # fmt: skip
    add_jam_options(parser)
    parser.set_defaults(run=run)


def options_from_args(args, **extra):
    from sjtui.config import load_config
    from sjtui.engine import EngineOptions

    config = load_config(args.config)
    if args.channel is not None:
        config = config.with_overrides(channel=args.channel)
    values = dict(
        input=getattr(args, "input", None),
        input_channel=getattr(args, "input_channel", 1),
        loop=getattr(args, "loop", False),
        input_process=not getattr(args, "input_in_process", False),
        jack_input=not getattr(args, "portaudio_input", False),
        synth=args.synth,
        synth_engine=args.synth_engine,
        midi_out=args.midi_out,
        midi_api=args.midi_api,
        midi_backend=args.midi_backend,
        bpm=120.0 if args.bpm is None else args.bpm,
        meter=args.meter or "4/4",
        clock=args.clock or "internal",
        clock_in=args.clock_in,
        clock_out=args.clock_out,
        library=args.library,
        model=args.model,
        fast=args.fast,
        config=config,
    )
    values.update(extra)
    return EngineOptions(**values)


def format_bar(report: dict) -> str:
    groove = report["groove"]
    if groove is None:
        what = "-- (no drums)"
    else:
        score = "" if groove.get("score") is None else f" {groove['score']:+.3f}"
        what = f"{groove['name']}{score}" + (f" #{groove['id']}" if groove.get("id") is not None else "")
    flags = ("  SWITCH" if report["switched"] else "") + ("  LOCKED" if report["locked"] else "")
    return (
        f"bar {report['bar']:4d}  {report['time_s']:8.2f}s  {report['bpm']:6.1f} BPM {report['meter']:>4}  "
        f"{report['level_db']:6.1f} dB  {report['state']:<8}  {what}{flags}"
    )


def run_headless(engine, as_json: bool, max_bars: int | None, out=None) -> int:
    """Print one line per bar until ``max_bars``, the input ends, an error, or a signal. Returns the exit status."""
    import queue

    from sjtui.midi.scheduler import install_signal_handlers

    out = out or sys.stdout
    stopping = {"signal": None}

    def on_signal(signum, frame):
        stopping["signal"] = signum
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        try:
            signal.signal(sig, on_signal)
        except (ValueError, OSError):  # not the main thread
            install_signal_handlers = None
            break
    bars = 0
    shown_log = 0
    status = 0
    try:
        engine.start()
        snap = engine.snapshot()
        for entry in snap.log:
            print(f"# {entry.level}: {entry.text}", file=sys.stderr, flush=True)
            shown_log = max(shown_log, entry.time_s)
        while True:
            try:
                report = engine.bar_reports.get(timeout=0.1)
            except queue.Empty:
                report = None
            if report is not None:
                bars += 1
                line = json.dumps(report) if as_json else format_bar(report)
                print(line, file=out, flush=True)
            for entry in engine.snapshot().log:
                if entry.time_s > shown_log:
                    print(f"# {entry.level}: {entry.text}", file=sys.stderr, flush=True)
                    shown_log = entry.time_s
            if max_bars is not None and bars >= max_bars:
                break
            if engine.finished.is_set():
                if engine.error is not None:
                    print(f"sjtui: the engine stopped: {engine.error}", file=sys.stderr)
                    status = 1
                break
    except KeyboardInterrupt:
        status = 130
    except SystemExit as exit_:
        status = int(exit_.code or 0)
    finally:
        engine.close()
        snap = engine.snapshot()
        for entry in snap.log:
            if entry.time_s > shown_log and entry.level != "info":
                print(f"# {entry.level}: {entry.text}", file=sys.stderr, flush=True)
    return status


def tui_available() -> bool:
    """Whether the Textual jam screen exists (checked without starting anything)."""
    try:
        from sjtui.ui import app as ui_app
    except ImportError:
        return False
    return getattr(ui_app, "make_app", None) is not None


def run_tui(engine) -> int | None:
    """Run the Textual app on ``engine`` if the UI exists; None when it does not.

    ``engine`` may be a function returning a started engine: the screen then
    draws at once and the engine is built behind it (a worker thread); an error
    building it is shown on the screen and printed after it closes (exit 2).

    SIGTERM and SIGHUP (the terminal went away) ask the app to exit from a
    watcher thread; if it has not ended 3 s later the engine is closed (every
    note off) and the process exits anyway: never a hang, never a stuck note.
    """
    try:
        from sjtui.ui import app as ui_app
    except ImportError:
        return None
    make_app = getattr(ui_app, "make_app", None)
    if make_app is None:
        return None
    import os
    import threading

    from sjtui.signals import start_thread

    factory = None if hasattr(engine, "snapshot") or not callable(engine) else engine
    app = make_app(engine)
    got = {"signal": None}
    wake = threading.Event()

    def on_signal(signum, frame):
        got["signal"] = signum
        wake.set()

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)

    def watch():
        wake.wait()
        if got["signal"] is None:
            return

        def ask_app():  # call_from_thread waits for the app's loop: never on the watcher itself
            try:
                app.call_from_thread(app.exit, 128 + got["signal"])
            except Exception:  # noqa: BLE001 - the app is not running (yet or any more)
                pass

        start_thread(ask_app, "sjtui-exit-app")
        time.sleep(3.0)
        app.close_engine()  # the engine the app has (the built one with a factory)
        os._exit(128 + got["signal"])

    start_thread(watch, "sjtui-signal-watch")
    if factory is None:
        engine.start()  # the app polls and commands
    try:
        result = app.run()
    finally:
        app.close_engine()
        if got["signal"] is None:
            wake.set()  # let the watcher end
    if got["signal"] is not None:
        return 128 + got["signal"]
    if app.start_error is not None:
        print(f"sjtui: {app.start_error}", file=sys.stderr)
        return 2
    return int(result or 0)


def run(args) -> int:
    from sjtui.engine import create_engine

    if args.bars is not None and args.bars < 1:
        print(f"sjtui: --bars {args.bars}: give at least 1 bar", file=sys.stderr)
        return 2
    options = options_from_args(args)
    if wants_tui(args):  # the screen first; the engine (library, model, devices) is built behind it
        return run_tui(lambda: start_engine_for_screen(options))
    engine = create_engine(options)
    return run_engine(engine, args)


def start_engine_for_screen(options):
    """A started engine for the jam screen: in a child process unless the config says otherwise."""
    if options.config.engine_process:
        from sjtui.engine_process import EngineProcess

        return EngineProcess(options).start()
    from sjtui.engine import create_engine

    return create_engine(options).start()


def wants_tui(args) -> bool:
    """The jam screen runs (not --headless, a terminal, the UI installed)."""
    if args.headless or not sys.stdout.isatty():
        return False
    if tui_available():
        return True
    print("sjtui: the terminal UI is not built yet; running headless (one line per bar)", file=sys.stderr)
    return False


def run_engine(engine, args) -> int:
    if not args.headless and sys.stdout.isatty():
        status = run_tui(engine)
        if status is not None:
            return status
        print("sjtui: the terminal UI is not built yet; running headless (one line per bar)", file=sys.stderr)
    return run_headless(engine, args.json, args.bars)
