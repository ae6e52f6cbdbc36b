"""``sjtui label`` as a player over SSH uses it: a real terminal (tmux), keys typed, the screen read.

Runs the real command (generated riffs, the shipped model, guitar and
built-in-synth drums on PortAudio) on the private JACK dummy server, then
checks the labels database the keys wrote.
"""

from __future__ import annotations

import shlex
import sys

import pytest

from sjtui.labels.store import LabelStore
from tests.test_ui_tmux import Tmux, tmux_sessions  # noqa: F401 - the fixture

pytestmark = [pytest.mark.slow, pytest.mark.jack]


def test_label_over_tmux_rate_skip_note_quit(jack_server, tmp_path, tmux_sessions):  # noqa: F811
    env = {"TERM": "xterm-256color", "SJTUI_DATA_DIR": str(tmp_path), "JACK_DEFAULT_SERVER": jack_server}
    term = Tmux(
        f"{shlex.quote(sys.executable)} -m sjtui label --generated 2 --no-recordings --synth-engine numpy",
        width=80,
        height=24,
        env=env,
    )
    tmux_sessions.append(term)
    screen = term.wait_for("how well do the drums fit?", 60)
    assert "pair 1 · loop 1/2" in screen and "drums: built-in synth" in screen
    term.keys("4")
    term.wait_for("rated 1")
    term.keys("s")
    term.wait_for("skipped 1")
    term.keys("n")
    term.keys("great fill")
    term.keys("Enter")
    term.wait_for("· note:")  # the status line: the input has closed and handed the focus back
    term.keys("2")
    term.wait_for("rated 2")
    term.keys("q")
    term.wait_for("SJTUI-EXIT=0")
    with LabelStore.open(tmp_path, readonly=True) as store:
        rows = store.rating_rows()
    from tests.test_label_app import shipped_version

    version = shipped_version()
    assert [(r["rating"], r["note"], r["model_version"]) for r in rows] == [
        (4, "", version),
        (2, "great fill", version),
    ]
