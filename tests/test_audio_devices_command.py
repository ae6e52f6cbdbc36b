"""``sjtui devices`` run as a user would, against a real JACK server and against none."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO


def _sjtui(*args, env_extra=None):
    env = dict(os.environ)
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-m", "sjtui", *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=60
    )


@pytest.mark.jack
def test_devices_lists_the_jack_input(jack_server):
    result = _sjtui("devices")
    assert result.returncode == 0, result.stderr
    assert "Audio inputs:" in result.stdout
    assert "system: 2 in, JACK Audio Connection Kit, 48000 Hz" in result.stdout
    data = json.loads(_sjtui("devices", "--json").stdout)
    jack_inputs = [d for d in data["audio_inputs"] if d["host_api"] == "JACK Audio Connection Kit"]
    assert jack_inputs == [
        {
            "index": jack_inputs[0]["index"],
            "name": "system",
            "channels": 2,
            "host_api": "JACK Audio Connection Kit",
            "default_sample_rate_hz": 48000.0,
            "default": True,
        }
    ]


def test_devices_without_any_audio_server_says_so():
    no_server = {"JACK_DEFAULT_SERVER": "sjtui-absent", "JACK_NO_START_SERVER": "1"}
    result = _sjtui("devices", env_extra=no_server)
    assert result.returncode == 0, result.stderr
    listed = json.loads(_sjtui("devices", "--json", env_extra=no_server).stdout)["audio_inputs"]
    assert all(d["host_api"] != "JACK Audio Connection Kit" for d in listed)
    if not listed:  # a machine without a sound card, like the CI machines
        assert "Audio inputs:\n  (none found: plug in the interface" in result.stdout
    else:
        assert all(f"[{d['index']}] {d['name']}" in result.stdout for d in listed)
