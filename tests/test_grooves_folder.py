"""Importing a folder of drum MIDI files: good files in, every bad one skipped with its reason."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from sjtui.grooves.folder_import import guess_kind, import_midi_folder
from sjtui.grooves.store import GrooveStore
from tests.test_grooves_midi import bad_files, make_midi, rock_beat_notes

REPO = Path(__file__).resolve().parent.parent


def write_library(root: Path) -> dict[str, str]:
    """Good files in style folders plus every kind of bad file; returns {bad file name: expected reason}."""
    (root / "rock").mkdir(parents=True)
    (root / "rock" / "verse.mid").write_bytes(make_midi(rock_beat_notes(8)))
    (root / "rock" / "big fill.mid").write_bytes(make_midi(rock_beat_notes(1)))
    (root / "funk" / "deep").mkdir(parents=True)
    (root / "funk" / "deep" / "groove.MID").write_bytes(make_midi(rock_beat_notes(4), channel=9))
    (root / "notes.txt").write_text("not a MIDI file, not even looked at")
    expected = {}
    for case, (data, reason) in bad_files().items():
        name = case.replace(" ", "_") + ".mid"
        (root / "bad").mkdir(exist_ok=True)
        (root / "bad" / name).write_bytes(data)
        expected[name] = reason
    return expected


def test_folder_import_keeps_good_files_and_reports_each_bad_one(tmp_path):
    expected = write_library(tmp_path / "lib")
    with GrooveStore(tmp_path / "db", builtin=False) as store:
        store.add_file_grooves("midi", "/earlier/import.mid", "x", [])  # something imported before
        report = import_midi_folder(store, tmp_path / "lib")
        assert report.files_seen == 3 + len(expected)
        assert report.files_imported == 3
        skipped = {Path(s.path).name: s.reason for s in report.skipped}
        assert set(skipped) == set(expected)
        import re

        for name, reason in expected.items():
            assert re.search(reason, skipped[name]), (name, skipped[name])
        rows = store.list_rows()
        assert {r["style"] for r in rows} == {"rock", "funk"}
        assert {r["kind"] for r in rows if r["name"].startswith("big fill")} == {"fill"}
        verse = [r for r in rows if r["name"].startswith("verse")]
        assert [(r["start_bar"], r["bars"]) for r in verse] == [(0, 4), (2, 4), (4, 4)]
        count = store.count()
        again = import_midi_folder(store, tmp_path / "lib")
        assert store.count() == count and again.grooves_added == 0 and again.files_unchanged == 3


def test_chosen_channel(tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "ch3.mid").write_bytes(make_midi(rock_beat_notes(4), channel=2))
    with GrooveStore(tmp_path / "db", builtin=False) as store:
        report = import_midi_folder(store, tmp_path / "lib")
        assert report.files_imported == 0 and "choose the drum channel" in report.skipped[0].reason
        report = import_midi_folder(store, tmp_path / "lib", channel=2)
        assert report.files_imported == 1 and store.count() == 1


def test_fill_is_recognised_from_the_file_name():
    assert guess_kind(Path("Fill 3.mid")) == "fill"
    assert guess_kind(Path("rock_fills_01.mid")) == "fill"
    assert guess_kind(Path("fillmore-groove.mid")) == "beat"


_NOBODY = 65534


def test_folder_and_file_without_read_permission_are_skipped_and_reported():
    """chmod 000 does not stop root, and the tests run as root here: when root, the import runs
    in a subprocess as the unprivileged user ``nobody`` so that the permissions really apply."""
    base = Path(tempfile.mkdtemp(prefix="sjtui-perm-", dir="/tmp"))
    try:
        lib = base / "lib"
        (lib / "locked").mkdir(parents=True)
        (lib / "open.mid").write_bytes(make_midi(rock_beat_notes(4)))
        (lib / "secret.mid").write_bytes(make_midi(rock_beat_notes(4)))
        (lib / "locked" / "inside.mid").write_bytes(make_midi(rock_beat_notes(4)))
        (lib / "secret.mid").chmod(0o000)
        (lib / "locked").chmod(0o000)
        data = base / "data"
        data.mkdir()
        for path in (base, lib, data):
            path.chmod(0o777)
        if os.geteuid() == 0:
            setpriv = shutil.which("setpriv")  # util-linux; drops uid, gid, groups and capabilities
            if setpriv is None:
                pytest.skip("running as root and setpriv is missing: cannot make a permission really apply")
            env = dict(os.environ, SJTUI_DATA_DIR=str(data), PYTHONPATH=str(REPO))
            drop = [setpriv, f"--reuid={_NOBODY}", f"--regid={_NOBODY}", "--clear-groups"]
            result = subprocess.run(
                [*drop, sys.executable, "-m", "sjtui", "grooves", "import", str(lib), "--json"],
                cwd=str(base), env=env, capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            import json

            assert result.returncode == 0, result.stderr
            report = json.loads(result.stdout)
            skipped = {Path(s["path"]).name: s["reason"] for s in report["skipped"]}
            imported = report["files_imported"]
        else:
            with GrooveStore(data, builtin=False) as store:
                result = import_midi_folder(store, lib)
            skipped = {Path(s.path).name: s.reason for s in result.skipped}
            imported = result.files_imported
        assert imported == 1
        assert set(skipped) == {"secret.mid", "locked"}
        assert "Permission denied" in skipped["secret.mid"]
        assert "cannot list folder: Permission denied" in skipped["locked"]
        with GrooveStore(data, builtin=False) as store:
            assert [r["name"] for r in store.list_rows(source="midi")] == ["open"]
    finally:
        for path in (base / "lib" / "locked", base / "lib" / "secret.mid"):
            if path.exists():
                path.chmod(0o755)
        shutil.rmtree(base, ignore_errors=True)
