"""The built-in library under sjtui/data/grooves/: it parses, has the meters it claims,
covers the styles with fills, is musically what its names say, is written in
canonical form, and plays back (as MIDI) exactly as the grid says."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from pathlib import Path

import mido
import numpy as np
import pytest

from sjtui.constants import DRUM_VOICES, STEPS_PER_BEAT
from sjtui.grooves.textgrid import BUILTIN_GROOVES_DIR, dump_groove, load_builtin, parse_text
from sjtui.meter import parse_meter

KICK, SNARE, HAT, OPEN_HAT, LOW_TOM, MID_TOM, HIGH_TOM, CRASH, RIDE = range(9)
FILES = sorted(BUILTIN_GROOVES_DIR.glob("*.groove"))
REQUIRED_STYLES = ("rock", "punk", "funk", "hip-hop", "reggae", "blues", "jazz", "latin", "metal", "country",
                   "waltz", "six-eight")


@pytest.fixture(scope="module")
def library():
    return load_builtin()


@pytest.fixture(scope="module")
def by_name(library):
    return {g.name: g for g in library}


def blocks_of(path: Path) -> dict[str, list[str]]:
    """Each groove's lines in the file, comments and blank lines removed (read without the parser)."""
    blocks: dict[str, list[str]] = {}
    current = None
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].rstrip()
        if not line:
            continue
        if line.startswith("groove:"):
            current = line.split(":", 1)[1].strip()
            blocks[current] = []
        blocks[current].append(line)
    return blocks


ALL_BLOCKS = {name: (path, lines) for path in FILES for name, lines in blocks_of(path).items()}


# --------------------------------------------------------------------- coverage


def test_library_size_styles_and_fills(library):
    assert len(FILES) >= 12
    assert len(library) >= 60
    styles = Counter(g.style for g in library)
    assert len(styles) >= 12
    assert set(REQUIRED_STYLES) <= set(styles)
    fills = {g.style for g in library if g.kind == "fill"}
    assert fills == set(styles), f"styles without a fill: {set(styles) - fills}"
    assert all(count >= 4 for count in styles.values()), styles
    assert len({g.name for g in library}) == len(library)
    assert len(ALL_BLOCKS) == len(library)  # every 'groove:' line became a groove
    assert {g.source for g in library} == {"builtin"}


def test_load_is_deterministic(library):
    again = load_builtin()
    assert [g.name for g in again] == [g.name for g in library]
    for a, b in zip(again, library):
        assert np.array_equal(a.hits, b.hits) and np.array_equal(a.offsets, b.offsets)


def test_each_fill_belongs_to_a_beat_of_its_style_and_meter(by_name):
    for groove in by_name.values():
        if groove.kind != "fill":
            assert "fill_for" not in groove.extra
            continue
        beat = by_name[groove.extra["fill_for"]]
        assert beat.kind == "beat" and beat.style == groove.style and beat.meter == groove.meter, groove.name
        assert groove.bars == 1


def test_odd_meters_and_triple_meters_are_present(library):
    meters = Counter(str(g.meter) for g in library)
    for meter in ("3/4", "6/8", "5/4", "7/8"):
        assert meters[meter] >= 2, meters


# --------------------------------------------------------------------- meters


@pytest.mark.parametrize("name", sorted(ALL_BLOCKS))
def test_groove_has_the_meter_it_claims(name, by_name):
    groove = by_name[name]
    path, lines = ALL_BLOCKS[name]
    headers = dict(line.split(": ", 1) for line in lines if re.match(r"^[a-z_]+: ", line))
    meter = parse_meter(headers["meter"])
    assert groove.meter == meter
    steps_per_bar = int(meter.beats_per_bar * STEPS_PER_BEAT)
    assert groove.n_steps % steps_per_bar == 0 and groove.n_steps == groove.bars * steps_per_bar
    if groove.kind == "beat":
        assert groove.bars == 4, "beats are 4-bar windows"
    resolution = int(headers["resolution"])
    per_bar = int(meter.beats_per_bar * resolution)
    for line in lines:
        if "|" in line:
            bars = line.split("|")[1:-1]
            assert all(len(bar) == per_bar for bar in bars), line
    # every bar starts with something (the one is played), in every meter
    bar_starts = groove.hits[::steps_per_bar].any(axis=1)
    assert bar_starts.all() or groove.kind == "fill" or groove.name.startswith("reggae-one-drop"), name


