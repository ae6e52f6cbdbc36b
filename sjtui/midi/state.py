""" "Next start cleans up": a state file per running MIDI output, for outputs killed without a chance to clean up.

A process killed with SIGKILL cannot send note-offs. While a scheduler runs
it keeps ``midi-out-<pid>.json`` in the runtime directory
(``$SJTUI_RUNTIME_DIR``, else ``platformdirs.user_runtime_dir("sjtui")``)
naming the backend, the ports its notes reach, the channels and the notes
it may leave sounding. A clean stop removes the file. The next start (or a
parent that saw its child die: :func:`cleanup_after`) finds files whose
process is gone and sends those ports note-offs for the notes and All Notes
Off / All Sound Off, then removes the file.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from sjtui.midi.events import ALL_NOTES_OFF, ALL_SOUND_OFF, CONTROL_CHANGE, NOTE_OFF, MidiError


def runtime_dir() -> Path:
    override = os.environ.get("SJTUI_RUNTIME_DIR")
    if override:
        return Path(override)
    import warnings

    import platformdirs

    with (
        warnings.catch_warnings()
    ):  # no XDG_RUNTIME_DIR (containers, ssh): platformdirs' /tmp fallback is fine
        warnings.simplefilter("ignore")
        return Path(platformdirs.user_runtime_dir("sjtui"))


def state_path(pid: int | None = None, directory: Path | None = None) -> Path:
    return (directory or runtime_dir()) / f"midi-out-{os.getpid() if pid is None else int(pid)}.json"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie (killed, not yet reaped) cannot send either
    try:
        with open(f"/proc/{int(pid)}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


class StateFile:
    """The state file of this process; :meth:`write` is atomic (temp file + rename)."""

    def __init__(self, directory: Path | None = None, pid: int | None = None):
        self.path = state_path(pid, directory)
        self._last: dict | None = None

    def write(self, backend: dict, destinations: list[str], channels, notes) -> None:
        data = {
            "pid": os.getpid(),
            "written": time.time(),
            "backend": backend,
            "destinations": list(destinations),
            "channels": sorted({int(c) for c in channels}),
            "notes": sorted({int(n) for n in notes}),
        }
        if self._last is not None and {k: v for k, v in data.items() if k != "written"} == {
            k: v for k, v in self._last.items() if k != "written"
        }:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self.path)
        self._last = data

    def remove(self) -> None:
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        self._last = None


def cleanup_messages(state: dict, all_sound_off: bool = True) -> list[list[int]]:
    out = []
    for channel in state.get("channels", []):
        for note in state.get("notes", []):
            out.append([NOTE_OFF | channel, note, 0])
        out.append([CONTROL_CHANGE | channel, ALL_NOTES_OFF, 0])
        if all_sound_off:
            out.append([CONTROL_CHANGE | channel, ALL_SOUND_OFF, 0])
    return out


def _send_jack(destinations: list[str], messages: list[list[int]], timeout_s: float = 2.0) -> list[str]:
    from sjtui.midi.backends import jack_midi_backend

    backend = jack_midi_backend(client_name="sjtui-cleanup", port_name="cleanup")
    reached = []
    try:
        for destination in destinations:
            try:
                backend.connect(destination)
                reached.append(destination)
            except MidiError:
                pass
        if reached:
            if not backend.send_now(messages, timeout_s):
                raise MidiError("the JACK server did not run a cycle to send the clean-up")
            backend.send_now([], timeout_s)  # one more cycle: the first one is out
    finally:
        backend.close()
    return reached


def _send_rtmidi(api: str, destinations: list[str], messages: list[list[int]]) -> list[str]:
    from sjtui.midi.backends import RtMidiBackend

    reached = []
    for destination in destinations:
        try:
            backend = RtMidiBackend(destination, api=api, client_name="sjtui-cleanup")
        except MidiError:
            continue
        try:
            for data in messages:
                backend.send(data)
            time.sleep(0.05)  # rtmidi's JACK path sends in the next cycle
            reached.append(destination)
        finally:
            backend.close()
    return reached


def cleanup_state(path: Path, all_sound_off: bool = True) -> dict:
    """Silence what the state file at ``path`` names and remove it. Returns a report dict."""
    state = json.loads(path.read_text())
    backend = state.get("backend", {})
    destinations = state.get("destinations", [])
    messages = cleanup_messages(state, all_sound_off)
    reached: list[str] = []
    error = None
    try:
        if destinations:
            if backend.get("api") in ("JACK", "UNIX_JACK"):
                reached = _send_jack(destinations, messages)
            elif backend.get("api"):
                reached = _send_rtmidi(backend["api"], destinations, messages)
    except MidiError as exc:
        error = str(exc)
    path.unlink(missing_ok=True)
    return {"pid": state.get("pid"), "destinations": destinations, "reached": reached, "error": error}


def cleanup_stale(directory: Path | None = None, all_sound_off: bool = True) -> list[dict]:
    """Clean up after every dead process that left a state file (called when a scheduler starts)."""
    directory = directory or runtime_dir()
    reports = []
    for path in sorted(directory.glob("midi-out-*.json")):
        try:
            pid = int(path.stem.rsplit("-", 1)[1])
        except ValueError:
            continue
        if pid == os.getpid() or pid_alive(pid):
            continue
        try:
            reports.append(cleanup_state(path, all_sound_off))
        except (OSError, ValueError) as error:
            path.unlink(missing_ok=True)
            reports.append({"pid": pid, "error": f"unreadable state file: {error}"})
    return reports


def cleanup_after(pid: int, directory: Path | None = None, all_sound_off: bool = True) -> dict | None:
    """Parent side: after child ``pid`` died, silence what it may have left sounding. None if it left no file."""
    path = state_path(pid, directory)
    if not path.is_file():
        return None
    if pid_alive(pid):
        raise MidiError(f"process {pid} is still running; stop it before cleaning up after it")
    return cleanup_state(path, all_sound_off)
