"""Export and import of ratings: JSONL or CSV plus the clips, to back up, merge and share.

An export folder holds::

    manifest.json        {"format": "sjtui-labels", "version": 1, "ratings_file": ..., counts, time}
    ratings.jsonl        one rating per line (or ratings.csv, one per record)
    clips/<hash>.flac    every clip a rating refers to

Each row is self-contained: the rating, its groove key and the metadata of
its clip (sample rate, duration, source, origin, tempo, meter, and the
fingerprint as base64 of :mod:`sjtui.labels.fingerprint_blob`), so a row
plus its clip file is enough to rebuild both database rows. Columns:
:data:`COLUMNS`. In CSV, ``clip_origin`` is a JSON string and an empty
field means "none" for the optional columns (``groove_id``,
``groove_name``, ``model_version``, ``clip_bpm``, ``clip_meter``,
``clip_fingerprint``); the local row id is not exported.

Import (:func:`import_labels`) merges into a store and never stops at a bad
row; the report lists each problem with its line number:

- malformed rows (not JSON, wrong field count, a missing or invalid field):
  reported, skipped;
- duplicates (same clip hash + groove key + rater + created_at, with the
  same rating): counted, skipped, so importing twice adds nothing; the same
  identity with a *different* rating or note is a conflict: reported,
  skipped, the stored rating kept;
- a clip file that is missing, unreadable or whose samples do not match its
  hash: the rating is reported and **skipped** (a rating without its audio
  cannot train anything, and a row pointing at no file would break the
  store's promise that every clip row has its file). A clip the store
  already has is used even when the export lacks the file;
- a groove that is not in the local groove library: the rating is
  **kept** and reported (``missing_grooves``). The groove key is stable, so
  the rating counts again as soon as that groove is imported (for example
  the Groove MIDI Dataset on this machine); training skips ratings whose
  groove it cannot find. With a groove library, ``groove_id`` is set to the
  local id (None when missing); without one, the exporter's id is kept as a
  hint.

Clip files are copied atomically and before the transaction that inserts
the rows referring to them; rows are committed in batches of
:data:`IMPORT_BATCH`, so an interrupted import keeps what it committed and
running it again adds the rest.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from sjtui.labels.clips import CLIP_SUFFIX, file_hash, is_clip_hash, write_bytes_atomic
from sjtui.labels.errors import LabelError
from sjtui.labels.fingerprint_blob import decode_fingerprint
from sjtui.labels.store import (
    CLIP_SOURCES,
    STRATEGIES,
    GrooveKey,
    LabelStore,
    groove_key_index,
    now_utc,
    parse_timestamp,
)

EXPORT_FORMAT = "sjtui-labels"
EXPORT_VERSION = 1
MANIFEST = "manifest.json"
FORMATS = ("jsonl", "csv")
IMPORT_BATCH = 500
COLUMNS = (
    "clip_hash", "clip_sample_rate", "clip_n_channels", "clip_duration_s", "clip_source", "clip_origin",
    "clip_bpm", "clip_meter", "clip_fingerprint", "clip_created_at",
    "groove_source", "groove_path", "groove_start_bar", "groove_bars", "groove_id", "groove_name",
    "rating", "note", "model_version", "strategy", "rater", "created_at",
)  # fmt: skip
_OPTIONAL = ("groove_id", "groove_name", "model_version", "clip_bpm", "clip_meter", "clip_fingerprint")
_REQUIRED = tuple(c for c in COLUMNS if c not in _OPTIONAL and c != "note")


@dataclass
class ExportReport:
    directory: Path
    ratings_file: Path
    ratings: int
    clips: int
    clips_copied: int
    missing_clip_files: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "directory": str(self.directory),
            "ratings_file": str(self.ratings_file),
            "ratings": self.ratings,
            "clips": self.clips,
            "clips_copied": self.clips_copied,
            "missing_clip_files": self.missing_clip_files,
        }


@dataclass
class ImportProblem:
    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass
class ImportReport:
    source: Path
    rows: int = 0
    added: int = 0
    duplicates: int = 0
    clips_added: int = 0
    problems: list[ImportProblem] = field(default_factory=list)  # rows skipped, with the reason
    missing_grooves: list[ImportProblem] = field(default_factory=list)  # rows kept, groove not in the library

    @property
    def skipped(self) -> int:
        return len(self.problems)

    def as_dict(self) -> dict:
        return {
            "source": str(self.source),
            "rows": self.rows,
            "added": self.added,
            "duplicates": self.duplicates,
            "skipped": self.skipped,
            "clips_added": self.clips_added,
            "problems": [{"line": p.line, "reason": p.reason} for p in self.problems],
            "missing_grooves": [{"line": p.line, "reason": p.reason} for p in self.missing_grooves],
        }

    def summary(self) -> str:
        lines = [
            (
                f"{self.source}: {self.rows} rows, {self.added} ratings added, {self.duplicates} already present, "
                f"{self.skipped} skipped, {self.clips_added} clips added"
            )
        ]
        lines += [f"  skipped {p}" for p in self.problems]
        if self.missing_grooves:
            lines.append(
                f"  kept {len(self.missing_grooves)} rating(s) whose groove is not in the library "
                "(import that groove library and they count again):"
            )
            lines += [f"    {p}" for p in self.missing_grooves]
        return "\n".join(lines)


# ---------------------------------------------------------------- export
def _export_row(row: dict) -> dict:
    out = {name: row[name] for name in COLUMNS if name in row}
    out["clip_origin"] = json.loads(row["clip_origin"])
    blob = row["clip_fingerprint"]
    out["clip_fingerprint"] = None if blob is None else base64.b64encode(blob).decode("ascii")
    return out


def _csv_value(name: str, value) -> str:
    if value is None:
        return ""
    if name == "clip_origin":
        return json.dumps(value, sort_keys=True)
    return str(value) if not isinstance(value, float) else repr(value)


def export_labels(store: LabelStore, directory: str | Path, fmt: str = "jsonl") -> ExportReport:
    """Write every rating of ``store`` and its clips to ``directory`` (created if needed)."""
    if fmt not in FORMATS:
        raise LabelError(f"export format {fmt!r} is unknown; use {' or '.join(FORMATS)}")
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise LabelError(f"{directory} is a file; give a folder to export into")
    clips_out = directory / "clips"
    try:
        clips_out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise LabelError(
            f"cannot create the export folder {clips_out}: {error.strerror}; choose a writable folder"
        ) from None
    rows = [_export_row(row) for row in store.rating_rows()]
    missing: list[str] = []
    copied = 0
    hashes = sorted({row["clip_hash"] for row in rows})
    for clip_hash in hashes:
        source = store.clip_path(clip_hash)
        target = clips_out / f"{clip_hash}{CLIP_SUFFIX}"
        if not source.is_file():
            missing.append(clip_hash)
            continue
        if target.is_file() and target.stat().st_size == source.stat().st_size:
            continue
        write_bytes_atomic(target, source.read_bytes(), f"exporting clip {clip_hash[:12]} to {clips_out}")
        copied += 1
    ratings_file = directory / f"ratings.{fmt}"
    if fmt == "jsonl":
        text = "".join(json.dumps(row, sort_keys=True, ensure_ascii=False) + "\n" for row in rows)
    else:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(COLUMNS)
        for row in rows:
            writer.writerow([_csv_value(name, row.get(name)) for name in COLUMNS])
        text = buffer.getvalue()
    write_bytes_atomic(ratings_file, text.encode("utf-8"), f"writing {ratings_file}")
    other = directory / f"ratings.{'csv' if fmt == 'jsonl' else 'jsonl'}"
    if other.is_file():  # an older export in the other format would make the folder ambiguous
        other.unlink()
    manifest = {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "ratings_file": ratings_file.name,
        "ratings": len(rows),
        "clips": len(hashes) - len(missing),
        "exported_at": now_utc(),
    }
    write_bytes_atomic(
        directory / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode(), f"writing {MANIFEST}"
    )
    return ExportReport(directory, ratings_file, len(rows), len(hashes) - len(missing), copied, missing)


# ---------------------------------------------------------------- reading rows
def _ratings_file(source: Path) -> Path:
    if source.is_file():
        return source
    if not source.is_dir():
        raise LabelError(f"{source} does not exist; give an export folder or its ratings.jsonl / ratings.csv")
    manifest = source / MANIFEST
    if manifest.is_file():
        try:
            info = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise LabelError(f"{manifest} cannot be read ({error}); pass the ratings file itself") from None
        if not isinstance(info, dict) or info.get("format") != EXPORT_FORMAT:
            raise LabelError(f"{manifest} is not an sjtui labels export (format {info.get('format')!r})")
        if int(info.get("version", 0)) > EXPORT_VERSION:
            raise LabelError(
                f"{source} was exported by a newer sjtui (export version {info.get('version')}, this one reads "
                f"{EXPORT_VERSION}); update sjtui to import it"
            )
        name = info.get("ratings_file")
        if isinstance(name, str) and (source / name).is_file() and "/" not in name:
            return source / name
    found = [source / f"ratings.{fmt}" for fmt in FORMATS if (source / f"ratings.{fmt}").is_file()]
    if len(found) != 1:
        raise LabelError(
            f"{source} holds {'no' if not found else 'both'} ratings.jsonl / ratings.csv; "
            "give the ratings file to import"
        )
    return found[0]


def _format_of(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix == ".csv":
        return "csv"
    raise LabelError(f"{path}: cannot tell the format from {suffix!r}; name it .jsonl or .csv")


def _read_rows(path: Path, fmt: str):
    """Yield ``(line_number, raw dict or None, problem or None)``."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise LabelError(f"{path} is not UTF-8 text ({error}); export it again") from None
    except OSError as error:
        raise LabelError(f"cannot read {path}: {error.strerror}") from None
    if fmt == "jsonl":
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as error:
                yield number, None, f"not JSON ({error.msg} at column {error.colno})"
                continue
            if not isinstance(raw, dict):
                yield number, None, f"a JSON {type(raw).__name__}, not an object"
                continue
            yield number, raw, None
        return
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as error:
        raise LabelError(f"{path}: the CSV header cannot be read ({error})") from None
    missing = [c for c in _REQUIRED if c not in header]
    if missing:
        raise LabelError(
            f"{path}: the CSV header lacks the column(s) {', '.join(missing)}; it is not an sjtui labels export"
        )
    while True:
        start = reader.line_num + 1
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            yield start, None, f"CSV error: {error}"
            continue
        if not record or record == [""]:
            continue
        if len(record) != len(header):
            yield start, None, f"{len(record)} fields, the header has {len(header)}"
            continue
        raw = dict(zip(header, record))
        for name in _OPTIONAL:
            if raw.get(name) == "":
                raw[name] = None
        yield start, raw, None


