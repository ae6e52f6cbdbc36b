"""``sjtui devices``: what sjtui can listen to (audio inputs) and, later, talk to (MIDI ports).

Each kind of device is one *section*: a function returning plain data (for
``--json``) and a function formatting it. The audio section lives here; the
MIDI section is added to ``SECTIONS`` by the MIDI code (another issue).
"""

from __future__ import annotations

import json


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "devices",
        help="list audio input devices (for --device / --channel)",
        description=(
            "List the audio input devices PortAudio sees: index, name, input channels, host API and "
            "default sample rate. Pick one with --device INDEX or a part of its NAME; the guitar's "
            "input with --channel N (counted from 1, as on the interface)."
        ),
    )
    parser.add_argument("--json", action="store_true", help="print the devices as JSON")
    parser.set_defaults(run=run)


def audio_inputs() -> list[dict]:
    """The audio input devices as dicts (index, name, channels, host_api, default_sample_rate_hz, default)."""
    from sjtui.audio.device import list_input_devices
    from sjtui.audio.portaudio import held

    with held() as sd:
        default_index = sd.default.device[0]
        inputs = list_input_devices()
    return [
        {
            "index": d.index,
            "name": d.name,
            "channels": d.channels,
            "host_api": d.host_api,
            "default_sample_rate_hz": d.default_sample_rate_hz,
            "default": d.index == default_index,
        }
        for d in inputs
    ]


def format_audio_inputs(devices: list[dict]) -> str:
    lines = ["Audio inputs:"]
    if not devices:
        lines.append(
            "  (none found: plug in the interface, start the audio server (JACK/PulseAudio/PipeWire), "
            "or analyse a recording with `sjtui analyze FILE`)"
        )
    for d in devices:
        mark = "  (default)" if d["default"] else ""
        lines.append(
            f"  [{d['index']}] {d['name']}: {d['channels']} in, {d['host_api']}, "
            f"{d['default_sample_rate_hz']:g} Hz{mark}"
        )
    return "\n".join(lines)


def midi_ports() -> dict:
    from sjtui.midi.ports import midi_ports_report

    return midi_ports_report()


def format_midi_ports(report: dict) -> str:
    from sjtui.midi.ports import format_midi_ports as fmt

    return fmt(report)


# (json key, data function, text formatter)
SECTIONS = [("audio_inputs", audio_inputs, format_audio_inputs), ("midi_ports", midi_ports, format_midi_ports)]


def run(args) -> int:
    report = {key: collect() for key, collect, _ in SECTIONS}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print("\n\n".join(fmt(report[key]) for key, _, fmt in SECTIONS))
    return 0
