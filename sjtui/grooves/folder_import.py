"""Any folder of drum MIDI files -> grooves (for users with their own libraries).

Every ``*.mid`` / ``*.midi`` file under the folder (recursively; a single
file works too) is read on one MIDI channel (zero-based 9, "channel 10",
by default) and cut into windows like the GMD (see
:mod:`sjtui.grooves.midi_import`). Metadata is guessed from the path: a
file whose name has the word ``fill`` is a fill, and the style is the name
of the file's first folder below the root (``rock/verse1.mid`` -> ``rock``;
``unknown`` for files at the root). ``source_path`` is the file's absolute
path, so two folders with the same layout do not collide.

A file or folder that cannot be read, or a file that is not usable MIDI, is
skipped and reported with its reason; everything else is imported, each file
in its own transaction.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable

from sjtui.errors import GrooveError
from sjtui.grooves.midi_import import DRUM_CHANNEL, MidiImportError, read_grooves
from sjtui.grooves.report import ImportReport

SOURCE = "midi"
MIDI_SUFFIXES = (".mid", ".midi", ".smf")
_FILL_WORD = re.compile(r"(^|[^a-z])fills?([^a-z]|$)")


def find_midi_files(root: Path, report: ImportReport) -> list[Path]:
    """MIDI files under ``root`` in sorted order; unreadable folders are reported as skipped."""
    if root.is_file():
        return [root]
    found: list[Path] = []

    def on_error(error: OSError) -> None:
        report.skip(error.filename or str(root), f"cannot list folder: {error.strerror or error}")

    for folder, subfolders, files in os.walk(root, onerror=on_error):
        subfolders.sort()
        for name in sorted(files):
            if name.lower().endswith(MIDI_SUFFIXES):
                found.append(Path(folder) / name)
    return found


def guess_kind(path: Path) -> str:
    return "fill" if _FILL_WORD.search(path.stem.lower()) else "beat"


def guess_style(path: Path, root: Path) -> str:
    if root.is_file():
        return "unknown"
    parts = path.relative_to(root).parts
    return parts[0].lower() if len(parts) > 1 else "unknown"


def import_midi_folder(
    store,
    path: str | Path,
    *,
    channel: int = DRUM_CHANNEL,
    progress: Callable[[int, int, str], None] | None = None,
) -> ImportReport:
    """Import every drum MIDI file under ``path`` into ``store``; returns the report."""
    from sjtui.grooves.store import sha1_of

    if not 0 <= channel <= 15:
        raise GrooveError(f"MIDI channel {channel + 1} does not exist; channels are 1 to 16 (drums: 10)")
    root = Path(path).expanduser().resolve()
    if not root.exists():
        raise GrooveError(f"{root} does not exist; give a folder of MIDI files or one .mid file")
    report = ImportReport(source=SOURCE)
    files = find_midi_files(root, report)
    if not files and not report.skipped:
        report.notes.append(f"no .mid or .midi files under {root}")
    for done, file in enumerate(files, start=1):
        report.files_seen += 1
        key = str(file)
        kind = guess_kind(file)
        style = guess_style(file, root)
        report.files_by_kind[kind] += 1
        try:
            data = file.read_bytes()
        except OSError as error:
            report.skip(key, f"cannot read: {error.strerror or error}")
            continue
        digest = sha1_of(data)
        try:
            if store.file_unchanged(SOURCE, key, digest):
                n = store.conn.execute(
                    "SELECT COUNT(*) FROM grooves WHERE source = ? AND source_path = ?", (SOURCE, key)
                ).fetchone()[0]
                report.files_unchanged += 1
                report.grooves_existing += n
                report.windows[(style, None, kind)] += n
            else:
                grooves, performance = read_grooves(
                    data,
                    name=file.stem,
                    source_name=SOURCE,
                    kind=kind,
                    channel=channel,
                    path_label=key,
                    style=style,
                    source_path=key,
                )
                added, existing = store.add_file_grooves(SOURCE, key, digest, grooves)
                report.files_imported += 1
                report.grooves_added += added
                report.grooves_existing += existing
                report.windows[(style, None, kind)] += len(grooves)
        except MidiImportError as error:
            report.skip(key, error.reason)
        if progress is not None:
            progress(done, len(files), key)
    return report