def _int(raw: dict, name: str, low: int | None = None, high: int | None = None, optional: bool = False):
    value = raw.get(name)
    if value is None:
        if optional:
            return None
        raise ValueError(f"{name} is missing")
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} {value!r} is not a whole number")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} {value} is outside {low}..{high if high is not None else ''}")
    return value


def _float(raw: dict, name: str, optional: bool = False):
    value = raw.get(name)
    if value is None:
        if optional:
            return None
        raise ValueError(f"{name} is missing")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} {value!r} is not a number") from None
    if isinstance(value, bool) or not math.isfinite(number):
        raise ValueError(f"{name} {value!r} is not a finite number")
    return number


def _text(raw: dict, name: str, optional: bool = False, allow_empty: bool = False):
    value = raw.get(name)
    if value is None:
        if optional:
            return None
        raise ValueError(f"{name} is missing")
    if not isinstance(value, str) or (not allow_empty and not value.strip()):
        raise ValueError(f"{name} {value!r} must be non-empty text")
    return value


def _time(raw: dict, name: str) -> str:
    value = _text(raw, name)
    try:
        return parse_timestamp(value)
    except ValueError:
        raise ValueError(f"{name} {value!r} is not an ISO 8601 time") from None


def _parse_row(raw: dict, fmt: str) -> dict:
    """A validated row; ``ValueError`` with the reason otherwise."""
    from sjtui.meter import parse_meter

    clip_hash = raw.get("clip_hash")
    if not is_clip_hash(clip_hash):
        raise ValueError(f"clip_hash {clip_hash!r} is not a 64-digit lowercase sha256")
    strategy = _text(raw, "strategy")
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy {strategy!r} is not one of {', '.join(STRATEGIES)}")
    clip_source = _text(raw, "clip_source")
    if clip_source not in CLIP_SOURCES:
        raise ValueError(f"clip_source {clip_source!r} is not one of {', '.join(CLIP_SOURCES)}")
    origin = raw.get("clip_origin", {})
    if fmt == "csv" and isinstance(origin, str):
        try:
            origin = json.loads(origin) if origin else {}
        except json.JSONDecodeError:
            raise ValueError(f"clip_origin {origin[:40]!r} is not JSON") from None
    if not isinstance(origin, dict):
        raise ValueError("clip_origin must be a JSON object")
    meter = _text(raw, "clip_meter", optional=True)
    if meter is not None:
        try:
            meter = str(parse_meter(meter))
        except ValueError as error:
            raise ValueError(f"clip_meter: {error}") from None
    blob = None
    encoded = _text(raw, "clip_fingerprint", optional=True)
    if encoded is not None:
        try:
            blob = base64.b64decode(encoded, validate=True)
        except (ValueError, TypeError):
            raise ValueError("clip_fingerprint is not base64") from None
        try:
            decode_fingerprint(blob)
        except LabelError as error:
            raise ValueError(str(error)) from None
    note = raw.get("note") or ""
    if not isinstance(note, str):
        raise ValueError(f"note {note!r} must be text")
    bpm = _float(raw, "clip_bpm", optional=True)
    if bpm is not None and not 20.0 <= bpm <= 400.0:
        raise ValueError(f"clip_bpm {bpm} is outside 20..400")
    duration = _float(raw, "clip_duration_s")
    if duration <= 0:
        raise ValueError(f"clip_duration_s {duration} must be positive")
    return {
        "clip_hash": clip_hash,
        "clip_sample_rate": _int(raw, "clip_sample_rate", 1000, 768000),
        "clip_n_channels": _int(raw, "clip_n_channels", 1, 64),
        "clip_duration_s": duration,
        "clip_source": clip_source,
        "clip_origin": origin,
        "clip_bpm": bpm,
        "clip_meter": meter,
        "clip_fingerprint": blob,
        "clip_created_at": _time(raw, "clip_created_at"),
        "groove": GrooveKey(
            _text(raw, "groove_source"),
            _text(raw, "groove_path"),
            _int(raw, "groove_start_bar", 0),
            _int(raw, "groove_bars", 1),
        ),
        "groove_id": _int(raw, "groove_id", optional=True),
        "groove_name": _text(raw, "groove_name", optional=True, allow_empty=True),
        "rating": _int(raw, "rating", 0, 5),
        "note": note,
        "model_version": _text(raw, "model_version", optional=True, allow_empty=True),
        "strategy": strategy,
        "rater": _text(raw, "rater"),
        "created_at": _time(raw, "created_at"),
    }


