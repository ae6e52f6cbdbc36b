"""Groove library: GMD import time and library load time, with peers measured in the same run.

Measures, on the Groove MIDI Dataset folder (../shared/datasets/groove-midi
by default) imported into a fresh store in a temporary folder:

- ``mido_parse_s``: mido parsing every MIDI file and walking its messages
  (the floor of any import built on mido; peer of the import);
- ``import_s``: the full import (parse, quantise, window, descriptors, SQLite);
- ``reimport_s``: importing the same folder again (nothing added);
- ``load_s``: :meth:`GrooveStore.load_library` (every groove into contiguous
  arrays), median of ``--repeats`` runs; peers: ``fetch_rows_s`` (the bare
  SQL fetch of the same rows, no decoding) and ``decode_each_s`` (decoding
  each groove into dense matrices one by one, as a naive loader would).

    .venv/bin/python bench/grooves.py            # text
    .venv/bin/python bench/grooves.py --json
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sjtui.grooves.gmd import import_gmd  # noqa: E402
from sjtui.grooves.store import GrooveStore, decode_vho  # noqa: E402


def default_gmd_dir() -> Path:
    shared = os.environ.get("SJTUI_SHARED")
    base = Path(shared) if shared else REPO.parent / "shared"
    return base / "datasets" / "groove-midi"


def mido_parse_s(root: Path) -> tuple[float, int]:
    import mido

    with open(root / "info.csv", newline="") as handle:
        files = [root / row["midi_filename"] for row in csv.DictReader(handle)]
    start = time.perf_counter()
    messages = 0
    for file in files:
        for track in mido.MidiFile(file).tracks:
            for message in track:
                messages += message.time >= 0
    return time.perf_counter() - start, messages


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gmd", type=Path, default=default_gmd_dir())
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    parse_s, n_messages = mido_parse_s(args.gmd)
    with tempfile.TemporaryDirectory() as tmp:
        store = GrooveStore(Path(tmp), builtin=False)
        start = time.perf_counter()
        report = import_gmd(store, args.gmd)
        import_s = time.perf_counter() - start
        start = time.perf_counter()
        again = import_gmd(store, args.gmd)
        reimport_s = time.perf_counter() - start

        loads, fetches = [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            library = store.load_library()
            loads.append(time.perf_counter() - start)
            start = time.perf_counter()
            rows = store.conn.execute(
                "SELECT id, source, name, style, kind, split, meter, bpm, bars, n_steps, n_hits, "
                "hits, velocities, offsets, descriptors FROM grooves ORDER BY id"
            ).fetchall()
            fetches.append(time.perf_counter() - start)
        start = time.perf_counter()
        for row in rows:
            decode_vho(row[9], row[11], row[12], row[13])
        decode_each_s = time.perf_counter() - start
        builtin_store = GrooveStore(Path(tmp) / "with-builtin")
        builtin_count = builtin_store.count("builtin")
        builtin_store.close()
        db_mb = sum(p.stat().st_size for p in Path(tmp).glob("grooves.sqlite*")) / 1e6
        store.close()

    load_s = statistics.median(loads)
    fetch_s = statistics.median(fetches)
    result = {
        "gmd_files": report.files_seen,
        "gmd_files_skipped": len(report.skipped),
        "grooves": len(library),
        "events": int(library.event_step.size),
        "windows_by_kind": dict(report.count_by(2)),
        "windows_by_split": {str(k): v for k, v in sorted(report.count_by(1).items())},
        "windows_by_style": dict(sorted(report.count_by(0).items())),
        "builtin_grooves": builtin_count,
        "mido_parse_s": round(parse_s, 3),
        "mido_messages": n_messages,
        "import_s": round(import_s, 3),
        "import_over_mido_parse": round(import_s / parse_s, 2),
        "reimport_s": round(reimport_s, 3),
        "reimport_added": again.grooves_added,
        "load_s": round(load_s, 4),
        "fetch_rows_s": round(fetch_s, 4),
        "load_over_fetch": round(load_s / fetch_s, 2),
        "decode_each_s": round(decode_each_s, 4),
        "decode_each_over_load_minus_fetch": round(decode_each_s / max(load_s - fetch_s, 1e-9), 1),
        "db_mb": round(db_mb, 2),
    }
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        for key, value in result.items():
            print(f"{key:>36}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
