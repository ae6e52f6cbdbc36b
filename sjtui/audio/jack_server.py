"""A private JACK server (dummy backend) for tests, benches and the demo on a machine without a sound card.

JACK keeps a small registry of servers per user (8 slots) and frees a dead
server's slot only when a server *of the same name* starts again. A fresh
name per run (``...-<pid>``) therefore leaks a slot every time a run is
killed, until no server can start. :class:`PrivateJackServer` uses a small
fixed pool of names, ``PREFIX-0`` .. ``PREFIX-3``: a killed run's slot is
reclaimed by the next run, and a few runs can go on in parallel. Each name
is claimed with an ``flock`` held for the server's life (released by the
kernel if the process dies), so two runs never share one server.

jackd gets ``PR_SET_PDEATHSIG`` (Linux): it is terminated when the process
that started it dies, even by SIGKILL.

    with PrivateJackServer("sjtui-test") as server:
        ...  # JACK_DEFAULT_SERVER is server.name here
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sjtui.errors import SjtuiError
from sjtui.signals import unblocked

POOL_SIZE = 4


class JackServerError(SjtuiError):
    """A private JACK server could not be started."""


def die_with_parent() -> None:
    """Runs in the child before exec: jackd gets SIGTERM when its parent dies (even by SIGKILL)."""
    import ctypes
    import signal

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def end_process(proc: subprocess.Popen, timeout_s: float = 5.0) -> None:
    """Terminate ``proc`` and wait; kill it if it has not ended after ``timeout_s``."""
    proc.terminate()
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout_s)


def _lines(log) -> list[str]:
    """The lines of jackd's log file so far; pread, because jackd shares the file's offset and writes at it."""
    fd = log.fileno()
    return os.pread(fd, os.fstat(fd).st_size, 0).decode(errors="replace").strip().splitlines()


def _lock_dir() -> Path:
    return Path(tempfile.gettempdir())


class PrivateJackServer:
    """jackd ``-d dummy`` at ``rate_hz`` / ``period_frames`` under the first free name ``PREFIX-0..PREFIX-3``.

    ``set_env``: JACK_DEFAULT_SERVER is set to its name while it runs (and restored after), so
    PortAudio, JACK-Client and rtmidi in this process and its children talk to it.
    """

    def __init__(
        self,
        name_prefix: str = "sjtui",
        rate_hz: int = 48000,
        period_frames: int = 256,
        *,
        pool_size: int = POOL_SIZE,
        set_env: bool = True,
        timeout_s: float = 10.0,
    ):
        self.name_prefix = name_prefix
        self.rate_hz = int(rate_hz)
        self.period_frames = int(period_frames)
        self.pool_size = int(pool_size)
        self.set_env = set_env
        self.timeout_s = float(timeout_s)
        self.name: str | None = None
        self.proc: subprocess.Popen | None = None
        self._lock_file = None
        self._log = None
        self._previous_env: str | None = None

    # -- lifecycle ----------------------------------------------------------------------------------

    def start(self) -> PrivateJackServer:
        if self.proc is not None:
            return self
        jackd = shutil.which("jackd")
        if jackd is None or shutil.which("jack_wait") is None:
            raise JackServerError("jackd/jack_wait not found: install jackd2 (`make setup` installs it)")
        problems = []
        for k in range(self.pool_size):
            name = f"{self.name_prefix}-{k}"
            lock = self._claim(name)
            if lock is None:
                problems.append(f"{name}: in use by another run")
                continue
            # jackd's messages go to an unnamed file, not a pipe: nobody read the pipe while the server
            # ran, and once 64 KiB of xrun lines filled it jackd's message thread blocked and the rest was lost
            log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop() or below
            command = [jackd, "-n", name, "-d", "dummy"]
            command += ["-r", str(self.rate_hz), "-p", str(self.period_frames)]
            with unblocked():  # jackd starts with the mask of the thread starting it
                proc = subprocess.Popen(
                    command,
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                    preexec_fn=die_with_parent if sys.platform.startswith("linux") else None,
                )
            waited = subprocess.run(
                ["jack_wait", "-s", name, "-w", "-t", str(int(max(1, self.timeout_s)))],
                capture_output=True,
                check=False,
            )
            time.sleep(0.05)
            if waited.returncode == 0 and proc.poll() is None:
                self.name, self.proc, self._lock_file, self._log = name, proc, lock, log
                if self.set_env:
                    self._previous_env = os.environ.get("JACK_DEFAULT_SERVER")
                    os.environ["JACK_DEFAULT_SERVER"] = name
                return self
            # another server of this name (not ours) or jackd failed: try the next name
            if proc.poll() is None:
                proc.kill()
            proc.wait(5)
            error = _lines(log)
            log.close()
            problems.append(f"{name}: {error[-1] if error else 'did not start'}")
            lock.close()
        raise JackServerError(
            f"no private JACK server could be started ({'; '.join(problems)}); stop other runs or leftover jackd "
            f"processes (`pgrep -a jackd`)"
        )

    def stop(self) -> None:
        """Terminate jackd (kill after 5 s), release the name, restore JACK_DEFAULT_SERVER (idempotent)."""
        proc, self.proc = self.proc, None
        if proc is not None:
            end_process(proc)
            time.sleep(0.2)
        log, self._log = self._log, None
        if log is not None:
            log.close()
        if self.set_env and self.name is not None and os.environ.get("JACK_DEFAULT_SERVER") == self.name:
            if self._previous_env is None:
                os.environ.pop("JACK_DEFAULT_SERVER", None)
            else:
                os.environ["JACK_DEFAULT_SERVER"] = self._previous_env
        lock, self._lock_file = self._lock_file, None
        if lock is not None:
            lock.close()

    close = stop

    def messages(self) -> list[str]:
        """What jackd has written so far (its stderr), line by line; [] once stopped."""
        log = self._log
        if log is None:
            return []
        return _lines(log)

    def __enter__(self) -> PrivateJackServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- helpers ------------------------------------------------------------------------------------

    @staticmethod
    def _claim(name: str):
        """An open, flock-ed lock file for ``name``, or None when another live process holds it."""
        import fcntl

        path = _lock_dir() / f"sjtui-jack-{os.getuid()}-{name}.lock"
        handle = open(path, "a+")  # noqa: SIM115 - held open for the server's life
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return None
        return handle


def audio_device_present() -> bool:
    """A sound card (/dev/snd) or a JACK server that is already running (the default or $JACK_DEFAULT_SERVER)."""
    if Path("/dev/snd").exists() or os.environ.get("JACK_DEFAULT_SERVER"):
        return True
    if shutil.which("jack_wait") is None:
        return False
    result = subprocess.run(["jack_wait", "-c"], capture_output=True, text=True, check=False)
    return result.stdout.strip().startswith("running")


__all__ = ["JackServerError", "PrivateJackServer", "audio_device_present", "die_with_parent", "end_process"]
