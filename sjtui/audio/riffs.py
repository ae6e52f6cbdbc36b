"""A guitar-riff generator with known note times.

The demo, the tests, the benchmarks and the model's bootstrap data all need
guitar parts whose onsets are known exactly. A :class:`Riff` is a list of
notes placed on the 12-steps-per-beat grid of a meter and tempo, in one of a
few styles that cover the feels sjtui must tell apart (straight 8ths, 16th
funk, shuffle, 6/8, 3/4, palm-muted gallop, offbeat skank, ...).

Riffs are rendered to audio by :mod:`sjtui.audio.render` (FluidSynth, GM
guitars) or :mod:`sjtui.audio.synth_guitar` (Karplus-Strong, no SoundFont).
Everything is deterministic for a given seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sjtui.constants import STEPS_PER_BEAT
from sjtui.meter import Meter, parse_meter

S = STEPS_PER_BEAT
E8 = S // 2  # steps per 8th note
E16 = S // 4  # steps per 16th note

# Chord shapes as MIDI pitches, low to high (standard tuning, E2 = 40).
POWER_ROOTS = (40, 43, 45, 47, 38, 41)  # E G A B D F (low-string roots)
OPEN_CHORDS = {
    "E": (40, 47, 52, 56, 59, 64),
    "A": (45, 52, 57, 61, 64),
    "D": (50, 57, 62, 66),
    "G": (43, 47, 50, 55, 59, 67),
    "C": (48, 52, 55, 60, 64),
    "Em": (40, 47, 52, 55, 59, 64),
    "Am": (45, 52, 57, 60, 64),
}


@dataclass(frozen=True)
class Note:
    """One sounding note. Chords are several notes with the same ``step``."""

    start_s: float
    duration_s: float
    pitch: int
    velocity: int  # 1..127
    step: int  # absolute grid step from the riff's start (12 per beat)
    articulation: str = "normal"  # "normal" | "muted"


@dataclass(frozen=True)
class Riff:
    notes: tuple[Note, ...]
    bpm: float
    meter: Meter
    style: str
    feel: str  # "straight" | "swing" | "compound"
    bars: int

    @property
    def step_s(self) -> float:
        return 60.0 / self.bpm / S

    @property
    def duration_s(self) -> float:
        return self.bars * self.meter.steps_per_bar * self.step_s

    def onset_times_s(self) -> np.ndarray:
        """Sorted unique note start times in seconds (a chord is one onset)."""
        return np.unique(np.array([n.start_s for n in self.notes], dtype=np.float64))

    def onset_steps(self) -> np.ndarray:
        """Sorted unique absolute grid steps of the onsets."""
        return np.unique(np.array([n.step for n in self.notes], dtype=np.int64))


# Each style: (meter, feel, bpm range, pattern builder). A pattern builder
# returns, for one bar, a list of (step_in_bar, length_steps, accent 0..1,
# kind) where kind is "power", "chord", "single", "bass" or "muted".
def _straight8(rng, meter):
    out = [(i * E8, E8, 1.0 if i % 2 == 0 else 0.7, "power") for i in range(meter.steps_per_bar // E8)]
    return _drop(rng, out, 0.15, keep_first=True)


def _punk(rng, meter):
    return [(i * E8, E8, 0.9, "power") for i in range(meter.steps_per_bar // E8)]


def _funk16(rng, meter):
    grid = range(0, meter.steps_per_bar, E16)
    out = []
    for step in grid:
        on_beat = step % S == 0
        p = 0.9 if on_beat else 0.45
        if rng.random() < p:
            out.append((step, E16, 1.0 if on_beat else 0.55 + 0.3 * rng.random(), "single" if rng.random() < 0.5 else "chord"))
    return out or [(0, E16, 1.0, "chord")]


def _shuffle(rng, meter):
    out = []
    for beat in range(meter.steps_per_bar // S):
        out.append((beat * S, 8, 1.0 if beat % 2 == 0 else 0.8, "bass"))
        out.append((beat * S + 8, 4, 0.6, "bass"))  # the swung off-beat: 2/3 of the beat
    return out


def _six8(rng, meter):
    # 6/8: six 8th notes, accents on 1 and 4 (dotted-quarter pulse).
    return [(i * E8, E8, 1.0 if i % 3 == 0 else 0.6, "single") for i in range(meter.steps_per_bar // E8)]


def _waltz(rng, meter):
    return [(0, S, 1.0, "bass"), (S, S, 0.6, "chord"), (2 * S, S, 0.6, "chord")]


def _gallop(rng, meter):
    out = []
    for beat in range(meter.steps_per_bar // S):
        out += [(beat * S, E8, 1.0, "muted"), (beat * S + E8, E16, 0.7, "muted"), (beat * S + E8 + E16, E16, 0.7, "muted")]
    return out


def _skank(rng, meter):
    return [(beat * S + E8, E16, 0.8, "chord") for beat in range(meter.steps_per_bar // S)]


def _sparse(rng, meter):
    half = meter.steps_per_bar // 2
    return [(0, half, 1.0, "chord"), (half, half, 0.7, "chord")] if rng.random() < 0.6 else [(0, meter.steps_per_bar, 1.0, "chord")]


def _arpeggio(rng, meter):
    return [(i * E8, E8 * 2, 0.8, "single") for i in range(meter.steps_per_bar // E8)]


def _odd(rng, meter):
    # 5/4 and 7/8: groups of 2 and 3 8th notes, accent on each group start.
    n8 = meter.steps_per_bar // E8
    groups = [3, 2, 2] if n8 == 7 else [3, 3, 2, 2] if n8 == 10 else [2] * (n8 // 2) + [1] * (n8 % 2)
    out, pos = [], 0
    for g in groups:
        for k in range(g):
            out.append((pos * E8, E8, 1.0 if k == 0 else 0.6, "power"))
            pos += 1
    return out


def _drop(rng, events, p, keep_first=False):
    return [e for i, e in enumerate(events) if (keep_first and i == 0) or rng.random() >= p]


STYLES = {
    # name: (meter, feel, (bpm_min, bpm_max), builder)
    "straight8": ("4/4", "straight", (90, 160), _straight8),
    "punk": ("4/4", "straight", (150, 190), _punk),
    "funk16": ("4/4", "straight", (85, 115), _funk16),
    "shuffle": ("4/4", "swing", (70, 140), _shuffle),
    "six8": ("6/8", "compound", (50, 90), _six8),
    "waltz": ("3/4", "straight", (90, 180), _waltz),
    "gallop": ("4/4", "straight", (120, 180), _gallop),
    "skank": ("4/4", "straight", (70, 100), _skank),
    "sparse": ("4/4", "straight", (70, 130), _sparse),
    "arpeggio": ("4/4", "straight", (70, 120), _arpeggio),
    "odd54": ("5/4", "straight", (90, 150), _odd),
    "odd78": ("7/8", "straight", (90, 160), _odd),
}


def generate_riff(
    style: str,
    bpm: float | None = None,
    bars: int = 8,
    seed: int = 0,
    meter: Meter | str | None = None,
    dynamics: float = 1.0,
    humanize_ms: float = 0.0,
) -> Riff:
    """Generate a riff.

    ``bpm`` defaults to a tempo drawn from the style's usual range;
    ``meter`` defaults to the style's own. ``dynamics`` scales velocities
    (0.3 = quiet verse, 1.0 = full). ``humanize_ms`` moves each onset by a
    random amount of at most that many ms; the notes keep their true times,
    so the onsets stay known.
    """
    if style not in STYLES:
        raise ValueError(f"riff style {style!r} is unknown; choose one of {', '.join(STYLES)}")
    default_meter, feel, (lo, hi), builder = STYLES[style]
    meter = parse_meter(meter or default_meter)
    rng = np.random.default_rng(seed)
    if bpm is None:
        bpm = float(rng.integers(lo, hi + 1))
    if not 20 <= bpm <= 400:
        raise ValueError(f"riff tempo {bpm} BPM is outside 20..400")
    step_s = 60.0 / bpm / S
    steps_per_bar = meter.steps_per_bar
    # A phrase of two or four bar patterns, repeated: riffs repeat, and the
    # repetition is what the tempo estimator and the fingerprint latch on to.
    phrase_len = 2 if bars < 4 else 4
    phrase = [builder(rng, meter) for _ in range(phrase_len)]
    roots = rng.choice(POWER_ROOTS, size=phrase_len)
    chords = rng.choice(list(OPEN_CHORDS), size=phrase_len)
    notes: list[Note] = []
    for bar in range(bars):
        pattern = phrase[bar % phrase_len]
        root = int(roots[bar % phrase_len])
        chord = OPEN_CHORDS[str(chords[bar % phrase_len])]
        for i, (step_in_bar, length, accent, kind) in enumerate(pattern):
            step = bar * steps_per_bar + step_in_bar
            start = step * step_s
            if humanize_ms:
                start = max(0.0, start + rng.uniform(-humanize_ms, humanize_ms) / 1000.0)
            velocity = int(np.clip(round((50 + 70 * accent) * dynamics), 1, 127))
            duration = max(length * step_s * 0.9, 0.03)
            if kind == "power":
                pitches = (root, root + 7, root + 12)
            elif kind == "chord":
                pitches = chord
            elif kind == "bass":
                pitches = (root, root + 7)
            elif kind == "muted":
                pitches = (root, root + 7)
                duration = min(duration, 0.09)
            else:  # single notes walk up a minor pentatonic from the root
                pent = (0, 3, 5, 7, 10, 12)
                pitches = (root + 12 + pent[(i + bar) % len(pent)],)
            art = "muted" if kind == "muted" else "normal"
            notes += [Note(start, duration, int(p), velocity, step, art) for p in pitches]
    notes.sort(key=lambda n: (n.start_s, n.pitch))
    return Riff(tuple(notes), float(bpm), meter, style, feel, bars)


def riff_to_midi(riff: Riff, program: int = 27, channel: int = 0, ticks_per_beat: int = 960):
    """The riff as a type-1 MIDI file (tempo and meter on track 0)."""
    import mido

    mid = mido.MidiFile(type=1, ticks_per_beat=ticks_per_beat)
    meta = mido.MidiTrack()
    meta.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(riff.bpm), time=0))
    meta.append(mido.MetaMessage("time_signature", numerator=riff.meter.numerator, denominator=riff.meter.denominator, time=0))
    mid.tracks.append(meta)
    track = mido.MidiTrack()
    track.append(mido.Message("program_change", program=program, channel=channel, time=0))
    ticks_per_s = ticks_per_beat * riff.bpm / 60.0
    events = []
    for n in riff.notes:
        on = round(n.start_s * ticks_per_s)
        off = max(on + 1, round((n.start_s + n.duration_s) * ticks_per_s))
        events.append((off, 0, n.pitch, 0))  # note-offs sort before note-ons at the same tick
        events.append((on, 1, n.pitch, n.velocity))
    events.sort()
    now = 0
    for tick, is_on, pitch, velocity in events:
        kind = "note_on" if is_on else "note_off"
        track.append(mido.Message(kind, note=pitch, velocity=velocity, channel=channel, time=tick - now))
        now = tick
    mid.tracks.append(track)
    return mid