# ---------------------------------------------------------------- import
def import_labels(store: LabelStore, source: str | Path, groove_store=None) -> ImportReport:
    """Merge the ratings of an export folder or ratings file into ``store`` (see the module docstring)."""
    source = Path(source)
    ratings_file = _ratings_file(source)
    fmt = _format_of(ratings_file)
    clips_in = ratings_file.parent / "clips"
    report = ImportReport(source=ratings_file)
    index = groove_key_index(groove_store) if groove_store is not None else None
    have_clip = {row["hash"] for row in store.clip_rows() if store.clip_path(row["hash"]).is_file()}
    clip_checked: dict[str, str | None] = {}  # hash -> problem (None: usable)
    seen: set[tuple] = set()
    pending: list[tuple[int, dict]] = []

    def clip_problem(row: dict) -> str | None:
        clip_hash = row["clip_hash"]
        if clip_hash in have_clip:
            return None
        if clip_hash in clip_checked:
            return clip_checked[clip_hash]
        file = clips_in / f"{clip_hash}{CLIP_SUFFIX}"
        problem = None
        if not file.is_file():
            problem = f"clip file clips/{file.name} is missing, so the rating was skipped"
        else:
            try:
                actual = file_hash(file)
            except LabelError as error:
                actual, problem = (
                    None,
                    f"clip file clips/{file.name} cannot be read ({error}); rating skipped",
                )
            if problem is None and actual != clip_hash:
                problem = (
                    f"clip file clips/{file.name} holds other audio (hash {actual[:12]}...); rating skipped"
                )
            if problem is None:
                write_bytes_atomic(
                    store.clip_path(clip_hash), file.read_bytes(), f"importing clip {clip_hash[:12]}"
                )
        clip_checked[clip_hash] = problem
        return problem

    def flush() -> None:
        if not pending:
            return
        with store._write(f"importing ratings from {ratings_file}") as conn:
            for _line, row in pending:
                clip_hash = row["clip_hash"]
                if clip_hash not in have_clip:
                    cursor = conn.execute(
                        "INSERT OR IGNORE INTO clips (hash, path, sample_rate, n_channels, duration_s, source, origin, "
                        "bpm, meter, fingerprint, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (clip_hash, f"{clip_hash}{CLIP_SUFFIX}", row["clip_sample_rate"], row["clip_n_channels"],
                         row["clip_duration_s"], row["clip_source"], json.dumps(row["clip_origin"], sort_keys=True),
                         row["clip_bpm"], row["clip_meter"], row["clip_fingerprint"], row["clip_created_at"]),
                    )  # fmt: skip
                    report.clips_added += cursor.rowcount
                    have_clip.add(clip_hash)
                key = row["groove"]
                cursor = conn.execute(
                    "INSERT OR IGNORE INTO ratings (clip_hash, groove_source, groove_path, groove_start_bar, groove_bars, "
                    "groove_id, groove_name, rating, note, model_version, strategy, rater, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (clip_hash, key.source, key.path, key.start_bar, key.bars, row["groove_id"], row["groove_name"],
                     row["rating"], row["note"], row["model_version"], row["strategy"], row["rater"], row["created_at"]),
                )  # fmt: skip
                if cursor.rowcount:
                    report.added += 1
                else:  # written by another process since we looked
                    report.duplicates += 1
        pending.clear()

    for line, raw, problem in _read_rows(ratings_file, fmt):
        report.rows += 1
        if problem is not None:
            report.problems.append(ImportProblem(line, problem))
            continue
        try:
            row = _parse_row(raw, fmt)
        except ValueError as error:
            report.problems.append(ImportProblem(line, str(error)))
            continue
        key = row["groove"]
        identity = (
            row["clip_hash"],
            key.source,
            key.path,
            key.start_bar,
            key.bars,
            row["rater"],
            row["created_at"],
        )
        if identity in seen:
            report.duplicates += 1
            continue
        found_rows = store._select(
            "SELECT rating, note FROM ratings WHERE clip_hash = ? AND groove_source = ? AND groove_path = ? AND "
            "groove_start_bar = ? AND groove_bars = ? AND rater = ? AND created_at = ?",
            identity,
        )
        existing = found_rows[0] if found_rows else None
        if existing is not None:
            if tuple(existing) == (row["rating"], row["note"]):
                report.duplicates += 1
            else:
                report.problems.append(ImportProblem(
                    line, f"conflicts with the stored rating of the same pair, rater and time "
                          f"(stored {existing[0]}, file {row['rating']}); the stored one was kept"))  # fmt: skip
            continue
        problem = clip_problem(row)
        if problem is not None:
            report.problems.append(ImportProblem(line, problem))
            continue
        if index is not None:
            found = index.get(key)
            if found is None:
                report.missing_grooves.append(
                    ImportProblem(line, f"groove {key} is not in the groove library")
                )
                row["groove_id"] = None
            else:
                row["groove_id"] = found[0]
        seen.add(identity)
        pending.append((line, row))
        if len(pending) >= IMPORT_BATCH:
            flush()
    flush()
    return report


__all__ = ["COLUMNS", "ExportReport", "ImportProblem", "ImportReport", "export_labels", "import_labels"]
