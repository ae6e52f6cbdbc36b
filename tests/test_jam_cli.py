"""``sjtui jam`` on bad input: each case a real process with a timeout, a clear message, exit status 2, no hang."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
RECORDING = "berklee_guitar_riff_cutup5.wav"  # 44.1 kHz


@pytest.fixture(scope="module")
def env(jack_server, tmp_path_factory):
    from sjtui.grooves.store import GrooveStore

    data = tmp_path_factory.mktemp("data")
    GrooveStore(data).close()
    return dict(
        os.environ,
        JACK_DEFAULT_SERVER=jack_server,
        SJTUI_DATA_DIR=str(data),
        SJTUI_RUNTIME_DIR=str(tmp_path_factory.mktemp("runtime")),
        SJTUI_CONFIG_DIR=str(tmp_path_factory.mktemp("config")),
    )


def jam(env, *args, timeout_s=60):
    result = subprocess.run(
        [sys.executable, "-m", "sjtui", "jam", "--headless", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout_s,
    )  # fmt: skip
    return result.returncode, result.stdout, result.stderr


@pytest.fixture(scope="module")
def recording(guitar_audio_dir):
    return str(guitar_audio_dir / RECORDING)


def test_an_unknown_input_device_lists_the_devices(env):
    rc, _, err = jam(env, "--input", "Scarlett 2i2", "--bars", "1")
    assert rc == 2
    assert "'Scarlett 2i2'" in err and "system" in err  # what exists


def test_an_unknown_midi_port_lists_the_ports(env, recording):
    rc, _, err = jam(env, "--input", recording, "--midi-out", "no such synth", "--bars", "1")
    assert rc == 2
    assert "'no such synth'" in err and "ports are" in err


def test_without_any_midi_system_the_message_says_what_to_do(env, recording):
    no_jack = dict(env, JACK_DEFAULT_SERVER="sjtui-no-server-here", JACK_NO_START_SERVER="1")
    rc, _, err = jam(no_jack, "--input", recording, "--bars", "1")
    assert rc == 2
    assert "no MIDI system found" in err and "--synth" in err


def test_model_missing_or_broken(env, recording, tmp_path):
    rc, _, err = jam(env, "--input", recording, "--model", str(tmp_path / "nope"), "--bars", "1")
    assert rc == 2 and "does not exist" in err and "--model none" in err
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "manifest.json").write_text("{not json")
    rc, _, err = jam(env, "--input", recording, "--model", str(broken), "--bars", "1")
    assert rc == 2 and "cannot be used" in err and "manifest" in err


def test_library_missing_or_broken(env, recording, tmp_path):
    rc, _, err = jam(env, "--input", recording, "--library", str(tmp_path / "none.sqlite"), "--bars", "1")
    assert rc == 2 and "does not exist" in err
    broken = tmp_path / "grooves.sqlite"
    broken.write_bytes(b"this is not a database" * 100)
    rc, _, err = jam(env, "--input", recording, "--library", str(broken), "--bars", "1")
    assert rc == 2 and str(broken) in err


@pytest.mark.parametrize("bpm", ["0", "1000", "nan"])
def test_tempo_out_of_range(env, recording, bpm):
    rc, _, err = jam(env, "--input", recording, "--bpm", bpm, "--bars", "1")
    assert rc == 2 and "20" in err and "400" in err


def test_a_meter_without_grooves_lists_the_meters_there_are(env, recording):
    rc, _, err = jam(env, "--input", recording, "--meter", "9/8", "--bars", "1")
    assert rc == 2 and "no grooves in 9/8" in err and "4/4" in err and "7/8" in err
    rc, _, err = jam(env, "--input", recording, "--meter", "four", "--bars", "1")
    assert rc == 2 and "does not parse" in err


def test_bad_channel_bars_clock_and_missing_file(env, recording, tmp_path):
    rc, _, err = jam(env, "--input", recording, "--channel", "17", "--bars", "1")
    assert rc == 2 and "channel 17" in err
    rc, _, err = jam(env, "--input", recording, "--bars", "0")
    assert rc == 2 and "--bars" in err
    rc, _, err = jam(env, "--input", recording, "--clock", "sundial")
    assert rc == 2 and "internal" in err
    rc, _, err = jam(env, "--input", str(tmp_path / "missing.wav"), "--bars", "1")
    assert rc == 2 and "does not exist" in err
    rc, _, err = jam(env, "--input", "system", "--fast", "--bars", "1")
    assert rc == 2 and "--fast needs a file" in err


def test_a_file_at_another_sample_rate_is_resampled_and_said_so(env, recording):
    rc, out, err = jam(env, "--input", recording, "--loop", "--fast", "--bars", "12", "--bpm", "112", "--model", "none")
    assert rc == 0, err
    assert "resampled from 44100 Hz to 48000 Hz" in err
    assert "fast mode" in err and "simulated" in err
    lines = [json.loads(line) for line in out.splitlines()] if out.startswith("{") else out.splitlines()
    assert len(lines) == 12


def test_json_lines_have_the_documented_fields(env, recording):
    rc, out, err = jam(env, "--input", recording, "--loop", "--fast", "--json", "--bars", "8", "--bpm", "112", "--model", "none")
    assert rc == 0, err
    reports = [json.loads(line) for line in out.splitlines()]
    assert len(reports) == 8
    for r in reports:
        assert {"bar", "time_s", "bpm", "groove", "switched", "locked", "level_db"} <= set(r)
        assert r["bpm"] == 112.0 and r["locked"] is False
    played = [r for r in reports if r["groove"] is not None]
    assert played and {"id", "score"} <= set(played[0]["groove"])
    assert [r["bar"] for r in reports] == list(range(reports[0]["bar"], reports[0]["bar"] + 8))


def test_the_audio_input_runs_in_a_child_process_unless_asked_otherwise():
    from sjtui.cli import build_parser
    from sjtui.commands.jam import options_from_args

    parser = build_parser()
    assert options_from_args(parser.parse_args(["jam"])).input_process is True
    assert options_from_args(parser.parse_args(["jam", "--input-in-process"])).input_process is False
