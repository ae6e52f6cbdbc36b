"""A one-line key bar that always fits: the least needed keys give way on narrow terminals.

Textual's Footer cuts the line at the right edge, which on 80 columns
would hide ``? help`` and ``q quit``. Here every key has a rank; the bar
shows keys in their order and leaves out the lowest-ranked ones until the
line fits (the help screen lists them all).
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.widget import Widget


@dataclass(frozen=True)
class KeyHint:
    key: str  # as shown: "space", "+/-", "0-5"
    description: str
    rank: int  # 0 = never left out; higher goes first


def fit_hints(hints: list[KeyHint], width: int) -> list[KeyHint]:
    """The hints, in order, without the highest-ranked ones that do not fit in ``width`` cells."""
    shown = list(hints)

    def length(items: list[KeyHint]) -> int:
        return sum(len(h.key) + 1 + len(h.description) for h in items) + 2 * max(len(items) - 1, 0) + 1

    while shown and length(shown) > width:
        worst = max(shown, key=lambda h: h.rank)
        if worst.rank == 0:
            break
        shown.remove(worst)
    return shown


class KeyBar(Widget):
    """The keys of the jam screen, one line."""

    COMPONENT_CLASSES = {"key-bar--key", "key-bar--description"}

    DEFAULT_CSS = """
    KeyBar { height: 1; dock: bottom; background: $panel; }
    KeyBar > .key-bar--key { color: $text-accent; text-style: bold; }
    KeyBar > .key-bar--description { color: $foreground; }
    """

    def __init__(self, hints: list[KeyHint], *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.hints = hints

    def render(self) -> Text:
        key_style = self.get_component_rich_style("key-bar--key")
        description_style = self.get_component_rich_style("key-bar--description")
        text = Text(" ", no_wrap=True, overflow="crop", end="")
        for k, hint in enumerate(fit_hints(self.hints, self.size.width)):
            if k:
                text.append("  ")
            text.append(hint.key, key_style)
            text.append(" " + hint.description, description_style)
        return text
