"""The help screen: every key, what it does, and how to read the screen."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

KEYS = (
    ("space", "start / stop the jam (stop sends all notes off)"),
    ("l", "lock the current groove / let sjtui choose again"),
    ("s", "skip to the next candidate"),
    ("f", "play a fill at the next bar"),
    ("t", "tap tempo (tap on the beat, 4 taps or more)"),
    ("+ / -", "tempo up / down by 1 BPM"),
    ("0-5", "rate how well the groove fits your playing (teaches the model)"),
    ("r", "start / stop recording the take"),
    ("d", "choose the audio input (device or file)"),
    ("m", "choose the MIDI output (port, virtual port, built-in synth)"),
    ("c", "choose the clock source (auto, internal, tap, MIDI clock)"),
    ("?", "this help"),
    ("q", "quit (all notes off, MIDI closed cleanly)"),
)

READING = (
    "Top: play state, tempo and where it comes from, meter, bar:beat, when sjtui picks again (or LOCKED); "
    "then the MIDI destination, recording, input and model.\n"
    "Onsets: what you played in the current 4 bars, high, mid and low band; the taller the block, the harder "
    "the attack; ▲ is now; faded cells are the previous 4 bars.\n"
    "Groove: the drums sjtui plays over the same 4 bars; below it the next candidates and their scores, "
    "which is why sjtui chose.\n"
    "Light terminal? Start with TEXTUAL_THEME=textual-light. NO_COLOR is respected."
)


def help_text() -> str:
    width = max(len(key) for key, _ in KEYS)
    lines = [f"  {key:>{width}}  {what}" for key, what in KEYS]
    return "\n".join(["Keys", *lines, "", "Reading the screen", READING])


class HelpScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape", "close", "Close"),
        Binding("question_mark", "close", "Close", show=False),
        Binding("q", "close", "Close", show=False),
    ]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help"):
            yield Static(help_text(), id="help-text")
            yield Static("esc, ? or q: back to the jam", classes="picker-keys")

    def action_close(self) -> None:
        self.dismiss(None)
