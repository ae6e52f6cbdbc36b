"""The label store on real SQLite files and real file systems: content, versions, locks, read-only, full disk."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sjtui.dsp.fingerprint import ONSET_DTYPE, Fingerprint
from sjtui.grooves.store import GrooveStore
from sjtui.labels import (
    GrooveKey,
    LabelError,
    LabelStore,
    LabelStoreDamagedError,
    LabelStoreFullError,
    LabelStoreLockedError,
    LabelStoreNewerError,
    LabelStoreReadOnlyError,
)
from sjtui.labels import store as store_module
from sjtui.labels.clips import audio_hash, file_hash
from sjtui.labels.fingerprint_blob import decode_fingerprint, encode_fingerprint
from sjtui.meter import Meter

SR = 48000
KEY = GrooveKey("builtin", "rock.groove#rock-basic", 0, 4)


def _fingerprint(rng, meter=Meter(4, 4), bpm=120.0) -> Fingerprint:
    spb = meter.steps_per_bar
    onsets = np.zeros(5, ONSET_DTYPE)
    onsets["band"] = rng.integers(0, 3, 5)
    onsets["bar"] = np.arange(5) % 4
    onsets["step"] = rng.integers(0, spb, 5)
    onsets["strength"] = rng.random(5)
    onsets["offset"] = rng.uniform(-0.5, 0.5, 5)
    return Fingerprint(
        rng.random((3, 4, spb), dtype=np.float32),
        rng.random((3, 4, spb), dtype=np.float32),
        onsets,
        meter,
        bpm,
        3,
        12345.5,
    )


def _audio(rng, seconds=0.5) -> np.ndarray:
    return (0.3 * rng.standard_normal(int(seconds * SR))).astype(np.float32)


def _tree_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- content
def test_clip_named_by_sample_hash_and_reencoding_does_not_duplicate(tmp_path):
    rng = np.random.default_rng(1)
    audio = _audio(rng)
    with LabelStore.open(tmp_path) as store:
        clip = store.add_clip(
            audio, SR, _fingerprint(rng), {"source": "user-file", "origin": {"file": "a.wav"}}
        )
        path = store.clip_path(clip)
        assert path.name == f"{clip}.flac" and sf.info(str(path)).format == "FLAC"
        assert file_hash(path) == clip == audio_hash(audio, SR)
        # the same samples in another container/bit depth hash the same
        back, rate = sf.read(str(path), dtype="float32")
        wav24, wav16 = tmp_path / "copy24.wav", tmp_path / "copy16.flac"
        sf.write(str(wav24), back, rate, subtype="PCM_24")
        assert file_hash(wav24) == clip
        assert audio_hash(back, rate) == clip  # float round trip through the file is exact at 24 bits
        quantised16 = np.round(audio * 32767) / 32767
        sf.write(str(wav16), quantised16, SR, subtype="PCM_16")
        assert file_hash(wav16) == audio_hash(sf.read(str(wav16), dtype="float64")[0], SR)
        # the same audio saved again: one file, one row
        assert store.add_clip(back, rate, None, {"source": "generated"}) == clip
        assert len(store.clip_rows()) == 1 and len(list(store.clips_dir.glob("*.flac"))) == 1
        assert audio_hash(audio, 44100) != clip  # the rate is part of the hash


def test_fingerprint_blob_round_trip_is_exact():
    rng = np.random.default_rng(2)
    for meter in (Meter(4, 4), Meter(7, 8), Meter(6, 8)):
        fp = _fingerprint(rng, meter, 97.25)
        back = decode_fingerprint(encode_fingerprint(fp))
        assert np.array_equal(back.energy, fp.energy) and np.array_equal(back.novelty, fp.novelty)
        assert back.energy.shape == (3, 4, meter.steps_per_bar)
        assert back.onsets.dtype == ONSET_DTYPE and np.array_equal(back.onsets, fp.onsets)
        assert (back.meter, back.bpm, back.first_bar, back.start_sample) == (meter, 97.25, 3, 12345.5)
    with pytest.raises(LabelError, match="fingerprint"):
        decode_fingerprint(encode_fingerprint(fp)[:-3])
    with pytest.raises(LabelError, match="fingerprint"):
        decode_fingerprint(b"NOPE" + bytes(20))


def test_ratings_join_clips_and_keep_every_field(tmp_path):
    rng = np.random.default_rng(3)
    fp = _fingerprint(rng, bpm=131.0)
    with LabelStore.open(tmp_path / "labels.sqlite") as store:
        clip = store.add_clip(
            _audio(rng), SR, fp, {"source": "generated", "origin": {"style": "funk16"}, "take": 2}
        )
        rid = store.add_rating(clip, KEY, 4, "tight", "guitar-v3", "uncertain", rater="ana")
        jam_clip, jam_id = store.save_jam_rating(_audio(rng), SR, KEY, 131.0, "4/4", fp, "guitar-v3", 0)
        pairs = list(store.ratings())
    assert [p.id for p in pairs] == [rid, jam_id]
    first, jam = pairs
    assert (first.clip_hash, first.rating, first.note, first.model_version, first.strategy, first.rater) == (
        clip, 4, "tight", "guitar-v3", "uncertain", "ana")  # fmt: skip
    assert first.origin == {"style": "funk16", "take": 2} and first.clip_source == "generated"
    assert (first.bpm, first.meter, first.sample_rate, first.duration_s) == (131.0, "4/4", SR, 0.5)
    assert np.array_equal(first.fingerprint.energy, fp.energy) and first.groove == KEY
    assert (jam.clip_hash, jam.clip_source, jam.strategy, jam.rating, jam.rater) == (
        jam_clip,
        "jam-recording",
        "jam",
        0,
        "local",
    )
    assert jam.created_at > first.created_at and jam.created_at.endswith("Z")


def test_bad_ratings_are_refused_and_write_nothing(tmp_path):
    rng = np.random.default_rng(4)
    with LabelStore.open(tmp_path) as store:
        clip = store.add_clip(_audio(rng), SR, None, {"source": "user-file"})
        for bad in (6, -1, 3.5, True, "4", None):
            with pytest.raises(LabelError, match="rating"):
                store.add_rating(clip, KEY, bad)
        with pytest.raises(LabelError, match="strategy 'greedy'"):
            store.add_rating(clip, KEY, 3, strategy="greedy")
        with pytest.raises(LabelError, match="no clip"):
            store.add_rating("0" * 64, KEY, 3)
        with pytest.raises(LabelError, match="sha256"):
            store.add_rating("abc", KEY, 3)
        with pytest.raises(LabelError, match="cannot tell which groove"):
            store.add_rating(clip, "rock", 3)
        with pytest.raises(LabelError, match="groove id 3 cannot be resolved"):
            store.add_rating(clip, 3, 3)
        with pytest.raises(LabelError, match="clip source"):
            store.add_clip(_audio(rng), SR, None, {"source": "radio"})
        with pytest.raises(LabelError, match="sample rate"):
            store.add_clip(_audio(rng), 0, None)
        with pytest.raises(LabelError, match="shape"):
            store.add_clip(np.zeros(0), SR, None)
        files_before = sorted(store.clips_dir.iterdir())
        with pytest.raises(LabelError, match="rating 9"):  # the jam path checks before writing the clip
            store.save_jam_rating(_audio(rng), SR, KEY, 120.0, "4/4", None, None, 9)
        assert sorted(store.clips_dir.iterdir()) == files_before
        assert store.count() == 0 and store.check() == []


def test_grooves_resolve_by_stable_key_across_a_library_reimport(tmp_path):
    rng = np.random.default_rng(5)
    with GrooveStore(tmp_path / "grooves.sqlite") as grooves:
        rows = grooves.list_rows()
        groove = grooves.get(rows[5]["id"])
        with LabelStore.open(tmp_path / "labels.sqlite", groove_store=grooves) as store:
            clip = store.add_clip(_audio(rng), SR, None, {"source": "generated"})
            by_object = store.add_rating(clip, groove, 5, strategy="favourite")
            by_id = store.add_rating(clip, rows[7]["id"], 2)
            by_row = store.add_rating(clip, rows[9], 1)
            with pytest.raises(LabelError, match="not in the groove library"):
                store.add_rating(clip, GrooveKey("gmd", "drummer9/none.mid", 0, 4), 3)
            with pytest.raises(LabelError, match="no groove with id 99999"):
                store.add_rating(clip, 99999, 3)
            before = {p.id: (p.groove, p.groove_id, p.groove_name) for p in store.ratings()}
            assert before[by_object] == (GrooveKey.from_row(rows[5]), rows[5]["id"], rows[5]["name"])
            assert before[by_id][1] == rows[7]["id"] and before[by_row][1] == rows[9]["id"]
            # re-import the library: every groove gets a new id (a user's MIDI groove keeps the ids growing)
            grooves.add_grooves(
                [dataclasses.replace(groove, source="midi", source_path="mine.mid", extra={})]
            )
            grooves.delete_source("builtin")
            grooves.conn.execute("DELETE FROM meta WHERE key = 'builtin_hash'")
            grooves.conn.commit()
            assert grooves.sync_builtin()
            new_ids = {GrooveKey.from_row(r): r["id"] for r in grooves.list_rows()}
            after = {p.id: p for p in store.ratings(grooves)}
            for rid, (key, old_id, _) in before.items():
                assert after[rid].groove == key
                assert after[rid].groove_id == new_ids[key] != old_id
            # a groove that left the library: its ratings stay, with no current id
            grooves.conn.execute("DELETE FROM grooves WHERE id = ?", (new_ids[before[by_id][0]],))
            grooves.conn.commit()
            assert {p.id: p.groove_id for p in store.ratings(grooves)}[by_id] is None
            assert store.count() == 3


def test_stats_recent_grooves_and_orphan_files(tmp_path):
    rng = np.random.default_rng(6)
    keys = [GrooveKey("builtin", f"f.groove#g{i}", 0, 4) for i in range(4)]
    with LabelStore.open(tmp_path) as store:
        a = store.add_clip(_audio(rng), SR, _fingerprint(rng), {"source": "generated"})
        b = store.add_clip(_audio(rng), SR, None, {"source": "user-file"})
        for i, (clip, key, value, strategy) in enumerate(
            [
                (a, keys[0], 5, "favourite"),
                (a, keys[1], 2, "explore"),
                (b, keys[1], 3, "uncertain"),
                (a, keys[2], 0, "explore"),
            ]
        ):
            store.add_rating(clip, key, value, model_version="m1" if i else None, strategy=strategy)
        (store.clips_dir / f"{'f' * 64}.flac").write_bytes(b"left by a kill between file and row")
        stats = store.stats()
        assert stats["ratings"] == 4 and stats["clips"] == 2 and stats["pairs"] == 4 and stats["grooves"] == 3
        assert stats["ratings_by_value"] == {"0": 1, "1": 0, "2": 1, "3": 1, "4": 0, "5": 1}
        assert stats["ratings_by_strategy"] == {"explore": 2, "favourite": 1, "uncertain": 1}
        assert stats["ratings_by_clip_source"] == {"generated": 3, "user-file": 1}
        assert stats["ratings_by_model_version"] == {"(none)": 1, "m1": 3}
        assert stats["mean_rating"] == 2.5 and stats["clips_without_fingerprint"] == 1
        assert stats["orphan_clip_files"] == [f"{'f' * 64}.flac"] and stats["clips_missing_files"] == []
        assert store.recent_groove_keys(a) == {keys[0], keys[1], keys[2]}
        assert store.recent_groove_keys(a, limit=1) == {keys[2]}
        assert store.recent_groove_keys(b) == {keys[1]}
        store.clip_path(b).unlink()
        assert store.stats()["clips_missing_files"] == [f"{b}.flac"]
        assert any("is missing" in p for p in store.check())


# ---------------------------------------------------------------- versions
def test_newer_database_is_refused_and_left_byte_identical(tmp_path):
    rng = np.random.default_rng(7)
    with LabelStore.open(tmp_path) as store:
        clip = store.add_clip(_audio(rng), SR, None, {"source": "generated"})
        store.add_rating(clip, KEY, 3)
    conn = sqlite3.connect(tmp_path / "labels.sqlite")
    conn.execute(f"PRAGMA user_version = {store_module.SCHEMA_VERSION + 1}")
    conn.execute("PRAGMA journal_mode = DELETE")  # as a newer sjtui might leave it
    conn.close()
    before = _tree_bytes(tmp_path)
    for readonly in (False, True):
        with pytest.raises(
            LabelStoreNewerError, match=r"version 2, written by a newer sjtui.*nothing in it was changed"
        ):
            LabelStore.open(tmp_path, readonly=readonly)
    assert _tree_bytes(tmp_path) == before  # no byte changed, no -wal/-shm created


def test_newer_version_only_in_the_wal_is_refused_too(tmp_path):
    """A newer sjtui killed before a checkpoint: the header on disk is old, the WAL says newer."""
    db = tmp_path / "labels.sqlite"
    LabelStore.open(db).close()
    script = (
        "import sqlite3, os, sys; c = sqlite3.connect(sys.argv[1]); c.execute('PRAGMA wal_autocheckpoint=0');"
        "c.execute('PRAGMA user_version = 7'); c.commit(); os._exit(0)"  # exit without checkpoint
    )
    subprocess.run([sys.executable, "-c", script, str(db)], check=True)
    assert store_module.header_user_version(db) == 1 and (tmp_path / "labels.sqlite-wal").stat().st_size > 0
    with pytest.raises(LabelStoreNewerError, match="version 7"):
        LabelStore.open(db)


def test_older_database_is_migrated_step_by_step_keeping_its_data(tmp_path, monkeypatch):
    rng = np.random.default_rng(8)
    with LabelStore.open(tmp_path) as store:
        clip = store.add_clip(_audio(rng), SR, None, {"source": "generated"})
        rid = store.add_rating(clip, KEY, 4, "keep me")

    def to_v2(conn):
        conn.execute("ALTER TABLE ratings ADD COLUMN session TEXT")
        conn.execute("UPDATE ratings SET session = 'migrated'")

    monkeypatch.setattr(store_module, "MIGRATIONS", [*store_module.MIGRATIONS, to_v2])
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", 2)
    with LabelStore.open(tmp_path) as store:
        assert store.schema_version == 2
        assert store.conn.execute("SELECT id, note, session FROM ratings").fetchall() == [
            (rid, "keep me", "migrated")
        ]
        assert store.check() == []


def test_empty_file_becomes_a_store_and_garbage_is_refused_untouched(tmp_path):
    empty = tmp_path / "empty" / "labels.sqlite"
    empty.parent.mkdir()
    empty.touch()
    with LabelStore.open(empty) as store:
        assert store.schema_version == store_module.SCHEMA_VERSION and store.count() == 0
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"these are my notes, not a database" * 10)
    before = garbage.read_bytes()
    with pytest.raises(LabelStoreDamagedError, match="not an SQLite database"):
        LabelStore.open(garbage)
    assert garbage.read_bytes() == before
    with pytest.raises(LabelError, match="no label database"):
        LabelStore.open(tmp_path / "nothing-here", readonly=True)


# ---------------------------------------------------------------- locks
LOCK_HOLDER = (
    "import sqlite3, sys; c = sqlite3.connect(sys.argv[1], isolation_level=None); c.execute('BEGIN IMMEDIATE');"
    "c.execute('UPDATE ratings SET note = note'); print('locked', flush=True); sys.stdin.readline();"
    "c.execute('COMMIT'); print('released', flush=True)"
)


def test_locked_database_gives_a_clear_error_then_works_when_released(tmp_path):
    rng = np.random.default_rng(9)
    store = LabelStore.open(tmp_path, busy_timeout_s=0.3)
    clip = store.add_clip(_audio(rng), SR, None, {"source": "generated"})
    store.add_rating(clip, KEY, 1)
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, str(store.path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(
            LabelStoreLockedError, match=r"locked by another process.*0.3 s.*Nothing was changed"
        ):
            store.add_rating(clip, KEY, 2)
        jam_audio = _audio(rng)
        with pytest.raises(LabelStoreLockedError):
            store.save_jam_rating(jam_audio, SR, KEY, 120.0, "4/4", None, "m", 5)
        # readers are not blocked by the writer (WAL)
        with LabelStore.open(tmp_path, readonly=True) as reader:
            assert reader.count() == 1
        holder.stdin.write("go\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "released"
    finally:
        holder.kill() if holder.poll() is None else None
        holder.wait(10)
    store.add_rating(clip, KEY, 2)
    jam_clip, _ = store.save_jam_rating(
        jam_audio, SR, KEY, 120.0, "4/4", None, "m", 5
    )  # retry reuses the clip file
    assert store.count() == 3 and store.check() == [] and store.stats()["orphan_clip_files"] == []
    assert jam_clip == audio_hash(jam_audio, SR)
    store.close()


# ---------------------------------------------------------------- read-only and full disks
@contextlib.contextmanager
def _tmpfs(tmp_path: Path, size: str):
    """A real size-limited tmpfs (needs root); skips otherwise."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / f"fs-{uuid.uuid4().hex[:6]}"
    mount.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_read_only_file_system_is_reported_and_still_readable(tmp_path):
    rng = np.random.default_rng(10)
    with _tmpfs(tmp_path, "4m") as mount:
        with LabelStore.open(mount) as store:
            clip = store.add_clip(_audio(rng), SR, _fingerprint(rng), {"source": "generated"})
            ids = [store.add_rating(clip, KEY, v) for v in (1, 4)]
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        before = _tree_bytes(mount)
        with pytest.raises(LabelStoreReadOnlyError, match=r"read-only.*writable.*SJTUI_DATA_DIR"):
            LabelStore.open(mount)
        with LabelStore.open(mount, readonly=True) as reader:
            assert [p.id for p in reader.ratings()] == ids and reader.check() == []
            with pytest.raises(LabelStoreReadOnlyError, match="opened read-only"):
                reader.add_rating(clip, KEY, 2)
            with pytest.raises(LabelStoreReadOnlyError):
                reader.add_clip(_audio(rng), SR)
        assert _tree_bytes(mount) == before


