"""`sjtui grooves play ID`: a groove to a real MIDI port, exactly as the grid says, then silence."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from sjtui.cli import main
from sjtui.midi.events import NOTE_ON
from tests.test_midi_jack import Capture, judged_despite_xruns, wait_for

RATE = 48000


@pytest.fixture
def capture(jack_server, tmp_path, monkeypatch):
    monkeypatch.setenv("SJTUI_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SJTUI_RUNTIME_DIR", str(tmp_path / "run"))
    cap = Capture("grooves-play-capture")
    yield cap
    cap.close()


def _first_builtin(capsys, style: str) -> dict:
    assert main(["grooves", "list", "--style", style, "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    return next(r for r in rows if r["source"] == "builtin" and r["kind"] == "beat")


def test_play_sends_every_hit_at_its_step_and_leaves_nothing_on(capture, capsys):
    from sjtui.grooves.store import GrooveStore

    row = _first_builtin(capsys, "rock")

    store = GrooveStore()
    groove = store.get(row["id"])
    store.close()
    step_frames = RATE * 60 / 150 / 12

    def take():
        # in its own process, as a player runs it: this one only runs the capture's callback (in
        # process, the command's threads and the capture's Python callback took turns at the GIL,
        # and on a loaded machine the capture missed cycles in every take)
        command = ["grooves", "play", str(row["id"]), "--midi-out", capture.port_name, "--bpm", "150", "--clock-out"]
        run = subprocess.run(
            [sys.executable, "-m", "sjtui", *command], capture_output=True, text=True, timeout=120, check=False
        )
        assert run.returncode == 0, run.stderr[-2000:]

    def judge(_):
        ons = [(f, d) for f, d in capture.notes() if d[0] & 0xF0 == NOTE_ON and d[2] > 0]
        assert len(ons) == 2 * int(groove.hits.sum()), f"{capture.xruns} xruns at the capture"  # two repeats
        # note-on times relative to the first downbeat follow the grid at 150 BPM
        frames = np.array(sorted({f for f, _ in ons}), dtype=np.float64)
        steps = np.nonzero(groove.hits.any(axis=1))[0]
        expected = np.concatenate([steps, steps + groove.n_steps]) * step_frames
        offsets = frames - frames[0]
        assert np.abs(offsets - (expected - expected[0])).max() <= 0.5 * step_frames + 1  # within the groove's own offsets
        assert all(v == 0 for v in capture.balance().values())
        assert capture.all_notes_off_after_last_note_on()
        ticks = [f for f, d in capture.events if d == b"\xf8"]
        assert abs(len(ticks) - 2 * groove.bars * 4 * 24) <= 1
        assert b"\xfa" in [d for _, d in capture.events] and b"\xfc" in [d for _, d in capture.events]

    judged_despite_xruns(capture, take, judge, tries=5)


def test_sigterm_stops_playback_with_all_notes_off(capture, capsys, tmp_path):
    row = _first_builtin(capsys, "funk")
    child = subprocess.Popen(
        [sys.executable, "-m", "sjtui", "grooves", "play", str(row["id"]), "--midi-out", capture.port_name, "--repeats", "8"],
        env=os.environ.copy(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 20
    while not capture.notes() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert capture.notes(), child.stderr.read() if child.poll() is not None else "no notes arrived"
    child.send_signal(signal.SIGTERM)
    assert child.wait(10) == 0
    assert wait_for(capture.all_notes_off_after_last_note_on, 5)  # silent at any receiver
    # and every note-on got its own note-off, unless the capture missed a cycle's events (its
    # xrun: the child's JACK client stopping costs xruns on a loaded machine)
    balance = capture.balance()
    assert all(v == 0 for v in balance.values()) or capture.xruns > 0, (balance, capture.xruns)


def test_unknown_port_lists_the_ports_that_exist(capture, capsys):
    row = _first_builtin(capsys, "rock")
    assert main(["grooves", "play", str(row["id"]), "--midi-out", "no-such-port"]) == 2
    assert capture.port_name in capsys.readouterr().err
