"""Nothing confirmed is lost: a labelling process killed with SIGKILL mid-session.

A real child process rates pairs in a loop through the LabelStore API the
way the labelling and jam screens do (save a clip, then rate it; or save
the jam's last bars and the rating together), printing one line after each
rating has been committed. The parent reads those lines and kills the child
at a random moment (after a random number of confirmations plus a random
delay, so the kill lands anywhere: inside FLAC encoding, the clip fsync,
the rename, the SQLite commit). Reopening must find every confirmed rating
with its fields, SQLite's integrity and foreign-key checks clean, and every
clip file complete with the hash of its name. The same database is used for
all rounds, as a player would restart and carry on.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from sjtui.grooves.store import GrooveStore
from sjtui.labels import GrooveKey, LabelStore
from sjtui.labels.clips import file_hash

REPO = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, sys
import numpy as np
from sjtui.dsp.fingerprint import ONSET_DTYPE, Fingerprint
from sjtui.labels import GrooveKey, LabelStore
from sjtui.labels.clips import file_hash
from sjtui.meter import Meter

db, seed, keys = sys.argv[1], int(sys.argv[2]), [GrooveKey(*k) for k in json.loads(sys.argv[3])]
rng = np.random.default_rng(seed)
store = LabelStore.open(db)
print(json.dumps({"ready": True}), flush=True)
clip = None
for i in range(100000):
    n = int(rng.integers(12000, 96000))  # 0.25 .. 2 s of "guitar"
    audio = (0.3 * rng.standard_normal(n)).astype(np.float32)
    onsets = np.zeros(4, ONSET_DTYPE)
    onsets["bar"] = np.arange(4)
    onsets["strength"] = rng.random(4)
    fp = Fingerprint(rng.random((3, 4, 48), dtype=np.float32), rng.random((3, 4, 48), dtype=np.float32),
                     onsets, Meter(4, 4), float(rng.uniform(80, 160)), 0, 0.0)
    groove = keys[int(rng.integers(len(keys)))]
    rating = int(rng.integers(0, 6))
    note = f"round {seed} pair {i}"
    if i % 3 == 0:
        clip, rid = store.save_jam_rating(audio, 48000, groove, fp.bpm, "4/4", fp, "test-v1", rating, note)
        strategy = "jam"
    else:
        if clip is None or i % 4 == 1:  # sometimes a new loop, sometimes the same loop with another groove
            clip = store.add_clip(audio, 48000, fp, {"source": "generated", "origin": {"seed": seed, "i": i}})
        strategy = ("favourite", "uncertain", "explore")[i % 3]
        rid = store.add_rating(clip, groove, rating, note, "test-v1", strategy)
    print(json.dumps({"id": rid, "clip": clip, "groove": [groove.source, groove.path, groove.start_bar, groove.bars],
                      "rating": rating, "note": note, "strategy": strategy}), flush=True)
"""


def _run_and_kill(db: Path, seed: int, keys: list[GrooveKey], rng: np.random.Generator) -> list[dict]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            CHILD,
            str(db),
            str(seed),
            json.dumps([[k.source, k.path, k.start_bar, k.bars] for k in keys]),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    confirmed = []
    try:
        assert json.loads(child.stdout.readline()) == {"ready": True}, child.stderr.read()
        kill_after = int(rng.integers(2, 20))
        while len(confirmed) < kill_after:
            line = child.stdout.readline()
            assert line, f"child ended early: {child.stderr.read()}"
            confirmed.append(json.loads(line))
        time.sleep(float(rng.uniform(0.0, 0.05)))  # land anywhere inside the next rating
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        confirmed += [json.loads(line) for line in child.stdout.read().splitlines() if line.strip()]
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
        child.stdout.close()
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL
    return confirmed


def test_sigkill_mid_session_loses_no_confirmed_rating(tmp_path):
    with GrooveStore(tmp_path / "grooves.sqlite") as grooves:  # real groove keys from the built-in library
        keys = [GrooveKey.from_row(row) for row in grooves.list_rows()[:12]]
    db = tmp_path / "labels" / "labels.sqlite"
    rng = np.random.default_rng(8)
    confirmed: dict[int, dict] = {}
    for round_seed in range(4):
        for line in _run_and_kill(db, 100 + round_seed, keys, rng):
            assert line["id"] not in confirmed
            confirmed[line["id"]] = line
        with LabelStore.open(db) as store:
            assert store.check(verify_hashes=True) == []  # integrity_check ok, no FK orphans, files whole
            rows = {r.id: r for r in store.ratings()}
            for rid, line in confirmed.items():
                assert rid in rows, f"confirmed rating {rid} lost after kill in round {round_seed}"
                r = rows[rid]
                assert (r.clip_hash, r.rating, r.note, r.strategy) == (
                    line["clip"],
                    line["rating"],
                    line["note"],
                    line["strategy"],
                )
                assert r.groove == GrooveKey(*line["groove"])
                assert r.model_version == "test-v1" and r.fingerprint is not None
                assert r.clip_path.is_file()
            # per kill, at most the one rating in flight may have committed without its line being printed
            assert len(rows) - len(confirmed) <= round_seed + 1
            clips = {c["hash"] for c in store.clip_rows()}
            assert all(r.clip_hash in clips for r in rows.values())
            # every clip file, even one whose row never committed, is whole: its audio has the hash of its name
            for file in store.clips_dir.glob("*.flac"):
                assert file_hash(file) == file.stem, f"{file.name} is partial or damaged"
            # the killed child's temporary clip file (if any) was cleaned up on reopening
            assert not [p for p in store.clips_dir.iterdir() if p.name.startswith(".tmp-")]
            assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert store.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert len(confirmed) >= 4 * 2


@pytest.mark.parametrize("delay_s", [0.0, 0.003, 0.012])
def test_kill_right_after_confirmation(tmp_path, delay_s):
    """Kills at fixed short delays after a confirmation: inside the next clip write more often."""
    with GrooveStore(tmp_path / "grooves.sqlite") as grooves:
        keys = [GrooveKey.from_row(row) for row in grooves.list_rows()[:4]]
    db = tmp_path / "labels.sqlite"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(db), "7", json.dumps([[k.source, k.path, k.start_bar, k.bars] for k in keys])],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True,
    )  # fmt: skip
    try:
        child.stdout.readline()
        confirmed = [json.loads(child.stdout.readline()) for _ in range(3)]
        time.sleep(delay_s)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        confirmed += [json.loads(line) for line in child.stdout.read().splitlines() if line.strip()]
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
        child.stdout.close()
    with LabelStore.open(db) as store:
        assert store.check() == []
        ids = {r.id for r in store.ratings()}
        assert {line["id"] for line in confirmed} <= ids
