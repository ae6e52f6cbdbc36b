"""Snapshot tests of the jam screen (pytest-textual-snapshot) at 80×24 and 120×40.

The fake engine's clock is frozen, so each state draws the same screen
every run. Regenerate the SVGs after a deliberate change with
``pytest tests/test_ui_snapshots.py --snapshot-update`` and look at them.
"""

from __future__ import annotations

import pytest

from sjtui.ui.app import make_app
from sjtui.ui.fake import frozen

STATES = ("idle", "jamming", "locked", "clock-lost", "no-device")
SIZES = ((80, 24), (120, 40))


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
@pytest.mark.parametrize("state", STATES)
def test_jam_screen(snap_compare, state, size):
    assert snap_compare(make_app(frozen(state)), terminal_size=size)


def test_help_screen(snap_compare):
    assert snap_compare(make_app(frozen("jamming")), press=["question_mark"], terminal_size=(80, 24))


def test_midi_picker_without_ports(snap_compare):
    async def open_picker(pilot):
        await pilot.press("m")
        for _ in range(100):
            if getattr(pilot.app.screen, "loaded", False):
                break
            await pilot.pause(0.02)

    assert snap_compare(make_app(frozen("no-midi")), run_before=open_picker, terminal_size=(80, 24))


def test_light_theme(snap_compare):
    """TEXTUAL_THEME=textual-light (or the theme set here) for a light terminal: same screen, dark text."""
    app = make_app(frozen("jamming"))

    async def light(pilot):
        app.theme = "textual-light"
        await pilot.pause()

    assert snap_compare(app, run_before=light, terminal_size=(80, 24))
