"""Label store: what a confirmed rating costs, and import speed, with peers measured in the same run.

In a fresh store in a temporary folder (``--dir`` to measure another file
system), medians over ``--repeats`` ratings:

- ``add_rating_full_ms``: :meth:`LabelStore.add_rating` as shipped
  (WAL, ``synchronous=FULL``: the WAL is fsynced at every commit);
  peer ``add_rating_normal_ms``: the same with ``synchronous=NORMAL``
  (survives a killed process, not a power cut) — the price of FULL is
  ``full_over_normal``;
- ``jam_rating_ms``: :meth:`LabelStore.save_jam_rating` with 4 bars at
  120 BPM (8 s, 48 kHz): FLAC encode + clip fsync + rename + commit;
  peers ``flac_encode_ms`` (the encode alone) and ``wav_write_ms`` (writing
  the same samples as WAV with soundfile, no fsync);
- ``import_rows_per_s``: :func:`import_labels` of an export of
  ``--rows`` ratings (validation, duplicate lookups, batched commits);
  peer ``executemany_rows_per_s``: a bare ``executemany`` of the same rows
  into the same tables in one transaction.

    .venv/bin/python bench/labels.py            # text
    .venv/bin/python bench/labels.py --json
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np

from sjtui.dsp.fingerprint import ONSET_DTYPE, Fingerprint
from sjtui.labels import GrooveKey, LabelStore
from sjtui.labels.clips import encode_flac, quantize_pcm24
from sjtui.labels.exchange import export_labels, import_labels
from sjtui.meter import Meter

SR = 48000
KEY = GrooveKey("builtin", "rock.groove#bench", 0, 4)


def _fingerprint(rng) -> Fingerprint:
    onsets = np.zeros(32, ONSET_DTYPE)
    onsets["step"] = rng.integers(0, 48, 32)
    return Fingerprint(
        rng.random((3, 4, 48), dtype=np.float32),
        rng.random((3, 4, 48), dtype=np.float32),
        onsets,
        Meter(4, 4),
        120.0,
        0,
        0.0,
    )


def _median_ms(samples: list[float]) -> float:
    return round(1000.0 * statistics.median(samples), 3)


def measure(folder: Path, repeats: int, rows: int) -> dict:
    import soundfile as sf

    rng = np.random.default_rng(0)
    guitar = (
        0.3 * np.sin(2 * np.pi * 110 * np.arange(8 * SR) / SR) * (1 + 0.1 * rng.standard_normal(8 * SR))
    ).astype(np.float32)
    fp = _fingerprint(rng)
    results: dict = {"repeats": repeats, "folder": str(folder)}
    with LabelStore.open(folder / "full") as store:
        clip = store.add_clip(guitar[: SR // 2], SR, fp, {"source": "generated"})
        timings = []
        for i in range(repeats):
            start = time.perf_counter()
            store.add_rating(clip, KEY, i % 6)
            timings.append(time.perf_counter() - start)
        results["add_rating_full_ms"] = _median_ms(timings)
        jam = []
        for i in range(max(3, repeats // 4)):
            audio = guitar * np.float32(1.0 + 0.01 * i)  # new audio each time: a new clip file
            start = time.perf_counter()
            store.save_jam_rating(audio, SR, KEY, 120.0, "4/4", fp, "bench", i % 6)
            jam.append(time.perf_counter() - start)
        results["jam_rating_ms"] = _median_ms(jam)
    with LabelStore.open(folder / "normal") as store:
        store.conn.execute("PRAGMA synchronous=NORMAL")
        clip = store.add_clip(guitar[: SR // 2], SR, fp, {"source": "generated"})
        timings = []
        for i in range(repeats):
            start = time.perf_counter()
            store.add_rating(clip, KEY, i % 6)
            timings.append(time.perf_counter() - start)
        results["add_rating_normal_ms"] = _median_ms(timings)
    results["full_over_normal"] = round(
        results["add_rating_full_ms"] / max(results["add_rating_normal_ms"], 1e-6), 2
    )

    pcm = quantize_pcm24(guitar)
    encode, wav = [], []
    for _ in range(5):
        start = time.perf_counter()
        encode_flac(pcm, SR)
        encode.append(time.perf_counter() - start)
        start = time.perf_counter()
        sf.write(io.BytesIO(), guitar, SR, format="WAV", subtype="PCM_24")
        wav.append(time.perf_counter() - start)
    results["flac_encode_ms"] = _median_ms(encode)
    results["wav_write_ms"] = _median_ms(wav)

    # import speed: an export of `rows` ratings over 20 clips
    with LabelStore.open(folder / "source") as store:
        clips = [
            store.add_clip(guitar[: SR // 4] * np.float32(1 + 0.01 * k), SR, fp, {"source": "generated"})
            for k in range(20)
        ]
        with store._write("bench") as conn:
            for i in range(rows):
                conn.execute(
                    "INSERT INTO ratings (clip_hash, groove_source, groove_path, groove_start_bar, groove_bars, rating, "
                    "note, strategy, rater, created_at) VALUES (?, ?, ?, 0, 4, ?, '', 'explore', 'local', ?)",
                    (
                        clips[i % 20],
                        "builtin",
                        f"g.groove#{i % 97}",
                        i % 6,
                        f"2026-01-01T00:00:{i // 1000:02d}.{i % 1000:06d}Z",
                    ),
                )
        export_labels(store, folder / "export")
        bare_rows = store.conn.execute("SELECT * FROM ratings").fetchall()
    with LabelStore.open(folder / "target") as target:
        start = time.perf_counter()
        report = import_labels(target, folder / "export")
        elapsed = time.perf_counter() - start
        assert report.added == rows, report.summary()
    results["import_rows"] = rows
    results["import_rows_per_s"] = round(rows / elapsed, 1)
    with LabelStore.open(folder / "bare") as bare:
        with bare._write("bench") as conn:
            source_clips = sqlite_rows(folder / "source" / "labels.sqlite", "SELECT * FROM clips")
            conn.executemany("INSERT INTO clips VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", source_clips)
        start = time.perf_counter()
        with bare._write("bench") as conn:
            conn.executemany(
                "INSERT INTO ratings VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", bare_rows
            )
        elapsed = time.perf_counter() - start
    results["executemany_rows_per_s"] = round(rows / elapsed, 1)
    results["import_over_executemany"] = round(
        results["executemany_rows_per_s"] / results["import_rows_per_s"], 1
    )
    return results


def sqlite_rows(path: Path, sql: str) -> list:
    import sqlite3

    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dir", type=Path, default=None, help="folder to measure in (default: a temporary folder)"
    )
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sjtui-bench-labels-", dir=args.dir) as tmp:
        results = measure(Path(tmp), args.repeats, args.rows)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        width = max(map(len, results))
        for key, value in results.items():
            print(f"{key:{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
