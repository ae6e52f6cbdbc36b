"""The ``sjtui`` command.

Each subcommand lives in its own module under ``sjtui/commands/`` with two
functions: ``add_parser(subparsers)`` and ``run(args) -> int``. Modules are
found by name so that adding a command touches no shared file; their heavy
imports happen inside ``run`` so ``sjtui --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from sjtui import __version__
from sjtui.errors import SjtuiError


def _command_modules():
    import sjtui.commands as package

    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):
            yield importlib.import_module(f"sjtui.commands.{info.name}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sjtui",
        description="A jam partner in the terminal: it listens to your guitar and drums along.",
    )
    parser.add_argument("--version", action="version", version=f"sjtui {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _command_modules():
        module.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        if "jam" in parser._subparsers._group_actions[0].choices:  # noqa: SLF001 - argparse has no public accessor
            args = parser.parse_args(["jam", *(argv or sys.argv[1:])])
        else:
            parser.print_help()
            return 0
    try:
        return int(args.run(args) or 0)
    except SjtuiError as error:
        print(f"sjtui: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
