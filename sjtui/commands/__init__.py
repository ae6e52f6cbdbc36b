"""Subcommands of ``sjtui``: one module each, see :mod:`sjtui.cli`."""
