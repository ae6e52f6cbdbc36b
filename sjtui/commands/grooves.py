"""``sjtui grooves``: import, list, show and export the drum grooves sjtui can play.

    sjtui grooves import PATH               a folder (or file) of drum MIDI, a GMD folder or zip
    sjtui grooves import --gmd [PATH]       the Groove MIDI Dataset (PATH: folder or zip)
    sjtui grooves import --gmd --download   download the official zip first (checksum verified)
    sjtui grooves import --builtin          re-read the built-in library (normally automatic)
    sjtui grooves list [--style S] [--json]
    sjtui grooves show ID
    sjtui grooves export ID FILE.mid
    sjtui grooves play ID [--midi-out PORT] [--bpm N] [--repeats N]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

SHADES = "░▒▓█"
REST = "·"
ROW_LABELS = (  # drawn top to bottom: cymbals, toms, snare, kick (drum-tab order)
    ("crash", "CR"),
    ("ride", "RD"),
    ("open_hat", "OH"),
    ("closed_hat", "HH"),
    ("high_tom", "HT"),
    ("mid_tom", "MT"),
    ("low_tom", "LT"),
    ("snare", "SD"),
    ("kick", "BD"),
)
DISPLAY_RESOLUTIONS = (1, 2, 3, 4, 6, 12)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("grooves", help="the groove library: import, list, show")
    parser.add_argument("--data-dir", type=Path, default=None, help="library folder (default: your data dir)")
    parser.set_defaults(run=_run_help, _parser=parser)
    sub = parser.add_subparsers(dest="grooves_command", metavar="ACTION")

    p = sub.add_parser("import", help="import grooves from MIDI files, the Groove MIDI Dataset or the built-ins")
    p.add_argument("path", nargs="?", type=Path, help="folder or .mid file; a GMD folder or zip is detected")
    p.add_argument("--gmd", action="store_true", help="PATH is the Groove MIDI Dataset (folder or zip)")
    p.add_argument("--download", action="store_true", help="with --gmd: download the official zip first")
    p.add_argument("--url", default=None, help="with --download: a mirror of the GMD zip")
    p.add_argument("--sha256", default=None, help="with --download: expected sha256 (overrides the built-in)")
    p.add_argument("--channel", type=int, default=10, help="MIDI channel of the drums, 1-16 (default 10)")
    p.add_argument("--builtin", action="store_true", help="re-read the built-in library (sjtui/data/grooves/)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(run=run_import)

    p = sub.add_parser("list", help="list the grooves")
    p.add_argument("--style", default=None)
    p.add_argument("--source", default=None, choices=("builtin", "gmd", "midi"))
    p.add_argument("--kind", default=None, choices=("beat", "fill"))
    p.add_argument("--json", action="store_true", help="one JSON object per groove, one per line")
    p.set_defaults(run=run_list)

    p = sub.add_parser("show", help="draw a groove's grid")
    p.add_argument("id", type=int)
    p.add_argument("--width", type=int, default=80, help="terminal columns to fit (default 80)")
    p.add_argument("--resolution", type=int, default=None, choices=DISPLAY_RESOLUTIONS,
                   help="characters per beat (default: the coarsest that shows every hit)")  # fmt: skip
    p.set_defaults(run=run_show)

    p = sub.add_parser("export", help="write a groove as a MIDI file")
    p.add_argument("id", type=int)
    p.add_argument("output", type=Path)
    p.set_defaults(run=run_export)

    p = sub.add_parser("play", help="play a groove on the built-in synth or to a MIDI port")
    p.add_argument("id", type=int)
    p.add_argument("--midi-out", metavar="PORT", default=None,
                   help="send to this MIDI port (see `sjtui devices`); default: the built-in synth")  # fmt: skip
    p.add_argument("--midi-api", default=None, help="MIDI system (alsa, jack, coremidi, windows_mm)")
    p.add_argument("--bpm", type=float, default=None, help="tempo (default: the groove's own)")
    p.add_argument("--repeats", type=int, default=2, help="times to play the groove (default 2)")
    p.add_argument("--clock-out", action="store_true", help="send MIDI clock, Start and Stop with it")
    p.set_defaults(run=run_play)


def _run_help(args) -> int:
    args._parser.print_help()
    return 0


def _open_store(args, builtin: bool = True):
    from sjtui.grooves.store import GrooveStore

    store = GrooveStore(args.data_dir, builtin=builtin)
    if store.builtin_error:
        print(f"sjtui: warning: {store.builtin_error}", file=sys.stderr)
    return store


# ------------------------------------------------------------------------------ import


def _progress_bar():
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("importing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=Console(stderr=True), transient=True,
    )  # fmt: skip


def run_import(args) -> int:
    from sjtui.errors import GrooveError
    from sjtui.grooves import gmd
    from sjtui.grooves.folder_import import import_midi_folder
    from sjtui.grooves.store import default_data_dir

    if not 1 <= args.channel <= 16:
        raise GrooveError(f"--channel {args.channel}: MIDI channels are 1 to 16 (drums are on 10)")
    if args.download and not args.gmd:
        raise GrooveError("--download only goes with --gmd: `sjtui grooves import --gmd --download`")
    store = _open_store(args)
    try:
        if args.builtin:
            changed = store.sync_builtin()
            if store.builtin_error:
                raise GrooveError(store.builtin_error)
            n = store.count("builtin")
            print(f"built-in library: {n} grooves ({'re-read' if changed else 'unchanged'})")
            if args.path is None and not args.gmd:
                return 0
        path = args.path
        is_gmd = args.gmd or (path is not None and (path.suffix.lower() == ".zip" or (path / "info.csv").is_file()))
        if is_gmd:
            if args.download:
                target_dir = path if path is not None else (args.data_dir or default_data_dir()) / "downloads"
                path = gmd.download_gmd(
                    target_dir,
                    url=args.url or gmd.GMD_URL,
                    sha256=args.sha256 or gmd.GMD_ZIP_SHA256,
                    size_bytes=None if args.sha256 else gmd.GMD_ZIP_SIZE,
                )
                print(f"downloaded and verified {path}", file=sys.stderr)
            elif path is None:
                candidate = (args.data_dir or default_data_dir()) / "downloads" / gmd.GMD_ZIP_NAME
                if not candidate.is_file():
                    raise GrooveError(
                        "--gmd needs the dataset: give its folder or zip (`--gmd PATH`), "
                        "or add --download to fetch the official zip"
                    )
                path = candidate
            elif path.is_dir() and not (path / "info.csv").is_file() and (path / gmd.GMD_ZIP_NAME).is_file():
                path = path / gmd.GMD_ZIP_NAME
            with _progress_bar() as bar:
                task = bar.add_task("import", total=None)
                report = gmd.import_gmd(store, path, progress=lambda d, t, _n: bar.update(task, completed=d, total=t))
        else:
            if path is None:
                raise GrooveError("give a folder of MIDI files, --gmd [PATH] or --builtin")
            with _progress_bar() as bar:
                task = bar.add_task("import", total=None)
                report = import_midi_folder(
                    store, path, channel=args.channel - 1,
                    progress=lambda d, t, _n: bar.update(task, completed=d, total=t),
                )  # fmt: skip
        print(json.dumps(report.as_dict(), indent=1) if args.json else report.format())
        _fill_embeddings(store)
        return 0 if report.files_imported + report.files_unchanged > 0 or report.files_seen == 0 else 1
    finally:
        store.close()


def _fill_embeddings(store) -> None:
    """Embed the new grooves with the model in use (keyed by its groove encoder's sha256); never fails the import."""
    from sjtui.model.errors import ModelError
    from sjtui.model.runtime import load_model

    try:
        loaded = load_model()
    except ModelError as error:
        print(f"sjtui: note: grooves imported without embeddings ({error}); `sjtui match` computes them later",
              file=sys.stderr)  # fmt: skip
        return
    if loaded.fallback_reason:
        print(f"sjtui: note: {loaded.fallback_reason}", file=sys.stderr)
    n = store.fill_embeddings(loaded.model)
    if n:
        print(f"embedded {n} grooves with {loaded.model.describe()}", file=sys.stderr)


# ------------------------------------------------------------------------------ list


def run_list(args) -> int:
    store = _open_store(args)
    try:
        rows = store.list_rows(style=args.style, source=args.source, kind=args.kind)
    finally:
        store.close()
    if args.json:
        try:
            for row in rows:
                sys.stdout.write(json.dumps(row, separators=(",", ":")) + "\n")
            sys.stdout.flush()
        except BrokenPipeError:  # `sjtui grooves list --json | head`
            import os

            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    if not rows:
        print("no grooves match" + (f" style {args.style!r}" if args.style else ""))
        return 0
    print(f"{'id':>6}  {'source':<7} {'style':<12} {'bpm':>5} {'meter':<5} {'kind':<4} {'split':<10} {'bars':>4}  name")
    for r in rows:
        print(
            f"{r['id']:>6}  {r['source']:<7} {r['style'][:12]:<12} {r['bpm']:>5.0f} {r['meter']:<5} {r['kind']:<4} "
            f"{(r['split'] or '-'):<10} {r['bars']:>4}  {r['name']}"
        )
    return 0


# ------------------------------------------------------------------------------ show


def display_resolution(hit_steps, steps_per_beat: int = 12) -> int:
    """The coarsest characters-per-beat at which every hit step falls on a character."""
    import numpy as np

    for resolution in DISPLAY_RESOLUTIONS:
        if np.all(np.asarray(hit_steps) % (steps_per_beat // resolution) == 0):
            return resolution
    return steps_per_beat


def render_grid(groove, width: int = 80, resolution: int | None = None) -> list[str]:
    """Text lines drawing ``groove``: one row per voice, bars separated by ``|``, wrapped to ``width``.

    A hit is a shade from ``░`` (soft) to ``█`` (loud); a rest is ``·``.
    Each character covers ``12 / resolution`` steps (loudest hit shown).
    """
    import numpy as np

    from sjtui.constants import DRUM_VOICES, STEPS_PER_BEAT

    steps, _ = np.nonzero(groove.hits)
    resolution = resolution or display_resolution(steps, STEPS_PER_BEAT)
    cell = STEPS_PER_BEAT // resolution
    n_cells = groove.n_steps // cell
    loudness = np.where(groove.hits, groove.velocities, -1.0).reshape(n_cells, cell, -1).max(axis=1)
    cells_per_bar = groove.meter.steps_per_bar // cell
    label_width = 3
    bars_per_line = max(1, (width - label_width - 1) // (cells_per_bar + 1))
    shade_index = np.clip((loudness * len(SHADES)).astype(int), 0, len(SHADES) - 1)
    chars = np.where(loudness >= 0, np.array(list(SHADES))[shade_index], REST)
    lines = []
    voices = [(DRUM_VOICES.index(v), label) for v, label in ROW_LABELS]
    used = [(i, label) for i, label in voices if groove.hits[:, i].any()] or voices[-2:]
    for first_bar in range(0, groove.bars, bars_per_line):
        last_bar = min(first_bar + bars_per_line, groove.bars)
        ruler = " " * label_width + "|"
        for bar in range(first_bar, last_bar):
            mark = str(bar + 1)
            ruler += (mark + " " * cells_per_bar)[:cells_per_bar] + "|"
        lines.append(ruler)
        for voice, label in used:
            row = f"{label:<{label_width}}|"
            for bar in range(first_bar, last_bar):
                row += "".join(chars[bar * cells_per_bar : (bar + 1) * cells_per_bar, voice]) + "|"
            lines.append(row)
        lines.append("")
    return lines


def run_show(args) -> int:
    from sjtui.grooves.descriptors import descriptor_dict

    store = _open_store(args)
    try:
        groove = store.get(args.id)
    finally:
        store.close()
    resolution = args.resolution
    print(f"#{args.id} {groove.name}")
    print(
        f"source {groove.source}  style {groove.style}  {groove.bpm:g} BPM  {groove.meter}  {groove.kind}  "
        f"{groove.bars} bar{'s' if groove.bars != 1 else ''}"
        + (f"  split {groove.split}" if groove.split else "")
        + (f"  {groove.drummer}" if groove.drummer else "")
    )
    d = descriptor_dict(groove.extra["descriptors"])
    print(
        f"syncopation {d['syncopation']:.1f}/bar  swing {d['swing_ratio']:.2f}  loudness {d['loudness']:.2f}  "
        f"timing {d['timing_mean_steps']:+.2f}±{d['timing_spread_steps']:.2f} steps"
    )
    from sjtui.constants import STEPS_PER_BEAT

    lines = render_grid(groove, width=args.width, resolution=resolution)
    import numpy as np

    shown = resolution or display_resolution(np.nonzero(groove.hits)[0], STEPS_PER_BEAT)
    print(f"{shown} characters per beat; soft {SHADES[0]} .. {SHADES[-1]} loud, rest {REST}\n")
    print("\n".join(lines).rstrip())
    return 0


# ------------------------------------------------------------------------------ export / play


def run_export(args) -> int:
    from sjtui.grooves.midi_export import write_midi

    store = _open_store(args)
    try:
        groove = store.get(args.id)
    finally:
        store.close()
    path = write_midi(groove, args.output)
    print(f"wrote {path} ({groove.bars} bars at {groove.bpm:g} BPM, {int(groove.hits.sum())} hits)")
    return 0


def run_play(args) -> int:
    """Play the groove with its own micro-timing and dynamics, then silence everything.

    The same scheduler and event model as the jam; Ctrl-C or SIGTERM stop it
    with note-offs and All Notes Off.
    """
    import signal
    import time

    from sjtui.errors import SjtuiError
    from sjtui.midi.events import groove_events
    from sjtui.midi.scheduler import MidiScheduler
    from sjtui.transport.timebase import TempoMap

    if args.repeats < 1:
        raise SjtuiError(f"--repeats {args.repeats}: play the groove at least once")
    store = _open_store(args)
    try:
        groove = store.get(args.id)
    finally:
        store.close()
    bpm = float(args.bpm or groove.bpm)
    if not 20 <= bpm <= 400:
        raise SjtuiError(f"--bpm {bpm:g}: give a tempo between 20 and 400 BPM")
    if args.midi_out:
        from sjtui.midi.backends import open_backend

        backend = open_backend("auto", port=args.midi_out, api=args.midi_api)
        destination = args.midi_out
    else:
        from sjtui.synth.backend import SynthBackend

        backend = SynthBackend(sample_rate_hz=48000)
        destination = f"built-in synth ({backend.engine.name})"
    scheduler = MidiScheduler(backend, sample_rate_hz=backend.sample_rate_hz or 48000)
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        scheduler.start()
        rate = scheduler.sample_rate_hz
        start = int(scheduler.clock() + 0.2 * rate)  # lead: the first hit may sit before its step
        tempo_map = TempoMap.constant(rate, bpm, groove.meter, anchor_sample=start)
        events = [groove_events(groove, tempo_map, k * groove.bars) for k in range(args.repeats)]
        end = int(tempo_map.bar_to_sample(args.repeats * groove.bars))
        if args.clock_out:
            scheduler.clock_start(tempo_map)
            scheduler.clock_stop(end)
        for part in events:
            scheduler.submit(part)
        print(f"playing {groove.name} ({groove.style}, {groove.bars} bars of {groove.meter}) "
              f"{args.repeats}x at {bpm:g} BPM on {destination}; Ctrl-C stops")  # fmt: skip
        while scheduler.clock() < end + 0.3 * rate:
            if scheduler.error is not None:
                raise SjtuiError(f"playback stopped: {scheduler.error}")
            time.sleep(0.05)
    except KeyboardInterrupt:
        print("stopped")
    finally:
        signal.signal(signal.SIGTERM, previous)
        scheduler.close()  # note-offs for what sounds, All Notes Off, backend closed
    return 0
