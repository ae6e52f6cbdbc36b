"""Engine settings: every threshold of the jam, with the reason for its default.

Pure data (no threads, nothing heavy). :func:`load_config` reads an optional
TOML file, ``config.toml`` in the user's config directory
(``$SJTUI_CONFIG_DIR`` or ``platformdirs.user_config_dir("sjtui")``), whose
``[engine]`` table overrides any field below::

    [engine]
    switch_margin = 0.08
    min_bars_between_switches = 8
    on_silence = "finish"     # "finish" | "continue"

An unknown key or a value of the wrong type is a :class:`ConfigError` that
names the key, the file and what is allowed.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path

from sjtui.errors import SjtuiError

CONFIG_FILENAME = "config.toml"


class ConfigError(SjtuiError, ValueError):
    """A configuration file or value that cannot be used."""


@dataclass(frozen=True)
class EngineConfig:
    # --- selection ---------------------------------------------------------------
    # Candidates kept per decision (the UI shows them; skip walks down them).
    top_k: int = 8
    # A switch needs the best groove to beat the current one by this much cosine
    # similarity (embeddings are L2-normalised, so scores are in -1..1). Window-to-
    # window noise of a steady riff moves scores by a few hundredths; 0.05 is above
    # that noise and well below the gap between a fitting and a clashing groove.
    switch_margin: float = 0.05
    # At least this many bars between two switches the engine makes on its own:
    # two 4-bar phrases, so a groove is heard long enough to be judged, and a riff
    # that alternates every phrase does not make the drums flip every phrase.
    min_bars_between_switches: int = 8
    # Skip avoids the grooves played in the last this many windows.
    recent_window_count: int = 4
    # Tempo fit (see sjtui.model.fit): within 8 % of the playing, or of double/half.
    tempo_tolerance: float = 0.08
    # Play a fill from the library in the bar before a switch. Deciding then
    # happens one bar earlier (the fill needs its bar), still over four whole bars.
    fill_before_switch: bool = True

    # --- timing --------------------------------------------------------------------
    # The decision for a window is made this long before its first downbeat (or the
    # fill's bar). It must exceed the scheduler's lookahead (20 ms rtmidi, 40 ms
    # buffered) plus the selection time (embedding + scoring: ~1 ms, p99 measured by
    # bench/timing.py) plus one analysis batch (5.3 ms) plus GIL delays (5 ms switch
    # interval): 150 ms leaves a wide margin and is still short against a bar.
    decision_lead_ms: float = 150.0
    # Python's GIL switch interval while jamming (process-wide). The audio and JACK callbacks
    # run Python and need the GIL once per period (5.3 ms at 256/48 kHz); with the default 5 ms
    # interval a busy engine or UI thread can hold it for a whole period and the input overflows.
    # 1 ms bounds that wait for a few more thread switches. Measured with bench/engine.py
    # (60 s, UI-like load) against the 5 ms peer on this shared 2-core machine: overflows
    # 2 vs 13 (separate runs), 13 vs 21, 18 vs 7: inconclusive, the machine's load dominates.
    switch_interval_ms: float = 1.0
    # Snapshots are published at most this often (the UI polls at ~30 Hz).
    snapshot_interval_ms: float = 25.0

    # --- dynamics ------------------------------------------------------------------
    # Velocities scale with the guitar's RMS level over the last window:
    # scale = 10 ** ((level_db - dynamics_reference_db) / dynamics_db_per_decade),
    # a guitar at the reference level gets the groove's own velocities.
    dynamics_reference_db: float = -20.0
    # 40 dB of guitar level per factor 10 of velocity scale: playing 6 dB softer gives
    # x0.71 velocities, 12 dB softer (a quiet verse) reaches the minimum x0.5. MIDI
    # velocity already maps to loudness roughly logarithmically, so this is gentle.
    # The limits keep the drums audible (x0.5) and unclipped (x1.2 of a groove whose
    # accents sit near 100-110).
    dynamics_db_per_decade: float = 40.0
    dynamics_min: float = 0.5
    dynamics_max: float = 1.2

    # --- silence -------------------------------------------------------------------
    # The guitar counts as silent when its RMS level (smoothed over ~0.3 s) is below
    # silence_db AND it made no onset for silence_bars bars. -50 dBFS is well under a
    # soft picked note through an interface (-30..-20 dBFS) and above a quiet room
    # or an idle amp's hiss; requiring one bar without onsets keeps a held chord or
    # a rest inside the riff from stopping the drums.
    silence_db: float = -50.0
    silence_bars: float = 1.0
    # "finish": the drums finish the current 4-bar phrase and stop; "continue": they
    # keep playing through silence.
    on_silence: str = "finish"
    # Playing resumes after this many onsets within one bar (one stray pick noise
    # does not bring the drums back).
    resume_onsets: int = 2
    # With the tempo from the playing (clock "auto"), the drums come back after a
    # one-bar count-in on the hi-hat so the player hears where the beat is.
    count_in_bars: int = 1

    # --- MIDI ------------------------------------------------------------------------
    channel: int = 10  # 1-based, as on the devices: GM drums
    kit: str = "gm"
    note_length_ms: float = 50.0
    # The MIDI scheduler (rtmidi and JACK outputs) runs in a child process with its own GIL
    # (sjtui.midi.process.MidiProcess). In one process with the UI and analysis threads,
    # bench/timing.py measured rtmidi send error p99 5.4 ms and JACK xruns and 530 ms drift;
    # isolated: p99 0.22 ms, JACK frame-exact. False keeps it in this process (tests, debugging).
    midi_process: bool = True
    # With the jam screen, the engine runs in a child process (sjtui.engine_process) so that the
    # screen's Python and the engine's decisions do not share a GIL: 500 decisions in a row beside
    # the screen at 30 Hz took p99 4.7 ms in one process, 1.9 ms without a screen (bench/ui.py).
    # False keeps the engine in the screen's process (debugging). Headless jams run in-process.
    engine_process: bool = True

    # --- audio -----------------------------------------------------------------------
    # The ring holds this much audio: the last 4 bars for a rating (4 bars of 4/4
    # at 40 BPM = 24 s), with room for the analysis falling behind.
    ring_seconds: float = 32.0

    def validate(self) -> "EngineConfig":
        problems = []
        if self.top_k < 1:
            problems.append(f"top_k {self.top_k} must be at least 1")
        if not 0.0 <= self.switch_margin <= 2.0:
            problems.append(f"switch_margin {self.switch_margin} must be 0..2 (a difference of cosine scores)")
        if self.min_bars_between_switches < 0:
            problems.append(f"min_bars_between_switches {self.min_bars_between_switches} must be >= 0")
        if not 0.0 < self.tempo_tolerance < 0.5:
            problems.append(f"tempo_tolerance {self.tempo_tolerance} must be between 0 and 0.5")
        if not 30.0 <= self.decision_lead_ms <= 2000.0:
            problems.append(f"decision_lead_ms {self.decision_lead_ms} must be 30..2000")
        if not 0.0 < self.dynamics_min <= 1.0 <= self.dynamics_max <= 1.5:
            problems.append(
                f"dynamics limits {self.dynamics_min}..{self.dynamics_max} must satisfy 0 < min <= 1 <= max <= 1.5"
            )
        if self.dynamics_db_per_decade <= 0:
            problems.append(f"dynamics_db_per_decade {self.dynamics_db_per_decade} must be positive")
        if self.on_silence not in ("finish", "continue"):
            problems.append(f"on_silence {self.on_silence!r} must be 'finish' or 'continue'")
        if self.silence_bars <= 0:
            problems.append(f"silence_bars {self.silence_bars} must be positive")
        if self.resume_onsets < 1:
            problems.append(f"resume_onsets {self.resume_onsets} must be at least 1")
        if self.count_in_bars < 0:
            problems.append(f"count_in_bars {self.count_in_bars} must be >= 0")
        if not 1 <= self.channel <= 16:
            problems.append(f"channel {self.channel} must be 1..16 (10 is the GM drum channel)")
        if self.note_length_ms <= 0:
            problems.append(f"note_length_ms {self.note_length_ms} must be positive")
        if not 0.1 <= self.switch_interval_ms <= 10.0:
            problems.append(f"switch_interval_ms {self.switch_interval_ms} must be 0.1..10")
        if self.ring_seconds < 4:
            problems.append(f"ring_seconds {self.ring_seconds} must be at least 4")
        if problems:
            raise ConfigError("engine settings: " + "; ".join(problems))
        return self

    def with_overrides(self, **overrides) -> "EngineConfig":
        """A copy with ``overrides`` (``None`` values ignored), validated."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigError(f"unknown engine setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return replace(self, **{k: v for k, v in overrides.items() if v is not None}).validate()


