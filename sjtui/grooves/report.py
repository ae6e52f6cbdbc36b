"""What an import did: files read, grooves added, files skipped and why."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class SkippedFile:
    path: str
    reason: str


@dataclass
class ImportReport:
    """Counts of one import run.

    ``windows`` counts the grooves read from the files (new or already in the
    store) by ``(style, split, kind)``; ``added`` the ones that were new.
    """

    source: str
    files_seen: int = 0
    files_imported: int = 0
    files_unchanged: int = 0
    grooves_added: int = 0
    grooves_existing: int = 0
    skipped: list[SkippedFile] = field(default_factory=list)
    windows: Counter = field(default_factory=Counter)
    files_by_kind: Counter = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)

    def skip(self, path: str, reason: str) -> None:
        self.skipped.append(SkippedFile(str(path), reason))

    def count_by(self, position: int) -> Counter:
        """Window counts summed by one key part: 0 style, 1 split, 2 kind."""
        totals: Counter = Counter()
        for key, count in self.windows.items():
            totals[key[position]] += count
        return totals

    def as_dict(self) -> dict:
        return {
            "source": self.source,
            "files_seen": self.files_seen,
            "files_imported": self.files_imported,
            "files_unchanged": self.files_unchanged,
            "grooves_added": self.grooves_added,
            "grooves_existing": self.grooves_existing,
            "skipped": [{"path": s.path, "reason": s.reason} for s in self.skipped],
            "windows_by_style": dict(sorted(self.count_by(0).items())),
            "windows_by_split": dict(sorted((str(k), v) for k, v in self.count_by(1).items())),
            "windows_by_kind": dict(sorted(self.count_by(2).items())),
            "notes": list(self.notes),
        }

    def format(self) -> str:
        """A plain-text summary for the terminal."""
        lines = [
            f"{self.source}: {self.files_seen} files seen, {self.files_imported} imported, "
            f"{self.files_unchanged} unchanged since the last import, {len(self.skipped)} skipped",
            f"grooves: {self.grooves_added} added, {self.grooves_existing} already in the library",
        ]
        for title, position in (("by kind", 2), ("by split", 1), ("by style", 0)):
            counts = self.count_by(position)
            if counts:
                body = ", ".join(f"{key or '-'} {value}" for key, value in sorted(counts.items(), key=lambda kv: str(kv[0])))
                lines.append(f"windows {title}: {body}")
        lines.extend(self.notes)
        for skipped in self.skipped:
            lines.append(f"skipped {skipped.path}: {skipped.reason}")
        return "\n".join(lines)
