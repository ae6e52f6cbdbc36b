"""What every jam-screen widget shares: draw from a snapshot, redraw only on change, cheaply.

Widgets here use Textual's line API: they build their lines once per
change as :class:`~textual.strip.Strip` objects of rich segments (no
markup, no rich Text layout), and :meth:`render_line` hands them out. A
poll that changes nothing a widget draws costs a comparison of two small
keys.
"""

from __future__ import annotations

from typing import Any

from rich.segment import Segment
from rich.style import Style
from textual.geometry import Region
from textual.strip import Strip
from textual.widget import Widget

from sjtui.snapshot import EngineSnapshot

_NULL_STYLE = Style()


class StripBuilder:
    """Lines of (text, style) runs, merged while the style stays the same object; builds Strips."""

    __slots__ = ("_base", "_chars", "_style", "lines")

    def __init__(self, base: Style | None = None) -> None:
        self.lines: list[list[Segment]] = [[]]
        self._chars: list[str] = []
        self._style: Style | None = None
        self._base = base or _NULL_STYLE  # for runs added without a style

    def add(self, chars: str, style: Style | None = None) -> None:
        if "\n" in chars:
            first, *rest = chars.split("\n")
            self.add(first, style)
            for part in rest:
                self.newline()
                self.add(part, style)
            return
        if not chars:
            return
        if style is not self._style and self._chars:
            self._flush()
        self._style = style
        self._chars.append(chars)

    def newline(self) -> None:
        self._flush()
        self.lines.append([])

    def _flush(self) -> None:
        if self._chars:
            # never a None style: Textual's line filters (NO_COLOR's Monochrome) read every segment's style
            self.lines[-1].append(Segment("".join(self._chars), self._style or self._base))
            self._chars = []

    def build(self) -> list[Strip]:
        self._flush()
        return [Strip(segments) for segments in self.lines]


class SnapshotView(Widget):
    """A widget drawn from part of an :class:`EngineSnapshot`.

    The app calls :meth:`show` on every poll (about 30 times a second).
    Subclasses return from :meth:`view_key` a small value that changes
    exactly when what they draw changes (a string, a tuple of rounded
    numbers, array identities), and draw in :meth:`draw` with a
    :class:`StripBuilder`. The widget asks Textual for a repaint only when
    the key changes.
    """

    can_focus = False

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.snapshot: EngineSnapshot = EngineSnapshot()
        self._view_key: Any = object()
        self._strips: list[Strip] | None = None
        self._strips_size = None
        self._styles_by_name: dict[tuple[str, bool], Style] = {}
        self.repaints = 0  # how many times show() asked for a repaint (for tests and the bench)

    def show(self, snapshot: EngineSnapshot, now_s: float) -> None:
        key = self.view_key(snapshot, now_s)
        if key != self._view_key:
            self._view_key = key
            self.snapshot = snapshot
            self.repaints += 1
            old = self._strips
            if old is None or self._strips_size != self.size:
                self._strips = None
                self.refresh()
                return
            # Draw now and repaint only the lines that changed: Textual then re-renders and
            # composites just those (a moving playhead or a meter is one or two lines of a panel),
            # which is most of the UI's CPU at 30 Hz.
            self._strips = None
            new = self.strips()
            if len(new) != len(old):
                self.refresh()
                return
            width = self.size.width
            dirty = [Region(0, y, width, 1) for y, (a, b) in enumerate(zip(old, new)) if a != b]
            if dirty:
                self.refresh(*dirty)

    def view_key(self, snapshot: EngineSnapshot, now_s: float) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def draw(self, out: StripBuilder) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    # --- styles, cached until the CSS or the theme changes ------------------------------------------

    def style(self, name: str, *, partial: bool = False) -> Style:
        """The rich style of component class ``name``.

        Full styles are blended over the widget's background (``$foreground 45%``
        comes out as a real grey, and every segment carries the background,
        which line-API content does not get otherwise). ``partial``: only what
        the class sets, to add on top of a full style (the playhead's
        background over a hit).
        """
        key = (name, partial)
        style = self._styles_by_name.get(key)
        if style is None:
            style = self._styles_by_name[key] = self.get_component_rich_style(name, partial=partial)
        return style

    def base_style(self) -> Style:
        """The widget's colours (line-API content gets no background unless its segments carry it)."""
        style = self._styles_by_name.get(("", False))
        if style is None:
            style = self._styles_by_name[("", False)] = self.rich_style
        return style

    def notify_style_update(self) -> None:
        self._styles_by_name = {}
        self._strips = None
        super().notify_style_update()

    # --- the line API ------------------------------------------------------------------------------------

    def strips(self) -> list[Strip]:
        if self._strips is None or self._strips_size != self.size:
            out = StripBuilder(self.base_style())
            self.draw(out)
            width = self.size.width
            self._strips = [strip.crop(0, width) for strip in out.build()]
            self._strips_size = self.size
        return self._strips

    def render_line(self, y: int) -> Strip:
        strips = self.strips()
        if 0 <= y < len(strips):
            return strips[y]
        return Strip.blank(self.size.width, self.base_style())

    def get_content_height(self, container, viewport, width: int) -> int:
        out = StripBuilder()
        self.draw(out)
        return len(out.lines)

    def plain(self) -> str:
        """What the widget shows, as text (for tests)."""
        return "\n".join(strip.text.rstrip() for strip in self.strips())