def config_dir() -> Path:
    override = os.environ.get("SJTUI_CONFIG_DIR")
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_config_dir("sjtui"))


def load_config(path: str | Path | None = None) -> EngineConfig:
    """Defaults, overridden by the ``[engine]`` table of ``path`` (default: the user's config.toml if present)."""
    if path is None:
        path = config_dir() / CONFIG_FILENAME
        if not path.exists():
            return EngineConfig().validate()
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist; create it or leave --config out") from None
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"config file {path} cannot be read: {error}; fix it or move it away") from None
    table = data.get("engine", {})
    if not isinstance(table, dict):
        raise ConfigError(f"config file {path}: [engine] must be a table")
    defaults = EngineConfig()
    types = {f.name: type(getattr(defaults, f.name)) for f in fields(defaults)}
    values = {}
    for key, value in table.items():
        if key not in types:
            raise ConfigError(
                f"config file {path}: unknown engine setting {key!r}; known: {', '.join(sorted(types))}"
            )
        want = types[key]
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, want) or (want is int and isinstance(value, bool)):
            raise ConfigError(f"config file {path}: {key} = {value!r} must be a {want.__name__}")
        values[key] = value
    try:
        return replace(defaults, **values).validate()
    except ConfigError as error:
        raise ConfigError(f"config file {path}: {error}") from None
