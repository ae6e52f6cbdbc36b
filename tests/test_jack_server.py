"""The private JACK server helper: a pool of fixed names, parallel runs, dies with its parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from sjtui.audio.jack_server import PrivateJackServer

PREFIX = "sjtui-jstest"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as handle:  # a zombie counts as gone
        return handle.read().split(") ", 1)[1][0] != "Z"


@pytest.fixture(autouse=True)
def needs_jackd():
    import shutil

    if shutil.which("jackd") is None:
        pytest.fail("jackd not found: run `make test`, which installs jackd2")


def test_parallel_servers_get_distinct_names_and_the_environment_is_restored():
    import jack

    before = os.environ.get("JACK_DEFAULT_SERVER")
    with PrivateJackServer(PREFIX) as first, PrivateJackServer(PREFIX) as second:
        assert {first.name, second.name} == {f"{PREFIX}-0", f"{PREFIX}-1"}
        assert os.environ["JACK_DEFAULT_SERVER"] == second.name
        for server in (first, second):
            client = jack.Client("sjtui-jstest-probe", no_start_server=True, servername=server.name)
            try:
                assert (client.samplerate, client.blocksize) == (48000, 256)
            finally:
                client.close()
        pids = (first.proc.pid, second.proc.pid)
    assert os.environ.get("JACK_DEFAULT_SERVER") == before
    assert not any(_alive(pid) for pid in pids)


def test_a_killed_owner_takes_jackd_with_it_and_the_next_run_reuses_the_name():
    code = (
        "import sys, time; from sjtui.audio.jack_server import PrivateJackServer\n"
        f"s = PrivateJackServer({PREFIX!r}).start(); print(s.name, s.proc.pid, flush=True); time.sleep(60)\n"
    )
    owner = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        name, pid = owner.stdout.readline().split()
        assert name == f"{PREFIX}-0" and _alive(int(pid))
        owner.send_signal(signal.SIGKILL)
        owner.wait(10)
        deadline = time.monotonic() + 10
        while _alive(int(pid)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(int(pid)), "jackd outlived the process that started it"
    finally:
        if owner.poll() is None:
            owner.kill()
    with PrivateJackServer(PREFIX) as again:  # the same name (and JACK registry slot) again
        assert again.name == f"{PREFIX}-0"


def test_jackd_writes_its_messages_to_a_file_that_never_fills():
    # a pipe nobody reads blocks jackd in write() once 64 KiB of xrun messages filled it
    with PrivateJackServer(PREFIX) as server:
        target = os.readlink(f"/proc/{server.proc.pid}/fd/2")
        assert not target.startswith("pipe:"), target
        assert _alive(server.proc.pid)
