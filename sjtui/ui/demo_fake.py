"""``python -m sjtui.ui.demo_fake [SCENARIO]``: the jam screen over the in-memory fake engine.

For trying the screen without audio or MIDI (and for the UI's own tests
and benchmark). Scenarios: see :data:`sjtui.ui.fake.SCENARIOS`.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    from sjtui.ui.fake import SCENARIOS

    parser = argparse.ArgumentParser(prog="python -m sjtui.ui.demo_fake", description=__doc__.split("\n")[0])
    parser.add_argument("scenario", nargs="?", default="jamming", choices=SCENARIOS)
    parser.add_argument(
        "--publish-hz", type=float, default=60.0, help="snapshots per second the fake publishes"
    )
    args = parser.parse_args(argv)

    from sjtui.ui.app import run_app
    from sjtui.ui.fake import FakeEngine

    return run_app(FakeEngine(args.scenario, publish_hz=args.publish_hz))


if __name__ == "__main__":
    sys.exit(main())
