"""``sjtui demo``: a synthesized guitar plays a short song through the whole chain, no hardware needed.

The song has contrasting sections so the jam has something to react to: a
sparse, quiet verse; a loud chorus of driving 8ths; a shuffle bridge; a
stop (the guitar falls silent: the drums finish their phrase and stop); and
the chorus again (the drums come back at the next bar). The guitar is the
project's Karplus-Strong synth (:mod:`sjtui.audio.synth_guitar`) playing
riffs from :mod:`sjtui.audio.riffs`; it is fed to the engine exactly like a
live input. Drums go to the built-in synth by default (``--midi-out`` for a
port). In a terminal the jam screen shows; otherwise (or with
``--headless``) one line per bar.
"""

from __future__ import annotations

from dataclasses import replace

DEMO_BPM = 120.0
# (name, riff style, bars, dynamics); "stop" is silence
SONG = (
    ("verse", "sparse", 8, 0.45),
    ("chorus", "straight8", 8, 1.0),
    ("bridge", "shuffle", 8, 0.8),
    ("stop", None, 6, 0.0),
    ("chorus", "straight8", 8, 1.0),
)


def add_parser(subparsers) -> None:
    from sjtui.commands.jam import add_jam_options

    parser = subparsers.add_parser(
        "demo",
        help="hear and see sjtui react to a synthesized guitar (no hardware needed)",
        description=(
            "A synthesized guitar plays a short song (quiet verse, loud chorus, shuffle bridge, a stop, the "
            "chorus again) into the jam engine; the drums play on the built-in synth unless --midi-out is given."
        ),
    )
    parser.add_argument("--loop", action="store_true", help="play the song again and again")
    parser.add_argument("--timbre", default="clean", choices=("clean", "muted", "chord", "distorted"), help="guitar sound")
    add_jam_options(parser)
    parser.set_defaults(run=run)


def song_notes(bpm: float = DEMO_BPM, seed: int = 7):
    """(notes, sections): the song's notes (``Note`` with absolute start times) and ``(name, start_s, bars)``."""
    from sjtui.audio.riffs import generate_riff
    from sjtui.meter import parse_meter

    bar_s = 60.0 / bpm * float(parse_meter("4/4").beats_per_bar)
    notes, sections = [], []
    start_s = bar_s  # one bar of silence first: the drums come in on the bar after the guitar
    for k, (name, style, bars, dynamics) in enumerate(SONG):
        sections.append((name, start_s, bars))
        if style is not None:
            riff = generate_riff(style, bpm=bpm, bars=bars, seed=seed + k, dynamics=dynamics)
            notes.extend(replace(n, start_s=n.start_s + start_s) for n in riff.notes)
        start_s += bars * bar_s
    return notes, sections, start_s


def render_song(sample_rate_hz: int = 48000, bpm: float = DEMO_BPM, timbre: str = "clean"):
    """The song as mono float32 ``(n_samples,)`` and its sections."""
    from sjtui.audio.synth_guitar import render_notes

    notes, sections, length_s = song_notes(bpm)
    samples = render_notes(notes, sample_rate_hz, timbre, seed=3, length_s=length_s + 1.0, peak=0.5)
    return samples, sections


def run(args) -> int:
    import sys

    from sjtui.commands.jam import options_from_args, run_engine, run_tui, start_engine_for_screen, wants_tui
    from sjtui.engine import create_engine

    bpm = DEMO_BPM if args.bpm is None else args.bpm
    use_synth = args.synth or args.midi_out is None
    args.bpm = bpm
    tui = wants_tui(args)

    def build(start_for_screen: bool = False):
        """Render the song and build the engine (behind the screen with the TUI, before the jam headless)."""
        if not tui:
            print(f"sjtui demo: rendering the song at {bpm:g} BPM ...", file=sys.stderr, flush=True)
        samples, sections = render_song(48000, bpm, args.timbre)
        if not tui:
            for name, start_s, bars in sections:
                print(f"  {start_s:6.1f} s  {name:<7} {bars} bars", file=sys.stderr)
        options = options_from_args(
            args, samples=samples, loop=args.loop, synth=use_synth, input_name=f"synthesized guitar ({args.timbre})"
        )
        try:
            return start_engine_for_screen(options) if start_for_screen else create_engine(options)
        except Exception as error:
            from sjtui.errors import AudioError

            if isinstance(error, AudioError) and use_synth:
                raise AudioError(
                    f"{error}\nThe demo plays the drums on the built-in synth and needs an audio output. On a machine "
                    "without a sound card the demo starts a private JACK dummy server (jackd, from jackd2); or send "
                    "the drums to a MIDI port with --midi-out PORT"
                ) from None
            raise

    server = None
    if use_synth:
        from sjtui.audio.jack_server import JackServerError, PrivateJackServer, audio_device_present

        if not audio_device_present():  # no sound card, no JACK: a private JACK dummy server for the demo
            try:
                server = PrivateJackServer("sjtui-demo", 48000, 256).start()
                print(f"sjtui demo: no sound card: running on a private JACK dummy server ({server.name})",
                      file=sys.stderr, flush=True)  # fmt: skip
            except JackServerError as error:
                print(f"sjtui demo: {error}", file=sys.stderr, flush=True)
    try:
        if tui:  # the screen first, the song and the engine behind it
            return run_tui(lambda: build(start_for_screen=True))
        return run_engine(build(), args)
    finally:
        if server is not None:
            server.stop()
