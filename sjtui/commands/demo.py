"""``sjtui demo``: the whole chain on a synthesized guitar, no hardware needed."""

from __future__ import annotations


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("demo", help="hear and see sjtui react to a synthesized guitar")
    parser.set_defaults(run=run)


def run(args) -> int:
    print(
        "sjtui demo: the jam engine is not built yet (see the issue 'The live engine').\n"
        "What exists today: `sjtui analyze FILE` shows band energies and onsets of a recording."
    )
    return 0
