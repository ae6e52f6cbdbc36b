"""The SQLite groove store: blobs, idempotence, per-file transactions, library load, embeddings, built-ins."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from sjtui.errors import GrooveError
from sjtui.grooves import textgrid
from sjtui.grooves.descriptors import N_DESCRIPTORS, groove_descriptors
from sjtui.grooves.store import GrooveStore, decode_vho, default_data_dir, encode_vho
from sjtui.grooves.vho import N_VOICES, Groove
from sjtui.meter import Meter


def make_groove(seed: int, bars: int = 4, meter: Meter = Meter(4, 4), path: str = "a.mid", start_bar: int = 0):
    rng = np.random.default_rng(seed)
    n_steps = bars * meter.steps_per_bar
    hits = rng.random((n_steps, N_VOICES)) < 0.15
    velocities = np.where(hits, rng.integers(1, 128, hits.shape) / 127.0, 0).astype(np.float32)
    offsets = np.where(hits, rng.integers(-20, 20, hits.shape) / 40.0, 0).astype(np.float32)
    return Groove(
        hits, velocities, offsets, meter=meter, bpm=100.0 + seed, name=f"g{seed}", source="midi",
        style="rock", source_path=path, start_bar=start_bar, split="train",
    )  # fmt: skip


def test_data_dir_env_override(monkeypatch, tmp_path):
    monkeypatch.setenv("SJTUI_DATA_DIR", str(tmp_path / "here"))
    assert default_data_dir() == tmp_path / "here"
    with GrooveStore(builtin=False) as store:
        assert store.path == tmp_path / "here" / "grooves.sqlite"
        assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


@pytest.mark.parametrize("meter", [Meter(4, 4), Meter(3, 4), Meter(6, 8), Meter(7, 8)])
def test_vho_blobs_round_trip_within_quantisation(meter):
    groove = make_groove(3, meter=meter)
    hits_blob, vel_blob, off_blob, n_hits = encode_vho(groove)
    assert len(hits_blob) == (groove.n_steps * N_VOICES + 7) // 8 and len(vel_blob) == len(off_blob) == n_hits
    hits, velocities, offsets = decode_vho(groove.n_steps, hits_blob, vel_blob, off_blob)
    np.testing.assert_array_equal(hits, groove.hits)
    np.testing.assert_allclose(velocities, groove.velocities, atol=1e-6)  # MIDI velocities are exact
    np.testing.assert_allclose(offsets, groove.offsets, atol=0.5 / 256 + 1e-7)


def test_store_get_list_and_reimport_without_duplicates(tmp_path):
    grooves = [make_groove(i, start_bar=2 * i) for i in range(3)]
    with GrooveStore(tmp_path, builtin=False) as store:
        assert store.add_file_grooves("midi", "a.mid", "sha-a", grooves) == (3, 0)
        assert store.add_file_grooves("midi", "a.mid", "sha-a", grooves) == (0, 3)
        assert store.add_grooves(grooves) == (0, 3)
        assert store.count() == 3
        rows = store.list_rows()
        assert [r["start_bar"] for r in rows] == [0, 2, 4]
        assert {"id", "source", "style", "bpm", "meter", "kind", "split", "bars"} <= set(rows[0])
        back = store.get(rows[1]["id"])
        np.testing.assert_array_equal(back.hits, grooves[1].hits)
        np.testing.assert_allclose(back.extra["descriptors"], groove_descriptors(grooves[1]), rtol=1e-6)
        assert (back.meter, back.split, back.bpm, back.style) == (Meter(4, 4), "train", 101.0, "rock")
        assert store.list_rows(style="ROCK") == rows and store.list_rows(style="jazz") == []
        with pytest.raises(GrooveError, match="no groove with id 999"):
            store.get(999)


def test_changed_file_replaces_its_grooves(tmp_path):
    with GrooveStore(tmp_path, builtin=False) as store:
        store.add_file_grooves("midi", "a.mid", "v1", [make_groove(1), make_groove(2, start_bar=2)])
        store.add_file_grooves("midi", "b.mid", "v1", [make_groove(3, path="b.mid")])
        store.add_file_grooves("midi", "a.mid", "v2", [make_groove(4)])
        assert store.count() == 2
        assert {r["name"] for r in store.list_rows()} == {"g4", "g3"}


def test_a_failing_file_loses_nothing_already_imported(tmp_path):
    with GrooveStore(tmp_path, builtin=False) as store:
        store.add_file_grooves("midi", "a.mid", "sha-a", [make_groove(1)])
        good = make_groove(2, path="b.mid")
        broken = make_groove(3, path="b.mid", start_bar=2)
        broken.style = object()  # not storable in SQLite: the insert fails half way through the file
        with pytest.raises(sqlite3.Error):
            store.add_file_grooves("midi", "b.mid", "sha-b", [good, broken])
        assert store.count() == 1  # b.mid rolled back as a whole, a.mid intact
        assert not store.file_unchanged("midi", "b.mid", "sha-b")
    with GrooveStore(tmp_path, builtin=False) as store:  # and it is on disk
        assert [r["name"] for r in store.list_rows()] == ["g1"]


def test_load_library_matches_rows_and_is_contiguous(tmp_path):
    grooves = [make_groove(i, meter=m, path=f"{i}.mid") for i, m in enumerate([Meter(4, 4), Meter(6, 8), Meter(7, 8)] * 3)]
    with GrooveStore(tmp_path, builtin=False) as store:
        for groove in grooves:
            store.add_file_grooves("midi", groove.source_path, groove.name, [groove])
        library = store.load_library()
        assert len(library) == 9 and library.descriptors.shape == (9, N_DESCRIPTORS)
        assert library.event_start[-1] == sum(int(g.hits.sum()) for g in grooves) == library.event_step.size
        for index, groove in enumerate(grooves):
            back = library.groove(index)
            np.testing.assert_array_equal(back.hits, groove.hits)
            np.testing.assert_allclose(back.velocities, groove.velocities, atol=1e-6)
            np.testing.assert_allclose(back.offsets, groove.offsets, atol=0.5 / 256 + 1e-7)
            assert back.meter == groove.meter
            assert library.index_of(library.ids[index]) == index
        assert library.select(meter="6/8").tolist() == [1, 4, 7]
        assert library.select(style="ROCK", kind="beat", split="train").size == 9
        assert library.select(source="gmd").size == 0


def test_embeddings_stored_per_model_and_dropped_with_their_groove(tmp_path):
    with GrooveStore(tmp_path, builtin=False) as store:
        store.add_file_grooves("midi", "a.mid", "x", [make_groove(1), make_groove(2, start_bar=2)])
        ids = [r["id"] for r in store.list_rows()]
        vectors = np.arange(2 * 128, dtype=np.float32).reshape(2, 128)
        store.set_embeddings("drum-encoder-v1", ids[:1], vectors[:1])
        got_ids, got = store.embeddings("drum-encoder-v1")
        assert got_ids.tolist() == ids[:1] and np.array_equal(got, vectors[:1])
        library = store.load_library(embedding_model="drum-encoder-v1")
        assert np.array_equal(library.embeddings[0], vectors[0]) and np.isnan(library.embeddings[1]).all()
        assert store.embeddings("other")[0].size == 0
        with pytest.raises(GrooveError, match="expected"):
            store.set_embeddings("drum-encoder-v1", ids, vectors[:1])
        store.add_file_grooves("midi", "a.mid", "changed", [make_groove(5)])
        assert store.embeddings("drum-encoder-v1")[0].size == 0


GROOVE_TEXT = """
groove: test-beat
style: rock
kind: beat
bpm: 100
meter: 4/4
HH |x.x.x.x.x.x.x.x.|
SD |....o.......o...|
BD |o.......o.o.....|
"""


def test_builtin_library_is_imported_on_open_and_refreshed_when_it_changes(tmp_path):
    folder = tmp_path / "builtin"
    folder.mkdir()
    (folder / "a.groove").write_text(GROOVE_TEXT)
    with GrooveStore(tmp_path / "db", builtin=False) as store:
        assert store.sync_builtin(folder) is True
        assert store.sync_builtin(folder) is False  # unchanged: nothing to do
        (first,) = store.list_rows(source="builtin")
        store.set_embeddings("m", [first["id"]], np.ones((1, 4), np.float32))
        (folder / "a.groove").write_text(GROOVE_TEXT + GROOVE_TEXT.replace("test-beat", "second").replace("o.......o.o", "o..o...o..o"))
        assert store.sync_builtin(folder) is True
        names = [r["name"] for r in store.list_rows(source="builtin")]
        assert names == ["test-beat", "second"]
        assert store.embeddings("m")[0].tolist() == [first["id"]]  # the unchanged groove kept its embedding
        (folder / "a.groove").write_text(GROOVE_TEXT.replace("o.......o.o", "o.o.o.o.o.o"))
        assert store.sync_builtin(folder) is True
        assert [r["name"] for r in store.list_rows(source="builtin")] == ["test-beat"]
        assert store.embeddings("m")[0].size == 0  # content changed: the stale embedding is gone


def test_shipped_builtin_library_is_always_present(tmp_path):
    expected = textgrid.load_builtin()
    with GrooveStore(tmp_path) as store:
        assert store.builtin_error is None
        rows = store.list_rows(source="builtin")
        assert len(rows) == len(expected) > 0
        assert [r["name"] for r in rows] == [g.name for g in expected]
        groove = store.get(rows[0]["id"])
        np.testing.assert_array_equal(groove.hits, expected[0].hits)
        assert groove.meter == expected[0].meter and groove.source_path == expected[0].source_path
