"""Shared fixtures: real files from ../shared, a private JACK server."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# The datasets are never copied into the repository; they are read from the
# shared folder beside the clone (SJTUI_SHARED overrides).
SHARED = Path(os.environ.get("SJTUI_SHARED", REPO.parent / "shared"))
GUITAR_AUDIO = SHARED / "datasets" / "guitar-audio"
GROOVE_MIDI = SHARED / "datasets" / "groove-midi"


@pytest.fixture(scope="session")
def guitar_audio_dir() -> Path:
    if not GUITAR_AUDIO.is_dir():
        pytest.fail(f"guitar recordings not found at {GUITAR_AUDIO}; set SJTUI_SHARED to the shared folder")
    return GUITAR_AUDIO


@pytest.fixture(scope="session")
def groove_midi_dir() -> Path:
    if not GROOVE_MIDI.is_dir():
        pytest.fail(f"Groove MIDI Dataset not found at {GROOVE_MIDI}; set SJTUI_SHARED to the shared folder")
    return GROOVE_MIDI


def _die_with_parent() -> None:
    """Runs in the child before exec: jackd gets SIGTERM when the test process dies,
    even by SIGKILL or a timeout, so no orphaned server holds one of JACK's few server slots."""
    import ctypes
    import signal

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@pytest.fixture(scope="session")
def jack_server():
    """A private JACK server with the dummy backend (48 kHz, 256 frames).

    Yields the server name; JACK_DEFAULT_SERVER is set so PortAudio,
    JACK-Client and rtmidi all talk to it.
    """
    jackd = shutil.which("jackd")
    if jackd is None:
        pytest.fail("jackd not found: run `make test`, which installs jackd2")
    name = f"sjtui-test-{os.getpid()}"
    proc = subprocess.Popen(
        [jackd, "-n", name, "-d", "dummy", "-r", "48000", "-p", "256"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
    )
    try:
        subprocess.run(["jack_wait", "-s", name, "-w", "-t", "10"], check=True, capture_output=True)
    except subprocess.CalledProcessError as error:
        proc.kill()
        raise RuntimeError(f"jackd did not start: {proc.stderr.read().decode(errors='replace')}") from error
    previous = os.environ.get("JACK_DEFAULT_SERVER")
    os.environ["JACK_DEFAULT_SERVER"] = name
    try:
        yield name
    finally:
        if previous is None:
            os.environ.pop("JACK_DEFAULT_SERVER", None)
        else:
            os.environ["JACK_DEFAULT_SERVER"] = previous
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
        time.sleep(0.2)