def test_three_four_grooves_pulse_in_three(library):
    triple = [g for g in library if str(g.meter) == "3/4"]
    assert len(triple) >= 5
    for groove in triple:
        assert groove.meter.steps_per_bar == 36
        if groove.kind == "beat":
            beats = groove.hits.any(axis=1).reshape(groove.bars, 3, 12)[:, :, 0]
            assert beats.all(), f"{groove.name}: every one of the 3 beats is played"
            kick_on_one = groove.hits[::36, KICK]
            assert kick_on_one.all(), f"{groove.name}: kick on 1 of every bar"


def test_six_eight_grooves_pulse_in_two_dotted_quarters(library):
    compound = [g for g in library if str(g.meter) == "6/8"]
    assert len(compound) >= 4
    for groove in compound:
        assert groove.meter.steps_per_bar == 36 and groove.meter.is_compound
        if groove.kind == "beat":
            # the two dotted-quarter pulses (steps 0 and 18) are played in every bar
            pulses = groove.hits.any(axis=1).reshape(groove.bars, 2, 18)[:, :, 0]
            assert pulses.all(), groove.name
            # every hit is on an 8th or a 16th (a multiple of 3 steps), never on a quarter-note triplet
            steps = np.flatnonzero(groove.hits.any(axis=1)) % 36
            assert np.all(steps % 3 == 0), groove.name


# --------------------------------------------------------------------- musical content


def steps_in_bar(groove, voice, bar=0):
    spb = groove.meter.steps_per_bar
    return np.flatnonzero(groove.hits[bar * spb:(bar + 1) * spb, voice]).tolist()


def test_one_drop_drops_on_three(by_name):
    for name in ("reggae-one-drop", "reggae-one-drop-straight"):
        groove = by_name[name]
        for bar in range(groove.bars):
            assert steps_in_bar(groove, KICK, bar) == [24], name  # beat 3 only, nothing on 1
            assert steps_in_bar(groove, SNARE, bar) == [24], name
            hats = steps_in_bar(groove, HAT, bar)
            offbeats = [s for s in hats if s % 12 != 0]
            assert len(offbeats) == 4, name  # one hat between every pair of beats


def test_jazz_ride_spang_a_lang(by_name):
    groove = by_name["jazz-swing-ride"]
    for bar in range(groove.bars):
        # ride on 1, 2, let-of-2, 3, 4, let-of-4 (triplet grid), hat foot on 2 and 4
        assert steps_in_bar(groove, RIDE, bar) == [0, 12, 20, 24, 36, 44]
        assert steps_in_bar(groove, HAT, bar) == [12, 36]
    kick_velocity = groove.velocities[groove.hits[:, KICK], KICK]
    assert kick_velocity.max() <= 3 / 9 + 1e-6  # feathered


def test_shuffles_use_triplets(library):
    for groove in library:
        if "shuffle" in groove.name:
            steps = np.flatnonzero(groove.hits.any(axis=1)) % 12
            assert np.all(np.isin(steps, [0, 4, 8])), groove.name  # 8th-note triplet positions only
            assert np.any(steps == 8), groove.name  # the swung "let" is there


def test_metal_double_kick_16ths(by_name):
    groove = by_name["metal-double-kick-16ths"]
    for bar in range(groove.bars):
        assert steps_in_bar(groove, KICK, bar) == list(range(0, 48, 3))


def test_country_train_beat(by_name):
    groove = by_name["country-train-beat"]
    snare = groove.velocities[:48, SNARE]
    assert np.flatnonzero(snare).tolist() == list(range(0, 48, 3))  # snare on every 16th
    assert snare[12] == snare[36] == snare.max() and snare[12] > 2 * snare[0]  # accents on 2 and 4


