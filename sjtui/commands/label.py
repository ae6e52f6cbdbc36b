"""``sjtui label``: rate guitar loops against grooves, 0-5; every confirmed rating is saved at once.

Loops come from ``--folder DIR`` (any audio files, cut into 4-bar windows
at their tempo), the jam's session recordings in the data folder, and
generated guitar riffs (``--generated N``; used by default when there are
no recordings to start with). Which groove comes next is chosen by
:mod:`sjtui.labels.pairing` from the current model's scores. The guitar
plays through the audio output; the drums through ``--midi-out PORT`` or,
by default, the built-in synth mixed into the same output stream (see
:mod:`sjtui.labels.player`). The screen is :mod:`sjtui.ui.label_app`.
"""

from __future__ import annotations

import sys
from pathlib import Path

DEFAULT_GENERATED = 4


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "label",
        help="rate guitar loops against grooves (0-5) to teach the model your taste",
        description="Hear a guitar loop with a groove and rate the pair 0-5; ratings train `sjtui train`.",
    )
    parser.add_argument(
        "--folder",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="a folder of your recordings (WAV, FLAC, OGG, MP3); may be given more than once",
    )
    parser.add_argument("--no-recordings", action="store_true", help="leave out the jam's session recordings")
    parser.add_argument(
        "--generated",
        type=int,
        default=None,
        metavar="N",
        help=f"N generated guitar riffs (default {DEFAULT_GENERATED} when no recordings are found, else 0)",
    )
    parser.add_argument(
        "--bpm", type=float, default=None, help="tempo of the recordings (default: estimated)"
    )
    parser.add_argument("--meter", default="4/4", help="meter of the recordings (default 4/4)")
    parser.add_argument("--picks", type=int, default=3, help="grooves to rate per loop (default 3)")
    parser.add_argument(
        "--midi-out",
        metavar="PORT",
        default=None,
        help="send the drums to this MIDI port (default: the built-in synth on the audio output)",
    )
    parser.add_argument(
        "--synth-engine",
        default="auto",
        choices=("auto", "fluidsynth", "numpy"),
        help="built-in synth engine (default: FluidSynth where a SoundFont is installed)",
    )
    parser.add_argument(
        "--device", default=None, help="audio output device (name or index; see `sjtui devices`)"
    )
    parser.add_argument("--rate", type=int, default=48000, help="output sample rate in Hz (default 48000)")
    parser.add_argument(
        "--labels", type=Path, default=None, help="labels database or folder (default: yours)"
    )
    parser.add_argument("--library", default=None, help="groove library file or folder (default: yours)")
    parser.add_argument(
        "--model", default=None, help="model folder (default: the active one); `none` for random pairing"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the exploration picks and generated riffs"
    )
    parser.set_defaults(run=run)


def find_loops(args, log=print) -> list:
    """Every loop of the sources the arguments name; :class:`LabelError` saying where it looked when none."""
    from sjtui.labels.errors import LabelError
    from sjtui.labels.loops import generated_loops, jam_recording_loops, loops_from_folder

    loops, looked = [], []
    for folder in args.folder:
        found, problems = loops_from_folder(folder, bpm=args.bpm, meter=args.meter, sample_rate_hz=args.rate)
        loops += found
        looked.append(f"{folder}: {len(found)} loop(s)")
        for problem in problems:
            log(f"skipped {problem}")
    if not args.no_recordings:
        from sjtui.grooves.store import default_data_dir
        from sjtui.labels.loops import RECORDINGS_DIRNAME

        where = default_data_dir() / RECORDINGS_DIRNAME
        found, problems = jam_recording_loops(where, bpm=args.bpm, meter=args.meter)
        other_rate = [loop for loop in found if loop.sample_rate_hz != args.rate]
        if other_rate:
            log(
                f"note: {len(other_rate)} recording loop(s) at another rate than {args.rate} Hz left out (set --rate)"
            )
        found = [loop for loop in found if loop.sample_rate_hz == args.rate]
        loops += found
        looked.append(f"{where} (session recordings): {len(found)} loop(s)")
        for problem in problems:
            log(f"note: {problem}")
    n_generated = args.generated
    if n_generated is None:
        n_generated = DEFAULT_GENERATED if not loops and not args.folder else 0
    if n_generated < 0:
        raise LabelError(f"--generated {n_generated}: give 0 or more riffs")
    if n_generated:
        loops += generated_loops(n_generated, seed=args.seed, sample_rate_hz=args.rate)
        looked.append(f"generated riffs: {n_generated}")
    if not loops:
        raise LabelError(
            "no guitar loops to rate. Looked in: "
            + "; ".join(looked or ["no source (--no-recordings and --generated 0)"])
            + ". "
            "Give --folder DIR with recordings at least 4 bars long (WAV, FLAC, OGG, MP3; set --bpm if "
            "their tempo cannot be found), record a jam (key r in `sjtui jam`), or add --generated N"
        )
    return loops


def build_session(args, log=print):
    """Open the store, library, model, loops and player; a ready :class:`~sjtui.labels.session.LabelSession`."""
    from sjtui.grooves.store import GrooveStore
    from sjtui.labels.player import open_player
    from sjtui.labels.session import LabelSession
    from sjtui.labels.store import LabelStore
    from sjtui.model.errors import ModelError

    # the store first: a locked, read-only or newer database stops here, before anything else is done
    grooves = GrooveStore(args.library) if args.library else GrooveStore()
    try:
        store = LabelStore.open(args.labels, groove_store=grooves)
    except BaseException:
        grooves.close()
        raise
    player = None
    try:
        notes = []
        model, scores_of = None, None
        if args.model != "none":
            from sjtui.model.runtime import load_model

            try:
                loaded = load_model(args.model)
                model = loaded.model
                if loaded.fallback_reason:
                    notes.append(loaded.fallback_reason)
            except ModelError as error:
                notes.append(f"{error}\npairing without a model (exploration only)")
        if model is not None:
            grooves.fill_embeddings(model)
            library = grooves.load_library(embedding_model=model.groove_encoder_id)

            def scores_of(loop, _model=model, _emb=library.embeddings):
                return _emb @ _model.embed_guitar([loop.fingerprint])[0]
        else:
            library = grooves.load_library()
        loops = find_loops(args, log)
        player, reason = open_player(
            args.midi_out, device=_device(args.device), sample_rate_hz=args.rate, synth=args.synth_engine
        )
        if reason:
            notes.append(reason)
        session = LabelSession(
            loops, library, store, groove_of=grooves.get, scores_of=scores_of, player=player,
            model_version=None if model is None else model.version, picks_per_loop=args.picks,
            seed=args.seed, close_store=True,
        )  # fmt: skip
        session.player_note = "\n".join(notes) or None
        session.on_close.append(grooves.close)
        return session
    except BaseException:
        if player is not None:
            player.close()
        store.close()
        grooves.close()
        raise


def _device(text):
    if text is None:
        return None
    return int(text) if str(text).isdigit() else text


def run(args) -> int:
    from sjtui.errors import SjtuiError

    if args.picks < 1:
        raise SjtuiError(f"--picks {args.picks}: give at least 1")
    print("sjtui label: loading loops, the groove library and the model…", file=sys.stderr)
    session = build_session(args, log=lambda text: print(text, file=sys.stderr))
    from sjtui.ui.label_app import run_label_app

    return run_label_app(session)
