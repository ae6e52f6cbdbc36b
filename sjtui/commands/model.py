"""``sjtui model list|use VERSION``: the model versions, which is active, switching and rollback.

Versions live in your model folder (``<data dir>/model/``, where ``sjtui
train`` installs them; earlier ones are kept) and ``sjtui/data/models/`` (the shipped
model). ``use VERSION`` makes one active after checking it; ``use shipped``
goes back to the shipped model. See :mod:`sjtui.model.versions`.
"""

from __future__ import annotations

import json
from pathlib import Path


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("model", help="model versions: list them, switch, roll back")
    parser.add_argument(
        "--user-dir", type=Path, default=None, help="your model folder (default: <data dir>/model)"
    )
    parser.add_argument(
        "--shipped-dir", type=Path, default=None, help="the shipped model folder (default: sjtui/data/models/)"
    )
    parser.set_defaults(run=_run_help, _parser=parser)
    sub = parser.add_subparsers(dest="model_command", metavar="ACTION")
    p = sub.add_parser("list", help="every version, the active one marked, with its evaluation figures")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--no-check", action="store_true", help="skip the file checks (sha256, loading)")
    p.set_defaults(run=run_list)
    p = sub.add_parser("use", help="make VERSION active (`shipped` for the shipped model)")
    p.add_argument("version", help="a version from `sjtui model list`, or `shipped`")
    p.set_defaults(run=run_use)


def _run_help(args) -> int:
    args._parser.print_help()
    return 0


def _figures(item) -> str:
    if not item.evaluation:
        return item.evaluation_status
    return " ".join(f"{k}={v:.3f}" for k, v in item.evaluation.items())


def run_list(args) -> int:
    from sjtui.model.versions import list_versions

    versions = list_versions(args.user_dir, args.shipped_dir, check=not args.no_check)
    if args.json:
        print(json.dumps([v.to_json() for v in versions], indent=2))
        return 0
    for item in versions:
        mark = "*" if item.active else " "
        state = "" if item.problem is None else f"  BROKEN: {item.problem.splitlines()[0]}"
        created = item.created_utc or "?"
        print(f"{mark} {item.version:<32} {item.where:<8} {created:<21} {_figures(item)}{state}")
    print("(* active; `sjtui model use VERSION` switches, `sjtui model use shipped` goes back)")
    return 0


def run_use(args) -> int:
    from sjtui.model.versions import use_version

    item = use_version(args.version, args.user_dir, args.shipped_dir)
    print(f"active model: {item.version} ({item.where}); the jam picks it up at its next model load")
    return 0
