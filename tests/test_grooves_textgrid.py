"""The text grid format: characters -> steps, swing/shift -> offsets, writer, errors."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sjtui.constants import DRUM_VOICES, STEPS_PER_BEAT
from sjtui.errors import GrooveError
from sjtui.grooves.textgrid import (
    RESOLUTIONS,
    dump_groove,
    dump_grooves,
    load_directory,
    load_file,
    parse_text,
)
from sjtui.grooves.vho import Groove
from sjtui.meter import Meter

KICK, SNARE, HAT, OPEN_HAT, LOW_TOM, MID_TOM, HIGH_TOM, CRASH, RIDE = range(9)

BASIC = """\
# a comment line
groove: basic
style: rock
kind: beat
bpm: 112
meter: 4/4
resolution: 4
HH |x.5.x.5.x.5.x.5.|   # trailing comment
SD |....o.......o..g|
BD |o.......o.o.....|
"""


def groove_text(rows: str, **headers) -> str:
    head = {"groove": "g", "style": "rock", "bpm": "100", "meter": "4/4", "resolution": "4"}
    head.update({k: str(v) for k, v in headers.items()})
    return "".join(f"{k}: {v}\n" for k, v in head.items()) + rows


# --------------------------------------------------------------------- expansion characters -> steps


def test_basic_groove_expands_to_steps_and_levels():
    (groove,) = parse_text(BASIC, origin="basic.groove")
    assert groove.name == "basic" and groove.style == "rock" and groove.kind == "beat"
    assert groove.bpm == 112 and groove.meter == Meter(4, 4) and groove.source == "builtin"
    assert groove.source_path == "basic.groove"
    # one written bar of a beat repeats to 4 bars of 48 steps
    assert groove.n_steps == 4 * 48 and groove.bars == 4
    bar = slice(0, 48)
    # 16ths: character i is step 3 * i
    assert np.flatnonzero(groove.hits[bar, HAT]).tolist() == [0, 6, 12, 18, 24, 30, 36, 42]
    assert np.flatnonzero(groove.hits[bar, SNARE]).tolist() == [12, 36, 45]
    assert np.flatnonzero(groove.hits[bar, KICK]).tolist() == [0, 24, 30]
    # x = 7, 5 = 5, o = 7, g = 3 (levels of 9)
    assert groove.velocities[0, HAT] == np.float32(7 / 9)
    assert groove.velocities[6, HAT] == np.float32(5 / 9)
    assert groove.velocities[12, SNARE] == np.float32(7 / 9)
    assert groove.velocities[45, SNARE] == np.float32(3 / 9)
    assert not groove.hits[:, [OPEN_HAT, LOW_TOM, MID_TOM, HIGH_TOM, CRASH, RIDE]].any()
    assert np.all(groove.velocities[~groove.hits] == 0) and np.all(groove.offsets == 0)
    for repeat in range(1, 4):
        rows = slice(48 * repeat, 48 * (repeat + 1))
        assert np.array_equal(groove.hits[rows], groove.hits[bar])
        assert np.array_equal(groove.velocities[rows], groove.velocities[bar])


@pytest.mark.parametrize("resolution", RESOLUTIONS)
def test_character_position_is_step_at_every_resolution(resolution):
    per_bar = 4 * resolution
    # one hit on every character, velocity level cycling 1..9
    chars = "".join(str(1 + i % 9) for i in range(per_bar))
    (groove,) = parse_text(groove_text(f"SD |{chars}|{chars}|\n", resolution=resolution, bars=2))
    steps = np.flatnonzero(groove.hits[:, SNARE])
    assert steps.tolist() == [i * (STEPS_PER_BEAT // resolution) for i in range(2 * per_bar)]
    levels = np.rint(groove.velocities[steps, SNARE] * 9).astype(int)
    assert levels.tolist() == [1 + i % 9 for i in range(per_bar)] * 2


@pytest.mark.parametrize(
    ("meter", "resolution", "chars", "steps_per_bar"),
    [("3/4", 2, 6, 36), ("6/8", 2, 6, 36), ("6/8", 4, 12, 36), ("12/8", 2, 12, 72), ("5/4", 2, 10, 60),
     ("7/8", 2, 7, 42), ("7/8", 4, 14, 42), ("3/4", 3, 9, 36)],
)
def test_bar_length_follows_the_meter(meter, resolution, chars, steps_per_bar):
    row = "o" + "." * (chars - 1)
    (groove,) = parse_text(groove_text(f"BD |{row}|\n", meter=meter, resolution=resolution, kind="fill"))
    assert groove.meter.steps_per_bar == steps_per_bar and groove.n_steps == steps_per_bar
    too_long = row + "."
    with pytest.raises(GrooveError, match=rf"needs {chars}; remove 1"):
        parse_text(groove_text(f"BD |{too_long}|\n", meter=meter, resolution=resolution))


def test_aliases_and_full_voice_names():
    text = groove_text(
        "crash |O...............|\nride |x...............|\noh |..x.............|\nhh |x...............|\n"
        "snare |....o...........|\nht |........o.......|\nMT |.........o......|\nFT |..........o.....|\n"
        "kick |o...............|\n",
        kind="fill",
    )
    (groove,) = parse_text(text)
    expected = {CRASH: 0, RIDE: 0, OPEN_HAT: 6, HAT: 0, SNARE: 12,
                HIGH_TOM: 24, MID_TOM: 27, LOW_TOM: 30, KICK: 0}
    for voice, step in expected.items():
        assert np.flatnonzero(groove.hits[:, voice]).tolist() == [step], DRUM_VOICES[voice]
    assert groove.velocities[0, CRASH] == np.float32(1.0)


def test_rest_aliases_spaces_and_letters():
    (a,) = parse_text(groove_text("SD |-g-o -x-O ---- X---|\n"))
    (b,) = parse_text(groove_text("SD |.3.7.7.9....9...|\n"))
    assert np.array_equal(a.hits, b.hits) and np.array_equal(a.velocities, b.velocities)


def test_shorter_row_repeats_under_longer_one():
    (groove,) = parse_text(groove_text("HH |x.x.x.x.x.x.x.x.|\nBD |o...............|o.o.............|\n"))
    assert groove.bars == 4  # two written bars repeat twice
    assert np.flatnonzero(groove.hits[:96, HAT]).size == 16
    assert np.flatnonzero(groove.hits[:, KICK]).tolist() == [0, 48, 54, 96, 144, 150]


def test_bars_header_and_defaults():
    row = "BD |o...............|\n"
    assert parse_text(groove_text(row))[0].bars == 4  # beats repeat to 4 bars
    assert parse_text(groove_text(row, kind="fill"))[0].bars == 1  # fills play once
    assert parse_text(groove_text(row, bars=8))[0].bars == 8
    two = row.replace("|\n", "|o...............|\n")
    assert parse_text(groove_text(two))[0].bars == 4
    assert parse_text(groove_text(two, kind="fill"))[0].bars == 2
    three = "BD |o...............|o...............|o...............|\n"
    assert parse_text(groove_text(three))[0].bars == 3  # 3 does not divide 4: kept as written
    with pytest.raises(GrooveError, match=r"bars 5 is not a multiple of the 3 bars"):
        parse_text(groove_text(three, bars=5))


# --------------------------------------------------------------------- timing


def test_swing_16ths_delays_e_and_a_only():
    (groove,) = parse_text(groove_text("HH |xxxxxxxxxxxxxxxx|\n", swing="56% 16ths"))
    offsets = groove.offsets[:48, HAT]
    step_in_beat = np.arange(48) % 12
    hit = groove.hits[:48, HAT]
    assert np.allclose(offsets[hit & np.isin(step_in_beat, [3, 9])], 6 * 0.56 - 3)  # 0.36 steps
    assert np.all(offsets[hit & np.isin(step_in_beat, [0, 6])] == 0)
    assert groove.extra["swing"] == (56.0, 16)


def test_swing_8ths_delays_the_and():
    (groove,) = parse_text(groove_text("HH |xxxxxxxx|\n", resolution=2, swing="54% 8ths"))
    steps = np.flatnonzero(groove.hits[:48, HAT])
    assert steps.tolist() == [0, 6, 12, 18, 24, 30, 36, 42]
    assert np.allclose(groove.offsets[steps, HAT], [0, 0.48] * 4)


def test_shift_moves_one_voice_and_adds_to_swing():
    (groove,) = parse_text(groove_text("SD |....o......g....|\nBD |o...............|\n",
                                       swing="55% 16ths", shift="SD +0.1, BD -0.2"))
    assert groove.offsets[12, SNARE] == np.float32(0.1)
    assert groove.offsets[33, SNARE] == pytest.approx(0.1 + 6 * 0.55 - 3, abs=1e-6)  # swung and shifted
    assert groove.offsets[0, KICK] == np.float32(-0.2)
    assert groove.offsets[1, KICK] == 0  # no hit, no offset


@pytest.mark.parametrize(
    ("headers", "pattern"),
    [
        ({"swing": "60% 16ths"},
         r"^t\.groove:6: groove 'g': swing and shift move the SD hit at bar 1 position 2 by \+0\.600"),
        ({"swing": "56% 16ths", "shift": "SD +0.2"}, r"by \+0\.560 steps.*triplet grid"),
        ({"swing": "45% 16ths"}, r"below 50%"),
        ({"swing": "lots"}, r"swing 'lots' does not parse"),
        ({"shift": "SD 0.7"}, r"outside -0\.5 \.\. 0\.5"),
        ({"shift": "XX 0.1"}, r"unknown voice 'XX'"),
    ],
)
def test_timing_errors(headers, pattern):
    with pytest.raises(GrooveError, match=pattern):
        parse_text(groove_text("SD |.o..............|\n", **headers), origin="t.groove")


# --------------------------------------------------------------- errors name file, line, groove, row, bar


def test_bar_too_long_names_file_line_groove_row_and_bar():
    text = BASIC.replace("SD |....o.......o..g|", "SD |....o.......o..g|....o.......o...|") + (
        "\ngroove: second\nstyle: rock\nbpm: 90\nmeter: 4/4\nresolution: 4\n"
        "HH |x.x.x.x.x.x.x.x.|\nSD |....o.......o...|....o........o...|\n"
    )
    with pytest.raises(GrooveError) as info:
        parse_text(text, origin="mine.groove")
    message = str(info.value)
    assert message.startswith("mine.groove:18: groove 'second': row SD bar 2 has 17 characters")
    assert "a 4/4 bar at resolution 4 needs 16; remove 1" in message


def test_bar_too_short():
    pattern = r"^x\.groove:6: groove 'g': row BD bar 1 has 15 .* needs 16; add 1$"
    with pytest.raises(GrooveError, match=pattern):
        parse_text(groove_text("BD |o..............|\n"), origin="x.groove")


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        (groove_text("SD |....o...z.......|\n"),
         r":6: .*row SD bar 1 position 9: 'z' is not a grid character"),
        (groove_text("XY |....o...........|\n"), r":6: .*unknown voice 'XY'"),
        (groove_text("SD |....o...........|\nsnare |o...............|\n"),
         r":7: .*second row for snare .*line 6"),
        (groove_text("SD |....o...........\n"), r":6: .*must end with '\|'"),
        (groove_text("SD |....o...........|\n").replace("style: rock\n", ""),
         r":1: groove 'g' has no 'style:'"),
        (groove_text("SD |....o...........|\n", bpm="fast"), r":3: .*bpm 'fast' is not a number"),
        (groove_text("SD |....o...........|\n", bpm="1000"), r":3: .*outside 20 \.\. 400"),
        (groove_text("SD |....o...........|\n", meter="4/5"), r":4: .*the lower number must be"),
        (groove_text("SD |....o...........|\n", resolution="5"), r":5: .*must be one of 1, 2, 3, 4, 6, 12"),
        (groove_text("SD |.......|\n", meter="7/8", resolution="3"),
         r":5: .*use resolution 2 or 4 or 6 or 12"),
        (groove_text("SD |....o...........|\n", kind="groovy"), r"kind 'groovy' is neither"),
        (groove_text("SD |....o...........|\n", colour="red"), r":6: .*unknown header 'colour'"),
        (groove_text("SD: |....o...........|\n"), r":6: .*grid row .* has a ':'; write it as 'SD \|"),
        (groove_text("") + "\n", r":1: groove 'g' has no grid rows"),
        ("style: rock\ngroove: a\n", r":1: 'style' comes before any 'groove: NAME' line"),
        ("SD |o...|\n", r":1: grid row before any 'groove: NAME'"),
        (groove_text("SD |....o...........|\nwhat is this\n"), r":7: groove 'g': cannot read 'what is this'"),
        (groove_text("SD |....o...........|\n") + groove_text("SD |o...............|\n"),
         r":7: groove name 'g' is already used on line 1"),
        (groove_text("SD |....o...........|\n", bpm="90\nbpm: 100"), r":4: .*'bpm' is given twice"),
        ("groove: has space\n", r":1: groove name 'has space' is not usable"),
        (groove_text("SD |....o...........|\n", style="Hip Hop"), r"style 'Hip Hop' should be lower case"),
        (groove_text("SD |....o...........|\n", fill_for="x"),
         r"fill_for is only for grooves of kind 'fill'"),
    ],
)
def test_parse_errors_say_where_and_what(text, pattern):
    with pytest.raises(GrooveError, match=pattern):
        parse_text(text, origin="bad.groove")


def test_row_not_dividing_longest_row():
    text = groove_text("HH |x.x.x.x.x.x.x.x.|\nBD |o...............|o...............|o..."
                       "............|\nSD |....o...........|....o...........|\n")
    with pytest.raises(GrooveError, match=r":8: .*row snare has 2 bars, which does not divide the 3 bars"
                       r" of the longest row; .* give it 1 or 3 bars"):
        parse_text(text)


# --------------------------------------------------------------------- files and folders


def test_load_file_and_directory(tmp_path: Path):
    (tmp_path / "b.groove").write_text(BASIC)
    sub = tmp_path / "more"
    sub.mkdir()
    (sub / "a.groove").write_text(
        groove_text("SD |....o...........|\n").replace("groove: g", "groove: a1")
        + groove_text("SD |oooo............|\n", kind="fill", fill_for="basic").replace(
            "groove: g", "groove: a2")
    )
    (tmp_path / "notes.txt").write_text("not a groove file")
    grooves = load_directory(tmp_path)
    # sorted by relative path ("b.groove" < "more/a.groove"), grooves in file order
    assert [g.name for g in grooves] == ["basic", "a1", "a2"]
    assert [g.source_path for g in grooves] == ["b.groove", "more/a.groove", "more/a.groove"]
    assert [g.name for g in load_directory(tmp_path)] == ["basic", "a1", "a2"]
    assert grooves[2].extra["fill_for"] == "basic" and grooves[2].kind == "fill"
    assert [g.name for g in load_file(sub / "a.groove")] == ["a1", "a2"]


def test_directory_checks_names_and_fills(tmp_path: Path):
    (tmp_path / "a.groove").write_text(BASIC)
    (tmp_path / "b.groove").write_text(BASIC)
    with pytest.raises(GrooveError, match=r"b\.groove:2: groove name 'basic' is already used at a\.groove:2"):
        load_directory(tmp_path)
    (tmp_path / "b.groove").write_text(groove_text("SD |oooo............|\n", kind="fill", fill_for="nope"))
    with pytest.raises(GrooveError, match=r"fill 'g' is for 'nope', which is not in"):
        load_directory(tmp_path)
    (tmp_path / "b.groove").write_text(
        groove_text("SD |oooooo|\n", kind="fill", fill_for="basic", meter="3/4", resolution=2))
    with pytest.raises(GrooveError, match=r"in 3/4 but its beat 'basic' is in 4/4"):
        load_directory(tmp_path)


def test_windows_line_endings_and_byte_order_mark(tmp_path: Path):
    (tmp_path / "win.groove").write_bytes(b"\xef\xbb\xbf" + BASIC.replace("\n", "\r\n").encode())
    (groove,) = load_file(tmp_path / "win.groove")
    (unix,) = parse_text(BASIC)
    assert groove.name == "basic" and np.array_equal(groove.velocities, unix.velocities)


def test_file_errors(tmp_path: Path):
    with pytest.raises(GrooveError, match=r"does not exist"):
        load_file(tmp_path / "missing.groove")
    with pytest.raises(GrooveError, match=r"does not exist or is not a folder"):
        load_directory(tmp_path / "missing")
    (tmp_path / "latin1.groove").write_bytes("groove: caf\xe9\n".encode("latin-1"))
    with pytest.raises(GrooveError, match=r"cannot be read"):
        load_file(tmp_path / "latin1.groove")


# --------------------------------------------------------------------- writer


def test_dump_is_canonical_and_round_trips():
    (groove,) = parse_text(BASIC)
    text = dump_groove(groove)
    assert text == (
        "groove: basic\nstyle: rock\nkind: beat\nbpm: 112\nmeter: 4/4\nresolution: 4\n"
        "HH |x.5.x.5.x.5.x.5.|\nSD |....o.......o..g|\nBD |o.......o.o.....|\n"
    )
    assert dump_groove(parse_text(text)[0]) == text


def test_dump_keeps_swing_shift_tags_and_fill_link():
    text = (
        "groove: f\nstyle: hip-hop\nkind: fill\nbpm: 88.5\nmeter: 4/4\nresolution: 4\nbars: 2\n"
        "swing: 57% 16ths\nshift: SD +0.25, BD -0.1\nfill_for: b\ntags: end, busy\ndescription: a fill\n"
        "OH |..x.............|\nSD |....O.......O.O.|\nHT |.............o..|\nBD |o......o.......o|\n"
    )
    (groove,) = parse_text(text)
    assert groove.bars == 2 and groove.bpm == 88.5
    assert dump_groove(groove) == text


def test_dump_at_finer_resolution_is_the_same_groove():
    (groove,) = parse_text(BASIC)
    fine = dump_groove(groove, resolution=12)
    assert "resolution: 12" in fine and "HH |x.....5.....x.....5" in fine
    (again,) = parse_text(fine)
    for name in ("hits", "velocities", "offsets"):
        assert np.array_equal(getattr(again, name), getattr(groove, name))
    with pytest.raises(GrooveError, match=r"falls between the characters of resolution 2"):
        dump_groove(groove, resolution=2)  # the 16th ghost note does not fit 8ths


def test_dump_of_an_arbitrary_groove():
    n_steps = 48
    hits = np.zeros((n_steps, 9), bool)
    velocities = np.zeros((n_steps, 9), np.float32)
    offsets = np.zeros((n_steps, 9), np.float32)
    hits[[0, 24], KICK] = True
    velocities[[0, 24], KICK] = [0.8, 0.5]  # not on the 9 levels
    hits[13, SNARE] = True  # between 16ths
    velocities[13, SNARE] = 1.0
    offsets[13, SNARE] = 0.13  # not a swing or a shift of the kick's timing
    offsets[0, KICK] = -0.31
    groove = Groove(hits, velocities, offsets, Meter(4, 4), 100.0, "gmd-thing", "gmd",
                    style="funk", kind="fill")
    with pytest.raises(GrooveError, match=r"falls between the characters"):
        dump_groove(groove, resolution=4)
    text = dump_groove(groove, resolution=4, exact=False)
    assert "SD |....O...........|" in text  # moved from step 13 to the nearest 16th, step 12
    assert "BD |o.......4.......|" in text  # 0.8 * 9 = 7.2 -> 7 (o), 0.5 * 9 = 4.5 -> 4
    assert "swing" not in text and "shift" not in text
    (back,) = parse_text(text)
    assert np.flatnonzero(back.hits.any(axis=1)).tolist() == [0, 12, 24]
    groove.hits[13, SNARE] = False
    groove.velocities[13, SNARE] = 0
    groove.offsets[13, SNARE] = 0
    with pytest.raises(GrooveError, match=r"velocities are not on the 9 levels"):
        dump_groove(groove)
    groove.velocities[[0, 24], KICK] = [7 / 9, 4 / 9]
    # a kick shift alone is expressible, but hits 0 and 24 disagree
    with pytest.raises(GrooveError, match=r"micro-timing is not a swing plus per-voice shifts"):
        dump_groove(groove)
    groove.offsets[24, KICK] = groove.offsets[0, KICK]
    text = dump_groove(groove)
    assert "shift: BD -0.31" in text and "resolution: 1" in text  # coarsest resolution holding the hits
    (back,) = parse_text(text)
    assert np.array_equal(back.offsets, groove.offsets) and np.array_equal(back.velocities, groove.velocities)


def test_dump_grooves_parses_back_to_all():
    grooves = parse_text(BASIC + "\n" + groove_text("SD |oooo............|\n", kind="fill"))
    text = dump_grooves(grooves)
    assert [g.name for g in parse_text(text)] == ["basic", "g"]
    assert text == dump_groove(grooves[0]) + "\n" + dump_groove(grooves[1])


_LEVEL_CHARS = ".123456789goxOX"


@settings(max_examples=60, deadline=None)
@given(
    meter_res=st.sampled_from([("4/4", 4), ("4/4", 3), ("4/4", 12), ("3/4", 2), ("6/8", 4), ("7/8", 2),
                               ("5/4", 6), ("12/8", 2)]),
    n_bars=st.integers(1, 2),
    rows=st.dictionaries(st.sampled_from(["CR", "RD", "OH", "HH", "SD", "HT", "MT", "LT", "BD"]),
                         st.integers(0, 2**31), min_size=1, max_size=5),
    swing=st.one_of(st.none(), st.sampled_from(["52% 16ths", "55.5% 16ths", "53% 8ths"])),
    shift=st.one_of(st.none(), st.sampled_from(["SD +0.05", "BD -0.1, HH +0.02"])),
    kind=st.sampled_from(["beat", "fill"]),
)
def test_text_round_trip_property(meter_res, n_bars, rows, swing, shift, kind):
    """Grid text -> Groove -> text -> Groove gives the same arrays; the canonical text is a fixed point."""
    meter, resolution = meter_res
    per_bar = int(Meter(*map(int, meter.split("/"))).beats_per_bar * resolution)
    lines = []
    for voice, seed in rows.items():
        rng = np.random.default_rng(seed)
        chars = rng.choice(list(_LEVEL_CHARS), size=(n_bars, per_bar), p=[0.6] + [0.4 / 14] * 14)
        lines.append(f"{voice} |" + "|".join("".join(bar) for bar in chars) + "|\n")
    headers = {"meter": meter, "resolution": resolution, "kind": kind}
    if swing:
        headers["swing"] = swing
    if shift:
        headers["shift"] = shift
    text = groove_text("".join(lines), **headers)
    (groove,) = parse_text(text)
    # each character is exactly its step, each level exactly level / 9
    for voice_line in lines:
        alias, grid = voice_line.split(" ", 1)
        column = {"CR": CRASH, "RD": RIDE, "OH": OPEN_HAT, "HH": HAT, "SD": SNARE, "HT": HIGH_TOM,
                  "MT": MID_TOM, "LT": LOW_TOM, "BD": KICK}[alias]
        cells = re.sub(r"[|\n]", "", grid)
        written = [i * 12 // resolution for i, c in enumerate(cells) if c != "."]
        assert np.flatnonzero(groove.hits[: len(cells) * 12 // resolution, column]).tolist() == written
    if not groove.hits.any():
        return
    canonical = dump_groove(groove)
    (again,) = parse_text(canonical)
    for name in ("hits", "velocities", "offsets"):
        assert np.array_equal(getattr(again, name), getattr(groove, name)), name
    assert again.bars == groove.bars and again.meter == groove.meter
    assert dump_groove(again) == canonical
