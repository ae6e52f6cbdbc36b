"""Time signatures.

A beat is a quarter note (see ``sjtui.constants``): a bar of ``n/d`` lasts
``4 * n / d`` quarter notes, so 6/8 is 3 beats (36 steps) and 7/8 is 3.5
beats (42 steps).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from sjtui.constants import STEPS_PER_BEAT
from sjtui.errors import MeterError

_DENOMINATORS = (1, 2, 4, 8, 16)


@dataclass(frozen=True)
class Meter:
    numerator: int = 4
    denominator: int = 4

    def __post_init__(self) -> None:
        if self.denominator not in _DENOMINATORS:
            raise MeterError(
                f"meter {self.numerator}/{self.denominator}: the lower number must be one of "
                f"{', '.join(map(str, _DENOMINATORS))}; try 4/4, 3/4, 6/8, 5/4 or 7/8"
            )
        if not 1 <= self.numerator <= 32:
            raise MeterError(
                f"meter {self.numerator}/{self.denominator}: the upper number must be 1 to 32; "
                "try 4/4, 3/4, 6/8, 5/4 or 7/8"
            )

    @property
    def beats_per_bar(self) -> Fraction:
        """Quarter notes per bar (6/8 -> 3, 7/8 -> 7/2)."""
        return Fraction(4 * self.numerator, self.denominator)

    @property
    def steps_per_bar(self) -> int:
        steps, rest = divmod(4 * self.numerator * STEPS_PER_BEAT, self.denominator)  # ints: read at every decision
        if rest:  # only n/16 with odd n and 12 steps/beat: 3/16 -> 9 steps, fine
            raise MeterError(f"meter {self}: does not fit a grid of {STEPS_PER_BEAT} steps per beat")
        return steps

    @property
    def is_compound(self) -> bool:
        """6/8, 9/8, 12/8: felt in dotted quarters."""
        return self.denominator == 8 and self.numerator % 3 == 0 and self.numerator > 3

    def __str__(self) -> str:
        return f"{self.numerator}/{self.denominator}"


def parse_meter(text: str | Meter) -> Meter:
    """Parse ``"4/4"``, ``"6/8"`` or ``"7/8"``; raise :class:`MeterError` with advice otherwise."""
    if isinstance(text, Meter):
        return text
    parts = str(text).strip().split("/")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise MeterError(f"meter {text!r} does not parse: write it as N/D, for example 4/4, 3/4, 6/8 or 7/8")
    return Meter(int(parts[0]), int(parts[1]))


FOUR_FOUR = Meter(4, 4)
