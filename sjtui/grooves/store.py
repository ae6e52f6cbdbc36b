"""The groove library on disk: one SQLite file in the user's data directory.

Why SQLite: one file, transactions (an import that fails half way loses
nothing already committed), a unique key that makes re-import idempotent,
indexes for ``list --style``, concurrent readers in WAL mode while an import
writes, and it ships with Python.

Layout (``grooves.sqlite`` in ``platformdirs.user_data_dir("sjtui")``, or in
``$SJTUI_DATA_DIR``, or a path given to :class:`GrooveStore`):

- ``grooves``: one row per groove window: metadata columns, and the VHO as
  compact blobs: ``hits`` = the (n_steps, 9) bool matrix row-major, bit-packed
  (``np.packbits``); ``velocities`` = uint8 MIDI velocity (round(127 v)) of
  each hit in that row-major order; ``offsets`` = int8 offset of each hit in
  1/256 step (round(256 o), clipped to -128..127); ``descriptors`` = float32
  vector (:data:`sjtui.grooves.descriptors.DESCRIPTOR_NAMES`).
  ``UNIQUE (source, source_path, start_bar, bars)``: importing the same
  window again changes nothing.
- ``embeddings``: ``(groove_id, model)`` -> float32 vector, filled by the
  drum encoder; deleted with its groove.
- ``files``: the sha1 of every imported file, so a re-import skips files
  that did not change and replaces the grooves of files that did.
- ``meta``: key/value (the hash of the built-in library last imported).

The built-in library (``sjtui/data/grooves/``, package data) is imported
automatically when the store opens and the built-in files (or their parser)
changed since the last time: it is always there, with no download.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sjtui.errors import GrooveError
from sjtui.grooves.descriptors import DESCRIPTOR_NAMES, N_DESCRIPTORS, groove_descriptors, grooves_descriptors
from sjtui.grooves.vho import N_VOICES, Groove
from sjtui.meter import parse_meter

DB_FILENAME = "grooves.sqlite"
SCHEMA_VERSION = 1
OFFSET_SCALE = 256.0  # stored offset unit: 1/256 step

_SCHEMA = """
CREATE TABLE IF NOT EXISTS grooves (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    source_path TEXT NOT NULL,
    start_bar INTEGER NOT NULL,
    bars INTEGER NOT NULL,
    name TEXT NOT NULL,
    style TEXT NOT NULL,
    bpm REAL NOT NULL,
    meter TEXT NOT NULL,
    kind TEXT NOT NULL,
    split TEXT,
    drummer TEXT,
    session TEXT,
    n_steps INTEGER NOT NULL,
    n_hits INTEGER NOT NULL,
    hits BLOB NOT NULL,
    velocities BLOB NOT NULL,
    offsets BLOB NOT NULL,
    descriptors BLOB NOT NULL,
    extra TEXT NOT NULL DEFAULT '{}',
    UNIQUE (source, source_path, start_bar, bars)
);
CREATE INDEX IF NOT EXISTS grooves_style ON grooves (style);
CREATE TABLE IF NOT EXISTS embeddings (
    groove_id INTEGER NOT NULL REFERENCES grooves (id) ON DELETE CASCADE,
    model TEXT NOT NULL,
    dim INTEGER NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (model, groove_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS files (
    source TEXT NOT NULL,
    source_path TEXT NOT NULL,
    sha1 TEXT NOT NULL,
    n_grooves INTEGER NOT NULL,
    PRIMARY KEY (source, source_path)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

_COLUMNS = (
    "id, source, source_path, start_bar, bars, name, style, bpm, meter, kind, split, drummer, session, "
    "n_steps, n_hits, hits, velocities, offsets, descriptors, extra"
)


def default_data_dir() -> Path:
    """``$SJTUI_DATA_DIR`` if set, else ``platformdirs.user_data_dir("sjtui")``."""
    override = os.environ.get("SJTUI_DATA_DIR")
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_data_dir("sjtui"))


def encode_vho(groove: Groove) -> tuple[bytes, bytes, bytes, int]:
    """``(hits, velocities, offsets, n_hits)`` blobs of a groove (see the module docstring)."""
    hits = groove.hits
    flat = hits.reshape(-1)
    packed = np.packbits(flat).tobytes()
    velocities = np.clip(np.rint(groove.velocities[hits] * 127.0), 0, 127).astype(np.uint8).tobytes()
    offsets = np.clip(np.rint(groove.offsets[hits] * OFFSET_SCALE), -128, 127).astype(np.int8).tobytes()
    return packed, velocities, offsets, int(np.count_nonzero(flat))


def decode_vho(n_steps: int, hits_blob: bytes, velocities_blob: bytes, offsets_blob: bytes):
    """Dense ``(n_steps, n_voices)`` hits, velocities, offsets from the blobs."""
    n_cells = n_steps * N_VOICES
    hits = np.unpackbits(np.frombuffer(hits_blob, dtype=np.uint8), count=n_cells).astype(bool).reshape(n_steps, N_VOICES)
    velocities = np.zeros((n_steps, N_VOICES), dtype=np.float32)
    offsets = np.zeros((n_steps, N_VOICES), dtype=np.float32)
    velocities[hits] = np.frombuffer(velocities_blob, dtype=np.uint8) / np.float32(127.0)
    offsets[hits] = np.frombuffer(offsets_blob, dtype=np.int8) / np.float32(OFFSET_SCALE)
    return hits, velocities, offsets


def _key_path(groove: Groove) -> str:
    path = groove.source_path or groove.name
    if groove.source == "builtin":  # several grooves per .groove file, each its own key
        return f"{path}#{groove.name}"
    return path


@dataclass
class GrooveLibrary:
    """Every groove of the store in contiguous arrays, for a jam.

    Metadata arrays have shape ``(n_grooves,)``; the hits of all grooves are
    one list of events in CSR form: the events of groove ``i`` are
    ``event_*[event_start[i]:event_start[i + 1]]``, sorted by step then voice.
    ``descriptors``: ``(n_grooves, N_DESCRIPTORS)`` float32; ``embeddings``:
    ``(n_grooves, dim)`` float32 for ``embedding_model`` (NaN rows where the
    model has not embedded a groove yet), or None.
    """

    ids: np.ndarray
    names: list[str]
    sources: np.ndarray
    styles: np.ndarray
    kinds: np.ndarray
    splits: np.ndarray
    meters: np.ndarray
    bpm: np.ndarray
    bars: np.ndarray
    n_steps: np.ndarray
    event_start: np.ndarray
    event_step: np.ndarray
    event_voice: np.ndarray
    event_velocity: np.ndarray
    event_offset: np.ndarray
    descriptors: np.ndarray
    embeddings: np.ndarray | None = None
    embedding_model: str | None = None
    _index_of_id: dict = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return int(self.ids.size)

    def index_of(self, groove_id: int) -> int:
        if not self._index_of_id:
            self._index_of_id = {int(g): i for i, g in enumerate(self.ids.tolist())}
        try:
            return self._index_of_id[int(groove_id)]
        except KeyError:
            raise GrooveError(f"no groove with id {groove_id} in the library; `sjtui grooves list` shows the ids") from None

    def select(
        self, *, style: str | None = None, kind: str | None = None, meter: str | None = None,
        source: str | None = None, split: str | None = None,
    ) -> np.ndarray:  # fmt: skip
        """Row indices ``(n,)`` of the grooves matching every given filter (style case-insensitive)."""
        mask = np.ones(len(self), dtype=bool)
        if style is not None:
            mask &= np.char.lower(self.styles.astype(str)) == style.lower()
        for values, wanted in ((self.kinds, kind), (self.meters, meter), (self.sources, source), (self.splits, split)):
            if wanted is not None:
                mask &= values == wanted
        return np.flatnonzero(mask)

    def groove(self, index: int) -> Groove:
        """The dense :class:`Groove` at row ``index``."""
        n_steps = int(self.n_steps[index])
        events = slice(int(self.event_start[index]), int(self.event_start[index + 1]))
        hits = np.zeros((n_steps, N_VOICES), dtype=bool)
        velocities = np.zeros((n_steps, N_VOICES), dtype=np.float32)
        offsets = np.zeros((n_steps, N_VOICES), dtype=np.float32)
        steps, voices = self.event_step[events], self.event_voice[events]
        hits[steps, voices] = True
        velocities[steps, voices] = self.event_velocity[events]
        offsets[steps, voices] = self.event_offset[events]
        return Groove(
            hits,
            velocities,
            offsets,
            meter=parse_meter(str(self.meters[index])),
            bpm=float(self.bpm[index]),
            name=self.names[index],
            source=str(self.sources[index]),
            style=str(self.styles[index]),
            kind=str(self.kinds[index]),
            split=(str(self.splits[index]) or None),
        )


class GrooveStore:
    """The SQLite groove library. Use as a context manager or call :meth:`close`.

    ``path``: the database file or a folder to hold ``grooves.sqlite``
    (default :func:`default_data_dir`). ``builtin``: import the built-in
    library when it changed (default True).
    """

    def __init__(self, path: str | Path | None = None, *, builtin: bool = True) -> None:
        path = Path(path) if path is not None else default_data_dir()
        if path.suffix not in (".sqlite", ".db", ".sqlite3"):
            path = path / DB_FILENAME
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(str(path), timeout=30.0)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.execute("PRAGMA foreign_keys=ON")
            with self.conn:
                self.conn.executescript(_SCHEMA)
                self.conn.execute(
                    "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
                )
        except (OSError, sqlite3.Error) as error:
            raise GrooveError(
                f"cannot open the groove library at {path}: {error}; check the folder's permissions "
                "or set SJTUI_DATA_DIR to a writable folder"
            ) from None
        self.path = path
        self.builtin_error: str | None = None
        self.builtin_report = None
        if builtin:
            self.sync_builtin()

    # ------------------------------------------------------------------ basics
    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "GrooveStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def count(self, source: str | None = None) -> int:
        if source is None:
            return self.conn.execute("SELECT COUNT(*) FROM grooves").fetchone()[0]
        return self.conn.execute("SELECT COUNT(*) FROM grooves WHERE source = ?", (source,)).fetchone()[0]

    def get_meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    # ------------------------------------------------------------------ writing
    @staticmethod
    def _row(groove: Groove, descriptors: np.ndarray | None = None) -> tuple:
        hits, velocities, offsets, n_hits = encode_vho(groove)
        if descriptors is None:
            descriptors = groove_descriptors(groove)
        descriptors = np.asarray(descriptors, dtype=np.float32).tobytes()
        extra = json.dumps(groove.extra, default=str, sort_keys=True)
        return (
            groove.source,
            _key_path(groove),
            int(groove.start_bar),
            int(groove.bars),
            groove.name,
            groove.style or "unknown",
            float(groove.bpm),
            str(groove.meter),
            groove.kind,
            groove.split,
            groove.drummer,
            groove.session,
            int(groove.n_steps),
            n_hits,
            hits,
            velocities,
            offsets,
            descriptors,
            extra,
        )

    def file_unchanged(self, source: str, source_path: str, sha1: str) -> bool:
        """True when this file was imported before with the same content."""
        row = self.conn.execute(
            "SELECT sha1 FROM files WHERE source = ? AND source_path = ?", (source, source_path)
        ).fetchone()
        return row is not None and row[0] == sha1

    def add_file_grooves(self, source: str, source_path: str, sha1: str | None, grooves: list[Groove]) -> tuple[int, int]:
        """Store the grooves of one file in one transaction; returns ``(added, already_present)``.

        When the file was imported before with other content, its old grooves
        are replaced. A failure rolls back this file only.
        """
        vectors = grooves_descriptors(grooves)  # batched; computed before the transaction opens
        rows = [self._row(groove, vector) for groove, vector in zip(grooves, vectors)]
        with self.conn:
            if sha1 is not None:
                previous = self.conn.execute(
                    "SELECT sha1 FROM files WHERE source = ? AND source_path = ?", (source, source_path)
                ).fetchone()
                if previous is not None and previous[0] != sha1:
                    self.conn.execute(
                        "DELETE FROM grooves WHERE source = ? AND (source_path = ? OR source_path LIKE ? ESCAPE '\\')",
                        (source, source_path, _like_prefix(source_path)),
                    )
            before = self.conn.total_changes
            self.conn.executemany(
                "INSERT OR IGNORE INTO grooves (source, source_path, start_bar, bars, name, style, bpm, meter, kind, "
                "split, drummer, session, n_steps, n_hits, hits, velocities, offsets, descriptors, extra) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            added = self.conn.total_changes - before
            if sha1 is not None:
                self.conn.execute(
                    "INSERT OR REPLACE INTO files (source, source_path, sha1, n_grooves) VALUES (?, ?, ?, ?)",
                    (source, source_path, sha1, len(rows)),
                )
        return added, len(rows) - added

    def add_grooves(self, grooves: list[Groove]) -> tuple[int, int]:
        """Store grooves that do not come from a file (one transaction); ``(added, already_present)``."""
        if not grooves:
            return 0, 0
        return self.add_file_grooves(grooves[0].source, "", None, grooves)

    def delete_source(self, source: str) -> int:
        with self.conn:
            deleted = self.conn.execute("DELETE FROM grooves WHERE source = ?", (source,)).rowcount
            self.conn.execute("DELETE FROM files WHERE source = ?", (source,))
        return deleted

    # ------------------------------------------------------------------ built-in library
    def sync_builtin(self, directory: str | Path | None = None) -> bool:
        """Import the built-in library if its files changed; returns True when it (re)imported.

        The hash covers every ``*.groove`` file and the parser's source, so a
        parser change re-imports too. Built-in grooves no longer in the files
        are removed; changed ones lose their stale embeddings. Problems are
        kept in :attr:`builtin_error` (the store still opens).
        """
        try:
            from sjtui.grooves import textgrid
        except ImportError as error:  # pragma: no cover - the parser is part of the package
            self.builtin_error = f"built-in grooves unavailable: {error}"
            return False
        folder = Path(directory) if directory is not None else textgrid.BUILTIN_GROOVES_DIR
        if not folder.is_dir():
            self.builtin_error = f"built-in groove folder {folder} is missing"
            return False
        digest = hashlib.sha1(Path(textgrid.__file__).read_bytes())
        for file in sorted(folder.rglob("*.groove")):
            digest.update(file.relative_to(folder).as_posix().encode())
            digest.update(b"\0")
            digest.update(file.read_bytes())
        digest_hex = digest.hexdigest()
        if self.get_meta("builtin_hash") == digest_hex:
            return False
        try:
            grooves = textgrid.load_directory(folder, source="builtin")
        except GrooveError as error:
            self.builtin_error = f"built-in grooves did not load: {error}"
            return False
        rows = [self._row(groove) for groove in grooves]
        keys = {(row[1], row[2], row[3]) for row in rows}
        with self.conn:
            existing = self.conn.execute(
                "SELECT id, source_path, start_bar, bars, hits, velocities, offsets FROM grooves WHERE source = 'builtin'"
            ).fetchall()
            by_key = {(r[1], r[2], r[3]): r for r in existing}
            stale = [r[0] for key, r in by_key.items() if key not in keys]
            for row in rows:
                old = by_key.get((row[1], row[2], row[3]))
                if old is not None and tuple(old[4:7]) != (row[14], row[15], row[16]):
                    stale.append(old[0])  # content changed: replace the row, which drops its embeddings
            self.conn.executemany("DELETE FROM grooves WHERE id = ?", [(i,) for i in stale])
            self.conn.executemany(
                "INSERT INTO grooves (source, source_path, start_bar, bars, name, style, bpm, meter, kind, "
                "split, drummer, session, n_steps, n_hits, hits, velocities, offsets, descriptors, extra) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (source, source_path, start_bar, bars) DO UPDATE SET name = excluded.name, "
                "style = excluded.style, bpm = excluded.bpm, meter = excluded.meter, kind = excluded.kind, "
                "descriptors = excluded.descriptors, extra = excluded.extra",
                rows,
            )
            self.conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('builtin_hash', ?)", (digest_hex,))
        self.builtin_error = None
        return True

    # ------------------------------------------------------------------ reading
    def list_rows(self, style: str | None = None, source: str | None = None, kind: str | None = None) -> list[dict]:
        """Metadata of the grooves (no VHO), ordered by id; filters are exact, style case-insensitive."""
        sql = (
            "SELECT id, source, name, style, bpm, meter, kind, split, bars, drummer, session, source_path, "
            "start_bar, n_hits FROM grooves"
        )
        clauses, params = [], []
        if style:
            clauses.append("lower(style) = lower(?)")
            params.append(style)
        if source:
            clauses.append("source = ?")
            params.append(source)
        if kind:
            clauses.append("kind = ?")
            params.append(kind)
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY id"
        names = (
            "id", "source", "name", "style", "bpm", "meter", "kind", "split", "bars",
            "drummer", "session", "source_path", "start_bar", "n_hits",
        )  # fmt: skip
        return [dict(zip(names, row)) for row in self.conn.execute(sql, params)]

    def get(self, groove_id: int) -> Groove:
        """One groove by id; raises :class:`GrooveError` when there is none."""
        row = self.conn.execute(f"SELECT {_COLUMNS} FROM grooves WHERE id = ?", (int(groove_id),)).fetchone()
        if row is None:
            raise GrooveError(f"no groove with id {groove_id}; `sjtui grooves list` shows the ids")
        return self._groove_from_row(row)

    @staticmethod
    def _groove_from_row(row) -> Groove:
        (gid, source, source_path, start_bar, bars, name, style, bpm, meter, kind, split, drummer, session,
         n_steps, _n_hits, hits_b, vel_b, off_b, desc_b, extra) = row  # fmt: skip
        hits, velocities, offsets = decode_vho(n_steps, hits_b, vel_b, off_b)
        extra = json.loads(extra)
        extra["id"] = gid
        extra["descriptors"] = np.frombuffer(desc_b, dtype=np.float32).copy()
        if source == "builtin" and "#" in source_path:
            source_path = source_path.rsplit("#", 1)[0]
        return Groove(
            hits, velocities, offsets, meter=parse_meter(meter), bpm=bpm, name=name, source=source, style=style,
            kind=kind, split=split, drummer=drummer, session=session, source_path=source_path,
            start_bar=start_bar, extra=extra,
        )  # fmt: skip

    def load_library(self, embedding_model: str | None = None) -> GrooveLibrary:
        """Every groove in contiguous arrays (see :class:`GrooveLibrary`)."""
        rows = self.conn.execute(
            "SELECT id, source, name, style, kind, coalesce(split, ''), meter, bpm, bars, n_steps, n_hits, "
            "hits, velocities, offsets, descriptors FROM grooves ORDER BY id"
        ).fetchall()
        n = len(rows)
        if n == 0:
            empty = np.zeros(0)
            return GrooveLibrary(
                ids=empty.astype(np.int64), names=[], sources=empty.astype(str), styles=empty.astype(str),
                kinds=empty.astype(str), splits=empty.astype(str), meters=empty.astype(str),
                bpm=empty.astype(np.float32), bars=empty.astype(np.int32), n_steps=empty.astype(np.int32),
                event_start=np.zeros(1, np.int64), event_step=empty.astype(np.int32),
                event_voice=empty.astype(np.int8), event_velocity=empty.astype(np.float32),
                event_offset=empty.astype(np.float32), descriptors=np.zeros((0, N_DESCRIPTORS), np.float32),
            )  # fmt: skip
        columns = list(zip(*rows))
        ids = np.fromiter(columns[0], dtype=np.int64, count=n)
        n_steps = np.fromiter(columns[9], dtype=np.int64, count=n)
        n_hits = np.fromiter(columns[10], dtype=np.int64, count=n)
        # hits: each groove's bitmap is padded to whole bytes; padding bits are 0, so the set bits
        # of the concatenation are exactly the hits, in groove order then row-major order
        bitmap_bytes = (n_steps * N_VOICES + 7) // 8
        byte_start = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(bitmap_bytes, out=byte_start[1:])
        bits = np.unpackbits(np.frombuffer(b"".join(columns[11]), dtype=np.uint8))
        positions = np.flatnonzero(bits)
        event_start = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(n_hits, out=event_start[1:])
        if positions.size != event_start[-1]:
            raise GrooveError(f"the groove library at {self.path} is damaged (hit counts disagree); re-import it")
        groove_of_event = np.repeat(np.arange(n), n_hits)
        cell = positions - byte_start[groove_of_event] * 8
        event_step = (cell // N_VOICES).astype(np.int32)
        event_voice = (cell % N_VOICES).astype(np.int8)
        event_velocity = np.frombuffer(b"".join(columns[12]), dtype=np.uint8) / np.float32(127.0)
        event_offset = np.frombuffer(b"".join(columns[13]), dtype=np.int8) / np.float32(OFFSET_SCALE)
        descriptors = np.frombuffer(b"".join(columns[14]), dtype=np.float32).reshape(n, N_DESCRIPTORS)
        library = GrooveLibrary(
            ids=ids,
            names=list(columns[2]),
            sources=np.array(columns[1]),
            styles=np.array(columns[3]),
            kinds=np.array(columns[4]),
            splits=np.array(columns[5]),
            meters=np.array(columns[6]),
            bpm=np.fromiter(columns[7], dtype=np.float32, count=n),
            bars=np.fromiter(columns[8], dtype=np.int32, count=n),
            n_steps=n_steps.astype(np.int32),
            event_start=event_start,
            event_step=event_step,
            event_voice=event_voice,
            event_velocity=event_velocity.astype(np.float32),
            event_offset=event_offset.astype(np.float32),
            descriptors=descriptors.copy(),
        )
        if embedding_model is not None:
            library.embeddings = self._embedding_matrix(embedding_model, library)
            library.embedding_model = embedding_model
        return library

    # ------------------------------------------------------------------ embeddings
    def set_embeddings(self, model: str, groove_ids, vectors: np.ndarray) -> None:
        """Store ``vectors`` ``(n, dim)`` float32 for ``groove_ids`` ``(n,)`` under ``model`` (name/version)."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        groove_ids = np.asarray(groove_ids, dtype=np.int64)
        if vectors.ndim != 2 or vectors.shape[0] != groove_ids.size:
            raise GrooveError(
                f"embeddings for {model!r}: expected ({groove_ids.size}, dim) vectors, got {vectors.shape}"
            )
        dim = vectors.shape[1]
        with self.conn:
            self.conn.executemany(
                "INSERT OR REPLACE INTO embeddings (groove_id, model, dim, vector) VALUES (?, ?, ?, ?)",
                [(int(g), model, dim, v.tobytes()) for g, v in zip(groove_ids.tolist(), vectors)],
            )

    def embeddings(self, model: str) -> tuple[np.ndarray, np.ndarray]:
        """``(groove_ids (n,), vectors (n, dim))`` stored for ``model``, ordered by groove id."""
        rows = self.conn.execute(
            "SELECT groove_id, dim, vector FROM embeddings WHERE model = ? ORDER BY groove_id", (model,)
        ).fetchall()
        if not rows:
            return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
        dims = {row[1] for row in rows}
        if len(dims) != 1:
            raise GrooveError(f"embeddings of {model!r} have several sizes {sorted(dims)}; recompute them")
        ids = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
        vectors = np.frombuffer(b"".join(row[2] for row in rows), dtype=np.float32).reshape(len(rows), dims.pop())
        return ids, vectors.copy()

    def fill_embeddings(self, encoder, *, max_bars: int = 4, max_steps_per_bar: int = 60, batch: int = 256,
                        progress=None) -> int:  # fmt: skip
        """Embed the grooves that have no embedding under ``encoder.groove_encoder_id``; returns how many.

        ``encoder``: a :class:`sjtui.model.runtime.EncoderPair` (duck-typed:
        ``groove_encoder_id`` and ``embed_grooves(grooves, descriptors)``).
        The key is the groove encoder's sha256, so a new model gets its own
        embeddings (the old ones stay for the old model) and a changed
        encoder file never reuses stale vectors. Grooves the encoder cannot
        take (more than ``max_bars`` bars, longer bars than
        ``max_steps_per_bar``) are skipped. ``progress(done, total)``.
        """
        model = str(encoder.groove_encoder_id)
        rows = self.conn.execute(
            f"SELECT {_COLUMNS} FROM grooves g WHERE bars <= ? AND NOT EXISTS "
            "(SELECT 1 FROM embeddings e WHERE e.groove_id = g.id AND e.model = ?) ORDER BY id",
            (max_bars, model),
        ).fetchall()
        grooves = [self._groove_from_row(row) for row in rows]
        grooves = [g for g in grooves if g.meter.steps_per_bar <= max_steps_per_bar]
        for start in range(0, len(grooves), batch):
            part = grooves[start : start + batch]
            vectors = encoder.embed_grooves(part, np.stack([g.extra["descriptors"] for g in part]))
            self.set_embeddings(model, [g.extra["id"] for g in part], vectors)
            if progress is not None:
                progress(start + len(part), len(grooves))
        return len(grooves)

    def _embedding_matrix(self, model: str, library: GrooveLibrary) -> np.ndarray:
        ids, vectors = self.embeddings(model)
        dim = vectors.shape[1] if vectors.size else 0
        matrix = np.full((len(library), dim), np.nan, dtype=np.float32)
        if ids.size:
            rows = np.searchsorted(library.ids, ids)
            valid = (rows < library.ids.size) & (library.ids[np.minimum(rows, library.ids.size - 1)] == ids)
            matrix[rows[valid]] = vectors[valid]
        return matrix


def _like_prefix(path: str) -> str:
    escaped = path.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "#%"


def sha1_of(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


__all__ = [
    "DESCRIPTOR_NAMES",
    "GrooveLibrary",
    "GrooveStore",
    "decode_vho",
    "default_data_dir",
    "encode_vho",
    "sha1_of",
]
