"""Children's stderr: off the terminal (the jam screen) into a log file; pipes and files left alone."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

WRITER = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, {repo!r})
    from sjtui.childlog import stderr_to_log

    print(stderr_to_log("child"), flush=True)
    os.write(2, b"ALSA lib pcm.c:2664:(snd_pcm_open_noupdate) Unknown PCM cards.pcm.rear\\n")
    """
)


def _pty_output(master: int) -> bytes:
    data = b""
    while select.select([master], [], [], 0.2)[0]:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the slave side is closed
            break
        if not chunk:
            break
        data += chunk
    return data


def test_a_terminal_stderr_goes_to_the_log_and_nothing_reaches_the_screen(tmp_path):
    master, slave = pty.openpty()
    try:
        result = subprocess.run(
            [sys.executable, "-c", WRITER.format(repo=str(REPO))],
            check=False, stdout=subprocess.PIPE, stderr=slave, text=True, timeout=60,
            env=dict(os.environ, SJTUI_LOG_DIR=str(tmp_path / "logs")),
        )  # fmt: skip
        screen = _pty_output(master)
    finally:
        os.close(slave)
        os.close(master)
    assert result.returncode == 0
    log = tmp_path / "logs" / "child.log"
    assert result.stdout.strip() == str(log)
    assert b"ALSA lib" not in screen
    assert "Unknown PCM cards.pcm.rear" in log.read_text()


def test_a_pipe_stays_a_pipe(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", WRITER.format(repo=str(REPO))],
        check=False, capture_output=True, text=True, timeout=60,
        env=dict(os.environ, SJTUI_LOG_DIR=str(tmp_path)),
    )  # fmt: skip
    assert result.stdout.strip() == "None"
    assert "Unknown PCM cards.pcm.rear" in result.stderr
    assert not list(tmp_path.iterdir())


PARENT = textwrap.dedent(
    """
    import os, sys, time
    sys.path.insert(0, {repo!r})
    from sjtui.audio.device_process import ProcessDeviceInput
    from sjtui.midi.process import MidiProcess

    if __name__ == "__main__":
        live = ProcessDeviceInput(device="system").start()
        midi = MidiProcess({{"kind": "jack", "client_name": "sjtui-childlog"}})
        for pid in (live.pid, midi.process.pid):
            print(os.readlink(f"/proc/{{pid}}/fd/2"), flush=True)
        midi.close()
        live.stop()
    """
)


@pytest.mark.jack
def test_the_audio_and_midi_children_of_a_jam_on_a_terminal_log_to_files(portaudio_jack, tmp_path):
    master, slave = pty.openpty()
    script = tmp_path / "parent.py"
    script.write_text(PARENT.format(repo=str(REPO)))
    try:
        result = subprocess.run(
            [sys.executable, str(script)], check=False, stdout=subprocess.PIPE, stderr=slave, text=True, timeout=120,
            env=dict(os.environ, SJTUI_LOG_DIR=str(tmp_path / "logs")),
        )  # fmt: skip
    finally:
        os.close(slave)
        os.close(master)
    assert result.returncode == 0, result.stdout
    logs = tmp_path / "logs"
    assert result.stdout.split() == [str(logs / "audio-input.log"), str(logs / "midi-out.log")]
