"""Where a child process's stderr goes: a log file, when the parent's is the terminal.

The audio input and MIDI children are spawned with the parent's file
descriptors. Libraries running in them write to fd 2 on their own: ALSA's
"ALSA lib pcm.c: ..." lines when PortAudio starts on a desktop, libjack's
messages, a traceback. On a terminal that text lands in the middle of the
jam screen, which repaints only the lines that change, so it stays there.
A child calls :func:`stderr_to_log` first thing: when its fd 2 is a
terminal, fd 2 becomes ``<log dir>/<name>.log`` (appended; started afresh
past 1 MB). A pipe or a file (tests, a rig's service manager, ``2>log``)
is left alone. Errors that matter still reach the parent over the child's
pipe and are reported there.
"""

from __future__ import annotations

import os
from pathlib import Path

MAX_LOG_BYTES = 1 << 20


def log_dir() -> Path:
    """``$SJTUI_LOG_DIR``, else ``platformdirs.user_log_dir("sjtui")``."""
    override = os.environ.get("SJTUI_LOG_DIR")
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_log_dir("sjtui"))


def stderr_to_log(name: str) -> Path | None:
    """Point fd 2 at ``<log dir>/<name>.log`` if it is a terminal; the log's path, or None if left alone.

    When the log cannot be opened (read-only home, full disk), fd 2 goes to
    /dev/null rather than to the screen.
    """
    try:
        if not os.isatty(2):
            return None
    except OSError:
        return None
    path: Path | None = log_dir() / f"{name}.log"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
        if path.exists() and path.stat().st_size > MAX_LOG_BYTES:
            flags |= os.O_TRUNC
        fd = os.open(path, flags, 0o644)
    except OSError:
        path, fd = None, os.open(os.devnull, os.O_WRONLY)
    os.dup2(fd, 2)
    os.close(fd)
    return path


__all__ = ["log_dir", "stderr_to_log"]
