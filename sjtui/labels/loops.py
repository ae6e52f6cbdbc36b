"""Guitar loops to rate: 4-bar windows of the player's recordings, and generated riffs.

A :class:`GuitarLoop` is the audio of exactly ``bars`` bars (``(n,)``
float32, starting on a bar line) with its tempo, meter and the
:class:`~sjtui.dsp.fingerprint.Fingerprint` the model sees, plus the
``source`` and ``origin`` the label store records with the clip
(:meth:`GuitarLoop.clip_meta`), so::

    store.add_clip(loop.audio, loop.sample_rate_hz, loop.fingerprint, loop.clip_meta())

Sources:

- :func:`loops_from_recording` / :func:`loops_from_folder`: any audio file
  (jam session recordings, a folder of takes). The file is analysed as sjtui
  listens live; its tempo is the one given, or estimated with
  :func:`sjtui.transport.tempo_estimate.estimate_from_features` (which also
  places the downbeat); the file is cut into consecutive ``bars``-bar
  windows from the first downbeat. Files that cannot be used (unreadable,
  shorter than one window, no steady pulse) are reported, not raised, by
  the folder function.
- :func:`generated_loops`: riffs from :mod:`sjtui.audio.riffs` in several
  styles, meters and tempi, rendered with FluidSynth through GM guitars
  (clean, muted, overdrive, distortion); deterministic for a seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sjtui.constants import BARS_PER_WINDOW
from sjtui.labels.errors import LabelError
from sjtui.meter import Meter, parse_meter

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff")
GENERATED_PROGRAMS = ("clean", "muted", "overdrive", "distortion")


@dataclass
class GuitarLoop:
    audio: np.ndarray  # (n_samples,) float32, exactly `bars` bars from a bar line
    sample_rate_hz: int
    bpm: float
    meter: Meter
    bars: int
    fingerprint: object  # sjtui.dsp.fingerprint.Fingerprint of these bars
    source: str  # "jam-recording" | "user-file" | "generated"
    origin: dict = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return self.audio.shape[0] / self.sample_rate_hz

    def clip_meta(self) -> dict:
        """The ``meta`` for :meth:`sjtui.labels.store.LabelStore.add_clip`."""
        return {
            "source": self.source,
            "origin": dict(self.origin),
            "bpm": float(self.bpm),
            "meter": str(self.meter),
        }


@dataclass
class LoopProblem:
    path: str
    reason: str

    def __str__(self) -> str:
        return self.reason if self.reason.startswith(self.path) else f"{self.path}: {self.reason}"


def _windows(audio: np.ndarray, sample_rate_hz: int, features, tempo_map, bars: int, hop_bars: int | None):
    """``[(first_bar, audio window, fingerprint)]`` of every whole window."""
    from sjtui.dsp.fingerprint import fingerprints_of

    out = []
    for fp in fingerprints_of(features, tempo_map, n_bars=bars, hop_bars=hop_bars):
        start, end = np.rint(
            tempo_map.bar_to_sample(np.array([fp.first_bar, fp.first_bar + bars], float))
        ).astype(np.int64)
        if start < 0 or end > audio.shape[0]:
            continue
        out.append((fp.first_bar, np.ascontiguousarray(audio[start:end], dtype=np.float32), fp))
    return out


def loops_from_recording(
    path: str | Path,
    *,
    bpm: float | None = None,
    meter: Meter | str = "4/4",
    bars: int = BARS_PER_WINDOW,
    hop_bars: int | None = None,
    sample_rate_hz: int | None = None,
    downbeat_s: float | None = None,
    source: str = "user-file",
) -> list[GuitarLoop]:
    """The ``bars``-bar windows of one recording (empty when it is shorter than one window).

    ``bpm``: the tempo if known (then the first downbeat is at
    ``downbeat_s``, default 0); else both are estimated. Raises
    :class:`~sjtui.errors.AudioError` for a file that cannot be read and
    :class:`LabelError` when no tempo can be found.
    """
    from sjtui.audio.file_source import load_audio
    from sjtui.dsp.analysis import analyze
    from sjtui.errors import AudioError, SjtuiError
    from sjtui.recording import grid_for_recording

    path = Path(path)
    meter = parse_meter(meter)
    if bars < 1:
        raise LabelError(f"a loop needs at least 1 bar, got {bars}")
    loaded = load_audio(path, sample_rate_hz)
    rate = loaded.sample_rate_hz
    features = analyze(loaded.samples, rate)
    origin = {"file": str(path), "file_sample_rate_hz": loaded.file_sample_rate_hz}
    try:
        # a given tempo without a downbeat starts bar 0 at the file's start
        grid = grid_for_recording(features, rate, bpm, meter, None if bpm is None else (downbeat_s or 0.0))
    except AudioError as error:
        raise LabelError(f"{path}: no tempo found ({error})") from None
    except SjtuiError as error:
        raise LabelError(str(error)) from None
    if grid.estimate is not None:
        origin.update(
            tempo="estimated",
            tempo_state=grid.estimate.state,
            tempo_confidence=round(float(grid.estimate.confidence), 3),
        )
    else:
        origin.update(tempo="given")
    bpm, tempo_map = grid.bpm, grid.tempo_map
    loops = []
    for first_bar, window, fp in _windows(loaded.samples, rate, features, tempo_map, bars, hop_bars):
        start_s = float(tempo_map.bar_to_sample(np.array([float(first_bar)]))[0]) / rate
        loops.append(
            GuitarLoop(window, rate, float(bpm), meter, bars, fp, source,
                       {**origin, "first_bar": int(first_bar), "start_s": round(start_s, 6)})
        )  # fmt: skip
    return loops


def loops_from_folder(
    folder: str | Path,
    *,
    bpm: float | None = None,
    meter: Meter | str = "4/4",
    bars: int = BARS_PER_WINDOW,
    sample_rate_hz: int | None = None,
    source: str = "user-file",
    recursive: bool = True,
) -> tuple[list[GuitarLoop], list[LoopProblem]]:
    """Loops of every audio file in ``folder`` (sorted by path), and the files that gave none, with why."""
    from sjtui.errors import SjtuiError

    folder = Path(folder)
    if not folder.is_dir():
        raise LabelError(f"{folder} is not a folder; give a folder of recordings (WAV, FLAC, OGG, MP3)")
    pattern = "**/*" if recursive else "*"
    files = sorted(p for p in folder.glob(pattern) if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
    loops: list[GuitarLoop] = []
    problems: list[LoopProblem] = []
    if not files:
        problems.append(LoopProblem(str(folder), f"no audio files ({', '.join(AUDIO_SUFFIXES)})"))
    for file in files:
        try:
            found = loops_from_recording(
                file, bpm=bpm, meter=meter, bars=bars, sample_rate_hz=sample_rate_hz, source=source
            )
        except SjtuiError as error:
            problems.append(LoopProblem(str(file), str(error)))
            continue
        if not found:
            problems.append(LoopProblem(str(file), f"shorter than {bars} bars at its tempo; nothing to cut"))
        loops += found
    return loops, problems


RECORDINGS_DIRNAME = "recordings"


def jam_recording_loops(
    directory: str | Path | None = None,
    *,
    bpm: float | None = None,
    meter: Meter | str = "4/4",
    bars: int = BARS_PER_WINDOW,
) -> tuple[list[GuitarLoop], list[LoopProblem]]:
    """Loops of the jam's session recordings (``<data dir>/recordings/*-guitar.flac``, source ``jam-recording``).

    ``directory`` defaults to the folder the jam records into. A missing
    folder gives no loops and one problem saying how to make recordings.
    """
    if directory is None:
        from sjtui.grooves.store import default_data_dir

        directory = default_data_dir() / RECORDINGS_DIRNAME
    directory = Path(directory)
    if not directory.is_dir():
        return [], [
            LoopProblem(
                str(directory), "no session recordings yet: record a jam (key r in `sjtui jam`) first"
            )
        ]
    return loops_from_folder(
        directory, bpm=bpm, meter=meter, bars=bars, source="jam-recording", recursive=False
    )


def generated_loops(
    n: int,
    *,
    seed: int = 0,
    styles: tuple[str, ...] | None = None,
    programs: tuple[str, ...] = GENERATED_PROGRAMS,
    sample_rate_hz: int = 48000,
    bars: int = BARS_PER_WINDOW,
) -> list[GuitarLoop]:
    """``n`` rendered riffs, cycling through ``styles`` (default: all) and ``programs``.

    Each riff is generated one bar longer than the loop so the analysis sees
    the whole last bar; the loop is its first ``bars`` bars (one phrase).
    Needs the ``fluidsynth`` program (:class:`~sjtui.errors.AudioError` otherwise).
    """
    from sjtui.audio.render import render_riff
    from sjtui.audio.riffs import STYLES, generate_riff
    from sjtui.dsp.analysis import analyze
    from sjtui.transport.timebase import TempoMap

    styles = tuple(styles or STYLES)
    unknown = [s for s in styles if s not in STYLES]
    if unknown:
        raise LabelError(f"riff style(s) {', '.join(unknown)} unknown; choose from {', '.join(STYLES)}")
    loops = []
    for i in range(n):
        style = styles[i % len(styles)]
        program = programs[(i // len(styles)) % len(programs)]
        riff_seed = int(seed) * 100003 + i
        riff = generate_riff(style, bars=bars + 1, seed=riff_seed)
        audio = render_riff(riff, program, sample_rate_hz)
        tempo_map = TempoMap.constant(sample_rate_hz, riff.bpm, riff.meter)
        windows = _windows(audio, sample_rate_hz, analyze(audio, sample_rate_hz), tempo_map, bars, None)
        _first_bar, window, fp = windows[0]
        loops.append(
            GuitarLoop(window, sample_rate_hz, riff.bpm, riff.meter, bars, fp, "generated",
                       {"riff_style": style, "riff_seed": riff_seed, "program": program, "feel": riff.feel})
        )  # fmt: skip
    return loops