def test_read_only_store_opened_read_only_refuses_writes(tmp_path):
    rng = np.random.default_rng(11)
    with LabelStore.open(tmp_path) as store:
        clip = store.add_clip(_audio(rng), SR, None, {"source": "generated"})
    with LabelStore.open(tmp_path, readonly=True) as reader:
        with pytest.raises(LabelStoreReadOnlyError, match="opened read-only"):
            reader.save_jam_rating(_audio(rng), SR, KEY, 100.0, "4/4", None, None, 3)
        with pytest.raises(LabelStoreReadOnlyError):
            reader.add_rating(clip, KEY, 3)


def test_full_disk_gives_a_clear_error_and_no_corruption(tmp_path):
    rng = np.random.default_rng(12)
    with _tmpfs(tmp_path, "768k") as mount:
        reserve = mount / "reserve"
        reserve.write_bytes(b"\0" * 131072)
        store = LabelStore.open(mount)
        confirmed = []
        error = None
        for i in range(40):  # 1 s of 24-bit noise is about 130 kB of FLAC: the disk fills within a few clips
            try:
                clip = store.add_clip(_audio(rng, 1.0), SR, _fingerprint(rng), {"source": "generated"})
                confirmed.append(store.add_rating(clip, KEY, i % 6))
            except LabelStoreFullError as exc:
                error = exc
                break
        assert error is not None and confirmed, "the tmpfs never filled up"
        assert "no space left" in str(error) and "earlier ratings are safe" in str(error)
        assert not [
            p for p in store.clips_dir.iterdir() if p.name.startswith(".tmp-")
        ]  # no partial clip left
        assert store.check() == [] and [p.id for p in store.ratings()] == confirmed

        # now fill the disk completely so that SQLite itself cannot grow its WAL
        filler = mount / "filler"
        with contextlib.suppress(OSError), open(filler, "wb") as handle:
            while True:
                handle.write(b"\0" * 4096)
                handle.flush()
        clip = store.ratings().__next__().clip_hash
        with pytest.raises(LabelStoreFullError, match=r"full.*free some space"):
            for _ in range(50):  # each commit appends to the WAL until no page is left
                confirmed.append(store.add_rating(clip, KEY, 5, note="x" * 3000))
        assert store.check() == [] and [p.id for p in store.ratings()] == confirmed
        if filler.exists():
            filler.unlink()
        reserve.unlink()  # the player frees some space
        confirmed.append(store.add_rating(clip, KEY, 4))
        store.close()
        with LabelStore.open(mount) as reopened:
            assert reopened.check() == [] and [p.id for p in reopened.ratings()] == confirmed


