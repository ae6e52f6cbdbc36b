"""The jam engine on a simulated clock (``--fast``): real analysis, real library, a real (untrained) ONNX model.

Every decision here is the engine's own: windows, switches, fills, silence,
dynamics, recording and rating, checked on what it planned to send.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from sjtui import snapshot as snap
from sjtui.audio.riffs import generate_riff
from sjtui.audio.synth_guitar import render_notes
from sjtui.config import ConfigError, EngineConfig, load_config
from sjtui.engine import EngineOptions, create_engine
from sjtui.model.fit import tempo_fits
from sjtui.select import NO_MODEL_MESSAGE

SR = 48000
BPM = 120.0
BAR_S = 2.0


@pytest.fixture(scope="module")
def library_dir(tmp_path_factory):
    from sjtui.grooves.store import GrooveStore

    path = tmp_path_factory.mktemp("library")
    GrooveStore(path).close()  # the built-in grooves
    return path


@pytest.fixture(scope="module")
def random_model(tmp_path_factory):
    pytest.importorskip("torch")
    from training.export import export_model, untrained_summary
    from training.towers import build_two_tower

    out = tmp_path_factory.mktemp("model")
    export_model(build_two_tower(seed=3), out, version="0.0.1-test", training=untrained_summary(3))
    return out


@pytest.fixture(autouse=True)
def private_runtime_dir(tmp_path, monkeypatch):
    """MIDI state files (for clean-up after SIGKILL) of this test only."""
    monkeypatch.setenv("SJTUI_RUNTIME_DIR", str(tmp_path / "runtime"))


def song(parts, bpm=BPM, gain=0.5):
    """Riffs and rests one after another: parts = [(style or None, bars, dynamics), ...] -> (samples, bar starts)."""
    notes, starts, t = [], [], 0.0
    bar_s = 240.0 / bpm
    for k, (style, bars, dynamics) in enumerate(parts):
        starts.append(int(round(t / bar_s)))
        if style is not None:
            riff = generate_riff(style, bpm=bpm, bars=bars, seed=20 + k, dynamics=dynamics)
            notes += [replace(n, start_s=n.start_s + t) for n in riff.notes]
        t += bars * bar_s
    return render_notes(notes, SR, "clean", seed=1, length_s=t + 0.5, peak=gain), starts


def run_fast(samples, library_dir, model="none", config=None, commands=(), on_report=None, **options):
    engine = create_engine(
        EngineOptions(
            samples=samples, fast=True, model=str(model), library=str(library_dir), bpm=BPM,
            config=config or EngineConfig(), state_file=False, **options,
        )
    )  # fmt: skip
    for command in commands:
        engine.send(command)
    reports = []
    with engine:
        deadline = time.monotonic() + 120
        while not engine.finished.is_set() and time.monotonic() < deadline:
            try:
                report = engine.bar_reports.get(timeout=0.05)
            except Exception:
                continue
            reports.append(report)
            if on_report is not None:
                on_report(engine, report)
        assert engine.finished.is_set(), "the engine did not finish the file"
    while not engine.bar_reports.empty():
        reports.append(engine.bar_reports.get())
    assert engine.error is None
    assert_never_two_ons(engine.output.pending)
    return engine, reports


def assert_never_two_ons(pending):
    """In send order, a note is never struck again while it sounds (an off always comes first)."""
    on = set()
    for sample, _, data in pending:
        key = (data[0] & 0x0F, data[1])
        if data[0] & 0xF0 == 0x90 and data[2] > 0:
            assert key not in on, f"note {key} struck again at {sample} while sounding"
            on.add(key)
        elif data[0] & 0xF0 in (0x80, 0x90):
            on.discard(key)


def groove_bars(reports):
    return [r for r in reports if r["groove"] is not None and r["groove"]["kind"] == "groove"]


def test_switches_land_on_window_boundaries_with_patience_and_fitting_tempo(library_dir, random_model):
    config = EngineConfig(switch_margin=0.0, min_bars_between_switches=4)
    samples, _ = song([("straight8", 8, 1.0), ("funk16", 8, 1.0), ("shuffle", 8, 0.8), ("sparse", 8, 0.5), ("gallop", 8, 1.0)])
    engine, reports = run_fast(samples, library_dir, random_model, config)
    played = groove_bars(reports)
    assert played, "no groove was played"
    first = played[0]["bar"]
    assert played[0]["switched"] and played[0]["window_start"] == first
    switches = [r["bar"] for r in reports if r["switched"]]
    assert len(switches) >= 2, f"an untrained model with margin 0 should switch at least once: {switches}"
    assert all((b - first) % 4 == 0 for b in switches), switches
    assert all(b2 - b1 >= 4 for b1, b2 in zip(switches, switches[1:]))
    # windows: every groove bar plays bar (bar - window_start) % bars of its groove, windows 4 bars long
    for r in played:
        assert (r["window_start"] - first) % 4 == 0 and 0 <= r["bar"] - r["window_start"] < 4
    # a fill, when there is one, sits in the bar right before a switch
    fills = [r["bar"] for r in reports if r["groove"] is not None and r["groove"]["kind"] == "fill"]
    assert all(b + 1 in switches for b in fills), (fills, switches)
    # every groove fits the tempo and meter
    lib = engine.library
    for r in played:
        i = lib.index_of(r["groove"]["id"])
        assert str(lib.meters[i]) == "4/4" and tempo_fits(BPM, np.array([lib.bpm[i]]))[0]
        assert r["groove"]["score"] is not None
    # what was planned is exactly the grooves' hits, bar by bar
    ons = engine.output.note_ons()
    expected = 0
    for r in reports:
        if r["groove"] is None or r["groove"]["id"] is None:
            continue
        g = lib.groove(lib.index_of(r["groove"]["id"]))
        spb = g.meter.steps_per_bar
        expected += int(g.hits[r["groove_bar"] * spb : (r["groove_bar"] + 1) * spb].sum())
    first_sample = played[0]["sample"]
    last_end = reports[-1]["sample"] + int(BAR_S * SR)
    counted = int(((ons[:, 0] >= first_sample - SR // 4) & (ons[:, 0] < last_end)).sum())
    assert counted == expected
    assert engine.snapshot().timing.selection_ms_p99 is not None


def test_without_a_model_the_choice_is_by_tempo_and_meter_only_and_says_so(library_dir):
    samples, _ = song([("straight8", 12, 1.0)])
    engine, reports = run_fast(samples, library_dir, "none")
    played = groove_bars(reports)
    assert len({r["groove"]["id"] for r in played}) == 1
    assert all(r["groove"]["score"] is None for r in played)
    snapshot = engine.snapshot()
    assert NO_MODEL_MESSAGE in snapshot.warnings
    assert any(NO_MODEL_MESSAGE in entry.text for entry in snapshot.log)


def test_silence_finishes_the_phrase_and_playing_brings_the_drums_back_at_the_next_bar(library_dir):
    samples, starts = song([("straight8", 10, 1.0), (None, 8, 0.0), ("straight8", 8, 1.0)])
    engine, reports = run_fast(samples, library_dir, "none")
    played = groove_bars(reports)
    first = played[0]["bar"]
    silent_from, back_at = starts[1], starts[2]
    before = [r for r in played if r["bar"] < back_at]
    last = before[-1]
    # the drums finish their 4-bar phrase, then stop, and not much later than the silence began
    assert last["bar"] - last["window_start"] == 3
    assert silent_from <= last["bar"] + 1 <= silent_from + 8
    assert all(r["groove"] is None for r in reports if last["bar"] < r["bar"] < back_at)
    again = [r for r in played if r["bar"] >= back_at]
    assert again and again[0]["switched"] and again[0]["bar"] <= back_at + 1, (back_at, again[0]["bar"])
    assert first <= 1


def test_dynamics_follow_the_guitar_within_limits(library_dir):
    config = EngineConfig()
    velocities = {}
    for name, gain in (("quiet", 0.08), ("loud", 0.7)):
        samples, _ = song([("straight8", 10, 1.0)], gain=gain)
        engine, reports = run_fast(samples, library_dir, "none", config)
        dyn = [r["dynamics"] for r in groove_bars(reports)]
        assert all(config.dynamics_min <= d <= config.dynamics_max for d in dyn)
        velocities[name] = (engine.output.note_ons()[:, 2].mean(), np.mean(dyn))
    assert velocities["quiet"][1] < velocities["loud"][1]
    assert velocities["quiet"][0] < 0.8 * velocities["loud"][0]


def test_lock_keeps_the_groove_and_skip_moves_to_another(library_dir, random_model):
    config = EngineConfig(switch_margin=0.0, min_bars_between_switches=4)
    samples, _ = song([("straight8", 8, 1.0), ("funk16", 8, 1.0), ("shuffle", 8, 0.8)])
    engine, reports = run_fast(samples, library_dir, random_model, config, commands=[snap.ToggleLock()])
    assert len({r["groove"]["id"] for r in groove_bars(reports)}) == 1

    skipped = {}

    def skip_once(engine, report):
        if report["groove"] is not None and "at" not in skipped:
            skipped["at"] = report["bar"]
            engine.send(snap.Skip())

    engine, reports = run_fast(samples, library_dir, random_model, EngineConfig(min_bars_between_switches=100), on_report=skip_once)
    played = groove_bars(reports)
    ids = [r["groove"]["id"] for r in played]
    assert len(set(ids)) >= 2, "skip did not change the groove"
    change = next(k for k in range(1, len(ids)) if ids[k] != ids[k - 1])
    assert played[change]["switched"]
    assert any("skip" in e.text for e in engine.snapshot().log)


def test_recording_writes_guitar_flac_and_drum_midi_on_one_timeline(library_dir, tmp_path, monkeypatch):
    import mido
    import soundfile as sf

    monkeypatch.setenv("SJTUI_DATA_DIR", str(tmp_path))
    samples, _ = song([("straight8", 8, 1.0)])
    engine, reports = run_fast(samples, library_dir, "none", commands=[snap.ToggleRecord()])
    folder = tmp_path / "recordings"
    flac = sorted(folder.glob("*-guitar.flac"))
    mid = sorted(folder.glob("*-drums.mid"))
    assert len(flac) == 1 and len(mid) == 1
    audio, rate = sf.read(flac[0], dtype="float32")
    assert rate == SR
    n = min(audio.shape[0], samples.shape[0])
    assert audio.shape[0] >= samples.shape[0] - 4 * 256
    assert np.max(np.abs(audio[:n] - samples[:n])) < 1e-4  # 24-bit FLAC of the input, from sample 0
    ons = engine.output.note_ons()
    track = mido.MidiFile(mid[0])
    times, t = [], 0.0
    for message in track:
        t += message.time
        if message.type == "note_on" and message.velocity > 0:
            times.append(t)
    assert len(times) == ons.shape[0]
    assert np.allclose(np.array(times), ons[:, 0] / SR, atol=1.5e-3)


def test_rate_saves_the_last_bars_with_groove_and_model_version(library_dir, random_model, tmp_path, monkeypatch):
    from sjtui.labels.store import LabelStore

    monkeypatch.setenv("SJTUI_DATA_DIR", str(tmp_path))
    sent = {}

    def rate_once(engine, report):
        if report["groove"] is not None and report["bar"] >= 6 and "done" not in sent:
            sent["done"] = report
            engine.send(snap.Rate(4))

    samples, _ = song([("straight8", 12, 1.0)])
    engine, reports = run_fast(samples, library_dir, random_model, on_report=rate_once)
    deadline = time.monotonic() + 10
    rows = []
    while time.monotonic() < deadline:
        with LabelStore.open(tmp_path, readonly=False) as store:
            rows = store.rating_rows()
        if rows:
            break
        time.sleep(0.1)
    assert len(rows) == 1, [e.text for e in engine.snapshot().log]
    row = rows[0]
    assert row["rating"] == 4 and row["strategy"] == "jam"
    assert row["model_version"] == engine.model_version and engine.model_version
    assert engine.snapshot().last_rating == 4


def test_config_file_overrides_and_bad_keys_are_clear(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text("[engine]\nswitch_margin = 0.1\nmin_bars_between_switches = 12\non_silence = 'continue'\n")
    config = load_config(path)
    assert (config.switch_margin, config.min_bars_between_switches, config.on_silence) == (0.1, 12, "continue")
    path.write_text("[engine]\nswitch_margn = 0.1\n")
    with pytest.raises(ConfigError, match="unknown engine setting 'switch_margn'.*switch_margin"):
        load_config(path)
    path.write_text("[engine]\nmin_bars_between_switches = 'eight'\n")
    with pytest.raises(ConfigError, match="must be a int"):
        load_config(path)
    path.write_text("[engine]\non_silence = 'explode'\n")
    with pytest.raises(ConfigError, match="on_silence"):
        load_config(path)


def test_tempo_from_the_playing_locks_then_the_drums_count_in(library_dir):
    samples, _ = song([("straight8", 20, 1.0)], bpm=100.0)
    engine, reports = run_fast(samples, library_dir, "none", clock="auto")
    count_in = [k for k, r in enumerate(reports) if r["groove"] is not None and r["groove"]["kind"] == "count-in"]
    assert len(count_in) == 1, [(r["bar"], r["groove"]) for r in reports]
    k = count_in[0]
    after = reports[k + 1]
    assert after["groove"]["kind"] == "groove" and after["switched"] and after["bar"] == reports[k]["bar"] + 1
    bpm = after["bpm"]
    assert tempo_fits(100.0, np.array([bpm]), 0.03)[0], bpm
    assert all(r["groove"] is None for r in reports[:k])  # nothing before the tempo was locked
    # the count-in bar is the closed hi-hat on every beat
    ons = engine.output.note_ons()
    bar_len = reports[k + 1]["sample"] - reports[k]["sample"]
    in_bar = ons[(ons[:, 0] >= reports[k]["sample"] - 2) & (ons[:, 0] < reports[k]["sample"] + bar_len - 2)]
    assert in_bar.shape[0] == 4 and set(in_bar[:, 1].tolist()) == {42}
    assert np.allclose(np.diff(in_bar[:, 0]), bar_len / 4, atol=1)


def test_a_tempo_change_moves_the_grid_and_a_groove_that_no_longer_fits_is_replaced(library_dir):
    changed = {}

    def change_tempo(engine, report):
        if report["groove"] is not None and report["bar"] >= 5 and "at" not in changed:
            changed["at"] = report["bar"]
            engine.send(snap.SetTempo(140.0))

    samples, _ = song([("straight8", 20, 1.0)])
    engine, reports = run_fast(samples, library_dir, "none", on_report=change_tempo)
    later = [r for r in reports if r["bar"] > changed["at"] + 2]
    assert later and all(r["bpm"] == 140.0 for r in later)
    lib = engine.library
    for r in groove_bars(later):
        assert tempo_fits(140.0, np.array([lib.bpm[lib.index_of(r["groove"]["id"])]]))[0]
    bar_samples = np.diff([r["sample"] for r in later])
    assert np.allclose(bar_samples, SR * 240.0 / 140.0, atol=1)
    assert any(r["switched"] for r in reports if r["bar"] > changed["at"])


def test_the_snapshot_keeps_the_contract(library_dir, random_model):
    seen = {}

    def look(engine, report):
        if report["groove"] is not None and report["bar"] >= 6 and "snap" not in seen:
            seen["snap"] = engine.snapshot()

    samples, _ = song([("straight8", 10, 1.0)])
    engine, _ = run_fast(samples, library_dir, random_model, on_report=look)
    # the last whole window's onset grid has the riff's 8ths in every one of its 4 bars
    previous = engine.snapshot().previous_onset_grid
    assert previous is not None and (previous.max(axis=(0, 2)) > 0).all(), previous.max(axis=(0, 2))
    assert (previous.max(axis=0) > 0).sum(axis=1).min() >= 4
    s = seen["snap"]
    assert isinstance(s, snap.EngineSnapshot) and s.state in ("playing", "count-in", "stopping")
    assert s.transport.meter == "4/4" and s.transport.steps_per_bar == 48 and s.transport.bpm == BPM
    assert 0 <= s.transport.step < 4 * 48 and s.transport.bars_to_decision <= 4.0
    assert s.onset_grid.shape == (3, 4, 48) and not s.onset_grid.flags.writeable and s.onset_grid.max() > 0
    assert s.current is not None and s.current.pattern.shape == (9, 4 * 48) and not s.current.pattern.flags.writeable
    assert s.current.score is not None and len(s.candidates) >= 1 and s.candidates[0].score >= s.candidates[-1].score
    assert s.library_size > 0 and "0.0.1-test" in s.model_version
    assert -120.0 <= s.levels.rms_db <= 0.0 and s.timing.selection_ms_p99 is not None  # fast mode: may be the tail
    assert s.midi_destination.startswith("simulated")


def test_the_ranker_is_warmed_up_before_the_first_decision(library_dir, random_model, monkeypatch):
    """A silent ranking when the engine is built pays onnxruntime's first-run costs (10-19 ms
    measured, against ~1 ms after) before the jam's first decision, not at it; it runs through
    the model in any meter the model takes, and is not counted among the decisions."""
    from sjtui.select import GrooveRanker

    warmed = []
    original_warm_up = GrooveRanker.warm_up
    monkeypatch.setattr(GrooveRanker, "warm_up", lambda self, *a: warmed.append(a) or original_warm_up(self, *a))
    engine = create_engine(
        EngineOptions(samples=np.zeros(SR, np.float32), fast=True, model=str(random_model), library=str(library_dir),
                      bpm=BPM, meter="4/4", state_file=False)
    )  # fmt: skip
    assert [(bpm, str(meter)) for bpm, meter in warmed] == [(BPM, "4/4")]
    assert len(engine.selection_ms) == 0
    embedded = []
    model = engine.ranker.model
    original_embed = model.embed_guitar
    monkeypatch.setattr(model, "embed_guitar", lambda fp: embedded.append(str(fp.meter)) or original_embed(fp))
    from sjtui.meter import parse_meter
    from sjtui.model.inputs import MODEL_STEPS_PER_BAR

    meters = [m for m in engine.ranker.meters_available() if parse_meter(m).steps_per_bar <= MODEL_STEPS_PER_BAR]
    assert len(meters) > 1
    for meter in meters:
        assert engine.ranker.warm_up(BPM, meter) > 0
    assert embedded == meters


def test_the_library_is_embedded_a_batch_at_a_time_with_the_same_vectors(tmp_path, random_model, monkeypatch):
    """Batches of 16 (the real batch is 256: all 11,076 GMD grooves at once left ~190 MB in the
    heap) give the vectors of one call over every groove, and the cache gives them back."""
    from sjtui.engine import _first_bars, load_groove_library
    from sjtui.grooves.store import GrooveStore
    from sjtui.model import runtime
    from sjtui.model.runtime import EncoderPair

    GrooveStore(tmp_path).close()  # the built-in grooves
    model = EncoderPair(random_model)
    calls = []
    original = model.embed_grooves
    monkeypatch.setattr(model, "embed_grooves", lambda grooves, d: calls.append(len(grooves)) or original(grooves, d))
    monkeypatch.setattr(runtime, "GROOVE_BATCH", 16)
    library, embeddings, _ = load_groove_library(str(tmp_path), model, [])
    rows = np.flatnonzero(np.isfinite(embeddings).all(axis=1))  # not the meters longer than the model's bar
    assert rows.size > 32 and max(calls) == 16 and sum(calls) == rows.size
    whole = original([_first_bars(library.groove(int(i))) for i in rows], library.descriptors[rows])
    np.testing.assert_allclose(embeddings[rows], whole, rtol=0, atol=1e-6)
    calls.clear()
    _, cached, _ = load_groove_library(str(tmp_path), model, [])
    assert calls == [] and np.array_equal(cached, embeddings, equal_nan=True)
