"""``sjtui labels``: back up, merge and inspect your ratings.

    sjtui labels export DIR [--format jsonl|csv]   ratings + the clips they refer to
    sjtui labels import DIR|FILE [--json]           merge; duplicates skipped, bad rows reported by line
    sjtui labels list [--limit N] [--json]          the newest ratings
    sjtui labels stats [--json] [--check]           counts (and a full check of database and clips)

The store is ``labels.sqlite`` in the data folder (``--data-dir``,
``$SJTUI_DATA_DIR`` or your user data directory) or the file ``--db``.
``import`` exits with 1 when it skipped rows (the report says which and why),
``stats --check`` exits with 1 when it found a problem.
"""

from __future__ import annotations

import json
from pathlib import Path


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("labels", help="your ratings: export, import, list, stats")
    parser.add_argument("--data-dir", type=Path, default=None, help="data folder (default: your data dir)")
    parser.add_argument(
        "--db", type=Path, default=None, help="the label database file (default: DATA_DIR/labels.sqlite)"
    )
    parser.set_defaults(run=_run_help, _parser=parser)
    sub = parser.add_subparsers(dest="labels_command", metavar="ACTION")

    p = sub.add_parser("export", help="write the ratings (JSONL or CSV) and their clips to a folder")
    p.add_argument("directory", type=Path)
    p.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(run=run_export)

    p = sub.add_parser("import", help="merge ratings from an export folder or ratings file")
    p.add_argument("source", type=Path, help="export folder, or its ratings.jsonl / ratings.csv")
    p.add_argument("--no-groove-check", action="store_true", help="do not look the grooves up in the library")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(run=run_import)

    p = sub.add_parser("list", help="the newest ratings")
    p.add_argument("--limit", type=int, default=20, help="how many (default 20; 0 = all)")
    p.add_argument("--json", action="store_true", help="one JSON object per rating, one per line")
    p.set_defaults(run=run_list)

    p = sub.add_parser("stats", help="how many ratings, of what, from where")
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--check", action="store_true", help="also check SQLite integrity and every clip file's hash"
    )
    p.set_defaults(run=run_stats)


def _run_help(args) -> int:
    args._parser.print_help()
    return 0


def _db_path(args) -> Path | None:
    if args.db is not None:
        return args.db
    return args.data_dir  # None: the default data dir


def _groove_store(args):
    from sjtui.grooves.store import GrooveStore

    return GrooveStore(args.data_dir)


def run_export(args) -> int:
    from sjtui.labels.exchange import export_labels
    from sjtui.labels.store import LabelStore

    with LabelStore.open(_db_path(args), readonly=True) as store:
        report = export_labels(store, args.directory, args.format)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print(
            f"exported {report.ratings} ratings and {report.clips} clips to {report.directory} ({report.ratings_file.name})"
        )
        for clip_hash in report.missing_clip_files:
            print(
                f"  warning: clip {clip_hash} is missing from the store; its ratings cannot be imported elsewhere"
            )
    return 0


def run_import(args) -> int:
    from sjtui.labels.exchange import import_labels
    from sjtui.labels.store import LabelStore

    grooves = None if args.no_groove_check else _groove_store(args)
    try:
        with LabelStore.open(_db_path(args)) as store:
            report = import_labels(store, args.source, groove_store=grooves)
    finally:
        if grooves is not None:
            grooves.close()
    print(json.dumps(report.as_dict(), indent=2) if args.json else report.summary())
    return 1 if report.problems else 0


def run_list(args) -> int:
    from sjtui.labels.store import LabelStore

    with LabelStore.open(_db_path(args), readonly=True) as store:
        rows = store.rating_rows()
    if args.limit:
        rows = rows[-args.limit :]
    if args.json:
        for row in rows:
            row = {k: v for k, v in row.items() if k not in ("clip_fingerprint", "clip_path")}
            row["clip_origin"] = json.loads(row["clip_origin"])
            print(json.dumps(row, sort_keys=True))
        return 0
    if not rows:
        print("no ratings yet: rate pairs with `sjtui label`, or keys 0-5 while jamming")
        return 0
    print(f"{'id':>5}  {'when (UTC)':19}  {'rating':6}  {'strategy':9}  {'clip':12}  {'tempo':>9}  groove")
    for row in rows:
        tempo = (
            f"{row['clip_bpm']:.0f} {row['clip_meter'] or ''}"
            if row["clip_bpm"]
            else (row["clip_meter"] or "")
        )
        groove = row["groove_name"] or f"{row['groove_source']}:{row['groove_path']}"
        stars = "*" * row["rating"] + "." * (5 - row["rating"])
        note = f'  "{row["note"]}"' if row["note"] else ""
        print(
            f"{row['id']:>5}  {row['created_at'][:19].replace('T', ' ')}  {stars:6}  {row['strategy']:9}  "
            f"{row['clip_hash'][:12]}  {tempo:>9}  {groove}{note}"
        )
    return 0


def run_stats(args) -> int:
    from sjtui.labels.store import LabelStore

    with LabelStore.open(_db_path(args), readonly=True) as store:
        stats = store.stats()
        problems = store.check(verify_hashes=True) if args.check else None
    if problems is not None:
        stats["problems"] = problems
    if args.json:
        print(json.dumps(stats, indent=2))
    else:
        print(f"label store {stats['database']} (schema version {stats['schema_version']})")
        print(f"  {stats['ratings']} ratings of {stats['pairs']} pairs ({stats['grooves']} grooves), "
              f"mean {stats['mean_rating'] if stats['mean_rating'] is not None else '-'}")  # fmt: skip
        print("  by rating:   " + "  ".join(f"{k}: {v}" for k, v in stats["ratings_by_value"].items()))
        for title, key in (("by strategy", "ratings_by_strategy"), ("by clip", "ratings_by_clip_source"),
                           ("by rater", "ratings_by_rater"), ("by model", "ratings_by_model_version")):  # fmt: skip
            if stats[key]:
                print(f"  {title + ':':13}" + "  ".join(f"{k}: {v}" for k, v in stats[key].items()))
        print(
            f"  {stats['clips']} clips, {stats['clips_seconds']:.1f} s, {stats['clips_bytes'] / 1e6:.1f} MB"
        )
        if stats["clips_missing_files"]:
            print(f"  {len(stats['clips_missing_files'])} clip file(s) missing: their ratings cannot train")
        if stats["orphan_clip_files"]:
            print(
                f"  {len(stats['orphan_clip_files'])} clip file(s) without a rating (left by an interrupted save)"
            )
        if problems is not None:
            print("  check: " + ("ok" if not problems else f"{len(problems)} problem(s)"))
            for problem in problems:
                print(f"    {problem}")
    return 1 if problems else 0
