"""What every jam-screen widget shares: draw from a snapshot, redraw only on change."""

from __future__ import annotations

from typing import Any

from textual.widget import Widget

from sjtui.snapshot import EngineSnapshot


class SnapshotView(Widget):
    """A widget drawn from part of an :class:`EngineSnapshot`.

    The app calls :meth:`show` on every poll (about 30 times a second).
    Subclasses return from :meth:`view_key` a small value that changes
    exactly when what they draw changes (a string, a tuple of rounded
    numbers, array identities); the widget asks Textual for a repaint only
    then, so a steady screen costs next to nothing.
    """

    can_focus = False

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.snapshot: EngineSnapshot = EngineSnapshot()
        self._view_key: Any = object()
        self.repaints = 0  # how many times show() asked for a repaint (for tests and the bench)

    def show(self, snapshot: EngineSnapshot, now_s: float) -> None:
        key = self.view_key(snapshot, now_s)
        if key != self._view_key:
            self._view_key = key
            self.snapshot = snapshot
            self.repaints += 1
            self.refresh()

    def view_key(self, snapshot: EngineSnapshot, now_s: float) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError
