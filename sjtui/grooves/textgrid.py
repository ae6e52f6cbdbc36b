"""The project's own groove format: a text grid a drummer can read and write.

A ``.groove`` file holds several grooves. Each starts with a ``groove: NAME``
line, followed by ``key: value`` header lines and one grid row per voice::

    groove: rock-8ths-verse
    style: rock
    kind: beat
    bpm: 112
    meter: 4/4
    resolution: 4
    HH |x.x.x.x.x.x.x.x.|
    SD |....o.......o...|
    BD |o.......o.o.....|

``resolution`` is the number of characters per beat (a beat is a quarter
note): 4 writes 16ths, 3 eighth-note triplets, 6 sixteenth triplets, 12 the
whole grid. Each character is one grid cell of ``12 / resolution`` steps of
the 12-steps-per-beat grid. ``.`` (or ``-``) is a rest, ``1`` .. ``9`` a
hit at that velocity level (velocity ``level / 9``), ``g`` a ghost note
(level 3), ``o`` / ``x`` a normal hit (level 7), ``O`` / ``X`` an accent
(level 9). ``|`` separates bars and every bar is checked against the meter.
Swing and laid-back feel are explicit header values (``swing``, ``shift``)
that turn into micro-timing offsets; the grid itself stays exact.

The full reference is ``sjtui/data/grooves/README.md``. Public functions:
:func:`parse_text`, :func:`load_file`, :func:`load_directory`,
:func:`load_builtin`, :func:`dump_groove`, :func:`dump_grooves`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sjtui.constants import DRUM_VOICES, STEPS_PER_BEAT
from sjtui.errors import GrooveError, MeterError
from sjtui.grooves.vho import N_VOICES, Groove
from sjtui.meter import Meter, parse_meter

#: The library shipped with the project (``sjtui/data/grooves/``, package data).
BUILTIN_GROOVES_DIR = Path(__file__).resolve().parents[1] / "data" / "grooves"  # package data: in a wheel too
GROOVE_FILE_SUFFIX = ".groove"

#: Characters per beat that divide the 12-step beat.
RESOLUTIONS = (1, 2, 3, 4, 6, 12)
DEFAULT_RESOLUTION = 4
DEFAULT_BARS_FOR_BEATS = 4  # beats shorter than this are repeated up to it
N_LEVELS = 9
MIN_BPM, MAX_BPM = 20.0, 400.0
KINDS = ("beat", "fill")

#: Short names, in the order the writer draws rows: cymbals, snare, toms high to low, kick (drum tab order).
VOICE_ALIASES = {
    "CR": "crash",
    "RD": "ride",
    "OH": "open_hat",
    "HH": "closed_hat",
    "SD": "snare",
    "HT": "high_tom",
    "MT": "mid_tom",
    "LT": "low_tom",
    "BD": "kick",
}
EXTRA_VOICE_ALIASES = {"FT": "low_tom"}  # floor tom, accepted on input
ALIAS_OF_VOICE = {voice: alias for alias, voice in VOICE_ALIASES.items()}
ROW_ORDER = tuple(DRUM_VOICES.index(voice) for voice in VOICE_ALIASES.values())
CYMBALS = frozenset({"closed_hat", "open_hat", "crash", "ride"})

REST_CHARS = frozenset(".-")
GHOST_LEVEL, NORMAL_LEVEL, ACCENT_LEVEL = 3, 7, 9
LETTER_LEVELS = {"g": GHOST_LEVEL, "o": NORMAL_LEVEL, "x": NORMAL_LEVEL, "O": ACCENT_LEVEL, "X": ACCENT_LEVEL}

#: Swing units: note value -> (pair length in steps, swung position within the pair in steps).
SWING_UNITS = {16: (6, 3), 8: (12, 6)}

HEADER_KEYS = (
    "groove",
    "style",
    "kind",
    "bpm",
    "meter",
    "resolution",
    "bars",
    "swing",
    "shift",
    "fill_for",
    "tags",
    "description",
)

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
_STYLE_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_KEY_RE = re.compile(r"^([A-Za-z_]+)\s*:\s*(.*)$")
_ROW_RE = re.compile(r"^([A-Za-z_]+)\s*(\|.*)$")
_SWING_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*%?\s+(8|16)(?:th|ths)?$")
_SHIFT_RE = re.compile(r"^([A-Za-z_]+)\s*([+-]?\d+(?:\.\d+)?)$")


def level_velocity(level: int) -> float:
    """Velocity in 0..1 of a level 1..9 (MIDI velocity ``round(127 * level / 9)``)."""
    return level / N_LEVELS


def char_level(char: str) -> int:
    """Velocity level of a grid character, 0 for a rest; ``ValueError`` if it is not a grid character."""
    if char in REST_CHARS:
        return 0
    if char in LETTER_LEVELS:
        return LETTER_LEVELS[char]
    if char.isdigit() and char != "0":
        return int(char)
    raise ValueError(char)


def level_char(level: int, voice: str) -> str:
    """The canonical character for a level on a voice (``x`` family for cymbals, ``o`` for drums)."""
    if level == 0:
        return "."
    if level == GHOST_LEVEL:
        return "g"
    if level == NORMAL_LEVEL:
        return "x" if voice in CYMBALS else "o"
    if level == ACCENT_LEVEL:
        return "X" if voice in CYMBALS else "O"
    return str(level)


def voice_index(name: str) -> int:
    """Column of a voice given by alias (``SD``), ``FT`` or full name (``snare``); any case."""
    upper = name.upper()
    if upper in VOICE_ALIASES:
        return DRUM_VOICES.index(VOICE_ALIASES[upper])
    if upper in EXTRA_VOICE_ALIASES:
        return DRUM_VOICES.index(EXTRA_VOICE_ALIASES[upper])
    if name.lower() in DRUM_VOICES:
        return DRUM_VOICES.index(name.lower())
    raise KeyError(name)


def swing_offset_steps(step_in_beat: np.ndarray | int, swing_percent: float, unit: int) -> np.ndarray:
    """Delay in steps that swing adds at positions ``step_in_beat`` (0..11), shape as the input.

    Swing ``p`` % on ``unit`` (8 or 16) moves the second note of every pair
    of that note value to ``p`` % of the pair (50 % = straight, like a drum
    machine's swing knob); every other position is unchanged.
    """
    pair_steps, swung_step = SWING_UNITS[unit]
    delay = pair_steps * swing_percent / 100.0 - swung_step
    position = np.asarray(step_in_beat) % pair_steps
    return np.where(position == swung_step, delay, 0.0)


def default_bars(grid_bars: int, kind: str) -> int:
    """Bars a groove lasts when ``bars`` is not given: beats repeat up to 4 bars, fills play once."""
    if kind == "beat" and grid_bars < DEFAULT_BARS_FOR_BEATS and DEFAULT_BARS_FOR_BEATS % grid_bars == 0:
        return DEFAULT_BARS_FOR_BEATS
    return grid_bars


def chars_per_bar(meter: Meter, resolution: int) -> int | None:
    """Characters in one bar of ``meter`` at ``resolution``, or None when the bar is not a whole number."""
    steps_per_char = STEPS_PER_BEAT // resolution
    if meter.steps_per_bar % steps_per_char:
        return None
    return meter.steps_per_bar // steps_per_char


# --------------------------------------------------------------------------- parsing


@dataclass
class _Block:
    """The lines of one groove while it is being parsed."""

    name: str
    line: int
    headers: dict = field(default_factory=dict)  # key -> (value, line)
    rows: list = field(default_factory=list)  # (voice name as written, grid text, line)


def _strip_comment(line: str) -> str:
    return line.split("#", 1)[0].rstrip()


def parse_text(text: str, origin: str = "<text>", source: str = "builtin") -> list[Groove]:
    """Parse the grooves of a ``.groove`` text, in the order written.

    ``origin`` names the text in error messages and becomes each groove's
    ``source_path``. Raises :class:`GrooveError` saying where
    (``origin:line``), in which groove, row and bar, and what to fix.
    """
    blocks: list[_Block] = []
    for line_no, raw in enumerate(text.splitlines(), start=1):
        line = _strip_comment(raw).strip()
        if not line:
            continue
        key_match = _KEY_RE.match(line)
        if key_match and not line.lstrip().startswith("|"):
            key, value = key_match.group(1).lower(), key_match.group(2).strip()
            if key == "groove":
                if not _NAME_RE.match(value):
                    raise GrooveError(
                        f"{origin}:{line_no}: groove name {value!r} is not usable: use letters, digits "
                        "and - _ . + without spaces, for example 'rock-8ths-verse'"
                    )
                blocks.append(_Block(name=value, line=line_no))
                continue
            if not blocks:
                raise GrooveError(
                    f"{origin}:{line_no}: {key!r} comes before any 'groove: NAME' line; "
                    "start each groove with 'groove: NAME'"
                )
            if key not in HEADER_KEYS and value.startswith("|"):
                raise GrooveError(
                    f"{origin}:{line_no}: groove {blocks[-1].name!r}: grid row {line!r} has a ':'; "
                    f"write it as '{key_match.group(1)} {value}'"
                )
            if key not in HEADER_KEYS:
                raise GrooveError(
                    f"{origin}:{line_no}: groove {blocks[-1].name!r}: unknown header {key!r}; "
                    f"known headers are {', '.join(HEADER_KEYS)}"
                )
            if key in blocks[-1].headers:
                raise GrooveError(
                    f"{origin}:{line_no}: groove {blocks[-1].name!r}: {key!r} is given twice "
                    f"(first on line {blocks[-1].headers[key][1]}); keep one"
                )
            blocks[-1].headers[key] = (value, line_no)
            continue
        row_match = _ROW_RE.match(line)
        if row_match:
            if not blocks:
                raise GrooveError(
                    f"{origin}:{line_no}: grid row before any 'groove: NAME' line; "
                    "start each groove with 'groove: NAME'"
                )
            blocks[-1].rows.append((row_match.group(1), row_match.group(2), line_no))
            continue
        where = f"groove {blocks[-1].name!r}: " if blocks else ""
        raise GrooveError(
            f"{origin}:{line_no}: {where}cannot read {line!r}: write a header as 'key: value' "
            "or a grid row as 'SD |....o.......o...|'"
        )

    grooves: list[Groove] = []
    seen: dict[str, int] = {}
    for block in blocks:
        if block.name in seen:
            raise GrooveError(
                f"{origin}:{block.line}: groove name {block.name!r} is already used on line "
                f"{seen[block.name]}; give each groove its own name"
            )
        seen[block.name] = block.line
        grooves.append(_build_groove(block, origin, source))
    return grooves


def _header(block: _Block, key: str, default: str | None, origin: str) -> tuple[str, int]:
    if key in block.headers:
        return block.headers[key]
    if default is None:
        raise GrooveError(
            f"{origin}:{block.line}: groove {block.name!r} has no '{key}:' line; add one "
            f"(see sjtui/data/grooves/README.md)"
        )
    return default, block.line


def _parse_swing(value: str, where: str) -> tuple[float, int] | None:
    if value.lower() in ("", "none", "0", "straight"):
        return None
    match = _SWING_RE.match(value.strip())
    if not match:
        raise GrooveError(
            f"{where}: swing {value!r} does not parse; write a percentage and a note value, "
            "for example 'swing: 56% 16ths' or 'swing: 54% 8ths' (50% is straight)"
        )
    percent, unit = float(match.group(1)), int(match.group(2))
    if percent < 50.0:
        raise GrooveError(f"{where}: swing {percent:g}% is below 50% (straight); use 50% to 58%")
    return percent, unit


def _parse_shift(value: str, where: str) -> dict[int, float]:
    shifts: dict[int, float] = {}
    for part in filter(None, (p.strip() for p in value.replace(",", " , ").split(","))):
        match = _SHIFT_RE.match(part)
        if not match:
            raise GrooveError(
                f"{where}: shift {part!r} does not parse; write voice and steps, for example "
                "'shift: SD +0.2, HH -0.1' (a step is 1/12 of a beat)"
            )
        try:
            voice = voice_index(match.group(1))
        except KeyError:
            raise GrooveError(
                f"{where}: shift names unknown voice {match.group(1)!r}; use one of "
                f"{', '.join(VOICE_ALIASES)}"
            ) from None
        amount = float(match.group(2))
        if not -0.5 <= amount < 0.5:
            raise GrooveError(
                f"{where}: shift {amount:+g} steps for {match.group(1)} is outside -0.5 .. 0.5; "
                "a larger shift is a different grid position: move the hits in the grid instead"
            )
        shifts[voice] = amount
    return shifts


def _build_groove(block: _Block, origin: str, source: str) -> Groove:
    name = block.name
    prefix = f"groove {name!r}"

    def where(key: str) -> str:
        return f"{origin}:{block.headers[key][1] if key in block.headers else block.line}: {prefix}"

    style, _ = _header(block, "style", None, origin)
    if not _STYLE_RE.match(style):
        raise GrooveError(
            f"{where('style')}: style {style!r} should be lower case words joined by '-', like 'hip-hop'"
        )
    kind, _ = _header(block, "kind", "beat", origin)
    if kind not in KINDS:
        raise GrooveError(f"{where('kind')}: kind {kind!r} is neither 'beat' nor 'fill'")
    bpm_text, _ = _header(block, "bpm", None, origin)
    try:
        bpm = float(bpm_text)
    except ValueError:
        raise GrooveError(
            f"{where('bpm')}: bpm {bpm_text!r} is not a number; write for example 'bpm: 96'"
        ) from None
    if not (MIN_BPM <= bpm <= MAX_BPM) or math.isnan(bpm):
        raise GrooveError(
            f"{where('bpm')}: bpm {bpm_text} is outside {MIN_BPM:g} .. {MAX_BPM:g} quarter notes per minute"
        )
    meter_text, _ = _header(block, "meter", "4/4", origin)
    try:
        meter = parse_meter(meter_text)
        steps_per_bar = meter.steps_per_bar
    except MeterError as error:
        raise GrooveError(f"{where('meter')}: {error}") from None
    res_text, _ = _header(block, "resolution", str(DEFAULT_RESOLUTION), origin)
    if not res_text.isdigit() or int(res_text) not in RESOLUTIONS:
        raise GrooveError(
            f"{where('resolution')}: resolution {res_text!r} must be one of "
            f"{', '.join(map(str, RESOLUTIONS))} characters per beat (4 = 16ths, 3 = 8th triplets)"
        )
    resolution = int(res_text)
    per_bar = chars_per_bar(meter, resolution)
    if per_bar is None:
        fitting = [str(r) for r in RESOLUTIONS if chars_per_bar(meter, r) is not None]
        raise GrooveError(
            f"{where('resolution')}: a {meter} bar is not a whole number of characters at resolution "
            f"{resolution}; use resolution {' or '.join(fitting)}"
        )
    steps_per_char = STEPS_PER_BEAT // resolution

    if not block.rows:
        raise GrooveError(
            f"{origin}:{block.line}: {prefix} has no grid rows; add rows like 'BD |o.......o.......|'"
        )
    grid: dict[int, np.ndarray] = {}
    row_lines: dict[int, int] = {}
    for voice_name, grid_text, line_no in block.rows:
        try:
            voice = voice_index(voice_name)
        except KeyError:
            raise GrooveError(
                f"{origin}:{line_no}: {prefix}: unknown voice {voice_name!r}; use one of "
                f"{', '.join(VOICE_ALIASES)} (or FT, or the full names {', '.join(DRUM_VOICES)})"
            ) from None
        if voice in grid:
            raise GrooveError(
                f"{origin}:{line_no}: {prefix}: a second row for {DRUM_VOICES[voice]} "
                f"(first on line {row_lines[voice]}); merge them into one row"
            )
        compact = grid_text.replace(" ", "").replace("\t", "")
        if not compact.endswith("|"):
            raise GrooveError(
                f"{origin}:{line_no}: {prefix}: row {voice_name} must end with '|' after its last bar"
            )
        bars = compact[1:-1].split("|")
        levels = np.zeros(len(bars) * per_bar, dtype=np.int64)
        for bar_index, bar in enumerate(bars):
            if len(bar) != per_bar:
                advice = "remove" if len(bar) > per_bar else "add"
                raise GrooveError(
                    f"{origin}:{line_no}: {prefix}: row {voice_name} bar {bar_index + 1} has {len(bar)} "
                    f"characters but a {meter} bar at resolution {resolution} needs {per_bar}; "
                    f"{advice} {abs(len(bar) - per_bar)}"
                )
            for char_index, char in enumerate(bar):
                try:
                    levels[bar_index * per_bar + char_index] = char_level(char)
                except ValueError:
                    raise GrooveError(
                        f"{origin}:{line_no}: {prefix}: row {voice_name} bar {bar_index + 1} position "
                        f"{char_index + 1}: {char!r} is not a grid character; use '.' for a rest, 1-9, "
                        "g (ghost), o/x (normal) or O/X (accent)"
                    ) from None
        grid[voice] = levels
        row_lines[voice] = line_no
    # a row shorter than the longest repeats, as long as it divides it
    grid_bars = max(len(row) for row in grid.values()) // per_bar
    for voice, row in grid.items():
        row_bars = len(row) // per_bar
        if grid_bars % row_bars:
            raise GrooveError(
                f"{origin}:{row_lines[voice]}: {prefix}: row {DRUM_VOICES[voice]} has {row_bars} bars, which "
                f"does not divide the {grid_bars} bars of the longest row; a shorter row repeats, so give it "
                f"{' or '.join(str(d) for d in range(1, grid_bars + 1) if grid_bars % d == 0)} bars"
            )
        grid[voice] = np.tile(row, grid_bars // row_bars)

    bars_text, _ = _header(block, "bars", str(default_bars(grid_bars, kind)), origin)
    if not bars_text.isdigit() or int(bars_text) < 1:
        raise GrooveError(f"{where('bars')}: bars {bars_text!r} must be a whole number of bars, 1 or more")
    n_bars = int(bars_text)
    if n_bars % grid_bars:
        raise GrooveError(
            f"{where('bars')}: bars {n_bars} is not a multiple of the {grid_bars} bars written in the grid; "
            "write a grid whose length divides it"
        )

    swing_text, _ = _header(block, "swing", "", origin)
    swing = _parse_swing(swing_text, where("swing"))
    shifts = _parse_shift(_header(block, "shift", "", origin)[0], where("shift"))

    n_grid_steps = grid_bars * steps_per_bar
    n_steps = n_bars * steps_per_bar
    levels = np.zeros((n_grid_steps, N_VOICES), dtype=np.int64)
    for voice, row in grid.items():
        levels[::steps_per_char, voice] = row
    levels = np.tile(levels, (n_bars // grid_bars, 1))
    hits = levels > 0
    velocities = np.where(hits, levels / N_LEVELS, 0.0)

    offsets = np.zeros((n_steps, N_VOICES), dtype=np.float64)
    if swing is not None:
        step_in_beat = np.arange(n_steps) % STEPS_PER_BEAT
        offsets += swing_offset_steps(step_in_beat, *swing)[:, None]
    for voice, amount in shifts.items():
        offsets[:, voice] += amount
    offsets = np.where(hits, offsets, 0.0)
    outside = hits & ((offsets < -0.5) | (offsets >= 0.5))
    if outside.any():
        step, voice = map(int, np.argwhere(outside)[0])
        bar, cell = divmod(step // steps_per_char, per_bar)
        raise GrooveError(
            f"{where('swing' if swing else 'shift')}: swing and shift move the "
            f"{ALIAS_OF_VOICE[DRUM_VOICES[voice]]} hit at bar {bar + 1} position {cell + 1} "
            f"by {offsets[step, voice]:+.3f} steps, "
            "outside the -0.5 .. 0.5 a grid step allows; use less swing (at most 58% on 16ths, 54% on 8ths) "
            "or write the swung notes on a triplet grid (resolution 3 or 6)"
        )

    extra: dict = {"resolution": resolution, "line": block.line}
    if swing is not None:
        extra["swing"] = swing
    if shifts:
        extra["shift"] = {DRUM_VOICES[v]: a for v, a in shifts.items()}
    if "fill_for" in block.headers:
        target = block.headers["fill_for"][0]
        if kind != "fill":
            raise GrooveError(
                f"{where('fill_for')}: fill_for is only for grooves of kind 'fill'; add 'kind: fill'"
            )
        extra["fill_for"] = target
    if "tags" in block.headers:
        extra["tags"] = [t.strip() for t in block.headers["tags"][0].split(",") if t.strip()]
    if "description" in block.headers:
        extra["description"] = block.headers["description"][0]
    try:
        return Groove(
            hits=hits,
            velocities=velocities,
            offsets=offsets,
            meter=meter,
            bpm=bpm,
            name=name,
            source=source,
            style=style,
            kind=kind,
            source_path=origin,
            extra=extra,
        )
    except ValueError as error:  # shape checks of Groove: should not happen after the checks above
        raise GrooveError(f"{origin}:{block.line}: {prefix}: {error}") from None


def load_file(path: str | Path, root: str | Path | None = None, source: str = "builtin") -> list[Groove]:
    """Grooves of one ``.groove`` file, in file order.

    ``source_path`` is the path relative to ``root`` (default: the file's folder).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark from a Windows editor is fine
    except FileNotFoundError:
        raise GrooveError(f"groove file {path} does not exist; check the path") from None
    except (OSError, UnicodeDecodeError) as error:
        raise GrooveError(
            f"groove file {path} cannot be read ({error}); check its permissions and encoding"
        ) from None
    origin = path.relative_to(root).as_posix() if root is not None else path.name
    return parse_text(text, origin=origin, source=source)


def load_directory(path: str | Path, source: str = "builtin") -> list[Groove]:
    """All grooves of the ``*.groove`` files under ``path``.

    Files are read in sorted order of their relative paths, grooves in file
    order, so the result is the same on every machine. Names must be unique
    across the folder and every ``fill_for`` must name a beat in it.
    """
    root = Path(path)
    if not root.is_dir():
        raise GrooveError(f"groove folder {root} does not exist or is not a folder; check the path")
    files = sorted(root.rglob(f"*{GROOVE_FILE_SUFFIX}"), key=lambda p: p.relative_to(root).as_posix())
    grooves: list[Groove] = []
    where: dict[str, str] = {}
    for file in files:
        for groove in load_file(file, root=root, source=source):
            here = f"{groove.source_path}:{groove.extra['line']}"
            if groove.name in where:
                raise GrooveError(
                    f"{here}: groove name {groove.name!r} is already used at {where[groove.name]}; "
                    "give each groove its own name"
                )
            where[groove.name] = here
            grooves.append(groove)
    by_name = {g.name: g for g in grooves}
    for groove in grooves:
        target = groove.extra.get("fill_for")
        if target is None:
            continue
        here = f"{groove.source_path}:{groove.extra['line']}"
        if target not in by_name:
            raise GrooveError(
                f"{here}: fill {groove.name!r} is for {target!r}, which is not in {root}; fix the name"
            )
        if by_name[target].kind != "beat":
            raise GrooveError(f"{here}: fill {groove.name!r} is for {target!r}, which is a fill, not a beat")
        if by_name[target].meter != groove.meter:
            raise GrooveError(
                f"{here}: fill {groove.name!r} is in {groove.meter} but its beat {target!r} is in "
                f"{by_name[target].meter}; a fill must share its beat's meter"
            )
    return grooves


def load_builtin() -> list[Groove]:
    """The project's own library from :data:`BUILTIN_GROOVES_DIR`."""
    return load_directory(BUILTIN_GROOVES_DIR, source="builtin")


# --------------------------------------------------------------------------- writing


def _fmt_number(value: float, digits: int = 4) -> str:
    text = f"{round(value, digits):.{digits}f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _smallest_resolution(groove: Groove, meter: Meter) -> int:
    steps = np.flatnonzero(groove.hits.any(axis=1)) % STEPS_PER_BEAT
    for resolution in RESOLUTIONS:
        if chars_per_bar(meter, resolution) is None:
            continue
        if not np.any(steps % (STEPS_PER_BEAT // resolution)):
            return resolution
    return STEPS_PER_BEAT


def _grid_period_bars(groove: Groove) -> int:
    """Smallest number of bars whose repetition gives the whole groove (hits, velocities and offsets)."""
    spb = groove.meter.steps_per_bar
    for period in range(1, groove.bars + 1):
        if groove.bars % period:
            continue
        reps = groove.bars // period
        rows = period * spb
        if all(
            np.array_equal(np.tile(array[:rows], (reps, 1)), array)
            for array in (groove.hits, groove.velocities, groove.offsets)
        ):
            return period
    return groove.bars


def _infer_timing(groove: Groove) -> tuple[tuple[float, int] | None, dict[int, float]] | None:
    """Swing and per-voice shift that give exactly ``groove.offsets``, or None if none does.

    A voice's shift is read from its hits off the swung positions; the swing
    from a swung hit of a voice whose shift is known (or, failing that, from
    the swing the groove was parsed with); a voice playing only swung notes
    gets the rest as its shift. The answer is checked by recomputing every
    offset.
    """
    hits = groove.hits
    if not np.any(groove.offsets[hits]):
        return None, {}
    step_in_beat = np.arange(groove.n_steps) % STEPS_PER_BEAT
    hinted = groove.extra.get("swing")
    units = [hinted[1]] if hinted else []
    units += [u for u in (16, 8) if u not in units]
    for unit in [None, *units]:
        if unit is None:
            swung = np.zeros(groove.n_steps, dtype=bool)
        else:
            pair_steps, swung_step = SWING_UNITS[unit]
            swung = step_in_beat % pair_steps == swung_step
        shifts: dict[int, float] = {}
        plain_voices = set()
        for voice in range(N_VOICES):
            plain = hits[:, voice] & ~swung
            if plain.any():
                plain_voices.add(voice)
                shifts[voice] = float(_fmt_number(float(groove.offsets[plain, voice][0])))
        swing = None
        if unit is not None:
            swung_hits = hits & swung[:, None]
            swung_voices = [int(v) for v in np.flatnonzero(swung_hits.any(axis=0))]
            if not swung_voices:
                continue
            known = [v for v in swung_voices if v in plain_voices]
            pair_steps, swung_step = SWING_UNITS[unit]
            if known:
                voice = known[0]
                step = int(np.flatnonzero(swung_hits[:, voice])[0])
                delay = float(groove.offsets[step, voice]) - shifts[voice]
                percent = (delay + swung_step) / pair_steps * 100.0
            elif hinted and hinted[1] == unit:
                percent = hinted[0]
            else:
                voice = swung_voices[0]
                step = int(np.flatnonzero(swung_hits[:, voice])[0])
                percent = (float(groove.offsets[step, voice]) + swung_step) / pair_steps * 100.0
            swing = (float(_fmt_number(percent, 3)), unit)
            delay = float(swing_offset_steps(swung_step, *swing))
            for voice in swung_voices:
                if voice not in plain_voices:
                    step = int(np.flatnonzero(swung_hits[:, voice])[0])
                    shifts[voice] = float(_fmt_number(float(groove.offsets[step, voice]) - delay))
        shifts = {v: a for v, a in shifts.items() if a}
        expected = np.zeros(groove.offsets.shape)
        if swing is not None:
            expected += swing_offset_steps(step_in_beat, *swing)[:, None]
        for voice, amount in shifts.items():
            expected[:, voice] += amount
        expected = np.where(hits, expected, 0.0).astype(np.float32)
        if np.array_equal(expected, groove.offsets):
            return swing, shifts
    return False  # type: ignore[return-value]


def dump_groove(groove: Groove, resolution: int | None = None, exact: bool = True) -> str:
    """The groove in the text grid format (ends with a newline).

    ``resolution`` characters per beat (default: the groove's own if it
    came from a text grid, else the coarsest that holds every hit). With
    ``exact`` (default) a groove whose velocities are not on the 9 levels,
    whose offsets are not a swing plus per-voice shifts, or whose hits fall
    between characters raises :class:`GrooveError`; with ``exact=False``
    velocities are rounded to the nearest level, such offsets are dropped
    and hits move to the nearest character (for showing imported grooves).
    ``parse_text(dump_groove(g))`` gives back ``g`` whenever ``exact`` holds.
    """
    meter = groove.meter
    if resolution is None:
        resolution = groove.extra.get("resolution") or _smallest_resolution(groove, meter)
        if chars_per_bar(meter, resolution) is None or np.any(
            np.flatnonzero(groove.hits.any(axis=1)) % (STEPS_PER_BEAT // resolution)
        ):
            resolution = _smallest_resolution(groove, meter)
    if resolution not in RESOLUTIONS:
        raise GrooveError(f"resolution {resolution} must be one of {', '.join(map(str, RESOLUTIONS))}")
    per_bar = chars_per_bar(meter, resolution)
    if per_bar is None:
        raise GrooveError(f"groove {groove.name!r}: a {meter} bar does not fit resolution {resolution}")
    steps_per_char = STEPS_PER_BEAT // resolution

    levels_float = groove.velocities * N_LEVELS
    levels = np.where(groove.hits, np.clip(np.rint(levels_float), 1, N_LEVELS), 0).astype(np.int64)
    off_grid = groove.hits.copy()
    off_grid[::steps_per_char] = False
    timing = _infer_timing(groove)
    if exact:
        if off_grid.any():
            step, voice = map(int, np.argwhere(off_grid)[0])
            raise GrooveError(
                f"groove {groove.name!r}: {DRUM_VOICES[voice]} at step {step} falls between the characters "
                f"of resolution {resolution}; use resolution {_smallest_resolution(groove, meter)} "
                "or exact=False"
            )
        on_levels = (levels / N_LEVELS).astype(np.float32)
        if not np.array_equal(np.where(groove.hits, on_levels, 0), groove.velocities):
            raise GrooveError(
                f"groove {groove.name!r}: velocities are not on the 9 levels of the text format; "
                "pass exact=False to round them"
            )
        if timing is False:
            raise GrooveError(
                f"groove {groove.name!r}: its micro-timing is not a swing plus per-voice shifts; "
                "pass exact=False to write the grid without it"
            )
    if timing is False or off_grid.any():
        timing = (None, {})
    swing, shifts = timing

    if off_grid.any():  # exact=False: move each hit to its nearest character, keep the loudest
        n_cells = groove.n_steps // steps_per_char
        cell = (np.arange(groove.n_steps) + steps_per_char // 2) // steps_per_char % n_cells
        cells = np.zeros((n_cells, N_VOICES), dtype=np.int64)
        np.maximum.at(cells, cell, levels)
        period = groove.bars
    else:
        period = _grid_period_bars(groove)
        cells = levels[::steps_per_char]
    grid_cells = cells[: period * per_bar]

    lines = [
        f"groove: {groove.name}",
        f"style: {groove.style}",
        f"kind: {groove.kind}",
        f"bpm: {_fmt_number(groove.bpm, 3)}",
        f"meter: {meter}",
        f"resolution: {resolution}",
    ]
    if groove.bars != default_bars(period, groove.kind):
        lines.append(f"bars: {groove.bars}")
    if swing is not None:
        lines.append(f"swing: {_fmt_number(swing[0], 3)}% {swing[1]}ths")
    if shifts:
        ordered = [v for v in ROW_ORDER if v in shifts]
        parts = [f"{ALIAS_OF_VOICE[DRUM_VOICES[v]]} {shifts[v]:+g}" for v in ordered]
        lines.append("shift: " + ", ".join(parts))
    if groove.extra.get("fill_for"):
        lines.append(f"fill_for: {groove.extra['fill_for']}")
    if groove.extra.get("tags"):
        lines.append("tags: " + ", ".join(groove.extra["tags"]))
    if groove.extra.get("description"):
        lines.append(f"description: {groove.extra['description']}")
    for voice in ROW_ORDER:
        column = grid_cells[:, voice]
        if not column.any():
            continue
        name = DRUM_VOICES[voice]
        chars = "".join(level_char(int(level), name) for level in column)
        bars = [chars[i : i + per_bar] for i in range(0, len(chars), per_bar)]
        lines.append(f"{ALIAS_OF_VOICE[name]} |" + "|".join(bars) + "|")
    if not grid_cells.any():
        raise GrooveError(f"groove {groove.name!r} has no hits; there is nothing to write")
    return "\n".join(lines) + "\n"


def dump_grooves(grooves: list[Groove], resolution: int | None = None, exact: bool = True) -> str:
    """Several grooves as one ``.groove`` text, separated by blank lines."""
    return "\n".join(dump_groove(g, resolution=resolution, exact=exact) for g in grooves)