def test_bossa_nova_kick_and_clave(by_name):
    groove = by_name["latin-bossa-nova"]
    assert steps_in_bar(groove, KICK, 0) == [0, 18, 24, 42]  # 1, &2, 3, &4
    clave = steps_in_bar(groove, SNARE, 0) + [48 + s for s in steps_in_bar(groove, SNARE, 1)]
    assert [s // 6 for s in clave] == [0, 3, 6, 10, 13]  # bossa clave in 8ths over two bars


def test_waltz_kick_on_one_hats_on_two_and_three(by_name):
    groove = by_name["waltz-basic"]
    for bar in range(groove.bars):
        assert steps_in_bar(groove, KICK, bar) == [0]
        assert steps_in_bar(groove, HAT, bar) == [12, 24]


def test_funk_has_ghost_notes_and_backbeat_accents(library):
    funk = [g for g in library if g.style == "funk" and g.kind == "beat"]
    with_ghosts = 0
    for groove in funk:
        snare = groove.velocities[groove.hits[:, SNARE], SNARE]
        with_ghosts += bool(np.any(snare <= 3 / 9 + 1e-6))
        assert snare.max() >= 7 / 9
    assert with_ghosts >= 4


def test_half_time_grooves_put_the_snare_on_three(library):
    for groove in library:
        if "halftime" in groove.name and groove.kind == "beat" and "shuffle" not in groove.name:
            backbeats = {s % 48 for s in np.flatnonzero(groove.velocities[:, SNARE] >= 7 / 9 - 1e-6)}
            assert backbeats == {24}, groove.name


def test_densities_vary_within_styles(library):
    """Sparse and busy grooves in every style, for pairing with quiet and busy guitars."""
    per_style = defaultdict(list)
    for groove in library:
        if groove.kind == "beat":
            per_style[groove.style].append(groove.hits.sum() / groove.bars)
    for style, densities in per_style.items():
        assert max(densities) >= 1.5 * min(densities), (style, densities)
    everything = [d for ds in per_style.values() for d in ds]
    assert max(everything) >= 4 * min(everything)


@pytest.mark.parametrize(
    ("style", "low", "high"),
    [("punk", 160, 220), ("metal", 110, 220), ("reggae", 60, 90), ("hip-hop", 75, 145), ("jazz", 100, 260),
     ("funk", 85, 110), ("blues", 70, 140)],
)
def test_tempi_are_typical_of_the_style(library, style, low, high):
    tempi = [g.bpm for g in library if g.style == style]
    assert tempi and all(low <= bpm <= high for bpm in tempi), (style, tempi)


def test_swing_and_shift_are_the_only_micro_timing(library):
    for groove in library:
        if "swing" not in groove.extra and "shift" not in groove.extra:
            assert not groove.offsets.any(), groove.name
        else:
            assert np.abs(groove.offsets).max() < 0.5
    swung = [g.name for g in library if "swing" in g.extra]
    assert len(swung) >= 3


# --------------------------------------------------------------------- canonical text round trip


@pytest.mark.parametrize("name", sorted(ALL_BLOCKS))
def test_file_text_round_trips_exactly(name, by_name):
    path, lines = ALL_BLOCKS[name]
    groove = by_name[name]
    text = dump_groove(groove)
    assert text.splitlines() == lines, f"{path.name}: {name} is not in canonical form"
    (again,) = parse_text(text, origin=path.name)
    for field in ("hits", "velocities", "offsets"):
        assert np.array_equal(getattr(again, field), getattr(groove, field)), field
    assert (again.bpm, again.meter, again.style, again.kind, again.bars) == (
        groove.bpm, groove.meter, groove.style, groove.kind, groove.bars)


# --------------------------------------------------------------------- play back as the grid says


LEVEL_OF_CHAR = {".": 0, "-": 0, "g": 3, "o": 7, "x": 7, "O": 9, "X": 9, **{str(d): d for d in range(1, 10)}}
ALIAS = {"CR": CRASH, "RD": RIDE, "OH": OPEN_HAT, "HH": HAT, "SD": SNARE, "HT": HIGH_TOM, "MT": MID_TOM,
         "LT": LOW_TOM, "BD": KICK}


def expected_notes_from_text(lines: list[str]) -> tuple[dict, list[tuple[float, int, int, int]]]:
    """(headers, [(time_steps, voice, midi_velocity, step)]) read straight from the grid characters,
    without sjtui's parser: character i of the row is step i * 12 / resolution, level L is velocity
    round(127 * L / 9), swing and shift move the time."""
    headers = dict(line.split(": ", 1) for line in lines if re.match(r"^[a-z_]+: ", line))
    meter = parse_meter(headers.get("meter", "4/4"))
    steps_per_bar = int(meter.beats_per_bar * STEPS_PER_BEAT)
    step_size = STEPS_PER_BEAT // int(headers.get("resolution", "4"))
    rows = {ALIAS[line[:2]]: "".join(line[3:].split("|")) for line in lines if "|" in line}
    grid_bars = max(len(cells) * step_size for cells in rows.values()) // steps_per_bar
    kind = headers.get("kind", "beat")
    bars = int(headers.get("bars", 4 if kind == "beat" and grid_bars in (1, 2) else grid_bars))
    swing_percent, swing_unit = 50.0, 16
    if "swing" in headers:
        match = re.match(r"([\d.]+)% (\d+)ths", headers["swing"])
        swing_percent, swing_unit = float(match.group(1)), int(match.group(2))
    shifts = {}
    for part in headers.get("shift", "").split(","):
        if part.strip():
            alias, amount = part.split()
            shifts[ALIAS[alias]] = float(amount)
    notes = []
    for voice, cells in rows.items():
        row_steps = len(cells) * step_size
        for repeat in range(bars * steps_per_bar // row_steps):
            for index, char in enumerate(cells):
                level = LEVEL_OF_CHAR[char]
                if not level:
                    continue
                step = repeat * row_steps + index * step_size
                pair, swung = (6, 3) if swing_unit == 16 else (12, 6)
                delay = pair * swing_percent / 100 - swung if step % pair == swung else 0.0
                notes.append((step + delay + shifts.get(voice, 0.0), voice, round(127 * level / 9), step))
    return headers, notes


def played_notes(path: Path) -> tuple[list[tuple[int, int, int]], list]:
    """(tick, note, velocity) of every note-on in a MIDI file, and its meta messages."""
    midi = mido.MidiFile(str(path))
    notes, metas, now = [], [], 0
    for message in midi.tracks[0]:
        now += message.time
        if message.type == "note_on" and message.velocity > 0:
            notes.append((now, message.note, message.velocity))
        elif message.is_meta:
            metas.append(message)
    return sorted(notes), metas


def test_midi_export_plays_the_grid(tmp_path, by_name):
    """Every built-in groove exported to a MIDI file: each note-on is at the tick and the time in
    seconds its grid character says (step * 40 ticks at 480 per beat, plus the swing/shift offset),
    with the velocity its character says, on the voice's note, at the groove's tempo and meter."""
    from sjtui.grooves.drum_map import VOICE_TO_GM_NOTE
    from sjtui.grooves.midi_export import DEFAULT_TICKS_PER_BEAT, write_midi

    ticks_per_step = DEFAULT_TICKS_PER_BEAT // STEPS_PER_BEAT
    checked_swung = 0
    for name, (_, lines) in sorted(ALL_BLOCKS.items()):
        groove = by_name[name]
        headers, expected = expected_notes_from_text(lines)
        path = write_midi(groove, tmp_path / f"{name}.mid")
        notes, metas = played_notes(path)
        tempo = next(m.tempo for m in metas if m.type == "set_tempo")
        assert tempo == mido.bpm2tempo(float(headers["bpm"]))
        signature = next(m for m in metas if m.type == "time_signature")
        assert f"{signature.numerator}/{signature.denominator}" == headers["meter"]
        # a file starts at the first downbeat: a hit pushed before it (hiphop-drunk's early kick on
        # the very first 1) is written at tick 0, as midi_export documents
        want = sorted(
            (max(step * ticks_per_step + int(np.rint(np.float32(time - step) * ticks_per_step)), 0),
             VOICE_TO_GM_NOTE[DRUM_VOICES[voice]], velocity)
            for time, voice, velocity, step in expected
        )
        assert notes == want, name
        # and in seconds: the grid position at the groove's bpm, within half a tick of rounding
        seconds_per_step = 60.0 / float(headers["bpm"]) / STEPS_PER_BEAT
        half_tick_s = seconds_per_step / ticks_per_step / 2
        played_s = np.array([mido.tick2second(t, DEFAULT_TICKS_PER_BEAT, tempo) for t, _, _ in notes])
        grid_s = np.sort(np.maximum([time for time, *_ in expected], 0.0) * seconds_per_step)
        assert np.all(np.abs(np.sort(played_s) - grid_s) <= half_tick_s + 1e-9), name
        if "swing" in headers:
            checked_swung += 1
            assert any(time != step for time, _, _, step in expected)
    assert checked_swung >= 3


def test_readme_counts_match_the_library(library):
    readme = (BUILTIN_GROOVES_DIR / "README.md").read_text()
    match = re.search(r"(\d+) grooves \((\d+) beats,\s+(\d+) fills\) in (\d+) styles", readme)
    assert match, "sjtui/data/grooves/README.md states the library's size"
    kinds = Counter(g.kind for g in library)
    assert tuple(map(int, match.groups())) == (
        len(library), kinds["beat"], kinds["fill"], len({g.style for g in library}))
    for path in FILES:
        assert f"`{path.name}`" in readme, f"{path.name} is listed in sjtui/data/grooves/README.md"