# ---------------------------------------------------------------- concurrency and damage
WRITER = r"""
import json, sys
import numpy as np
from sjtui.labels import GrooveKey, LabelStore
db, seed = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(seed)
with LabelStore.open(db) as store:
    for i in range(15):
        clip, rid = store.save_jam_rating((0.2 * rng.standard_normal(24000)).astype(np.float32), 48000,
                                          GrooveKey("builtin", f"w.groove#{seed}", 0, 4), 120.0, "4/4", None, "m", i % 6)
        print(rid, flush=True)
"""


def test_two_processes_and_four_threads_rate_at_once(tmp_path):
    import threading

    db = tmp_path / "labels.sqlite"
    LabelStore.open(db).close()
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(db), str(seed)], stdout=subprocess.PIPE, text=True, env=env
        )
        for seed in (1, 2)
    ]
    ids = []
    with LabelStore.open(db) as store:
        rng = np.random.default_rng(3)
        clip = store.add_clip(_audio(rng), SR, None, {"source": "generated"})

        def rate(worker: int) -> None:
            for i in range(10):
                ids.append(store.add_rating(clip, KEY, (worker + i) % 6, note=f"thread {worker}"))

        threads = [threading.Thread(target=rate, args=(w,)) for w in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for writer in writers:
            out, _ = writer.communicate(timeout=60)
            assert writer.returncode == 0
            ids += [int(line) for line in out.split()]
        assert len(ids) == len(set(ids)) == 40 + 30
        assert sorted(p.id for p in store.ratings()) == sorted(ids)
        assert store.check() == []


def test_a_damaged_clip_file_is_replaced_when_the_audio_is_saved_again(tmp_path):
    rng = np.random.default_rng(13)
    audio = _audio(rng)
    with LabelStore.open(tmp_path) as store:
        clip = store.add_clip(audio, SR, None, {"source": "generated"})
        good = store.clip_path(clip).read_bytes()
        store.clip_path(clip).write_bytes(good[: len(good) // 2])  # a disk error, a bad copy...
        assert any("cannot be read" in p for p in store.check())
        assert store.add_clip(audio, SR, None, {"source": "generated"}) == clip
        assert store.clip_path(clip).read_bytes() == good and store.check() == []


def test_enospc_while_writing_a_clip_without_root(tmp_path, monkeypatch):
    """The same promise where no tmpfs can be mounted: the write itself fails with ENOSPC half way."""
    import errno

    from sjtui.labels import clips as clips_module

    rng = np.random.default_rng(14)
    with LabelStore.open(tmp_path) as store:
        clip = store.add_clip(_audio(rng), SR, None, {"source": "generated"})
        first = store.add_rating(clip, KEY, 3)
        real_write = os.write
        calls = {"n": 0}

        def failing_write(fd, data):
            calls["n"] += 1
            if calls["n"] > 1:  # the first chunk lands, then the disk is full
                raise OSError(errno.ENOSPC, "No space left on device")
            return real_write(fd, bytes(data)[: len(data) // 2])

        monkeypatch.setattr(clips_module.os, "write", failing_write)
        with pytest.raises(LabelStoreFullError, match="no space left.*earlier ratings are safe"):
            store.save_jam_rating(_audio(rng), SR, KEY, 120.0, "4/4", None, "m", 4)
        monkeypatch.undo()
        assert calls["n"] == 2
        assert sorted(p.name for p in store.clips_dir.iterdir()) == [
            f"{clip}.flac"
        ]  # no partial or temp file
        assert [p.id for p in store.ratings()] == [first] and store.check() == []


def test_clip_is_fsynced_and_renamed_before_the_commit_that_refers_to_it(tmp_path, monkeypatch):
    """The order that makes a kill or power cut safe: fsync(temp file), rename, fsync(folder), then COMMIT."""
    from sjtui.labels import clips as clips_module

    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append("fsync-dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "fsync-file")
        return real_fsync(fd)

    def replace(src, dst):
        events.append("rename")
        return real_replace(src, dst)

    monkeypatch.setattr(clips_module.os, "fsync", fsync)
    monkeypatch.setattr(clips_module.os, "replace", replace)
    rng = np.random.default_rng(15)
    with LabelStore.open(tmp_path) as store:
        store.conn.set_trace_callback(
            lambda sql: events.append(sql.split()[0].upper()) if sql.split() else None
        )
        store.save_jam_rating(_audio(rng), SR, KEY, 120.0, "4/4", None, "m", 4)
        store.conn.set_trace_callback(None)
    order = [e for e in events if e in ("fsync-file", "rename", "fsync-dir", "BEGIN", "COMMIT")]
    assert order == ["fsync-file", "rename", "fsync-dir", "BEGIN", "COMMIT"]
