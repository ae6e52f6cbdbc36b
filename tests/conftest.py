"""Shared fixtures: real files from ../shared, a private JACK server."""

from __future__ import annotations

import faulthandler
import gc
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# The datasets are never copied into the repository; they are read from the
# shared folder beside the clone (SJTUI_SHARED overrides).
SHARED = Path(os.environ.get("SJTUI_SHARED", REPO.parent / "shared"))
GUITAR_AUDIO = SHARED / "datasets" / "guitar-audio"
GROOVE_MIDI = SHARED / "datasets" / "groove-midi"


# A test that hangs (a deadlock inside a C library holds the GIL, so no Python timer can fire)
# ends the run after this long with every thread's stack on stderr, instead of eating CI's budget.
HANG_LIMIT_S = float(os.environ.get("SJTUI_TEST_HANG_LIMIT_S", "600"))
_real_stderr_fd: int | None = None


def pytest_configure(config):
    global _real_stderr_fd
    _real_stderr_fd = os.dup(2)  # output capture is suspended here: this is the terminal/CI log


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    if _real_stderr_fd is not None and HANG_LIMIT_S > 0:
        faulthandler.dump_traceback_later(HANG_LIMIT_S, exit=True, file=_real_stderr_fd)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


@pytest.fixture(scope="module", autouse=True)
def _heap_frozen_for_jack(request):
    """Modules whose tests run JACK clients, a capture or a scheduler in this process: freeze the
    heap first. After hundreds of tests a full collection of pytest's heap held the GIL for
    140-220 ms in a full run (gc.callbacks), long enough for an in-process Python JACK callback
    to miss cycles and for a scheduler here to send late. The engine freezes its start-up heap
    the same way; unfrozen again at the module's end, so its garbage is collected later."""
    items = [i for i in request.session.items if getattr(i, "module", None) is request.module]
    if not any("jack_server" in getattr(i, "fixturenames", ()) for i in items):
        yield
        return
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


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


@pytest.fixture(scope="session")
def jack_server():
    """A private JACK server with the dummy backend (48 kHz, 256 frames).

    Yields the server name; JACK_DEFAULT_SERVER is set so PortAudio,
    JACK-Client and rtmidi all talk to it. Names come from a small fixed pool
    (``sjtui-test-0..3``, see :mod:`sjtui.audio.jack_server`), so a killed run's
    JACK registry slot is reclaimed by the next run.
    """
    import jack

    from sjtui.audio.jack_server import JackServerError, PrivateJackServer

    try:
        server = PrivateJackServer("sjtui-test", 48000, 256).start()
    except JackServerError as error:
        pytest.fail(str(error))
    # libjack saves the signal mask of the thread that opens a process's first client and blocks it
    # in the thread that closes the last one. sjtui opens its clients with every signal blocked
    # (sjtui/signals.py) and keeps its own mask when it closes them; a test's own client closing
    # last would block them in pytest's main thread, and every child it starts after would inherit
    # that. This client, opened first with pytest's mask and closed last, keeps the saved one harmless.
    keeper = jack.Client("pytest-keeper", no_start_server=True, servername=server.name)
    try:
        yield server.name
    finally:
        keeper.close()
        server.stop()


@pytest.fixture(scope="module")
def portaudio_jack(jack_server):
    """The private server for PortAudio users; PortAudio must hold nothing when the module ends.

    sjtui initialises PortAudio only while it queries devices or keeps a
    stream open (sjtui.audio.portaudio), so each use scans the host APIs
    afresh and sees this server. PortAudio asserts (and aborts the
    interpreter at exit) if its JACK client outlives the server, so a
    stream left open is an error here, before the server stops.
    """
    from sjtui.audio.portaudio import holds, sounddevice

    sounddevice()
    yield jack_server
    assert holds() == 0, f"{holds()} PortAudio hold(s) left open: a stream was not closed"
