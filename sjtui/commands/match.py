"""``sjtui match FILE``: which grooves sjtui would play under a recording, window by window.

The whole chain offline: the file is read and analysed as live
(:func:`sjtui.dsp.analysis.analyze`), the tempo and downbeat are estimated
(:func:`sjtui.transport.tempo_estimate.estimate_from_features`) unless
``--bpm`` is given, the recording is cut into 4-bar fingerprints
(:func:`sjtui.dsp.fingerprint.fingerprints_of`), each is embedded by the
guitar encoder of the model in use (the user's fine-tuned model, else the
shipped one: :func:`sjtui.model.runtime.load_model`), and the library's
grooves whose tempo and meter fit (:mod:`sjtui.model.fit`, a hard filter,
as in a jam) are ranked by the dot product with the groove embeddings.
Groove embeddings are computed once per groove encoder and stored in the
library (:meth:`sjtui.grooves.store.GrooveStore.fill_embeddings`).

``--json`` prints ``{"tempo": {...}, "model": {...}, "windows": [{"start_s":
.., "top": [{"id": .., "score": .., "style": .., "bpm": .., "name": ..}, ..]}]}``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "match",
        help="the grooves sjtui would choose under a recording, per 4-bar window",
        description="Run the whole chain offline on a recording: for each 4-bar window, the top grooves with scores.",
    )
    parser.add_argument("file", type=Path, help="audio file (WAV, FLAC, OGG or MP3)")
    parser.add_argument(
        "--bpm", type=float, default=None, help="tempo in BPM (default: estimated from the playing)"
    )
    parser.add_argument("--meter", default="4/4", help="meter of the playing (default 4/4)")
    parser.add_argument(
        "--start",
        type=float,
        default=None,
        metavar="SECONDS",
        help="with --bpm: time of the first downbeat (default: estimated, else the first onset)",
    )
    parser.add_argument(
        "--library", type=Path, default=None, help="groove library folder or file (default: yours)"
    )
    parser.add_argument(
        "--model", type=Path, default=None, help="model folder (default: yours, else the shipped one)"
    )
    parser.add_argument("--top", type=int, default=5, metavar="K", help="grooves per window (default 5)")
    parser.add_argument("--hop-bars", type=int, default=4, help="bars between window starts (default 4)")
    parser.add_argument("--all-kinds", action="store_true", help="also consider fills (default: beats only)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(run=run)


def match_recording(
    audio,
    sample_rate_hz: int,
    *,
    store,
    model,
    bpm: float | None = None,
    meter: str = "4/4",
    start_s: float | None = None,
    top_k: int = 5,
    hop_bars: int = 4,
    beats_only: bool = True,
) -> dict:
    """The result dict of ``sjtui match`` for mono ``audio`` (n_samples,) float32.

    ``store``: an open :class:`~sjtui.grooves.store.GrooveStore`; ``model``:
    an :class:`~sjtui.model.runtime.EncoderPair`. Raises
    :class:`~sjtui.errors.SjtuiError` subclasses for unusable input.
    """
    import numpy as np

    from sjtui.dsp.analysis import analyze
    from sjtui.dsp.fingerprint import fingerprints_of
    from sjtui.errors import AudioError, SjtuiError
    from sjtui.meter import parse_meter
    from sjtui.model.fit import allowed_grooves
    from sjtui.model.runtime import best_grooves
    from sjtui.transport.tempo_estimate import estimate_from_features
    from sjtui.transport.timebase import TempoMap

    if top_k < 1:
        raise SjtuiError(f"--top {top_k}: ask for at least 1 groove per window")
    meter_obj = parse_meter(meter)
    features = analyze(audio, sample_rate_hz)
    estimate = estimate_from_features(features, sample_rate_hz, meter_obj)
    tempo = {
        "source": "given" if bpm else "estimated",
        "meter": str(meter_obj),
        **estimate.as_dict(sample_rate_hz),
    }
    if bpm is None:
        if estimate.bpm is None:
            raise AudioError(
                f"cannot estimate the tempo of this recording ({estimate.message or estimate.state}); "
                "give it with --bpm"
            )
        bpm = float(estimate.bpm)
    else:
        if not 20.0 <= bpm <= 400.0:
            raise SjtuiError(f"--bpm {bpm}: give a tempo between 20 and 400 BPM")
        tempo["source"] = "given"
    if start_s is not None:
        anchor = float(start_s) * sample_rate_hz
    elif (
        estimate.bpm is not None
        and estimate.downbeat_sample is not None
        and abs(estimate.bpm / bpm - 1) < 0.02
    ):
        anchor = float(estimate.downbeat_sample)
    elif features.onsets.size:
        anchor = float(features.onsets["sample"][0])
    else:
        anchor = 0.0
    tempo.update(bpm=round(float(bpm), 2), downbeat_s=round(anchor / sample_rate_hz, 4))
    tempo_map = TempoMap.constant(sample_rate_hz, bpm, meter_obj, anchor_sample=anchor)
    fingerprints = [fp for fp in fingerprints_of(features, tempo_map, hop_bars=hop_bars) if fp.first_bar >= 0]

    store.fill_embeddings(model)
    library = store.load_library(embedding_model=model.groove_encoder_id)
    usable = ~np.isnan(library.embeddings).any(axis=1) if len(library) else np.zeros(0, dtype=bool)
    if beats_only and len(library):
        usable &= library.kinds == "beat"
    windows = []
    embeddings = model.embed_guitar(fingerprints) if fingerprints else np.zeros((0, model.embedding_dim))
    fits = allowed_grooves(bpm, meter_obj, library.bpm, library.meters) if len(library) else usable
    allowed = fits & usable
    for fp, embedding in zip(fingerprints, embeddings):
        top = []
        if allowed.any():
            indices, scores = best_grooves(embedding, library.embeddings, top_k, allowed)
            top = [
                {
                    "id": int(library.ids[i]),
                    "score": round(float(s), 4),
                    "style": str(library.styles[i]),
                    "bpm": round(float(library.bpm[i]), 2),
                    "meter": str(library.meters[i]),
                    "name": library.names[i],
                }
                for i, s in zip(indices, scores)
            ]
        windows.append(
            {"start_s": round(fp.start_sample / sample_rate_hz, 4), "bar": int(fp.first_bar), "top": top}
        )
    return {
        "file": None,
        "tempo": tempo,
        "model": {
            "name": model.name,
            "version": model.version,
            "trained": model.trained,
            "groove_encoder": model.groove_encoder_id[:16],
        },
        "library": {"grooves": len(library), "fitting_tempo_and_meter": int(allowed.sum())},
        "windows": windows,
    }


def run(args) -> int:
    from sjtui.audio.file_source import load_audio
    from sjtui.errors import SjtuiError
    from sjtui.grooves.store import GrooveStore
    from sjtui.model.runtime import load_model

    loaded = load_model(args.model)
    if loaded.fallback_reason:
        print(f"note: {loaded.fallback_reason}", file=sys.stderr)
    model = loaded.model
    if not model.trained:
        print(f"warning: {model.describe()}: its choices are arbitrary", file=sys.stderr)
    audio = load_audio(args.file)
    with GrooveStore(args.library) as store:
        result = match_recording(
            audio.samples,
            audio.sample_rate_hz,
            store=store,
            model=model,
            bpm=args.bpm,
            meter=args.meter,
            start_s=args.start,
            top_k=args.top,
            hop_bars=args.hop_bars,
            beats_only=not args.all_kinds,
        )
    result["file"] = str(args.file)
    if not result["windows"]:
        tempo = result["tempo"]
        raise SjtuiError(
            f"{args.file} is shorter than one 4-bar window at {tempo['bpm']} BPM after the first downbeat "
            f"({tempo['downbeat_s']} s); record a longer take"
        )
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    tempo = result["tempo"]
    print(
        f"{args.file}: {tempo['bpm']} BPM ({tempo['source']}), {tempo['meter']}, first downbeat {tempo['downbeat_s']} s"
    )
    print(
        f"model {model.describe()}; {result['library']['fitting_tempo_and_meter']} of "
        f"{result['library']['grooves']} grooves fit tempo and meter"
    )
    for window in result["windows"]:
        print(f"\n{window['start_s']:8.2f} s  (bar {window['bar'] + 1})")
        if not window["top"]:
            print(
                "    no groove in the library fits this tempo and meter; import more (`sjtui grooves import --gmd`)"
            )
        for rank, pick in enumerate(window["top"], start=1):
            print(
                f"    {rank:2d}. {pick['score']:+.3f}  #{pick['id']:<6d} {pick['style']:12s} {pick['bpm']:6.1f} BPM  {pick['name']}"
            )
    return 0
