"""The label store: every rating of a (guitar clip, groove) pair, kept safe.

Where: ``labels.sqlite`` in the user's data directory
(:func:`sjtui.grooves.store.default_data_dir`: ``$SJTUI_DATA_DIR`` or
``platformdirs.user_data_dir("sjtui")``), the clips beside it in ``clips/``
as ``<sha256 of the samples>.flac`` (see :mod:`sjtui.labels.clips`).

Durability (the promise: a rating that was confirmed survives SIGKILL at
any moment, and so does the database):

- WAL journal, ``synchronous=FULL``: every commit fsyncs the WAL before
  :meth:`LabelStore.add_rating` returns, so a confirmed rating survives a
  killed process *and* a power cut. ``NORMAL`` would survive a killed
  process only (the OS still holds the WAL pages) but may lose the last
  ratings on power loss; ratings come at human speed (one every few
  seconds), so the one fsync per rating costs nothing that matters.
- Every rating is its own transaction, committed before the call returns.
- A clip file is written completely (temp file, fsync, rename, folder
  fsync) *before* the transaction that inserts its row commits, so a
  committed row never points at a missing or partial file. A kill between
  the two leaves a clip file without a row: harmless, reported by
  :meth:`LabelStore.stats` (``orphan_clip_files``), and reused when the same
  audio is saved again.

Schema (``PRAGMA user_version`` = :data:`SCHEMA_VERSION`):

- ``clips``: ``hash`` (sha256 of the samples, primary key), ``path``
  (relative to ``clips/``), ``sample_rate``, ``n_channels``, ``duration_s``,
  ``source`` (``jam-recording`` | ``user-file`` | ``generated``), ``origin``
  (JSON: file, offset, riff style, ...), ``bpm``, ``meter``, ``fingerprint``
  (blob of :mod:`sjtui.labels.fingerprint_blob`, so training needs no
  analysis), ``created_at``.
- ``ratings``: ``id``, ``clip_hash`` (references ``clips``), the groove's
  stable key ``groove_source, groove_path, groove_start_bar, groove_bars``
  (the groove store's ``UNIQUE`` key, which survives a library re-import)
  plus ``groove_id`` (its id when rated, a hint only) and ``groove_name``,
  ``rating`` 0..5, ``note``, ``model_version``, ``strategy``
  (:data:`STRATEGIES`), ``rater`` (default ``local``), ``created_at`` (UTC,
  ISO 8601 with microseconds). ``UNIQUE (clip, groove key, rater,
  created_at)``: an import recognises rows it already has.

Versions: a database whose ``user_version`` is newer than this code is
refused with :class:`LabelStoreNewerError` before anything writes to it
(the version is read from the file header first, so not even the journal
mode is changed). Older versions are brought up to date by
:data:`MIGRATIONS`, one step per version, each in one transaction.

Bad conditions give :class:`~sjtui.labels.errors.LabelError` subclasses
with a message saying what to do: a write lock held by another process for
longer than ``busy_timeout_s`` (:class:`LabelStoreLockedError`), a
read-only file, folder or file system (:class:`LabelStoreReadOnlyError`;
:meth:`LabelStore.open` with ``readonly=True`` still reads it), a full disk
(:class:`LabelStoreFullError`; the transaction is rolled back, nothing
already saved is touched).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from sjtui.labels.clips import (
    CLIP_SUFFIX,
    file_hash,
    is_clip_hash,
    pcm_hash,
    quantize_pcm24,
    remove_stale_temp_files,
    write_clip,
)
from sjtui.labels.errors import (
    LabelError,
    LabelStoreDamagedError,
    LabelStoreFullError,
    LabelStoreLockedError,
    LabelStoreNewerError,
    LabelStoreReadOnlyError,
)
from sjtui.labels.fingerprint_blob import decode_fingerprint, encode_fingerprint

DB_FILENAME = "labels.sqlite"
CLIPS_DIRNAME = "clips"
SCHEMA_VERSION = 1
STRATEGIES = ("favourite", "uncertain", "explore", "jam", "manual")
"""How a pair came to be rated: the pairing mix of :mod:`sjtui.labels.pairing`
(``favourite``, ``uncertain``, ``explore``), rated while jamming (``jam``),
or chosen by the player (``manual``)."""
CLIP_SOURCES = ("jam-recording", "user-file", "generated")
MIN_RATING, MAX_RATING = 0, 5
MAX_NOTE_CHARS = 4000
DEFAULT_BUSY_TIMEOUT_S = 5.0
_SQLITE_MAGIC = b"SQLite format 3\x00"


def _migrate_0_to_1(conn: sqlite3.Connection) -> None:
    conn.execute(
        """CREATE TABLE clips (
            hash TEXT PRIMARY KEY CHECK (length(hash) = 64),
            path TEXT NOT NULL,
            sample_rate INTEGER NOT NULL CHECK (sample_rate > 0),
            n_channels INTEGER NOT NULL DEFAULT 1,
            duration_s REAL NOT NULL,
            source TEXT NOT NULL CHECK (source IN ('jam-recording', 'user-file', 'generated')),
            origin TEXT NOT NULL DEFAULT '{}',
            bpm REAL,
            meter TEXT,
            fingerprint BLOB,
            created_at TEXT NOT NULL
        ) WITHOUT ROWID"""
    )
    conn.execute(
        """CREATE TABLE ratings (
            id INTEGER PRIMARY KEY,
            clip_hash TEXT NOT NULL REFERENCES clips (hash),
            groove_source TEXT NOT NULL,
            groove_path TEXT NOT NULL,
            groove_start_bar INTEGER NOT NULL,
            groove_bars INTEGER NOT NULL,
            groove_id INTEGER,
            groove_name TEXT,
            rating INTEGER NOT NULL CHECK (rating BETWEEN 0 AND 5),
            note TEXT NOT NULL DEFAULT '',
            model_version TEXT,
            strategy TEXT NOT NULL,
            rater TEXT NOT NULL DEFAULT 'local',
            created_at TEXT NOT NULL,
            UNIQUE (clip_hash, groove_source, groove_path, groove_start_bar, groove_bars, rater, created_at)
        )"""
    )
    conn.execute("CREATE INDEX ratings_clip ON ratings (clip_hash, created_at)")
    conn.execute(
        "CREATE INDEX ratings_groove ON ratings (groove_source, groove_path, groove_start_bar, groove_bars)"
    )


MIGRATIONS = [_migrate_0_to_1]
"""``MIGRATIONS[v]`` brings a database from version ``v`` to ``v + 1`` (inside one transaction)."""


def now_utc() -> str:
    """The current time as stored in ``created_at``: ``2026-11-26T13:33:29.123456Z``."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_timestamp(text: str) -> str:
    """Normalise an ISO 8601 time to the stored form; ``ValueError`` when it does not parse."""
    value = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class GrooveKey:
    """The groove store's stable key of a groove: ``UNIQUE (source, source_path, start_bar, bars)``.

    Ids change when a library is imported again; this key does not.
    """

    source: str
    path: str
    start_bar: int
    bars: int

    @classmethod
    def from_groove(cls, groove) -> GrooveKey:
        """The key of a :class:`sjtui.grooves.vho.Groove` (from the store, a file or the built-ins)."""
        from sjtui.grooves.store import _key_path  # the store's own rule for source_path

        return cls(str(groove.source), _key_path(groove), int(groove.start_bar), int(groove.bars))

    @classmethod
    def from_row(cls, row: dict) -> GrooveKey:
        """The key of a row of :meth:`sjtui.grooves.store.GrooveStore.list_rows`."""
        return cls(str(row["source"]), str(row["source_path"]), int(row["start_bar"]), int(row["bars"]))

    def __str__(self) -> str:
        return f"{self.source}:{self.path}@{self.start_bar}+{self.bars}"


