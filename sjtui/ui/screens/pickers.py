"""Pickers for the audio input, the MIDI output and the clock source.

Each lists what exists (asked of the engine in a worker thread, since a
device scan can take a while) and says what to do when something is
missing. A picker dismisses with a :class:`Picked` value, or ``None`` when
the player backs out (so ``Picked(None)``, the built-in synth, differs from
backing out).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option


@dataclass(frozen=True)
class Picked:
    value: Any


@dataclass(frozen=True)
class Choice:
    label: str
    value: Any


# keys a player who knows the list presses at once ("m, down, down, enter"): while it is being
# found they are kept, and replayed on the list when it is filled (the list's own key bindings)
_TYPE_AHEAD = {binding.key: binding.action for binding in OptionList.BINDINGS}


class PickerScreen(ModalScreen[Picked | None]):
    """A list of choices found by ``find`` (run in a thread), an explanation, and escape to go back."""

    # the list takes the focus when it is filled; until then the screen keeps the keys, and tab goes
    # to the file path (the input picker)
    AUTO_FOCUS = ""
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("q", "back", "Back", show=False),
    ]

    def __init__(
        self,
        title: str,
        find: Callable[[], list[str]],
        choices: Callable[[list[str]], tuple[list[Choice], str]],
        *,
        path_prompt: str | None = None,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id)
        self.title_text = title
        self._find = find
        self._choices_for = choices
        self._path_prompt = path_prompt
        self.choices: list[Choice] = []
        self.loaded = False
        self._typed_ahead: list[str] = []

    def compose(self) -> ComposeResult:
        with Vertical(classes="picker"):
            yield Static(self.title_text, classes="picker-title")
            yield Static("looking…", classes="picker-note")
            yield OptionList(classes="picker-options", disabled=True)  # not focusable until filled
            if self._path_prompt is not None:
                yield Input(placeholder=self._path_prompt, classes="picker-path")
            yield Static("↑↓ choose · enter select · esc back", classes="picker-keys")

    def on_mount(self) -> None:
        self._load()

    def on_key(self, event: events.Key) -> None:
        if not self.loaded and event.key in _TYPE_AHEAD:
            event.stop()
            event.prevent_default()
            self._typed_ahead.append(event.key)

    @work(thread=True, exclusive=True, group="picker-list")
    def _load(self) -> None:
        try:
            found = list(self._find())
            error = None
        except Exception as exc:  # noqa: BLE001 - a device scan that fails is shown, not raised into the UI
            found, error = [], f"could not list them: {exc}"
        self.app.call_from_thread(self._show, found, error)

    def _show(self, found: list[str], error: str | None) -> None:
        choices, note = self._choices_for(found)
        if error:
            note = f"{error}\n{note}".strip()
        self.choices = choices
        self.query_one(".picker-note", Static).update(note)
        options = self.query_one(OptionList)
        options.clear_options()
        options.add_options([Option(choice.label, id=str(k)) for k, choice in enumerate(choices)])
        if choices:
            options.highlighted = 0
        options.disabled = False
        self.loaded = True
        if self.focused is None:  # not if the player went on to the file path meanwhile
            options.focus()
            for key in self._typed_ahead:
                getattr(options, f"action_{_TYPE_AHEAD[key]}")()
        self._typed_ahead.clear()

    @on(OptionList.OptionSelected)
    def _selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(Picked(self.choices[int(event.option.id)].value))

    @on(Input.Submitted)
    def _path(self, event: Input.Submitted) -> None:
        event.stop()
        if event.value.strip():
            self.dismiss(Picked(event.value.strip()))

    def action_back(self) -> None:
        self.dismiss(None)


# --- the three pickers ----------------------------------------------------------------------------


def input_choices(found: list[str]) -> tuple[list[Choice], str]:
    choices = [Choice(name, name) for name in found]
    if found:
        note = (
            "Audio inputs found. Or type the path of a WAV or FLAC file below to jam along with a recording."
        )
    else:
        note = (
            "No audio input devices found. Start JACK or PipeWire or plug in your interface, then press d again; "
            "or type the path of a WAV or FLAC file below. `sjtui demo` plays a synthesized guitar."
        )
    return choices, note


def midi_output_choices(found: list[str]) -> tuple[list[Choice], str]:
    choices = [Choice(port, port) for port in found]
    choices.append(Choice("sjtui (virtual port: connect a synth or DAW to it)", "sjtui"))
    choices.append(Choice("built-in synth (sjtui plays the drums itself)", None))
    if found:
        note = "MIDI output ports found. Drums go to channel 10."
    else:
        note = (
            "No MIDI output ports found: a virtual port named sjtui will be created for a synth or DAW to "
            "connect to; or use the built-in synth."
        )
    return choices, note


def clock_choices(found: list[str]) -> tuple[list[Choice], str]:
    choices = [
        Choice("auto (follow the tempo of your playing)", ("auto", None)),
        Choice("internal (fixed tempo; + and - change it)", ("internal", None)),
        Choice("tap (press t on the beat)", ("tap", None)),
    ]
    choices.extend(Choice(f"MIDI clock from {port}", ("midi", port)) for port in found)
    if found:
        note = "Where the tempo comes from. A MIDI clock input follows a drum machine or DAW."
    else:
        note = (
            "Where the tempo comes from. No MIDI inputs found: to follow a drum machine or DAW, connect one "
            "that sends MIDI clock and press c again."
        )
    return choices, note


def input_picker(find: Callable[[], list[str]]) -> PickerScreen:
    return PickerScreen(
        "Audio input", find, input_choices, path_prompt="or a file: /path/to/riff.wav", id="input-picker"
    )


def midi_output_picker(find: Callable[[], list[str]]) -> PickerScreen:
    return PickerScreen("MIDI output", find, midi_output_choices, id="midi-picker")


def clock_picker(find: Callable[[], list[str]]) -> PickerScreen:
    return PickerScreen("Clock source", find, clock_choices, id="clock-picker")
