"""The Groove MIDI Dataset (Gillick et al. 2019): import from its folder or zip, optional download.

Sources accepted by :func:`import_gmd`:

- a folder laid out like the official archive: ``info.csv`` at the root and
  ``drummerN/sessionM/ID_style_bpm_beat|fill_TS.mid`` below it;
- the official zip ``groove-v1.0.0-midionly.zip`` (members are read directly
  from the zip; its files sit under a top folder ``groove/``).

Every row of ``info.csv`` is one performance: beats are cut into 4-bar
windows (:mod:`sjtui.grooves.midi_import`), fills are kept whole with
``kind="fill"``. The style is the genre before the ``/`` of the csv's style
(``funk/purdieshuffle`` -> ``funk``; the full value is kept in
``extra["gmd_style"]``), the dataset's split (train / validation / test),
drummer and session are kept. A file whose tempo is missing or absurd uses
the BPM of info.csv; one whose time signature is missing uses the csv's.
"""

from __future__ import annotations

import csv
import hashlib
import io
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable

from sjtui.errors import GrooveError
from sjtui.grooves.midi_import import MidiImportError, read_grooves
from sjtui.grooves.report import ImportReport
from sjtui.meter import Meter

SOURCE = "gmd"
GMD_URL = "https://storage.googleapis.com/magentadata/datasets/groove/groove-v1.0.0-midionly.zip"
GMD_ZIP_NAME = "groove-v1.0.0-midionly.zip"
# Expected size and sha256 of the official zip. NOT verified by this project (no network here): they
# are the values TensorFlow Datasets records for this URL (tensorflow_datasets/url_checksums/groove.txt:
# "3260318  651cbc52..."). If Magenta ever re-publishes the archive, pass the new checksum with --sha256.
GMD_ZIP_SIZE = 3_260_318
GMD_ZIP_SHA256 = "651cbc524ffb891be1a3e46d89dc82a1cecb09a57c748c7b45b844c4841dcc1e"

INFO_COLUMNS = ("drummer", "session", "id", "style", "bpm", "beat_type", "time_signature", "midi_filename", "split")
SPLITS = ("train", "validation", "test")


@dataclass
class GmdRow:
    drummer: str
    session: str
    id: str
    style: str
    bpm: float
    beat_type: str
    meter: Meter
    midi_filename: str
    split: str

    @property
    def genre(self) -> str:
        return self.style.split("/", 1)[0] or "unknown"


