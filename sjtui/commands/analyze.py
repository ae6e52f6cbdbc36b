"""``sjtui analyze FILE``: band energy and onsets of a recording, as a picture or as JSON.

The pieces are separate so that other options (tempo, meter, fingerprint
windows) can add to them: :func:`load_audio` reads the file,
:func:`analysis_report` turns features into a plain dict (what ``--json``
prints), :func:`render_picture` draws the terminal picture.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ENERGY_SHADES = " ▁▂▃▄▅▆▇█"
PICTURE_RANGE_DB = 60.0  # the picture shows the loudest 60 dB of each file


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "analyze",
        help="show band energies and onsets of a recording (WAV, FLAC, MP3)",
        description="Analyse a recording the way sjtui listens live: band energy (low/mid/high) and onsets per band.",
    )
    parser.add_argument("file", help="audio file (WAV, FLAC or MP3)")
    parser.add_argument("--json", action="store_true", help="print the onsets as JSON instead of the picture")
    parser.add_argument(
        "--channel", type=int, default=None, metavar="N", help="analyse channel N (1-based) instead of the mono mix"
    )
    parser.add_argument("--width", type=int, default=None, metavar="COLS", help="picture width (default: terminal)")
    parser.add_argument(
        "--bpm", type=float, default=None, metavar="N", help="tempo of the recording (default: estimated from the playing)"
    )
    parser.add_argument("--meter", default="4/4", help="time signature, e.g. 4/4, 3/4, 6/8, 7/8 (default 4/4)")
    parser.add_argument(
        "--downbeat", type=float, default=None, metavar="SECONDS", help="time of a downbeat (default: first onset)"
    )
    parser.set_defaults(run=run)


def load_audio(path, channel: int | None = None):
    """Read ``path`` with soundfile; returns (mono float32 (n_samples,), sample_rate_hz).

    ``channel`` is 1-based; ``None`` mixes all channels down. Raises
    :class:`~sjtui.errors.AudioError` for a missing, unreadable or empty file
    or a channel the file does not have.
    """
    import numpy as np
    import soundfile as sf

    from sjtui.errors import AudioError

    path = Path(path)
    if not path.is_file():
        raise AudioError(f"audio file {str(path)!r} does not exist; give the path of a WAV, FLAC or MP3 file")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as error:  # soundfile raises LibsndfileError, RuntimeError, TypeError...
        raise AudioError(
            f"cannot read audio file {str(path)!r} ({error}); give a WAV, FLAC or MP3 file that plays elsewhere"
        ) from None
    if data.shape[0] == 0:
        raise AudioError(f"audio file {str(path)!r} holds no samples; record or export it again")
    n_channels = data.shape[1]
    if channel is None:
        mono = data[:, 0] if n_channels == 1 else data.mean(axis=1, dtype=np.float32)
    else:
        if not 1 <= channel <= n_channels:
            raise AudioError(
                f"channel {channel} does not exist in {str(path)!r}, which has {n_channels} channel(s); "
                f"use --channel 1..{n_channels} or leave it out for the mono mix"
            )
        mono = data[:, channel - 1]
    return np.ascontiguousarray(mono, dtype=np.float32), int(rate)


def analysis_report(features, sample_rate_hz: int, hop_size: int, n_samples: int) -> dict:
    """The ``--json`` document: sample rate, hop, onsets (time, band, strength) and input warnings."""
    from sjtui.constants import BAND_NAMES

    onsets = features.onsets
    times = (onsets["sample"].astype(float) / sample_rate_hz).tolist()
    return {
        "sample_rate": int(sample_rate_hz),
        "hop": int(hop_size),
        "duration_s": round(n_samples / sample_rate_hz, 6),
        "onsets": [
            {"time_s": round(max(t, 0.0), 6), "band": BAND_NAMES[int(b)], "strength": round(float(s), 4)}
            for t, b, s in zip(times, onsets["band"].tolist(), onsets["strength"].tolist())
        ],
        "warnings": input_warnings(features),
    }


def input_warnings(features) -> list[str]:
    warnings = []
    if features.nonfinite_samples:
        warnings.append(f"{features.nonfinite_samples} NaN/Inf samples were replaced by silence")
    if features.clipped_samples:
        warnings.append(f"{features.clipped_samples} samples are clipped (at or beyond full scale)")
    if features.n_frames and features.energy_db.max() <= -119.0:
        warnings.append("the recording is silent")
    return warnings


def render_picture(features, sample_rate_hz: int, width: int = 80) -> str:
    """Band energy (shades) with onsets (ticks below each band) over time, one pair of rows per band."""
    import numpy as np

    from sjtui.constants import BAND_NAMES

    label = 6
    cols = max(10, width - label - 1)
    n = features.n_frames
    lines = []
    if n == 0:
        return "(shorter than one hop: nothing to draw)"
    duration_s = float(features.frame_sample[-1]) / sample_rate_hz
    edges = np.linspace(0, n, cols + 1).astype(int)
    edges = np.unique(edges)
    cols = edges.size - 1
    top_db = float(features.energy_db.max())
    for b, name in enumerate(BAND_NAMES):
        energy = np.maximum.reduceat(features.energy_db[b], edges[:-1])
        level = np.clip((energy - (top_db - PICTURE_RANGE_DB)) / PICTURE_RANGE_DB, 0.0, 1.0)
        shades = "".join(ENERGY_SHADES[int(round(v * (len(ENERGY_SHADES) - 1)))] for v in level)
        marks = [" "] * cols
        band_onsets = features.onsets[features.onsets["band"] == b]
        frame_of = np.clip(np.searchsorted(features.frame_sample, band_onsets["decided_at"]), 0, n - 1)
        for col in np.searchsorted(edges, frame_of, side="right") - 1:
            marks[min(int(col), cols - 1)] = "╵"
        lines.append(f"{name:>{label}} {shades}")
        lines.append(f"{'':>{label}} {''.join(marks)}")
    axis = f"{'':>{label}} 0 s"
    end = f"{duration_s:.1f} s"
    axis += " " * max(1, cols - len(end) - 3) + end
    lines.append(axis)
    return "\n".join(lines)


def onset_listing(features, sample_rate_hz: int, width: int = 80) -> str:
    import textwrap

    from sjtui.constants import BAND_NAMES

    out = []
    for b, name in enumerate(BAND_NAMES):
        band_onsets = features.onsets[features.onsets["band"] == b]
        times = " ".join(f"{max(s, 0) / sample_rate_hz:.2f}" for s in band_onsets["sample"].tolist())
        head = f"{name} ({band_onsets.size} onsets):"
        out.append(textwrap.fill(f"{head} {times}" if times else f"{head} -", width=width, subsequent_indent="    "))
    return "\n".join(out)


FINGERPRINT_SHADES = "·▁▃▅█"  # onset strength 0 (none) .. 1


def fingerprint_windows(features, sample_rate_hz: int, bpm=None, meter="4/4", downbeat_s=None):
    """``(tempo dict, [window dict], [Fingerprint])`` of every 4-bar window of the recording.

    A recording whose tempo cannot be estimated (too short, too sparse) gives
    no windows and a tempo dict that says why; a bad ``bpm`` or ``meter``
    raises :class:`~sjtui.errors.SjtuiError`.
    """
    from sjtui.dsp.fingerprint import fingerprints_of
    from sjtui.errors import AudioError
    from sjtui.meter import parse_meter
    from sjtui.recording import grid_for_recording

    meter = parse_meter(meter)
    try:
        grid = grid_for_recording(features, sample_rate_hz, bpm, meter, downbeat_s)
    except AudioError as error:
        return {"bpm": None, "confidence": 0.0, "downbeat_s": None, "source": "estimated",
                "meter": str(meter), "message": str(error)}, [], []
    fingerprints = fingerprints_of(features, grid.tempo_map)
    windows = []
    for fp in fingerprints:
        window = fp.to_json()
        window["start_s"] = round(fp.start_sample / sample_rate_hz, 4)
        windows.append(window)
    return grid.tempo_json(), windows, fingerprints


def render_fingerprint(fp, index: int, start_s: float) -> str:
    """One 4-bar window: a row per band and bar, a column per grid step, onsets shaded by strength.

    Beats are separated by ``|``; at 12 steps per beat a 4/4 bar is 48
    columns, so the picture fits 80 columns.
    """
    from sjtui.constants import BAND_NAMES, STEPS_PER_BEAT

    grid = fp.onset_grid()
    lines = [f"window {index} at {start_s:.2f} s ({fp.meter}, {fp.bpm:.1f} BPM; bars {fp.first_bar}-{fp.first_bar + 3})"]
    top = len(FINGERPRINT_SHADES) - 1
    for bar in range(grid.shape[1]):
        for band, name in enumerate(BAND_NAMES):
            cells = [FINGERPRINT_SHADES[int(round(v * top))] if v > 0 else FINGERPRINT_SHADES[0] for v in grid[band, bar]]
            beats = ["".join(cells[i : i + STEPS_PER_BEAT]) for i in range(0, len(cells), STEPS_PER_BEAT)]
            label = f"{bar + 1} {name}" if band == 0 else f"  {name}"
            lines.append(f"{label:>7} |{'|'.join(beats)}|")
    return "\n".join(lines)


def run(args) -> int:
    import shutil

    from sjtui.dsp.analysis import AnalysisConfig, analyze

    signal, rate = load_audio(args.file, args.channel)
    config = AnalysisConfig()
    features = analyze(signal, rate, config)
    hop = config.hop_size
    tempo, windows, fingerprints = fingerprint_windows(features, rate, args.bpm, args.meter, args.downbeat)
    if args.json:
        report = analysis_report(features, rate, hop, signal.size)
        report.update(tempo=tempo, windows=windows)
        json.dump(report, sys.stdout)
        sys.stdout.write("\n")
        return 0
    width = args.width or shutil.get_terminal_size((80, 24)).columns
    print(f"{args.file}: {signal.size / rate:.2f} s at {rate} Hz, hop {hop} samples ({1000 * hop / rate:.1f} ms)")
    for warning in input_warnings(features):
        print(f"warning: {warning}")
    print(render_picture(features, rate, width))
    print(onset_listing(features, rate, width))
    print()
    import textwrap

    if tempo["bpm"] is None:
        print(textwrap.fill(f"no 4-bar windows: {tempo['message']}", width=width))
    else:
        confidence = "" if tempo.get("confidence") is None else f", confidence {tempo['confidence']:.2f}"
        summary = (f"tempo {tempo['bpm']:.1f} BPM ({tempo['source']}{confidence}), meter {tempo['meter']}, "
                   f"first downbeat at {tempo['downbeat_s']:.2f} s; {len(windows)} whole 4-bar window(s)")
        print(textwrap.fill(summary, width=width))
        for i, (fp, window) in enumerate(zip(fingerprints, windows)):
            print(render_fingerprint(fp, i, window["start_s"]))
    return 0
