"""Bootstrap training data: generated guitar takes through the real analysis, and drum grooves.

Guitar side (:func:`guitar_set`)
    Each :class:`GuitarSpec` is one generated take: a riff of
    :mod:`sjtui.audio.riffs` (12 styles, their meters, tempi drawn in the
    style's range, dynamics 0.35..1.0, humanize 0..15 ms) made sparser by
    dropping a share of its onsets (``thin`` 0..0.45, the downbeat kept) and,
    for straight styles, sometimes swung (off-beat 8ths moved from step 6 to
    step 8 of the beat: the triplet position), rendered by one *renderer*:
    a GM guitar program through a SoundFont (TimGM6mb or FluidR3_GM, with
    FluidSynth) or the Karplus-Strong synth (:mod:`sjtui.audio.synth_guitar`),
    augmented (:mod:`training.augment`: EQ, compression, distortion, chorus,
    reverb, gain, noise), cut at a shifted start point, analysed by
    :func:`sjtui.dsp.analysis.analyze` at 48 kHz and cut into 4-bar
    fingerprints with :func:`sjtui.dsp.fingerprint.fingerprints_of` on the
    take's tempo map (with the few ms grid error of the shifted start).
    The model input tensors of every window (:func:`sjtui.model.inputs.guitar_inputs`)
    are cached per take under ``cache_dir/guitar/<sha256 of the spec>.npz``.

    Splits: ``train`` (seeds 1_000_000+), ``val`` (2_000_000+, for early
    stopping) and ``test`` (3_000_000+, never trained on). Seeds are
    disjoint, and the renderers in :data:`HELD_OUT_RENDERERS` are never
    used for ``train``/``val``; half of the ``test`` takes use them.

Drum side (:func:`groove_sets`)
    The Groove MIDI Dataset (imported with :func:`sjtui.grooves.gmd.import_gmd`
    into ``cache_dir/grooves.sqlite``, 4-bar beat windows) and the built-in
    library. ``train`` = GMD train split + built-ins, ``val`` = GMD
    validation split, ``test`` = GMD test split (never trained on, used by
    ``training/evaluate.py`` only). Fills are left out (the model chooses
    beats), as are windows of meters longer than the model's 60-step bar.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from sjtui.constants import STEPS_PER_BEAT, feature_constants
from sjtui.model import inputs as layout

CACHE_VERSION = 2
"""Bumped whenever generation of a take changes in a way the source hash below does not see."""

ANALYSIS_SOURCES = (
    "sjtui/dsp/*.py",
    "sjtui/transport/timebase.py",
    "sjtui/constants.py",
    "sjtui/audio/riffs.py",
    "sjtui/audio/render.py",
    "sjtui/audio/synth_guitar.py",
    "training/augment.py",
    "training/data.py",
)
"""Source files a cached take depends on: the analysis is tuned while the project grows, and a model
must be trained on the analysis the app runs, so their contents are part of every cache key."""


@functools.lru_cache(maxsize=1)
def _sources_sha256_once() -> str:
    return analysis_sources_sha256()


def analysis_sources_sha256() -> str:
    """sha256 over the names and contents of the files :data:`ANALYSIS_SOURCES` matches (glob patterns, in order)."""
    digest = hashlib.sha256()
    for pattern in ANALYSIS_SOURCES:
        paths = sorted(REPO_ROOT.glob(pattern))
        if not paths:
            digest.update(f"{pattern}:<missing>".encode())
        for path in paths:
            digest.update(str(path.relative_to(REPO_ROOT)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


SAMPLE_RATE_HZ = 48000
TAKE_BARS = 12
REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CACHE_DIR = REPO_ROOT / ".cache" / "training"
DEFAULT_GMD_DIR = Path("/work/shared/datasets/groove-midi")

SOUNDFONT_FILES = {"timgm": "TimGM6mb.sf2", "fluidr3": "FluidR3_GM.sf2"}
GM_PROGRAMS = ("nylon", "steel", "jazz", "clean", "muted", "overdrive", "distortion")
KS_TIMBRES = ("clean", "muted", "chord", "distorted")
HELD_OUT_RENDERERS = frozenset({"fluidr3:jazz", "timgm:overdrive", "ks:chord"})
"""Renderer combinations (SoundFont:program, ks:timbre) never used for train/val takes."""

SPLIT_SEED_BASE = {"train": 1_000_000, "val": 2_000_000, "test": 3_000_000}
SPLIT_HOP_BARS = {"train": 2, "val": 4, "test": 4}
STRAIGHT_SWINGABLE = ("straight8", "punk", "arpeggio", "sparse", "skank", "gallop")


def all_renderers(available_fonts: dict[str, Path] | None = None) -> list[str]:
    fonts = soundfonts() if available_fonts is None else available_fonts
    out = [f"{font}:{program}" for font in SOUNDFONT_FILES if font in fonts for program in GM_PROGRAMS]
    return out + [f"ks:{timbre}" for timbre in KS_TIMBRES]


def soundfonts() -> dict[str, Path]:
    """``{"timgm": path, "fluidr3": path}`` of the SoundFonts installed (both are in the Makefile)."""
    from sjtui.audio.render import find_soundfonts

    found = {}
    for path in find_soundfonts():
        for key, name in SOUNDFONT_FILES.items():
            if path.name == name:
                found[key] = path
    return found


@dataclass(frozen=True)
class GuitarSpec:
    """Everything that determines one generated take (its cache key is a hash of these fields)."""

    split: str
    index: int
    seed: int
    style: str
    bpm: float
    meter: str
    bars: int
    dynamics: float
    humanize_ms: float
    thin: float
    swing: bool
    renderer: str
    augment_strength: float
    shift_bars: int = 2

    def key(self) -> str:
        payload = {
            "spec": asdict(self),
            "cache_version": CACHE_VERSION,
            "sample_rate_hz": SAMPLE_RATE_HZ,
            "feature_constants": feature_constants(),
            "input_layout": layout.input_layout(),
            "sources": _sources_sha256_once(),
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]

    @property
    def feel(self) -> str:
        from sjtui.audio.riffs import STYLES

        return "swing" if self.swing else STYLES[self.style][1]


def make_specs(split: str, n: int, seed: int = 0, renderers: list[str] | None = None) -> list[GuitarSpec]:
    """``n`` take specs of ``split``; styles round-robin, everything else drawn from the seeded generator."""
    from sjtui.audio.riffs import STYLES

    if split not in SPLIT_SEED_BASE:
        raise ValueError(f"split {split!r}: use one of {', '.join(SPLIT_SEED_BASE)}")
    renderers = renderers or all_renderers()
    seen = [r for r in renderers if r not in HELD_OUT_RENDERERS]
    held = [r for r in renderers if r in HELD_OUT_RENDERERS]
    rng = np.random.default_rng([seed, SPLIT_SEED_BASE[split]])
    styles = list(STYLES)
    specs = []
    for i in range(n):
        style = styles[i % len(styles)]
        meter, _feel, (lo, hi), _ = STYLES[style]
        if split == "test" and held and i % 2 == 0:
            renderer = held[(i // 2) % len(held)]
        else:
            renderer = seen[int(rng.integers(len(seen)))]
        swing = bool(style in STRAIGHT_SWINGABLE and rng.random() < 0.3)
        specs.append(
            GuitarSpec(
                split=split,
                index=i,
                seed=SPLIT_SEED_BASE[split] + seed * 10_000 + i,
                style=style,
                bpm=float(round(rng.uniform(lo, hi), 1)),
                meter=meter,
                bars=TAKE_BARS + 2,
                dynamics=float(round(rng.uniform(0.35, 1.0), 2)),
                humanize_ms=float(round(rng.uniform(0.0, 15.0), 1)),
                thin=float(round(rng.choice([0.0, 0.0, 0.15, 0.3, 0.45]), 2)),
                swing=swing,
                renderer=renderer,
                augment_strength=float(0.0 if rng.random() < 0.15 else 1.0),
            )
        )
    return specs


# ---------------------------------------------------------------------------- one take


def _transform_riff(riff, spec: GuitarSpec, rng: np.random.Generator):
    """Thin (drop a share of onsets, keeping each bar's downbeat) and swing a riff."""
    from sjtui.audio.riffs import Note

    steps = sorted({n.step for n in riff.notes})
    spb = riff.meter.steps_per_bar
    keep = {s for s in steps if s % spb == 0 or rng.random() >= spec.thin}
    step_s = riff.step_s
    notes = []
    for note in riff.notes:
        if note.step not in keep:
            continue
        if spec.swing and note.step % STEPS_PER_BEAT == STEPS_PER_BEAT // 2:
            shift = 2  # step 6 of the beat -> step 8 (8th-note triplet position)
            note = Note(
                note.start_s + shift * step_s,
                min(note.duration_s, 4 * step_s),
                note.pitch,
                note.velocity,
                note.step + shift,
                note.articulation,
            )
        notes.append(note)
    notes.sort(key=lambda n: (n.start_s, n.pitch))
    return replace(riff, notes=tuple(notes), feel="swing" if spec.swing else riff.feel)


def render_take(spec: GuitarSpec) -> tuple[np.ndarray, dict]:
    """The take's audio ``(n_samples,)`` float32 at :data:`SAMPLE_RATE_HZ` before augmentation, and the riff."""
    from sjtui.audio.render import GUITAR_PROGRAMS, render_riff
    from sjtui.audio.riffs import generate_riff
    from sjtui.audio.synth_guitar import render_notes

    rng = np.random.default_rng([spec.seed, 1])
    riff = generate_riff(
        spec.style,
        bpm=spec.bpm,
        bars=spec.bars,
        seed=spec.seed,
        meter=spec.meter,
        dynamics=spec.dynamics,
        humanize_ms=spec.humanize_ms,
    )
    riff = _transform_riff(riff, spec, rng)
    source, name = spec.renderer.split(":", 1)
    length = int(round((riff.duration_s + 0.5) * SAMPLE_RATE_HZ))
    if source == "ks":
        audio = render_notes(
            riff.notes, SAMPLE_RATE_HZ, name, seed=spec.seed, length_s=length / SAMPLE_RATE_HZ
        )
    else:
        fonts = soundfonts()
        if source not in fonts:
            raise FileNotFoundError(
                f"SoundFont {SOUNDFONT_FILES[source]} is not installed; run `make` (apt package "
                "fluid-soundfont-gm / timgm6mb-soundfont)"
            )
        audio = render_riff(
            riff,
            GUITAR_PROGRAMS[name],
            SAMPLE_RATE_HZ,
            soundfont=fonts[source],
            gain=float(rng.uniform(0.3, 0.8)),
        )
    out = np.zeros(length, dtype=np.float32)
    out[: min(length, audio.size)] = audio[:length]
    return out, riff


def analyse_take(spec: GuitarSpec) -> dict[str, np.ndarray]:
    """Render, augment, shift, analyse and cut one take into model inputs.

    Returns ``{"grid": (k, 13, 4, 60), "context": (k, 10), "first_bar": (k,),
    "n_true_onsets": (k,), "chain": json str}`` for its ``k`` 4-bar windows.
    """
    from sjtui.dsp.analysis import analyze
    from sjtui.dsp.fingerprint import fingerprints_of
    from sjtui.transport.timebase import TempoMap
    from training.augment import apply_chain, random_chain, shifted_start

    audio, riff = render_take(spec)
    rng = np.random.default_rng([spec.seed, 2])
    chain = random_chain(rng, spec.augment_strength)
    if chain:
        audio = apply_chain(audio, SAMPLE_RATE_HZ, chain)
    bar_s = riff.meter.steps_per_bar * riff.step_s
    start, grid_error_ms = shifted_start(rng, bar_s, spec.shift_bars, SAMPLE_RATE_HZ)
    audio = audio[start:]
    features = analyze(audio, SAMPLE_RATE_HZ)
    tempo_map = TempoMap.constant(
        SAMPLE_RATE_HZ, riff.bpm, riff.meter, anchor_sample=grid_error_ms * SAMPLE_RATE_HZ / 1000.0
    )
    hop = SPLIT_HOP_BARS[spec.split]
    fingerprints = [fp for fp in fingerprints_of(features, tempo_map, hop_bars=hop) if fp.first_bar >= 0]
    if not fingerprints:
        raise RuntimeError(f"take {spec} gave no 4-bar window")
    arrays = layout.guitar_inputs(fingerprints)
    return {
        "grid": arrays["grid"],
        "context": arrays["context"],
        "first_bar": np.array([fp.first_bar for fp in fingerprints], dtype=np.int32),
        "chain": np.array(json.dumps(chain)),
    }


def _cached_take(args) -> tuple[int, str]:
    spec, cache_dir = args
    path = Path(cache_dir) / "guitar" / f"{spec.key()}.npz"
    if not path.is_file():
        arrays = analyse_take(spec)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".tmp{os.getpid()}.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    return spec.index, str(path)


# ---------------------------------------------------------------------------- sets


@dataclass
class GuitarSet:
    """The 4-bar windows of a set of takes. Arrays have one row per window, ``n`` rows.

    ``grid`` (n, 13, 4, 60) and ``context`` (n, 10) float32 are the encoder
    inputs; ``bpm`` (n,), ``meter``, ``style``, ``feel``, ``renderer`` (n,) str;
    ``take`` (n,) the index of the take in ``specs``; ``held_out_renderer`` (n,) bool.
    """

    grid: np.ndarray
    context: np.ndarray
    bpm: np.ndarray
    meter: np.ndarray
    style: np.ndarray
    feel: np.ndarray
    renderer: np.ndarray
    take: np.ndarray
    held_out_renderer: np.ndarray
    specs: list = field(repr=False)

    def __len__(self) -> int:
        return int(self.bpm.size)

    def subset(self, rows: np.ndarray) -> GuitarSet:
        rows = np.asarray(rows)
        return GuitarSet(
            self.grid[rows],
            self.context[rows],
            self.bpm[rows],
            self.meter[rows],
            self.style[rows],
            self.feel[rows],
            self.renderer[rows],
            self.take[rows],
            self.held_out_renderer[rows],
            self.specs,
        )


def guitar_set(
    specs: list[GuitarSpec], cache_dir: Path = DEFAULT_CACHE_DIR, workers: int = 2, progress=None
) -> GuitarSet:
    """Generate (or read from the cache) every take of ``specs`` and stack their windows.

    ``workers`` processes render and analyse missing takes (the machine has
    2 cores); ``progress(done, total)`` is called as takes complete.
    """
    cache_dir = Path(cache_dir)
    jobs = [(spec, str(cache_dir)) for spec in specs]
    paths: dict[int, str] = {}
    missing = [job for job in jobs if not (cache_dir / "guitar" / f"{job[0].key()}.npz").is_file()]
    for job in jobs:
        if job not in missing:
            paths[job[0].index] = str(cache_dir / "guitar" / f"{job[0].key()}.npz")
    done = len(paths)
    if progress:
        progress(done, len(jobs))
    if missing:
        if workers > 1:
            import multiprocessing

            with multiprocessing.get_context("fork").Pool(workers) as pool:
                for index, path in pool.imap_unordered(_cached_take, missing):
                    paths[index] = path
                    done += 1
                    if progress:
                        progress(done, len(jobs))
        else:
            for job in missing:
                index, path = _cached_take(job)
                paths[index] = path
                done += 1
                if progress:
                    progress(done, len(jobs))
    grids, contexts, rows = [], [], []
    for spec in specs:
        with np.load(paths[spec.index], allow_pickle=False) as data:
            grids.append(data["grid"])
            contexts.append(data["context"])
            rows.append(data["grid"].shape[0])
    counts = np.array(rows)
    take = np.repeat(np.arange(len(specs)), counts)

    def per_take(values) -> np.ndarray:
        return np.repeat(np.array(values), counts)

    return GuitarSet(
        grid=np.concatenate(grids).astype(np.float32),
        context=np.concatenate(contexts).astype(np.float32),
        bpm=per_take([s.bpm for s in specs]).astype(np.float64),
        meter=per_take([s.meter for s in specs]),
        style=per_take([s.style for s in specs]),
        feel=per_take([s.feel for s in specs]),
        renderer=per_take([s.renderer for s in specs]),
        take=take,
        held_out_renderer=per_take([s.renderer in HELD_OUT_RENDERERS for s in specs]),
        specs=list(specs),
    )


@dataclass
class GrooveSet:
    """Groove windows as encoder inputs plus what the weak targets need; ``n`` rows.

    ``grid`` (n, 28, 4, 60), ``descriptors`` (n, 16) (model scale), ``context``
    (n, 10) float32; ``bpm`` (n,), ``meter``, ``style``, ``split``, ``source``,
    ``name`` (n,) str; ``library_index`` (n,) the row in the library it came from.
    """

    grid: np.ndarray
    descriptors: np.ndarray
    context: np.ndarray
    bpm: np.ndarray
    meter: np.ndarray
    style: np.ndarray
    split: np.ndarray
    source: np.ndarray
    name: np.ndarray
    library_index: np.ndarray

    def __len__(self) -> int:
        return int(self.bpm.size)

    def subset(self, rows: np.ndarray) -> GrooveSet:
        rows = np.asarray(rows)
        return GrooveSet(
            self.grid[rows],
            self.descriptors[rows],
            self.context[rows],
            self.bpm[rows],
            self.meter[rows],
            self.style[rows],
            self.split[rows],
            self.source[rows],
            self.name[rows],
            self.library_index[rows],
        )


def groove_library(cache_dir: Path = DEFAULT_CACHE_DIR, gmd_dir: Path | None = DEFAULT_GMD_DIR):
    """The training groove library (GMD + built-ins) in ``cache_dir/grooves.sqlite``, imported once."""
    from sjtui.grooves.gmd import import_gmd
    from sjtui.grooves.store import GrooveStore

    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    with GrooveStore(cache_dir / "grooves.sqlite", builtin=True) as store:
        if gmd_dir is not None and store.count("gmd") == 0:
            if not (Path(gmd_dir) / "info.csv").is_file():
                raise FileNotFoundError(
                    f"no Groove MIDI Dataset at {gmd_dir} (info.csv missing); pass --gmd PATH "
                    "(folder or zip of groove-v1.0.0-midionly)"
                )
            import_gmd(store, gmd_dir)
        return store.load_library()


def usable_rows(library) -> np.ndarray:
    """Library rows the model can take: beats of at most 4 bars in meters of at most 60 steps."""
    from sjtui.meter import parse_meter

    ok_meter = {
        m: parse_meter(m).steps_per_bar <= layout.MODEL_STEPS_PER_BAR for m in set(library.meters.tolist())
    }
    meter_ok = np.array([ok_meter[m] for m in library.meters.tolist()], dtype=bool)
    return np.flatnonzero(
        (library.kinds == "beat") & meter_ok & (library.bars <= layout.MODEL_BARS) & (library.bars >= 1)
    )


def groove_set_of(library, rows: np.ndarray) -> GrooveSet:
    """Encoder inputs of library ``rows`` (see :class:`GrooveSet`)."""
    rows = np.asarray(rows, dtype=np.int64)
    grooves = [library.groove(int(i)) for i in rows]
    arrays = layout.groove_inputs(grooves, library.descriptors[rows])
    return GrooveSet(
        grid=arrays["grid"],
        descriptors=arrays["descriptors"],
        context=arrays["context"],
        bpm=library.bpm[rows].astype(np.float64),
        meter=library.meters[rows].astype(str),
        style=library.styles[rows].astype(str),
        split=library.splits[rows].astype(str),
        source=library.sources[rows].astype(str),
        name=np.array([library.names[i] for i in rows]),
        library_index=rows,
    )


def groove_sets(
    cache_dir: Path = DEFAULT_CACHE_DIR, gmd_dir: Path | None = DEFAULT_GMD_DIR
) -> dict[str, GrooveSet]:
    """``{"train": GMD train + built-ins, "val": GMD validation, "test": GMD test}`` (beats only)."""
    library = groove_library(cache_dir, gmd_dir)
    rows = usable_rows(library)
    source, split = library.sources[rows], library.splits[rows]
    picks = {
        "train": rows[((source == "gmd") & (split == "train")) | (source == "builtin")],
        "val": rows[(source == "gmd") & (split == "validation")],
        "test": rows[(source == "gmd") & (split == "test")],
    }
    return {name: groove_set_of(library, chosen) for name, chosen in picks.items()}


# ---------------------------------------------------------------------------- analysis reference

ANALYSIS_REFERENCE_TAKES = (("straight8", "muted", 112.0), ("funk16", "clean", 96.0), ("six8", "chord", 70.0))
"""Fixed Karplus-Strong takes whose analysis is stored with the shipped model (style, timbre, BPM)."""


def analysis_reference_arrays() -> dict[str, np.ndarray]:
    """What the running analysis gives on :data:`ANALYSIS_REFERENCE_TAKES`.

    Per take ``i``: ``take_{i}_onset_sample`` / ``_band`` / ``_strength``
    (every detected onset) and ``take_{i}_grid`` ``(1, 13, 4, 60)``, the
    guitar-encoder input of its first 4-bar window.
    """
    from sjtui.audio.riffs import generate_riff
    from sjtui.audio.synth_guitar import render_notes
    from sjtui.dsp.analysis import analyze
    from sjtui.dsp.fingerprint import fingerprints_of
    from sjtui.transport.timebase import TempoMap

    arrays: dict[str, np.ndarray] = {}
    for i, (style, timbre, bpm) in enumerate(ANALYSIS_REFERENCE_TAKES):
        riff = generate_riff(style, bpm=bpm, bars=5, seed=i)
        audio = render_notes(riff.notes, SAMPLE_RATE_HZ, timbre, seed=i, length_s=riff.duration_s + 0.3)
        features = analyze(audio, SAMPLE_RATE_HZ)
        arrays[f"take_{i}_onset_sample"] = np.asarray(features.onsets["sample"], dtype=np.int64)
        arrays[f"take_{i}_onset_band"] = np.asarray(features.onsets["band"], dtype=np.int64)
        arrays[f"take_{i}_onset_strength"] = np.asarray(features.onsets["strength"], dtype=np.float64)
        fingerprint = fingerprints_of(features, TempoMap.constant(SAMPLE_RATE_HZ, bpm, riff.meter))[0]
        arrays[f"take_{i}_grid"] = layout.guitar_inputs(fingerprint)["grid"]
    return arrays


def compare_analysis_reference(stored: dict[str, np.ndarray]) -> list[str]:
    """Differences between ``stored`` analysis-reference arrays and the running analysis (empty: same)."""
    now = analysis_reference_arrays()
    problems = []
    for key in sorted(now):
        if key not in stored:
            problems.append(f"{key}: not stored")
            continue
        a, b = np.asarray(stored[key]), now[key]
        if a.shape != b.shape:
            problems.append(f"{key}: {a.shape[0] if a.ndim else a} stored, {b.shape[0] if b.ndim else b} now")
        elif key.endswith(("_sample", "_band")):
            if not np.array_equal(a, b):
                problems.append(f"{key}: {int((a != b).sum())} of {a.size} differ")
        elif not np.allclose(a, b, atol=1e-4, rtol=0):
            problems.append(f"{key}: max abs difference {float(np.max(np.abs(a - b))):.3g}")
    return problems