def groove_key_index(groove_store) -> dict[GrooveKey, tuple[int, str]]:
    """``{GrooveKey: (current id, name)}`` of every groove in a :class:`~sjtui.grooves.store.GrooveStore`."""
    rows = groove_store.conn.execute("SELECT id, source, source_path, start_bar, bars, name FROM grooves")
    return {GrooveKey(s, p, int(b), int(n)): (int(i), name) for i, s, p, b, n, name in rows}


@dataclass
class RatedPair:
    """One rating joined with its clip, for training.

    ``clip_path`` is absolute; ``fingerprint`` is the stored
    :class:`~sjtui.dsp.fingerprint.Fingerprint` (None when the clip was
    saved without one); ``groove_id`` is the groove's id in the library
    passed to :meth:`LabelStore.ratings` (None when that library does not
    hold the groove), or the id stored at rating time when no library was
    passed.
    """

    id: int
    clip_hash: str
    clip_path: Path
    sample_rate: int
    duration_s: float
    clip_source: str
    origin: dict
    bpm: float | None
    meter: str | None
    fingerprint: object | None = field(repr=False)
    groove: GrooveKey
    groove_id: int | None
    groove_name: str | None
    rating: int
    note: str
    model_version: str | None
    strategy: str
    rater: str
    created_at: str


def _check_rating(rating) -> int:
    if isinstance(rating, bool) or not isinstance(rating, (int, np.integer)):
        raise LabelError(f"rating {rating!r} is not a whole number; rate with 0 (no fit) to 5 (perfect)")
    if not MIN_RATING <= int(rating) <= MAX_RATING:
        raise LabelError(
            f"rating {rating} is outside {MIN_RATING}..{MAX_RATING}; rate with 0 (no fit) to 5 (perfect)"
        )
    return int(rating)


def _check_strategy(strategy: str) -> str:
    if strategy not in STRATEGIES:
        raise LabelError(f"pairing strategy {strategy!r} is unknown; use one of {', '.join(STRATEGIES)}")
    return strategy