class GmdArchive:
    """Read access to a GMD folder or zip: :attr:`rows` of info.csv and :meth:`read` of a member."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._zip: zipfile.ZipFile | None = None
        self._prefix = ""
        if self.path.is_dir():
            info = self.path / "info.csv"
            if not info.is_file():
                raise GrooveError(
                    f"{self.path} has no info.csv: it is not a Groove MIDI Dataset folder "
                    "(expected info.csv and drummerN/ folders, as in the official archive)"
                )
            try:
                text = info.read_text(encoding="utf-8")
            except OSError as error:
                raise GrooveError(f"cannot read {info}: {error}; check its permissions") from None
        elif self.path.is_file():
            try:
                self._zip = zipfile.ZipFile(self.path)
                names = [n for n in self._zip.namelist() if PurePosixPath(n).name == "info.csv"]
                if not names:
                    raise GrooveError(
                        f"{self.path} holds no info.csv: it is not the Groove MIDI Dataset zip "
                        f"({GMD_ZIP_NAME}); download it again"
                    )
                info_name = min(names, key=len)
                self._prefix = info_name[: -len("info.csv")]
                text = self._zip.read(info_name).decode("utf-8")
            except (zipfile.BadZipFile, EOFError, OSError) as error:
                raise GrooveError(
                    f"{self.path} is not a readable zip ({error}): the file is damaged or truncated; "
                    "download it again"
                ) from None
            except UnicodeDecodeError:
                raise GrooveError(f"{self.path}: info.csv is not UTF-8 text; this is not the GMD zip") from None
        else:
            raise GrooveError(f"{self.path} does not exist; give the GMD folder or {GMD_ZIP_NAME}")
        self.rows, self.bad_rows = _parse_info(text)

    def read(self, midi_filename: str) -> bytes:
        """The bytes of one MIDI file named as in info.csv; raises OSError / BadZipFile / KeyError."""
        if self._zip is not None:
            return self._zip.read(self._prefix + midi_filename)
        return (self.path / midi_filename).read_bytes()

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()

    def __enter__(self) -> "GmdArchive":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _parse_info(text: str) -> tuple[list[GmdRow], list[tuple[str, str]]]:
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in INFO_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise GrooveError(f"info.csv lacks the columns {missing}: it is not the Groove MIDI Dataset's info.csv")
    rows, bad = [], []
    for line_no, raw in enumerate(reader, start=2):
        label = raw.get("midi_filename") or f"info.csv line {line_no}"
        try:
            numerator, denominator = (int(p) for p in raw["time_signature"].split("-"))
            rows.append(
                GmdRow(
                    drummer=raw["drummer"],
                    session=raw["session"],
                    id=raw["id"],
                    style=raw["style"],
                    bpm=float(raw["bpm"]),
                    beat_type=raw["beat_type"],
                    meter=Meter(numerator, denominator),
                    midi_filename=raw["midi_filename"],
                    split=raw["split"],
                )
            )
        except (ValueError, TypeError, AttributeError, GrooveError) as error:
            bad.append((label, f"bad info.csv row {line_no}: {error}"))
    return rows, bad


def import_gmd(
    store,
    path: str | Path,
    *,
    progress: Callable[[int, int, str], None] | None = None,
    limit: int | None = None,
) -> ImportReport:
    """Import a GMD folder or zip into ``store``; one transaction per file.

    ``progress(done, total, midi_filename)`` is called after each file.
    ``limit`` imports only the first rows (for quick trials). Files that
    cannot be used are skipped and listed in the report with their reason.
    """
    from sjtui.grooves.store import sha1_of

    report = ImportReport(source=SOURCE)
    with GmdArchive(path) as archive:
        rows = archive.rows[:limit] if limit else archive.rows
        for label, reason in archive.bad_rows:
            report.skip(label, reason)
        total = len(rows)
        for done, row in enumerate(rows, start=1):
            report.files_seen += 1
            report.files_by_kind[row.beat_type] += 1
            try:
                _import_row(store, archive, row, report, sha1_of)
            except MidiImportError as error:
                report.skip(row.midi_filename, error.reason)
            except (OSError, KeyError, zipfile.BadZipFile, EOFError) as error:
                report.skip(row.midi_filename, f"cannot read from the archive: {error}")
            if progress is not None:
                progress(done, total, row.midi_filename)
        report.files_seen += len(archive.bad_rows)
    return report


def _import_row(store, archive: GmdArchive, row: GmdRow, report: ImportReport, sha1_of) -> None:
    if row.beat_type not in ("beat", "fill"):
        raise MidiImportError(row.midi_filename, f"beat_type {row.beat_type!r} is neither beat nor fill")
    data = archive.read(row.midi_filename)
    digest = sha1_of(data)
    if store.file_unchanged(SOURCE, row.midi_filename, digest):
        report.files_unchanged += 1
        n = store.conn.execute(
            "SELECT COUNT(*) FROM grooves WHERE source = ? AND source_path = ?", (SOURCE, row.midi_filename)
        ).fetchone()[0]
        report.grooves_existing += n
        report.windows[(row.genre, row.split, row.beat_type)] += n
        return
    grooves, performance = read_grooves(
        data,
        name=f"{row.drummer}/{PurePosixPath(row.midi_filename).stem}",
        source_name=SOURCE,
        kind=row.beat_type,
        fallback_bpm=row.bpm,
        fallback_meter=row.meter,
        path_label=row.midi_filename,
        style=row.genre,
        split=row.split,
        drummer=row.drummer,
        session=row.session,
        source_path=row.midi_filename,
        extra={"gmd_style": row.style, "gmd_id": row.id},
    )
    for groove in grooves:
        groove.extra = dict(groove.extra, bpm_from_file=performance.tempo_from_file)
    added, existing = store.add_file_grooves(SOURCE, row.midi_filename, digest, grooves)
    report.files_imported += 1
    report.grooves_added += added
    report.grooves_existing += existing
    report.windows[(row.genre, row.split, row.beat_type)] += len(grooves)


# ---------------------------------------------------------------------------- download


def sha256_of_file(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def download_gmd(
    dest_dir: str | Path,
    *,
    url: str = GMD_URL,
    sha256: str | None = GMD_ZIP_SHA256,
    size_bytes: int | None = GMD_ZIP_SIZE,
    console=None,
    timeout_s: float = 60.0,
) -> Path:
    """Download the GMD zip into ``dest_dir`` with a progress bar; verify size and sha256.

    An existing file with the right checksum is not downloaded again. The
    download goes to ``*.part`` and is renamed only once verified; a wrong
    size, a wrong checksum or a broken connection deletes it and raises
    :class:`GrooveError`. ``sha256=None`` skips the checksum (not advised).
    """
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / GMD_ZIP_NAME
    expected = sha256.lower() if sha256 else None
    if target.is_file() and expected is not None and sha256_of_file(target) == expected:
        return target
    part = target.with_name(target.name + ".part")
    console = console or Console(stderr=True)
    digest = hashlib.sha256()
    received = 0
    announced: int | None = None
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            length_header = response.headers.get("Content-Length")
            announced = int(length_header) if length_header and length_header.isdigit() else None
            total = announced if announced is not None else size_bytes
            columns = (
                TextColumn("[bold]GMD[/]"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn()
            )  # fmt: skip
            with open(part, "wb") as out, Progress(*columns, console=console, transient=True) as bar:
                task = bar.add_task("download", total=total)
                while chunk := response.read(1 << 16):
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    bar.update(task, completed=received)
    except (urllib.error.URLError, OSError, ValueError) as error:
        part.unlink(missing_ok=True)
        raise GrooveError(
            f"download of {url} failed after {received} bytes: {error}; check the connection and retry, "
            f"or download {GMD_ZIP_NAME} yourself and run `sjtui grooves import --gmd PATH`"
        ) from None
    except Exception as error:  # http.client.IncompleteRead and friends
        part.unlink(missing_ok=True)
        raise GrooveError(f"download of {url} broke off after {received} bytes ({error!r}); retry") from None
    if announced is not None and received != announced:
        part.unlink(missing_ok=True)
        raise GrooveError(
            f"download of {url} broke off after {received} of {announced} bytes; retry (the partial file was deleted)"
        )
    if size_bytes is not None and received != size_bytes:
        part.unlink(missing_ok=True)
        raise GrooveError(
            f"download of {url} has {received} bytes, expected {size_bytes}: truncated or not the GMD zip; "
            "retry, or pass --sha256 if the archive was re-published"
        )
    actual = digest.hexdigest()
    if expected is not None and actual != expected:
        part.unlink(missing_ok=True)
        raise GrooveError(
            f"checksum mismatch for {url}: sha256 {actual}, expected {expected}; the file was deleted. "
            "Retry, or pass the published checksum with --sha256"
        )
    part.replace(target)
    return target


def timed_import(store, path, **options) -> tuple[ImportReport, float]:
    """:func:`import_gmd` and its wall time in seconds (for the benchmark)."""
    start = time.perf_counter()
    report = import_gmd(store, path, **options)
    return report, time.perf_counter() - start
