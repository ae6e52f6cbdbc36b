"""Export -> import round trips, duplicates, malformed rows, and the ``sjtui labels`` command."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sjtui.cli import main
from sjtui.dsp.fingerprint import ONSET_DTYPE, Fingerprint
from sjtui.grooves.store import GrooveStore
from sjtui.labels import GrooveKey, LabelError, LabelStore
from sjtui.labels.exchange import COLUMNS, export_labels, import_labels
from sjtui.meter import Meter

SR = 48000


def _fingerprint(rng, meter=Meter(4, 4)) -> Fingerprint:
    spb = meter.steps_per_bar
    onsets = np.zeros(3, ONSET_DTYPE)
    onsets["step"] = rng.integers(0, spb, 3)
    onsets["strength"] = rng.random(3)
    return Fingerprint(
        rng.random((3, 4, spb), dtype=np.float32),
        rng.random((3, 4, spb), dtype=np.float32),
        onsets,
        meter,
        101.5,
        0,
        0.0,
    )


def _fill(store: LabelStore, grooves: GrooveStore, rng) -> None:
    """A varied store: three clip sources, raters, notes that CSV must quote, grooves by id, row and object."""
    rows = grooves.list_rows()
    clips = [
        store.add_clip((0.2 * rng.standard_normal(SR // 4)).astype(np.float32), SR, _fingerprint(rng),
                       {"source": "generated", "origin": {"style": "funk16", "program": "clean", "seed": 3}}),
        store.add_clip((0.2 * rng.standard_normal((SR // 5, 2))).astype(np.float32), 44100, None,
                       {"source": "user-file", "origin": {"file": "takes/ñandú, live.wav", "start_s": 12.5}}),
    ]  # fmt: skip
    notes = ["", 'too busy, "hats" everywhere', "line one\nline two", "ünïcødé ✓", "=1+2"]
    for i in range(12):
        groove = (rows[i % 9]["id"], rows[i % 7], grooves.get(rows[i % 5]["id"]))[i % 3]
        store.add_rating(
            clips[i % 2], groove, i % 6, notes[i % len(notes)], model_version=(None, "guitar-v2")[i % 2],
            strategy=("favourite", "uncertain", "explore", "manual")[i % 4], rater=("local", "ana")[i % 3 == 0],
        )  # fmt: skip
    store.save_jam_rating((0.1 * rng.standard_normal(SR // 3)).astype(np.float32), SR, rows[3]["id"], 96.0, "6/8",
                          _fingerprint(rng, Meter(6, 8)), "guitar-v2", 5, "the one")  # fmt: skip


def _comparable(store: LabelStore) -> tuple[list, list, dict]:
    ratings = [{k: v for k, v in row.items() if k not in ("id", "clip_path")} for row in store.rating_rows()]
    files = {p.name: p.read_bytes() for p in sorted(store.clips_dir.glob("*.flac"))}
    return ratings, store.clip_rows(), files


@pytest.fixture
def filled(tmp_path):
    grooves = GrooveStore(tmp_path / "data" / "grooves.sqlite")
    store = LabelStore.open(tmp_path / "data", groove_store=grooves)
    _fill(store, grooves, np.random.default_rng(1))
    yield store, grooves
    store.close()
    grooves.close()


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_round_trip_into_a_fresh_store_equals_the_original(tmp_path, filled, fmt):
    store, grooves = filled
    report = export_labels(store, tmp_path / "export", fmt)
    assert (report.ratings, report.clips, report.missing_clip_files) == (13, 3, [])
    assert sorted(p.name for p in (tmp_path / "export").iterdir()) == [
        "clips",
        "manifest.json",
        f"ratings.{fmt}",
    ]
    with LabelStore.open(tmp_path / "fresh") as fresh:
        result = import_labels(fresh, tmp_path / "export", groove_store=grooves)
        assert (result.rows, result.added, result.duplicates, result.skipped, result.clips_added) == (
            13,
            13,
            0,
            0,
            3,
        )
        assert result.missing_grooves == []
        assert _comparable(fresh) == _comparable(store)
        assert fresh.check() == []
        # twice: nothing added
        again = import_labels(fresh, tmp_path / "export" / f"ratings.{fmt}", groove_store=grooves)
        assert (again.added, again.duplicates, again.skipped, again.clips_added) == (0, 13, 0, 0)
        assert _comparable(fresh) == _comparable(store)
    # into the store it came from: nothing added either
    back = import_labels(store, tmp_path / "export", groove_store=grooves)
    assert (back.added, back.duplicates) == (0, 13)


def test_merge_of_two_stores_keeps_both(tmp_path, filled):
    store, grooves = filled
    export_labels(store, tmp_path / "a")
    with LabelStore.open(tmp_path / "other") as other:
        rng = np.random.default_rng(9)
        clip = other.add_clip(
            (0.1 * rng.standard_normal(SR // 4)).astype(np.float32), SR, None, {"source": "generated"}
        )
        other.add_rating(clip, GrooveKey.from_row(grooves.list_rows()[0]), 3, rater="ben")
        import_labels(other, tmp_path / "a", groove_store=grooves)
        assert other.count() == 14 and other.stats()["ratings_by_rater"] == {"ana": 4, "ben": 1, "local": 9}


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def test_malformed_rows_are_reported_with_line_numbers_and_the_rest_imported(tmp_path, filled):
    store, grooves = filled
    export_labels(store, tmp_path / "export")
    path = tmp_path / "export" / "ratings.jsonl"
    good = [json.loads(line) for line in _lines(path)]
    bad_audio = tmp_path / "other.flac"
    sf.write(str(bad_audio), np.zeros(1000, np.float32), SR, subtype="PCM_24")
    absent_hash, damaged_hash = "a" * 64, "b" * 64
    shutil.copy(
        bad_audio, tmp_path / "export" / "clips" / f"{damaged_hash}.flac"
    )  # a file whose audio is not its name

    def variant(**changes):
        row = dict(good[0])
        row.update(changes)
        return json.dumps(row)

    conflicting = dict(good[1])
    conflicting["rating"] = (good[1]["rating"] + 1) % 6
    lines = [
        json.dumps(good[0]),                                     # 1 good
        "{not json",                                             # 2
        "[1, 2, 3]",                                             # 3
        variant(rating=7),                                       # 4
        variant(rating="four"),                                  # 5
        variant(created_at="yesterday"),                         # 6
        variant(clip_hash="xyz"),                                # 7
        variant(strategy="greedy"),                              # 8
        variant(clip_hash=absent_hash, created_at="2030-01-01T00:00:00Z"),   # 9 clip file missing
        variant(clip_hash=damaged_hash, created_at="2030-01-01T00:00:00Z"),  # 10 clip file holds other audio
        json.dumps(conflicting),                                 # 11 same identity, other rating
        "",                                                      # 12 blank: ignored
        variant(groove_path="gone.groove#x", created_at="2031-01-01T00:00:00Z"),  # 13 unknown groove: kept
        variant(clip_fingerprint="!!!"),                         # 14
        json.dumps({k: v for k, v in good[2].items() if k != "rater"}),  # 15
        json.dumps(good[2]),                                     # 16 good
        json.dumps(good[2]),                                     # 17 duplicate inside the file
    ]  # fmt: skip
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with LabelStore.open(tmp_path / "fresh") as fresh:
        fresh_clip = fresh.add_clip(np.zeros(10, np.float32) + 0.1, SR, None, {"source": "generated"})
        first = json.loads(lines[0])
        first_conflict = dict(good[1])
        import_labels(
            fresh, _single_row_file(tmp_path, first_conflict)
        )  # the pair of line 11, already stored
        report = import_labels(fresh, path, groove_store=grooves)
        reasons = {p.line: p.reason for p in report.problems}
        assert sorted(reasons) == [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 14, 15]
        assert "not JSON" in reasons[2] and "not an object" in reasons[3]
        assert "rating 7 is outside 0..5" in reasons[4] and "'four' is not a whole number" in reasons[5]
        assert "created_at 'yesterday'" in reasons[6] and "clip_hash 'xyz'" in reasons[7]
        assert "strategy 'greedy'" in reasons[8]
        assert f"clips/{absent_hash}.flac is missing" in reasons[9]
        assert "holds other audio" in reasons[10]
        assert "conflicts with the stored rating" in reasons[11]
        assert "clip_fingerprint is not base64" in reasons[14] and "rater is missing" in reasons[15]
        assert [(p.line, "gone.groove#x" in p.reason) for p in report.missing_grooves] == [(13, True)]
        assert (report.rows, report.added, report.duplicates) == (16, 3, 1)
        stored = {(r.created_at, r.groove.path, r.groove_id) for r in fresh.ratings()}
        assert any(path == "gone.groove#x" and gid is None for _, path, gid in stored)  # kept, no local id
        assert fresh.check() == [] and fresh_clip
        assert not (fresh.clips_dir / f"{damaged_hash}.flac").exists()
        assert first["clip_hash"] in {c["hash"] for c in fresh.clip_rows()}


def _single_row_file(tmp_path: Path, row: dict) -> Path:
    folder = tmp_path / "single"
    (folder / "clips").mkdir(parents=True, exist_ok=True)
    src = tmp_path / "export" / "clips" / f"{row['clip_hash']}.flac"
    shutil.copy(src, folder / "clips" / src.name)
    (folder / "ratings.jsonl").write_text(json.dumps(row) + "\n", encoding="utf-8")
    return folder


def test_csv_line_numbers_count_multiline_records(tmp_path, filled):
    store, grooves = filled
    export_labels(store, tmp_path / "export", "csv")
    path = tmp_path / "export" / "ratings.csv"
    text = path.read_text(encoding="utf-8")
    physical = text.splitlines()
    # the note "line one\nline two" spans two lines; append a short record and a bad rating after everything
    good_last = physical[-1]
    bad = good_last.replace(",guitar-v2,", ",guitar-v2,").split(",")
    rating_col = COLUMNS.index("rating")
    bad[rating_col] = "9"
    text += "only,three,fields\n" + ",".join(bad) + "\n"
    path.write_text(text, encoding="utf-8")
    n_physical = len(physical)
    with LabelStore.open(tmp_path / "fresh") as fresh:
        report = import_labels(fresh, path, groove_store=grooves)
    assert [(p.line, p.reason.split(" ")[0]) for p in report.problems] == [
        (n_physical + 1, "3"),
        (n_physical + 2, "rating"),
    ]
    assert report.added == 13


def test_export_with_a_lost_clip_file_and_bad_sources(tmp_path, filled):
    store, grooves = filled
    lost = store.rating_rows()[0]["clip_hash"]
    store.clip_path(lost).unlink()
    report = export_labels(store, tmp_path / "export")
    assert report.missing_clip_files == [lost]
    with LabelStore.open(tmp_path / "fresh") as fresh:
        result = import_labels(fresh, tmp_path / "export", groove_store=grooves)
        lost_rows = sum(1 for r in store.rating_rows() if r["clip_hash"] == lost)
        assert result.skipped == lost_rows and all("is missing" in p.reason for p in result.problems)
        assert result.added == 13 - lost_rows
        with pytest.raises(LabelError, match="does not exist"):
            import_labels(fresh, tmp_path / "nowhere")
        (tmp_path / "empty").mkdir()
        with pytest.raises(LabelError, match="holds no ratings"):
            import_labels(fresh, tmp_path / "empty")
        odd = tmp_path / "ratings.txt"
        odd.write_text("x")
        with pytest.raises(LabelError, match="cannot tell the format"):
            import_labels(fresh, odd)
        (tmp_path / "newer").mkdir()
        (tmp_path / "newer" / "manifest.json").write_text(
            json.dumps({"format": "sjtui-labels", "version": 99})
        )
        with pytest.raises(LabelError, match="newer sjtui"):
            import_labels(fresh, tmp_path / "newer")
    with pytest.raises(LabelError, match="format 'xml'"):
        export_labels(store, tmp_path / "x", "xml")


def test_labels_command_end_to_end(tmp_path, filled, capsys, monkeypatch):
    store, _grooves = filled
    data = str(tmp_path / "data")
    export_dir = str(tmp_path / "cli-export")
    assert main(["labels", "--data-dir", data, "export", export_dir, "--format", "csv"]) == 0
    assert "exported 13 ratings and 3 clips" in capsys.readouterr().out
    fresh = str(tmp_path / "fresh")
    assert main(["labels", "--data-dir", fresh, "import", export_dir, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["added"], report["skipped"], report["missing_grooves"]) == (13, 0, [])
    assert main(["labels", "--data-dir", fresh, "import", export_dir]) == 0
    assert "0 ratings added, 13 already present" in capsys.readouterr().out
    assert main(["labels", "--data-dir", fresh, "stats", "--json", "--check"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["ratings"] == 13 and stats["problems"] == [] and stats["ratings_by_value"]["5"] == 3
    assert main(["labels", "--data-dir", fresh, "list", "--limit", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 4 and "the one" in out[-1] and "*****" in out[-1]
    assert main(["labels", "--db", str(Path(fresh) / "labels.sqlite"), "list", "--json", "--limit", "0"]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(listed) == 13 and listed[-1]["clip_meter"] == "6/8"
    # a bad row makes import exit 1 and name the line
    bad = Path(tmp_path / "bad.jsonl")
    bad.write_text('{"clip_hash": 1}\n', encoding="utf-8")
    assert main(["labels", "--data-dir", fresh, "import", str(bad)]) == 1
    assert "line 1: clip_hash 1 is not a 64-digit" in capsys.readouterr().out
    # a database from a newer sjtui: exit 2 with the message
    import sqlite3

    conn = sqlite3.connect(Path(fresh) / "labels.sqlite")
    conn.execute("PRAGMA user_version = 5")
    conn.close()
    assert main(["labels", "--data-dir", fresh, "stats"]) == 2
    assert "newer sjtui" in capsys.readouterr().err
    assert main(["labels", "--data-dir", str(tmp_path / "nothing"), "stats"]) == 2
    assert "no label database" in capsys.readouterr().err
