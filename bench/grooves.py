"""Groove library: GMD import time and library load time, with peers measured in the same run.

Measures, on the Groove MIDI Dataset folder (../shared/datasets/groove-midi
by default) imported into a fresh store in a temporary folder:

- ``mido_parse_s``: mido parsing every MIDI file and walking its messages
  (the floor of any import built on mido; peer of the import);
- ``scan_parse_s``: :func:`sjtui.grooves.smf.scan_smf` on the same files
  (what the import uses instead), and ``scan_agrees_with_mido``: whether it
  found the same drum notes, tempi and meters as mido in every file;
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


def parse_peers(root: Path) -> dict:
    """mido vs the lean scanner on every file of info.csv: time, and whether they agree."""
    import io

    import mido

    from sjtui.grooves.smf import scan_smf

    with open(root / "info.csv", newline="") as handle:
        blobs = [(root / row["midi_filename"]).read_bytes() for row in csv.DictReader(handle)]
    start = time.perf_counter()
    by_mido = []
    for data in blobs:
        notes, tempi, meters, tick = [], [], [], 0
        for track in mido.MidiFile(file=io.BytesIO(data)).tracks:
            tick = 0
            for message in track:
                tick += message.time
                if message.type == "note_on" and message.velocity > 0 and message.channel == 9:
                    notes.append((tick, message.note, message.velocity))
                elif message.type == "set_tempo":
                    tempi.append((tick, message.tempo))
                elif message.type == "time_signature":
                    meters.append((tick, message.numerator, message.denominator))
        by_mido.append((notes, tempi, meters))
    mido_s = time.perf_counter() - start
    start = time.perf_counter()
    scans = [scan_smf(data, 9) for data in blobs]
    scan_s = time.perf_counter() - start
    agree = all(
        (list(zip(s.note_ticks.tolist(), s.note_numbers.tolist(), s.note_velocities.tolist())), s.tempo_events,
         s.meter_events) == m
        for s, m in zip(scans, by_mido)
    )  # fmt: skip
    return {"files": len(blobs), "mido_parse_s": mido_s, "scan_parse_s": scan_s, "agree": agree}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gmd", type=Path, default=default_gmd_dir())
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    peers = parse_peers(args.gmd)
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
        "mido_parse_s": round(peers["mido_parse_s"], 3),
        "scan_parse_s": round(peers["scan_parse_s"], 3),
        "mido_over_scan": round(peers["mido_parse_s"] / peers["scan_parse_s"], 1),
        "scan_agrees_with_mido": peers["agree"],
        "import_s": round(import_s, 3),
        "import_over_mido_parse": round(import_s / peers["mido_parse_s"], 2),
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
