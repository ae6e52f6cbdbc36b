"""The jam screen's engine in a child process (sjtui.engine_process), on a private JACK server.

The same real engine as tests/test_ui_engine.py (a guitar recording as the input,
drums on a JACK MIDI port), built in a child process; the screen drives it over
the pipe. Checked at a JACK MIDI receiver: quitting, and killing the screen's
process with SIGKILL, leave no note sounding.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from sjtui.engine_process import EngineProcess
from sjtui.errors import SjtuiError
from sjtui.ui.app import make_app
from sjtui.ui.widgets.transport import TransportBar
from tests.test_ui_engine import RECORDING, MidiListener, count_open_notes, note_ons, wait_for

pytestmark = [pytest.mark.jack, pytest.mark.slow]


def _options(guitar_audio_dir, tmp_path, **extra):
    from sjtui.engine import EngineOptions

    library = tmp_path / "library"
    library.mkdir(exist_ok=True)
    values = {
        "input": str(guitar_audio_dir / RECORDING), "loop": True, "library": str(library), "model": "none",
        "midi_backend": "jack", "state_file": False,
    }  # fmt: skip
    return EngineOptions(**{**values, **extra})


def _connect_listener(listener: MidiListener) -> None:
    """The engine's JACK MIDI port (made by the child process) to the listener."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        # the engine's client is "sjtui" (or "sjtui-01"... while an older one is still going away);
        # JACK lists ports in the order they were registered, so the newest is the engine's
        ports = [p.name for p in listener.client.get_ports(r"^sjtui(-\d+)?:", is_midi=True, is_output=True)]
        if ports:
            listener.connect_from(ports[-1])
            return
        time.sleep(0.05)
    raise AssertionError("the engine's MIDI port did not appear")


ALL_NOTES_OFF_CH10 = bytes([0xB9, 123, 0])


def _assert_silenced(listener: MidiListener, when: str, timeout_s: float = 10.0) -> None:
    """All Notes Off on channel 10 reached the listener (within ``timeout_s``) and no note is left on."""
    deadline = time.monotonic() + timeout_s
    while ALL_NOTES_OFF_CH10 not in listener.messages() and time.monotonic() < deadline:
        time.sleep(0.05)
    messages = listener.messages()
    assert ALL_NOTES_OFF_CH10 in messages, f"no All Notes Off on channel 10 {when}"
    open_notes = count_open_notes(messages, all_notes_off_clears=listener.xruns > 0)
    assert open_notes == 0, f"a note left sounding {when} ({listener.xruns} listener xruns)"


def _gone(pid: int, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:  # a child of ours that has exited is a zombie until reaped
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return True
        except ChildProcessError:
            pass
        time.sleep(0.05)
    return False


@pytest.mark.asyncio
async def test_screen_drives_the_engine_in_its_child_process(portaudio_jack, guitar_audio_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("SJTUI_DATA_DIR", str(tmp_path / "data"))
    engine = EngineProcess(_options(guitar_audio_dir, tmp_path)).start()
    pid = engine.pid
    assert pid != os.getpid()
    listener = MidiListener()
    try:
        _connect_listener(listener)
        app = make_app(engine)
        async with app.run_test(size=(100, 30)) as pilot:
            snapshot = lambda: app.last_snapshot
            await wait_for(pilot, lambda: snapshot().state == "playing" and snapshot().current is not None)
            await wait_for(pilot, lambda: note_ons(listener.messages()) > 0)
            await pilot.pause(0.1)
            assert "PLAYING" in app.query_one(TransportBar).plain()
            await pilot.press("l")
            await wait_for(pilot, lambda: snapshot().locked)
            assert "system" in engine.list_inputs()
            assert any("sjtui-ui-test-listener" in name for name in engine.list_midi_outputs())
            await pilot.press("q")
            await pilot.pause()
        assert engine.process is None and _gone(pid)
        assert engine.final is not None and engine.final["library_grooves"] > 0
        _assert_silenced(listener, "when the screen quit", timeout_s=5)
    finally:
        engine.close()
        listener.close()


def test_an_engine_that_cannot_start_says_why_and_leaves_no_process(portaudio_jack, guitar_audio_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("SJTUI_DATA_DIR", str(tmp_path / "data"))
    missing = tmp_path / "no-such-model"
    engine = EngineProcess(_options(guitar_audio_dir, tmp_path, model=str(missing)))
    with pytest.raises(SjtuiError) as caught:
        engine.start()
    assert str(missing) in str(caught.value)
    assert engine.process is None
    import multiprocessing

    assert not [p for p in multiprocessing.active_children() if p.name == "sjtui-engine"]


def test_sigkill_of_the_screen_process_leaves_no_note_on(portaudio_jack, guitar_audio_dir, tmp_path):
    """The screen's process is killed outright; the engine child (PR_SET_PDEATHSIG) closes the engine."""
    listener = MidiListener()
    script = textwrap.dedent(
        f"""
        import sys, time
        from sjtui.engine import EngineOptions
        from sjtui.engine_process import EngineProcess
        options = EngineOptions(input={str(guitar_audio_dir / RECORDING)!r}, loop=True, library={str(tmp_path / "library")!r},
                                model="none", midi_backend="jack", state_file=False)
        engine = EngineProcess(options).start()
        print(engine.pid, flush=True)
        time.sleep(120)
        """
    )
    (tmp_path / "library").mkdir()
    env = dict(os.environ, SJTUI_DATA_DIR=str(tmp_path / "data"))
    screen = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
    try:
        engine_pid = int(screen.stdout.readline())
        _connect_listener(listener)
        deadline = time.monotonic() + 30
        while note_ons(listener.messages()) == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert note_ons(listener.messages()) > 0, "the engine in the child never played"
        screen.send_signal(signal.SIGKILL)
        screen.wait(10)
        assert _gone(engine_pid), "the engine process outlived the screen's process"
        _assert_silenced(listener, "after the screen's process was killed", timeout_s=5)
    finally:
        if screen.poll() is None:
            screen.kill()
        listener.close()


@pytest.mark.asyncio
async def test_a_killed_engine_process_is_shown_on_screen_and_leaves_no_note_on(
    portaudio_jack, guitar_audio_dir, tmp_path, monkeypatch
):
    """SIGKILL of the engine's child mid-jam: the screen stays up and says what happened and where
    the log is; the MIDI child (the engine's own child) sees its pipe close and silences its notes."""
    monkeypatch.setenv("SJTUI_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SJTUI_LOG_DIR", str(tmp_path / "logs"))
    engine = EngineProcess(_options(guitar_audio_dir, tmp_path)).start()
    listener = MidiListener()
    try:
        _connect_listener(listener)
        app = make_app(engine)
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_for(pilot, lambda: note_ons(listener.messages()) > 0)
            os.kill(engine.pid, signal.SIGKILL)
            await wait_for(pilot, lambda: app.poll_errors > 0)
            await pilot.pause(0.1)
            shown = [notice.message for notice in app._notifications]
            assert any(
                "killed by signal 9" in text and str(tmp_path / "logs" / "engine.log") in text for text in shown
            ), shown
            assert app.is_running
            polls_failed = app.poll_errors
            await pilot.pause(0.5)
            assert app.poll_errors > polls_failed  # still polling, but said once
            assert len([n for n in app._notifications if "killed by signal" in n.message]) == 1
            await pilot.press("q")
            await pilot.pause()
        _assert_silenced(listener, "from the MIDI child when its parent, the engine, was killed")
    finally:
        engine.close()
        listener.close()
