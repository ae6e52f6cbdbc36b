"""Errors that reach the user.

Every error raised for bad input says what was wrong, with which value, and
what to do about it; the CLI prints ``str(error)`` and exits with status 2.
"""


class SjtuiError(Exception):
    """A problem the user can act on; the message is shown as is."""


class AudioError(SjtuiError):
    """Audio device or audio file problem."""


class MeterError(SjtuiError, ValueError):
    """A time signature that cannot be used."""


class GrooveError(SjtuiError):
    """A groove or groove library problem."""
