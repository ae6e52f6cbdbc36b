"""Errors of the label store: each says what happened, to which file, and what to do."""

from __future__ import annotations

from sjtui.errors import SjtuiError


class LabelError(SjtuiError):
    """A label-store problem the user can act on (bad argument, missing clip, bad file)."""


class LabelStoreNewerError(LabelError):
    """The database was written by a newer sjtui; it is left untouched."""


class LabelStoreLockedError(LabelError):
    """Another process held the write lock for longer than the busy timeout."""


class LabelStoreReadOnlyError(LabelError):
    """The database (or its folder, or its file system) cannot be written."""


class LabelStoreFullError(LabelError):
    """The disk holding the database or the clips is full."""


class LabelStoreDamagedError(LabelError):
    """The file is not a label database, or SQLite reports it damaged."""