def _check_note(note) -> str:
    note = "" if note is None else note
    if not isinstance(note, str):
        raise LabelError(f"rating note must be text, got {type(note).__name__}")
    if len(note) > MAX_NOTE_CHARS:
        raise LabelError(f"rating note has {len(note)} characters; keep it under {MAX_NOTE_CHARS}")
    return note


def _check_sample_rate(sample_rate) -> int:
    if (
        isinstance(sample_rate, bool)
        or not isinstance(sample_rate, (int, np.integer))
        or not 1000 <= sample_rate <= 768000
    ):
        raise LabelError(
            f"clip sample rate {sample_rate!r} Hz is not a sample rate; pass the stream's rate, e.g. 48000"
        )
    return int(sample_rate)


def _resolve_db_path(path: str | Path | None) -> Path:
    if path is None:
        from sjtui.grooves.store import default_data_dir

        return default_data_dir() / DB_FILENAME
    path = Path(path)
    if path.suffix in (".sqlite", ".db", ".sqlite3"):
        return path
    return path / DB_FILENAME


def header_user_version(path: Path) -> int | None:
    """``PRAGMA user_version`` read from the file header (bytes 60..63) without opening SQLite.

    None for a missing or empty file; :class:`LabelStoreDamagedError` for a
    file that is not SQLite.
    """
    try:
        with open(path, "rb") as handle:
            header = handle.read(100)
    except FileNotFoundError:
        return None
    except OSError as error:
        raise LabelStoreReadOnlyError(
            f"cannot read the label database {path}: {error.strerror}; check its permissions"
        ) from None
    if not header:
        return None
    if len(header) < 100 or not header.startswith(_SQLITE_MAGIC):
        raise LabelStoreDamagedError(
            f"{path} is not an SQLite database, so not a label database; move it away (sjtui will start a "
            "new one) or point --db / SJTUI_DATA_DIR elsewhere"
        )
    return int.from_bytes(header[60:64], "big")


def _newer_error(path: Path, version: int) -> LabelStoreNewerError:
    return LabelStoreNewerError(
        f"the label database {path} is version {version}, written by a newer sjtui (this one reads up to "
        f"version {SCHEMA_VERSION}); it was not opened and nothing in it was changed. Update sjtui, or use "
        "another data folder (SJTUI_DATA_DIR)"
    )


