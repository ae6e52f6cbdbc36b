"""MIDI API selection and port listing (python-rtmidi).

Which API: an explicit ``api`` argument (a future ``--midi-api`` option) wins,
then ``MIDO_BACKEND`` (``mido.backends.rtmidi/UNIX_JACK`` names the API after
the slash), then the platform: on Linux the ALSA sequencer when
``/dev/snd/seq`` exists, else JACK when a JACK server answers (this machine:
no ALSA, JACK); CoreMIDI on macOS; Windows MM on Windows.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from sjtui.midi.events import MidiError
from sjtui.signals import blocked, kept

API_NAMES = ("LINUX_ALSA", "UNIX_JACK", "MACOSX_CORE", "WINDOWS_MM")
_ALIASES = {
    "alsa": "LINUX_ALSA",
    "jack": "UNIX_JACK",
    "coremidi": "MACOSX_CORE",
    "core": "MACOSX_CORE",
    "macos": "MACOSX_CORE",
    "winmm": "WINDOWS_MM",
    "windows": "WINDOWS_MM",
    "mm": "WINDOWS_MM",
}


def normalize_api(api: str) -> str:
    key = str(api).strip()
    name = _ALIASES.get(key.lower(), key.upper().removeprefix("API_"))
    if name not in API_NAMES:
        raise MidiError(
            f"MIDI API {api!r} is unknown; use one of alsa, jack, coremidi, winmm ({', '.join(API_NAMES)})"
        )
    return name


def compiled_apis() -> list[str]:
    """The APIs this python-rtmidi build supports, by name."""
    import rtmidi

    by_id = {getattr(rtmidi, f"API_{n}"): n for n in API_NAMES if hasattr(rtmidi, f"API_{n}")}
    return [by_id[i] for i in rtmidi.get_compiled_api() if i in by_id]


def jack_client(name: str):
    """A JACK-Client client on the running server (never starting one). libjack starts its
    notification thread here: it is started blind to signals (sjtui/signals.py)."""
    import jack

    with blocked():
        return jack.Client(name, no_start_server=True)


def close_jack_client(client) -> None:
    """Close a client from :func:`jack_client`, keeping this thread's signal mask (libjack sets the
    one it saved at the process's first open when its last client closes: sjtui/signals.py)."""
    with kept():
        client.close()


def jack_server_running() -> bool:
    """True when a JACK server (``$JACK_DEFAULT_SERVER`` or the default) accepts a client."""
    try:
        import jack
    except (ImportError, OSError):
        return False
    jack.set_error_function(_quiet)  # libjack prints "cannot connect to server" when there is none
    try:
        client = jack_client("sjtui-probe")
    except jack.JackError:
        return False
    finally:
        jack.set_error_function(None)
    close_jack_client(client)
    return True


def _quiet(message: str) -> None:
    pass


def alsa_sequencer_present() -> bool:
    return Path("/dev/snd/seq").exists()


def choose_api(api: str | None = None) -> str:
    """The rtmidi API name to use (see the module docstring); raises :class:`MidiError` when none works."""
    compiled = compiled_apis()
    if api is None:
        env = os.environ.get("MIDO_BACKEND", "")
        if "/" in env:
            api = env.split("/", 1)[1]
    if api is not None:
        name = normalize_api(api)
        if name not in compiled:
            raise MidiError(
                f"MIDI API {name} is not available in this python-rtmidi; available: {', '.join(compiled)}"
            )
        return name
    if sys.platform == "darwin" and "MACOSX_CORE" in compiled:
        return "MACOSX_CORE"
    if sys.platform.startswith("win") and "WINDOWS_MM" in compiled:
        return "WINDOWS_MM"
    if "LINUX_ALSA" in compiled and alsa_sequencer_present():
        return "LINUX_ALSA"
    if "UNIX_JACK" in compiled and jack_server_running():
        return "UNIX_JACK"
    raise MidiError(
        "no MIDI system found: no ALSA sequencer (/dev/snd/seq) and no JACK server running. "
        "Start JACK (e.g. `jackd -d dummy`) or load snd-seq, or use the built-in synth (--synth)"
    )


def rtmidi_api_id(name: str) -> int:
    import rtmidi

    return getattr(rtmidi, f"API_{normalize_api(name)}")


