"""The jam screen as a user over SSH sees it: a real terminal (tmux), keys typed, the screen read.

Each test runs the program in a detached tmux session on a private tmux
server (``-L``), types keys with ``send-keys`` and reads the screen with
``capture-pane -p``: ``sjtui demo`` (synthesized guitar, drums on the
built-in synth) and ``sjtui jam`` fed a guitar recording, both on the
private JACK dummy server, and the screen over the in-memory fake engine
(``python -m sjtui.ui.demo_fake``) for keys whose effect the fake shows.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


class Tmux:
    """One detached session on a private tmux server."""

    def __init__(self, command: str, *, width: int = 100, height: int = 30, env: dict | None = None):
        if shutil.which("tmux") is None:
            pytest.fail("tmux not found: run `make test`, which installs it")
        self.socket = f"sjtui-test-{os.getpid()}-{time.monotonic_ns()}"
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in (env or {}).items())
        # the exit status is printed where the screen was, so the test reads it like a user would
        # COLUMNS/LINES from the test runner would override the pane size
        shell = f"cd {shlex.quote(str(REPO))} && env -u COLUMNS -u LINES {exports} {command}; echo SJTUI-EXIT=$?; sleep 30"
        self._tmux("new-session", "-d", "-s", "jam", "-x", str(width), "-y", str(height), shell)

    def _tmux(self, *args: str) -> str:
        result = subprocess.run(
            ["tmux", "-L", self.socket, *args], check=False, capture_output=True, text=True, timeout=10
        )
        if result.returncode != 0:
            raise RuntimeError(f"tmux {' '.join(args)}: {result.stderr}")
        return result.stdout

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", "jam")

    def keys(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", "jam", *keys)

    def wait_for(self, text: str, timeout_s: float = 20.0) -> str:
        deadline = time.monotonic() + timeout_s
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if text in screen:
                return screen
            time.sleep(0.1)
        raise AssertionError(f"{text!r} never appeared; the screen was:\n{screen}")

    def wait_gone(self, text: str, timeout_s: float = 20.0, *, lines: slice = slice(None)) -> str:
        """Wait until ``text`` is no longer on the screen (or on the given lines of it)."""
        deadline = time.monotonic() + timeout_s
        while True:
            screen = self.screen()
            if text not in "\n".join(screen.splitlines()[lines]):
                return screen
            if time.monotonic() >= deadline:
                raise AssertionError(f"{text!r} is still on the screen:\n{screen}")
            time.sleep(0.1)

    def close(self) -> None:
        subprocess.run(
            ["tmux", "-L", self.socket, "kill-server"], check=False, capture_output=True, timeout=10
        )


@pytest.fixture
def tmux_sessions():
    sessions: list[Tmux] = []
    yield sessions
    for session in sessions:
        session.close()


def test_demo_screen_over_tmux_keys_and_clean_exit(tmux_sessions):
    term = Tmux(
        f"{shlex.quote(sys.executable)} -m sjtui.ui.demo_fake jamming", env={"TERM": "xterm-256color"}
    )
    tmux_sessions.append(term)
    # the key bar on the last line comes last in the first frame: a capture taken as soon as "BPM"
    # (the first line) showed caught a frame half written on a slow machine
    screen = term.wait_for("q quit")
    lines = screen.splitlines()
    assert "PLAYING" in lines[0] and "124.0 BPM detected" in lines[0]
    assert "onsets" in screen and "kick" in screen and "? help" in screen and "q quit" in screen
    assert len(lines) == 30 and all(len(line) <= 100 for line in lines)
    assert "q quit" in lines[-1]  # the key bar sits on the terminal's last line

    term.keys("?")
    help_screen = term.wait_for("Reading the screen")
    assert "lock the current groove" in help_screen
    term.keys("Escape")
    term.wait_gone("Reading the screen")

    term.keys("l")
    term.wait_for("LOCKED")
    term.keys("+")
    term.wait_for("125.0 BPM")

    term.keys("m")
    term.wait_for("MIDI output ports found")  # the list has loaded (both notes say this)
    term.keys("Down", "Down", "Down", "Enter")  # the built-in synth
    term.wait_for("MIDI → built-in synth")

    term.keys("q")
    final = term.wait_for("SJTUI-EXIT=")
    assert "SJTUI-EXIT=0" in final


def test_real_jam_over_tmux(jack_server, guitar_audio_dir, tmp_path, tmux_sessions):
    library = tmp_path / "library"
    library.mkdir()
    recording = guitar_audio_dir / "berklee_guitar_riff_cutup1.wav"
    sjtui = Path(sys.executable).with_name("sjtui")
    command = (
        f"{shlex.quote(str(sjtui))} jam --input {shlex.quote(str(recording))} --loop "
        f"--library {shlex.quote(str(library))} --model none"
    )
    env = {
        "TERM": "xterm-256color",
        "JACK_DEFAULT_SERVER": jack_server,
        "SJTUI_DATA_DIR": str(tmp_path / "data"),
        "XDG_RUNTIME_DIR": str(tmp_path),
    }
    term = Tmux(command, env=env)
    tmux_sessions.append(term)
    term.wait_for("PLAYING", timeout_s=30)
    screen = term.wait_for("kick", timeout_s=30)  # a groove is playing
    assert "in: file berklee_gui" in screen and "(looping)" in screen  # the name, shortened in the middle

    term.keys("l")
    term.wait_for("LOCKED")
    term.keys("?")
    term.wait_for("Reading the screen")
    term.keys("q")  # closes the help
    term.wait_gone("Reading the screen")
    term.keys("q")  # quits: engine closed, all notes off
    final = term.wait_for("SJTUI-EXIT=", timeout_s=20)
    assert "SJTUI-EXIT=0" in final


def test_sjtui_demo_over_tmux(jack_server, tmp_path, tmux_sessions):
    sjtui = Path(sys.executable).with_name("sjtui")
    env = {
        "TERM": "xterm-256color",
        "JACK_DEFAULT_SERVER": jack_server,
        "SJTUI_DATA_DIR": str(tmp_path / "data"),
        "XDG_RUNTIME_DIR": str(tmp_path),
    }
    term = Tmux(f"{shlex.quote(str(sjtui))} demo", env=env)
    tmux_sessions.append(term)
    screen = term.wait_for("PLAYING", timeout_s=40)
    assert "synthesized guitar" in screen and "built-in synth" in screen
    term.wait_for("kick", timeout_s=40)  # the drums came in: a groove and its pattern on screen
    # the onset grid of the new window appears with its first onset, just after the downbeat
    screen = term.wait_for("onsets · bars", timeout_s=10)
    lines = screen.splitlines()
    assert len(lines) == 30 and "q quit" in lines[-1]

    term.keys("?")
    term.wait_for("Reading the screen")
    term.keys("Escape")
    term.wait_gone("Reading the screen")
    term.keys("l")
    term.wait_for("LOCKED")
    term.keys("l")
    term.wait_gone("LOCKED", lines=slice(0, 1))  # the transport bar

    term.keys("q")
    final = term.wait_for("SJTUI-EXIT=", timeout_s=20)
    assert "SJTUI-EXIT=0" in final
