"""`sjtui grooves ...` as a user runs it (in-process through sjtui.cli.main, real store on disk)."""

from __future__ import annotations

import json

import mido
import numpy as np
import pytest

from sjtui.cli import main
from sjtui.commands.grooves import SHADES, render_grid
from sjtui.grooves.store import GrooveStore
from tests.test_grooves_midi import make_midi, rock_beat_notes

REQUIRED = {"id", "source", "style", "bpm", "meter", "kind", "split", "bars"}


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("SJTUI_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_builtins_are_listed_without_any_import(data_dir, capsys):
    code, out, _ = run(capsys, "grooves", "list", "--json")
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert rows and all(REQUIRED <= set(r) for r in rows)
    assert {r["source"] for r in rows} == {"builtin"}
    assert {r["kind"] for r in rows} <= {"beat", "fill"}


def test_import_folder_list_by_style_show_and_export(data_dir, tmp_path, capsys):
    lib = tmp_path / "lib" / "rock"
    lib.mkdir(parents=True)
    (lib / "beat.mid").write_bytes(make_midi(rock_beat_notes(6)))
    (lib / "broken.mid").write_bytes(b"MThd\x00")
    code, out, _ = run(capsys, "grooves", "import", str(tmp_path / "lib"))
    assert code == 0
    assert "1 imported" in out and "skipped" in out and "broken.mid" in out and "truncated" in out
    code, out, _ = run(capsys, "grooves", "import", str(tmp_path / "lib"))
    assert "0 added" in out  # idempotent
    code, out, _ = run(capsys, "grooves", "list", "--style", "rock", "--source", "midi", "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(r["source"], r["style"], r["bars"], r["meter"], r["kind"]) for r in rows] == [("midi", "rock", 4, "4/4", "beat")] * 2
    assert rows[0]["bpm"] == 120.0 and rows[0]["split"] is None

    code, out, _ = run(capsys, "grooves", "show", str(rows[0]["id"]))
    assert code == 0
    lines = out.splitlines()
    assert all(len(line) <= 80 for line in lines)
    grid = [line for line in lines if line[:3] in ("HH ", "SD ", "BD ")]
    assert len(grid) == 3  # 4 bars at 16th resolution fit one line per voice
    assert grid[0].count("|") == 5 and any(c in grid[0] for c in SHADES)

    midi_path = tmp_path / "out.mid"
    code, out, _ = run(capsys, "grooves", "export", str(rows[0]["id"]), str(midi_path))
    assert code == 0
    notes = [m for m in mido.MidiFile(midi_path).tracks[0] if m.type == "note_on"]
    assert len(notes) == 4 * (8 + 2 + 2)


def test_channel_option_is_one_based(data_dir, tmp_path, capsys):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "ch3.mid").write_bytes(make_midi(rock_beat_notes(4), channel=2))
    code, out, _ = run(capsys, "grooves", "import", str(tmp_path / "lib"), "--json")
    assert code == 1 and "channel 10" in json.loads(out)["skipped"][0]["reason"]
    code, out, _ = run(capsys, "grooves", "import", str(tmp_path / "lib"), "--channel", "3", "--json")
    assert code == 0 and json.loads(out)["grooves_added"] == 1


def test_show_wraps_bars_when_the_grid_is_fine(data_dir, capsys):
    with GrooveStore() as store:
        groove = store.get(store.list_rows()[0]["id"])
    groove.hits[1, 0] = True  # a hit on a 32nd-triplet step forces 12 characters per beat
    groove.velocities[1, 0] = 1.0
    lines = render_grid(groove, width=80)
    assert all(len(line) <= 80 for line in lines)
    kick_rows = [line for line in lines if line.startswith("BD ")]
    assert len(kick_rows) == groove.bars  # one bar per line at 48 characters per bar
    assert kick_rows[0][4 + 1] == SHADES[-1]


def test_errors_are_clear(data_dir, capsys, tmp_path):
    code, _, err = run(capsys, "grooves", "show", "424242")
    assert code == 2 and "no groove with id 424242" in err
    code, _, err = run(capsys, "grooves", "import", str(tmp_path / "nowhere"))
    assert code == 2 and "does not exist" in err
    code, _, err = run(capsys, "grooves", "import", "--gmd")
    assert code == 2 and "--download" in err
    code, _, err = run(capsys, "grooves", "import", str(tmp_path), "--channel", "17")
    assert code == 2 and "1 to 16" in err
    code, _, err = run(capsys, "grooves", "play", "424242")
    assert code == 2 and "no groove with id 424242" in err
    code, _, err = run(capsys, "grooves", "play", "1", "--repeats", "0")
    assert code == 2 and "at least once" in err


def test_gmd_zip_import_and_download_from_local_server(data_dir, tmp_path, capsys, groove_midi_dir):
    import hashlib

    from tests.test_grooves_gmd import _Server, build_zip

    data = build_zip(groove_midi_dir, n_rows=3)
    with _Server({"/g.zip": (data, len(data))}) as server:
        code, out, err = run(
            capsys, "grooves", "import", "--gmd", "--download", "--url", server.url("/g.zip"),
            "--sha256", hashlib.sha256(data).hexdigest(), "--json",
        )  # fmt: skip
    assert code == 0, err
    report = json.loads(out)
    assert report["files_imported"] == 3 and report["grooves_added"] > 3
    assert set(report["windows_by_split"]) <= {"train", "validation", "test"}
    assert (data_dir / "downloads" / "groove-v1.0.0-midionly.zip").read_bytes() == data
    code, out, _ = run(capsys, "grooves", "list", "--source", "gmd", "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == report["grooves_added"] and all(r["split"] for r in rows)
    # --gmd without a path now finds the downloaded zip; nothing is added twice
    code, out, _ = run(capsys, "grooves", "import", "--gmd", "--json")
    assert json.loads(out)["grooves_added"] == 0
    assert np.all([r["bars"] >= 1 for r in rows])
