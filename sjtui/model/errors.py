"""Errors of the model runtime (all :class:`~sjtui.errors.SjtuiError`, shown to the user as is)."""

from __future__ import annotations

from sjtui.errors import SjtuiError


class ModelError(SjtuiError):
    """A model that cannot be used: missing, damaged, tampered, or built for other features."""


class ModelInputError(ModelError, ValueError):
    """Input that does not fit the model's fixed layout (shape, meter, bar count)."""