def list_ports(api: str) -> dict[str, list[str]]:
    """``{"outputs": [...], "inputs": [...]}`` of one API (empty lists when it cannot be opened)."""
    import rtmidi

    api_id = rtmidi_api_id(api)
    if api == "UNIX_JACK" and not jack_server_running():
        return {"outputs": [], "inputs": []}
    if api == "LINUX_ALSA" and not alsa_sequencer_present():
        return {"outputs": [], "inputs": []}
    if api == "UNIX_JACK":
        return jack_midi_ports()
    out = {"outputs": [], "inputs": []}
    for key, cls in (("outputs", rtmidi.MidiOut), ("inputs", rtmidi.MidiIn)):
        try:
            handle = cls(api_id, name="sjtui-list")
        except rtmidi.SystemError:
            continue
        try:
            out[key] = list(handle.get_ports())
        finally:
            with kept():
                handle.delete()
    return out


def jack_midi_ports() -> dict[str, list[str]]:
    """JACK MIDI ports as rtmidi names them (``client:port``), listed with JACK-Client.

    Not with rtmidi: python-rtmidi holds the GIL while it opens or closes its
    JACK client, which waits for the current JACK cycle; a Python JACK or
    PortAudio callback in the same process waiting for the GIL then
    deadlocks both. JACK-Client (cffi) releases the GIL in its calls.
    """
    import jack

    try:
        client = jack_client("sjtui-list")
    except jack.JackError:
        return {"outputs": [], "inputs": []}
    try:
        return {
            "outputs": [p.name for p in client.get_ports(is_midi=True, is_input=True)],
            "inputs": [p.name for p in client.get_ports(is_midi=True, is_output=True)],
        }
    finally:
        close_jack_client(client)


def list_all_ports() -> dict[str, dict[str, list[str]]]:
    """Ports per compiled API: ``{api_name: {"outputs": [...], "inputs": [...]}}``."""
    return {api: list_ports(api) for api in compiled_apis()}


def match_port(wanted: str, names: list[str], direction: str = "output") -> int:
    """Index of the port named ``wanted``: exact name, else the only case-insensitive substring match."""
    if wanted in names:
        return names.index(wanted)
    hits = [i for i, n in enumerate(names) if wanted.lower() in n.lower()]
    if len(hits) == 1:
        return hits[0]
    listing = ", ".join(repr(n) for n in names) or "none"
    if hits:
        raise MidiError(
            f"MIDI {direction} port {wanted!r} matches several ports ({', '.join(repr(names[i]) for i in hits)}); "
            "give more of the name"
        )
    raise MidiError(
        f"MIDI {direction} port {wanted!r} does not exist; ports are: {listing}. "
        "Give (part of) one of these names, or use the virtual port `sjtui`"
    )


def midi_ports_report() -> dict:
    """For ``sjtui devices``: the API sjtui would use and the ports of every compiled API.

    ``{"chosen_api": name or None, "problem": text or None, "apis": {api: {"outputs": [...], "inputs": [...]}}}``.
    "outputs" are ports sjtui can send drums/clock to; "inputs" ports it can follow a clock from.
    """
    try:
        chosen, problem = choose_api(), None
    except MidiError as error:
        chosen, problem = None, str(error)
    try:
        apis = list_all_ports()
    except Exception as error:  # rtmidi missing or broken
        apis, problem = {}, f"cannot list MIDI ports: {error}"
    return {"chosen_api": chosen, "problem": problem, "apis": apis}


def format_midi_ports(report: dict) -> str:
    lines = ["MIDI ports:"]
    if report.get("problem"):
        lines.append(f"  {report['problem']}")
    for api, ports in report.get("apis", {}).items():
        mark = "  (used)" if api == report.get("chosen_api") else ""
        lines.append(f"  {api}{mark}")
        for key, label in (("outputs", "out (drums, clock to)"), ("inputs", "in (clock from)")):
            names = ports.get(key, [])
            lines.append(f"    {label}: {', '.join(names) if names else '(none)'}")
    lines.append("  sjtui also offers a virtual output port named `sjtui` for a DAW to pick up.")
    return "\n".join(lines)