class LabelStore:
    """Ratings and clips. Open with :meth:`open`; use as a context manager or call :meth:`close`.

    Thread-safe: one connection guarded by a lock, so the jam screen may
    save from a worker thread.
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        path: Path,
        *,
        readonly: bool,
        busy_timeout_s: float,
        groove_store=None,
    ):
        self.conn = conn
        self.path = path
        self.clips_dir = path.parent / CLIPS_DIRNAME
        self.readonly = readonly
        self.busy_timeout_s = busy_timeout_s
        self.groove_store = groove_store
        self._lock = threading.RLock()
        self._groove_index: dict | None = None

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(
        cls,
        path: str | Path | None = None,
        *,
        readonly: bool = False,
        busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S,
        groove_store=None,
    ) -> LabelStore:
        """Open (creating or migrating when needed) the label store.

        ``path``: the database file, or a folder to hold ``labels.sqlite``
        (default: the user's data directory). ``readonly``: read only (for
        export, stats, list; works on a read-only file system).
        ``groove_store``: a :class:`~sjtui.grooves.store.GrooveStore` to
        check grooves against and to resolve groove ids given as ints.
        """
        path = _resolve_db_path(path)
        version = header_user_version(path)
        if version is not None and version > SCHEMA_VERSION:
            raise _newer_error(path, version)
        if readonly:
            conn = cls._connect_readonly(path, busy_timeout_s)
        else:
            conn = cls._connect_readwrite(path, busy_timeout_s)
        store = cls(conn, path, readonly=readonly, busy_timeout_s=busy_timeout_s, groove_store=groove_store)
        try:
            if readonly:
                found = store._query_user_version()
                if found > SCHEMA_VERSION:
                    raise _newer_error(path, found)
                if found < SCHEMA_VERSION:
                    raise LabelStoreReadOnlyError(
                        f"the label database {path} is version {found} and must be upgraded to version "
                        f"{SCHEMA_VERSION} first; open it once writable (`sjtui labels stats`)"
                    )
            else:
                store._prepare()
                remove_stale_temp_files(store.clips_dir)
        except BaseException:
            conn.close()
            raise
        return store

    @staticmethod
    def _connect_readonly(path: Path, busy_timeout_s: float) -> sqlite3.Connection:
        if not path.is_file():
            raise LabelError(
                f"there is no label database at {path} yet; rate a few pairs (`sjtui label`) first"
            )
        uri = path.resolve().as_uri()
        try:
            conn = sqlite3.connect(
                f"{uri}?mode=ro",
                uri=True,
                timeout=busy_timeout_s,
                isolation_level=None,
                check_same_thread=False,
            )
            conn.execute("PRAGMA user_version").fetchone()  # the first read creates/opens the WAL index
            return conn
        except sqlite3.OperationalError:
            pass
        # A WAL database on a read-only file system: SQLite cannot create its -shm file. Nobody can
        # write there either, so reading it as immutable is exact.
        try:
            conn = sqlite3.connect(
                f"{uri}?mode=ro&immutable=1", uri=True, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA user_version").fetchone()
            return conn
        except sqlite3.DatabaseError as error:
            raise _map_error(error, path, "opening it read-only", busy_timeout_s) from None

    @staticmethod
    def _connect_readwrite(path: Path, busy_timeout_s: float) -> sqlite3.Connection:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise LabelStoreReadOnlyError(
                f"cannot create the folder {path.parent} for the label database ({error.strerror}); "
                "set SJTUI_DATA_DIR to a writable folder"
            ) from None
        try:
            conn = sqlite3.connect(
                str(path), timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
            )
        except sqlite3.DatabaseError as error:
            raise _map_error(error, path, "opening it", busy_timeout_s) from None
        return conn

    def _query_user_version(self) -> int:
        try:
            return int(self.conn.execute("PRAGMA user_version").fetchone()[0])
        except sqlite3.DatabaseError as error:
            raise _map_error(error, self.path, "reading its version", self.busy_timeout_s) from None

    def _prepare(self) -> None:
        """Check the version (before any write), set WAL/FULL, migrate."""
        found = self._query_user_version()  # the WAL may hold a newer header than the file: ask SQLite too
        if found > SCHEMA_VERSION:
            raise _newer_error(self.path, found)
        try:
            mode = self.conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise LabelStoreReadOnlyError(
                    f"the label database {self.path} cannot switch to WAL mode (it stays {mode!r}); "
                    "is it on a read-only or network file system? Set SJTUI_DATA_DIR to a local writable folder"
                )
            self.conn.execute("PRAGMA synchronous=FULL")
            self.conn.execute("PRAGMA foreign_keys=ON")
        except sqlite3.DatabaseError as error:
            raise _map_error(error, self.path, "opening it", self.busy_timeout_s) from None
        if found < SCHEMA_VERSION:
            with self._write("upgrading its tables"):
                current = int(self.conn.execute("PRAGMA user_version").fetchone()[0])
                if current > SCHEMA_VERSION:  # another process upgraded it in between
                    raise _newer_error(self.path, current)
                for version in range(current, SCHEMA_VERSION):
                    MIGRATIONS[version](self.conn)
                self.conn.execute(f"PRAGMA user_version = {int(SCHEMA_VERSION)}")
        # (a read-write open leaves the schema at SCHEMA_VERSION)

    # ------------------------------------------------------------------ basics
    def close(self) -> None:
        with self._lock:
            self.conn.close()

    def __enter__(self) -> LabelStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        return self._query_user_version()

    def clip_path(self, clip_hash: str) -> Path:
        return self.clips_dir / f"{clip_hash}{CLIP_SUFFIX}"

    @contextmanager
    def _write(self, what: str):
        """One IMMEDIATE transaction, committed on leaving; errors mapped to LabelError subclasses."""
        if self.readonly:
            raise LabelStoreReadOnlyError(
                f"the label store {self.path} was opened read-only; open it without readonly=True to save ratings"
            )
        with self._lock:
            try:
                self.conn.execute("BEGIN IMMEDIATE")
            except sqlite3.DatabaseError as error:
                raise _map_error(error, self.path, what, self.busy_timeout_s) from None
            try:
                yield self.conn
                self.conn.execute("COMMIT")
            except BaseException as error:
                if self.conn.in_transaction:
                    try:
                        self.conn.execute("ROLLBACK")
                    except sqlite3.DatabaseError:
                        pass
                if isinstance(error, sqlite3.DatabaseError):
                    raise _map_error(error, self.path, what, self.busy_timeout_s) from None
                raise

    # ------------------------------------------------------------------ grooves
    def _groove_fields(self, groove) -> tuple[GrooveKey, int | None, str | None]:
        """``(key, id, name)`` of a groove given as GrooveKey, Groove, groove-store row or id."""
        if isinstance(groove, GrooveKey):
            key, gid, name = groove, None, None
        elif isinstance(groove, dict):
            key, gid, name = GrooveKey.from_row(groove), groove.get("id"), groove.get("name")
        elif isinstance(groove, (int, np.integer)) and not isinstance(groove, bool):
            if self.groove_store is None:
                raise LabelError(
                    f"groove id {groove} cannot be resolved: open the label store with groove_store=... or pass "
                    "the Groove / GrooveKey"
                )
            row = self.groove_store.conn.execute(
                "SELECT source, source_path, start_bar, bars, name FROM grooves WHERE id = ?", (int(groove),)
            ).fetchone()
            if row is None:
                raise LabelError(
                    f"no groove with id {groove} in the groove library; `sjtui grooves list` shows the ids"
                )
            return GrooveKey(row[0], row[1], int(row[2]), int(row[3])), int(groove), row[4]
        elif hasattr(groove, "hits") and hasattr(groove, "source"):
            key, gid, name = GrooveKey.from_groove(groove), groove.extra.get("id"), groove.name
        else:
            raise LabelError(
                f"cannot tell which groove {groove!r} is; pass a Groove, a GrooveKey or a groove id"
            )
        if self.groove_store is not None:
            if self._groove_index is None:
                self._groove_index = groove_key_index(self.groove_store)
            found = self._groove_index.get(key)
            if found is None:
                self._groove_index = groove_key_index(self.groove_store)  # the library may have grown
                found = self._groove_index.get(key)
            if found is None:
                raise LabelError(
                    f"groove {key} is not in the groove library; import it (`sjtui grooves import`) first"
                )
            gid, name = found[0], name or found[1]
        return key, (None if gid is None else int(gid)), name

    # ------------------------------------------------------------------ writing
    def _clip_row(self, pcm24, sample_rate: int, clip_hash: str, fingerprint, meta: dict) -> tuple:
        meta = dict(meta or {})
        source = meta.pop("source", "user-file")
        if source not in CLIP_SOURCES:
            raise LabelError(f"clip source {source!r} is unknown; use one of {', '.join(CLIP_SOURCES)}")
        origin = meta.pop("origin", {}) or {}
        bpm = meta.pop("bpm", None)
        meter = meta.pop("meter", None)
        created_at = meta.pop("created_at", None)
        origin = {**origin, **meta}  # anything else the caller knows goes into the origin details
        if fingerprint is not None:
            bpm = float(fingerprint.bpm) if bpm is None else bpm
            meter = str(fingerprint.meter) if meter is None else meter
        if bpm is not None and not (np.isfinite(float(bpm)) and 20.0 <= float(bpm) <= 400.0):
            raise LabelError(
                f"clip tempo {bpm!r} BPM is outside 20..400; pass the tempo the clip was played at"
            )
        if meter is not None:
            from sjtui.meter import parse_meter

            meter = str(parse_meter(meter))
        try:
            origin_json = json.dumps(origin, sort_keys=True, default=str)
        except (TypeError, ValueError) as error:
            raise LabelError(
                f"clip origin details cannot be stored as JSON ({error}); pass plain values"
            ) from None
        blob = None if fingerprint is None else encode_fingerprint(fingerprint)
        return (
            clip_hash,
            f"{clip_hash}{CLIP_SUFFIX}",
            int(sample_rate),
            int(pcm24.shape[1]),
            float(pcm24.shape[0]) / sample_rate,
            source,
            origin_json,
            None if bpm is None else float(bpm),
            meter,
            blob,
            parse_timestamp(created_at) if created_at else now_utc(),
        )

    def _save_clip_file(self, audio, sample_rate) -> tuple[np.ndarray, int, str]:
        sample_rate = _check_sample_rate(sample_rate)
        pcm24 = quantize_pcm24(audio)
        clip_hash = pcm_hash(pcm24, sample_rate)
        write_clip(
            self.clips_dir, pcm24, sample_rate, clip_hash
        )  # complete and fsynced before any row refers to it
        return pcm24, sample_rate, clip_hash

    def _insert_clip(self, conn, row: tuple) -> None:
        conn.execute(
            "INSERT INTO clips (hash, path, sample_rate, n_channels, duration_s, source, origin, bpm, meter, "
            "fingerprint, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (hash) DO UPDATE SET "
            "fingerprint = coalesce(clips.fingerprint, excluded.fingerprint), bpm = coalesce(clips.bpm, excluded.bpm), "
            "meter = coalesce(clips.meter, excluded.meter)",
            row,
        )

    def add_clip(
        self, audio: np.ndarray, sample_rate: int, fingerprint=None, meta: dict | None = None
    ) -> str:
        """Save a clip (FLAC file, then its row, committed); returns its hash.

        ``audio``: float samples ``(n,)`` or ``(n, channels)`` in -1..1.
        ``fingerprint``: its :class:`~sjtui.dsp.fingerprint.Fingerprint` (or
        None). ``meta``: ``source`` (one of :data:`CLIP_SOURCES`, default
        ``user-file``), ``origin`` (dict), ``bpm``, ``meter`` (default: the
        fingerprint's), ``created_at``; other keys go into ``origin``.
        Saving the same samples again changes nothing (a missing
        fingerprint is filled in).
        """
        if self.readonly:
            raise LabelStoreReadOnlyError(
                f"the label store {self.path} was opened read-only; clips cannot be saved"
            )
        pcm24, sample_rate, clip_hash = self._save_clip_file(audio, sample_rate)
        row = self._clip_row(pcm24, sample_rate, clip_hash, fingerprint, meta)
        with self._write(f"saving clip {clip_hash[:12]}") as conn:
            self._insert_clip(conn, row)
        return clip_hash

    def _insert_rating(
        self,
        conn,
        clip_hash,
        key,
        groove_id,
        groove_name,
        rating,
        note,
        model_version,
        strategy,
        rater,
        created_at,
    ) -> int:
        if conn.execute("SELECT 1 FROM clips WHERE hash = ?", (clip_hash,)).fetchone() is None:
            raise LabelError(
                f"no clip {clip_hash} in the label store {self.path}; save the clip (add_clip) before rating it"
            )
        cursor = conn.execute(
            "INSERT INTO ratings (clip_hash, groove_source, groove_path, groove_start_bar, groove_bars, groove_id, "
            "groove_name, rating, note, model_version, strategy, rater, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (clip_hash, key.source, key.path, key.start_bar, key.bars, groove_id, groove_name, rating, note,
             model_version, strategy, rater, created_at),
        )  # fmt: skip
        return int(cursor.lastrowid)

    def _rating_fields(self, groove, rating, note, model_version, strategy, rater, created_at):
        rating = _check_rating(rating)
        note = _check_note(note)
        strategy = _check_strategy(strategy)
        if not isinstance(rater, str) or not rater.strip():
            raise LabelError(f"rater {rater!r} must be a non-empty name (default 'local')")
        key, groove_id, groove_name = self._groove_fields(groove)
        created_at = parse_timestamp(created_at) if created_at else now_utc()
        model_version = None if model_version is None else str(model_version)
        return key, groove_id, groove_name, rating, note, model_version, strategy, rater, created_at

    def add_rating(
        self,
        clip_hash: str,
        groove,
        rating: int,
        note: str = "",
        model_version: str | None = None,
        strategy: str = "manual",
        *,
        rater: str = "local",
        created_at: str | None = None,
    ) -> int:
        """Save one rating of (clip, groove), committed (fsynced) before returning its id.

        ``groove``: a :class:`GrooveKey`, a :class:`~sjtui.grooves.vho.Groove`,
        a groove-store row, or a groove id (needs ``groove_store``).
        ``rating``: 0..5. ``strategy``: one of :data:`STRATEGIES`.
        """
        if not is_clip_hash(clip_hash):
            raise LabelError(
                f"clip hash {clip_hash!r} is not a 64-digit sha256; use the hash add_clip returned"
            )
        fields = self._rating_fields(groove, rating, note, model_version, strategy, rater, created_at)
        with self._write("saving the rating") as conn:
            return self._insert_rating(conn, clip_hash, *fields)

    def save_jam_rating(
        self,
        audio: np.ndarray,
        sample_rate: int,
        groove,
        bpm: float,
        meter,
        fingerprint,
        model_version: str | None,
        rating: int,
        note: str = "",
        *,
        strategy: str = "jam",
        origin: dict | None = None,
        rater: str = "local",
    ) -> tuple[str, int]:
        """Rate the current pairing of a jam: keys 0-5 on the jam screen.

        ``audio``: the last 4 bars of guitar ``(n,)``; saved as FLAC with the
        groove, tempo, meter, fingerprint and model version. The clip file
        is written first, then clip row and rating commit in one
        transaction. Returns ``(clip_hash, rating_id)``.
        """
        if self.readonly:
            raise LabelStoreReadOnlyError(
                f"the label store {self.path} was opened read-only; ratings cannot be saved"
            )
        fields = self._rating_fields(
            groove, rating, note, model_version, strategy, rater, None
        )  # checked before any file
        meta = {"source": "jam-recording", "origin": origin or {}, "bpm": bpm, "meter": meter}
        pcm24, sample_rate, clip_hash = self._save_clip_file(audio, sample_rate)
        row = self._clip_row(pcm24, sample_rate, clip_hash, fingerprint, meta)
        with self._write("saving the jam rating") as conn:
            self._insert_clip(conn, row)
            rating_id = self._insert_rating(conn, clip_hash, *fields)
        return clip_hash, rating_id

    # ------------------------------------------------------------------ reading
    _RATING_COLUMNS = (
        "r.id, r.clip_hash, c.path, c.sample_rate, c.duration_s, c.source, c.origin, c.bpm, c.meter, c.fingerprint, "
        "r.groove_source, r.groove_path, r.groove_start_bar, r.groove_bars, r.groove_id, r.groove_name, r.rating, "
        "r.note, r.model_version, r.strategy, r.rater, r.created_at"
    )

    def _select(self, sql: str, params=()) -> list:
        with self._lock:
            try:
                return self.conn.execute(sql, params).fetchall()
            except sqlite3.DatabaseError as error:
                raise _map_error(error, self.path, "reading it", self.busy_timeout_s) from None

    def ratings(
        self, groove_store=None, *, with_fingerprint: bool = True, rater: str | None = None
    ) -> Iterator[RatedPair]:
        """Every rating with its clip, oldest first.

        With ``groove_store`` (or the store's own), ``groove_id`` is the
        groove's id in that library now (None when it does not hold the
        groove: training skips those and says how many).
        """
        groove_store = groove_store or self.groove_store
        index = groove_key_index(groove_store) if groove_store is not None else None
        sql = f"SELECT {self._RATING_COLUMNS} FROM ratings r JOIN clips c ON c.hash = r.clip_hash"
        params: tuple = ()
        if rater is not None:
            sql += " WHERE r.rater = ?"
            params = (rater,)
        sql += " ORDER BY r.id"
        for row in self._select(sql, params):
            (rid, clip_hash, rel_path, sr, duration, source, origin, bpm, meter, blob, g_source, g_path, g_start,
             g_bars, g_id, g_name, rating, note, model_version, strategy, rater_name, created_at) = row  # fmt: skip
            key = GrooveKey(g_source, g_path, int(g_start), int(g_bars))
            if index is not None:
                found = index.get(key)
                g_id = None if found is None else found[0]
            yield RatedPair(
                id=int(rid), clip_hash=clip_hash, clip_path=self.clips_dir / rel_path, sample_rate=int(sr),
                duration_s=float(duration), clip_source=source, origin=json.loads(origin), bpm=bpm, meter=meter,
                fingerprint=(decode_fingerprint(blob) if with_fingerprint and blob is not None else None),
                groove=key, groove_id=g_id, groove_name=g_name, rating=int(rating), note=note,
                model_version=model_version, strategy=strategy, rater=rater_name, created_at=created_at,
            )  # fmt: skip

    def rating_rows(self) -> list[dict]:
        """Every rating joined with its clip as plain dicts (for export and listing), oldest first."""
        names = (
            "id", "clip_hash", "clip_path", "clip_sample_rate", "clip_n_channels", "clip_duration_s", "clip_source",
            "clip_origin", "clip_bpm", "clip_meter", "clip_fingerprint", "clip_created_at", "groove_source",
            "groove_path", "groove_start_bar", "groove_bars", "groove_id", "groove_name", "rating", "note",
            "model_version", "strategy", "rater", "created_at",
        )  # fmt: skip
        rows = self._select(
            "SELECT r.id, r.clip_hash, c.path, c.sample_rate, c.n_channels, c.duration_s, c.source, c.origin, c.bpm, "
            "c.meter, c.fingerprint, c.created_at, r.groove_source, r.groove_path, r.groove_start_bar, r.groove_bars, "
            "r.groove_id, r.groove_name, r.rating, r.note, r.model_version, r.strategy, r.rater, r.created_at "
            "FROM ratings r JOIN clips c ON c.hash = r.clip_hash ORDER BY r.id"
        )
        return [dict(zip(names, row)) for row in rows]

    def clip_rows(self) -> list[dict]:
        names = (
            "hash",
            "path",
            "sample_rate",
            "n_channels",
            "duration_s",
            "source",
            "origin",
            "bpm",
            "meter",
            "fingerprint",
            "created_at",
        )
        rows = self._select(f"SELECT {', '.join(names)} FROM clips ORDER BY hash")
        return [dict(zip(names, row)) for row in rows]

    def count(self) -> int:
        return int(self._select("SELECT COUNT(*) FROM ratings")[0][0])

    def recent_groove_keys(
        self, clip_hash: str, limit: int | None = None, since: str | None = None
    ) -> set[GrooveKey]:
        """Grooves rated with this clip (the newest ``limit`` ratings, or those after ``since``)."""
        sql = "SELECT groove_source, groove_path, groove_start_bar, groove_bars FROM ratings WHERE clip_hash = ?"
        params: list = [clip_hash]
        if since is not None:
            sql += " AND created_at >= ?"
            params.append(parse_timestamp(since))
        sql += " ORDER BY created_at DESC, id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        return {GrooveKey(s, p, int(b), int(n)) for s, p, b, n in self._select(sql, params)}

    def stats(self) -> dict:
        """Counts for ``sjtui labels stats``: ratings by value, strategy, clip source, rater, model; clips; files."""

        def grouped(sql: str) -> dict:
            return {str(k): int(v) for k, v in self._select(sql)}

        by_value = {str(v): 0 for v in range(MIN_RATING, MAX_RATING + 1)}
        by_value.update(grouped("SELECT rating, COUNT(*) FROM ratings GROUP BY rating"))
        n_ratings, first, last = self._select(
            "SELECT COUNT(*), MIN(created_at), MAX(created_at) FROM ratings"
        )[0]
        mean = self._select("SELECT AVG(rating) FROM ratings")[0][0]
        clip_names = {row[0] for row in self._select("SELECT path FROM clips")}
        files = {p.name for p in self.clips_dir.glob(f"*{CLIP_SUFFIX}")} if self.clips_dir.is_dir() else set()
        clip_bytes = sum((self.clips_dir / name).stat().st_size for name in files & clip_names)
        return {
            "database": str(self.path),
            "schema_version": self._query_user_version(),
            "ratings": int(n_ratings),
            "mean_rating": None if mean is None else round(float(mean), 3),
            "ratings_by_value": by_value,
            "ratings_by_strategy": grouped(
                "SELECT strategy, COUNT(*) FROM ratings GROUP BY strategy ORDER BY strategy"
            ),
            "ratings_by_clip_source": grouped(
                "SELECT c.source, COUNT(*) FROM ratings r JOIN clips c ON c.hash = r.clip_hash GROUP BY c.source ORDER BY c.source"
            ),
            "ratings_by_rater": grouped("SELECT rater, COUNT(*) FROM ratings GROUP BY rater ORDER BY rater"),
            "ratings_by_model_version": grouped(
                "SELECT coalesce(model_version, '(none)'), COUNT(*) FROM ratings GROUP BY 1 ORDER BY 1"
            ),
            "pairs": int(
                self._select(
                    "SELECT COUNT(*) FROM (SELECT DISTINCT clip_hash, groove_source, groove_path, "
                    "groove_start_bar, groove_bars FROM ratings)"
                )[0][0]
            ),
            "grooves": int(
                self._select(
                    "SELECT COUNT(*) FROM (SELECT DISTINCT groove_source, groove_path, "
                    "groove_start_bar, groove_bars FROM ratings)"
                )[0][0]
            ),
            "clips": len(clip_names),
            "clips_without_fingerprint": int(
                self._select("SELECT COUNT(*) FROM clips WHERE fingerprint IS NULL")[0][0]
            ),
            "clips_seconds": round(
                float(self._select("SELECT coalesce(SUM(duration_s), 0) FROM clips")[0][0]), 3
            ),
            "clips_bytes": int(clip_bytes),
            "clips_missing_files": sorted(clip_names - files),
            "orphan_clip_files": sorted(files - clip_names),
            "first_rating_at": first,
            "last_rating_at": last,
        }

    def check(self, verify_hashes: bool = True) -> list[str]:
        """Problems found (empty when all is well): SQLite integrity, foreign keys, clip files and their hashes."""
        problems = []
        result = [row[0] for row in self._select("PRAGMA integrity_check")]
        if result != ["ok"]:
            problems += [f"integrity: {line}" for line in result]
        for table, rowid, parent, _ in self._select("PRAGMA foreign_key_check"):
            problems.append(f"{table} row {rowid} refers to a missing {parent} row")
        for clip_hash, rel_path in self._select("SELECT hash, path FROM clips ORDER BY hash"):
            file = self.clips_dir / rel_path
            if not file.is_file():
                problems.append(f"clip {clip_hash}: file {file} is missing")
            elif verify_hashes:
                try:
                    actual = file_hash(file)
                except LabelError as error:
                    problems.append(f"clip {clip_hash}: {error}")
                    continue
                if actual != clip_hash:
                    problems.append(f"clip {clip_hash}: file holds audio with hash {actual}")
        return problems


def _map_error(error: sqlite3.DatabaseError, path: Path, what: str, busy_timeout_s: float) -> LabelError:
    """A clear :class:`LabelError` for an SQLite error met while ``what``."""
    name = getattr(error, "sqlite_errorname", "") or ""
    message = str(error)
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in message:
        return LabelStoreLockedError(
            f"the label database {path} is locked by another process (another sjtui jam or label session?) "
            f"and stayed locked for {busy_timeout_s:g} s while {what}; close the other session or try again. "
            "Nothing was changed"
        )
    if (
        name.startswith("SQLITE_READONLY")
        or "readonly" in message
        or (
            name.startswith("SQLITE_CANTOPEN")
            and (path.exists() or path.parent.exists())
            and not os.access(path.parent, os.W_OK)
        )
    ):
        return LabelStoreReadOnlyError(
            f"the label database {path} is read-only ({message}) while {what}; make the file and its folder "
            "writable, or set SJTUI_DATA_DIR to a writable folder. Nothing was lost: `sjtui labels export` still reads it"
        )
    if (
        name == "SQLITE_FULL"
        or "full" in message
        or (name.startswith("SQLITE_IOERR") and _disk_nearly_full(path))
    ):
        return LabelStoreFullError(
            f"the disk holding the label database {path} is full ({message}) while {what}; free some space "
            "and try again. Nothing already saved was lost"
        )
    if name in ("SQLITE_CORRUPT", "SQLITE_NOTADB") or "malformed" in message or "not a database" in message:
        return LabelStoreDamagedError(
            f"the label database {path} is damaged ({message}); `sjtui labels export` what can be read, move the "
            "file away and import the export into a new store"
        )
    return LabelError(f"label database {path}: {message} while {what}")


def _disk_nearly_full(path: Path) -> bool:
    try:
        return shutil.disk_usage(path.parent).free < 1 << 20
    except OSError:
        return False


__all__ = [
    "CLIP_SOURCES",
    "DB_FILENAME",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "STRATEGIES",
    "GrooveKey",
    "LabelStore",
    "RatedPair",
    "groove_key_index",
]
