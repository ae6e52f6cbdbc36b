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


def test_jackd_messages_past_64_kib_are_kept_and_can_be_read():
    """A client too slow for its cycle makes jackd write lines at every xrun (~13 KB/s). With its stderr
    a pipe nobody read, jackd's message thread blocked in write() once 64 KiB filled it and every later
    message was lost (the graph itself went on); a file takes them all."""
    import jack

    with PrivateJackServer(PREFIX) as server:
        slow = jack.Client("sjtui-slow")
        slow.set_process_callback(lambda frames: time.sleep(0.05))
        slow.activate()
        deadline = time.monotonic() + 60
        while os.fstat(server._log.fileno()).st_size < 80_000 and time.monotonic() < deadline:
            time.sleep(0.2)
        slow.deactivate()
        slow.close()
        messages = server.messages()
        late = [k for k, line in enumerate(messages) if "client = sjtui-slow was not finished" in line]
        assert sum(len(line) + 1 for line in messages[: late[-1]]) > 65536, "nothing kept past 64 KiB"
    assert server.messages() == []
