"""``sjtui train``: fine-tune the model on your own ratings (needs the ``train`` extra: PyTorch).

Reads every rating of the labels database (the labelling mode writes it),
holds out a fifth of the rated clips, fine-tunes the shipped model's
checkpoint on the rest, and installs the result only when it orders the
held-out ratings at least as well as the starting model and your current
model do. Otherwise nothing is written. It fine-tunes (about a minute at most
for 200 ratings on one core) and installs the result as your model in the
data folder (``model/``; files it replaces are kept as ``*.bak-<stamp>``).
``sjtui match`` and the jam use it from then on; if it ever fails its
checks, they fall back to the shipped model and say why.

Ratings of grooves that are no longer in the library, and of clips saved
without a fingerprint, are skipped and counted. An empty database is an
error that says what to do; nothing is written then.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="fine-tune the model on your ratings (needs the train extra)",
        description="Fine-tune the shipped model on the ratings of your labels database and install it as yours.",
    )
    parser.add_argument(
        "--labels", type=Path, default=None, help="labels database or folder (default: yours)"
    )
    parser.add_argument(
        "--library", type=Path, default=None, help="groove library folder or file (default: yours)"
    )
    parser.add_argument(
        "--base", type=Path, default=None, help="model to start from (default: the shipped one)"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="where to install (default: your model folder)"
    )
    parser.add_argument("--steps", type=int, default=150, help="fine-tuning steps (default 150)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(run=run)


def _import_training():
    """``training.train``, from the source tree beside the installed ``sjtui`` package."""
    import importlib.util

    from sjtui.errors import SjtuiError

    # sjtui itself never imports torch: only the training code it hands over to does
    if importlib.util.find_spec("torch") is None:
        raise SjtuiError(
            "sjtui train needs PyTorch, from the train extra: `pip install -e '.[train]'` in the sjtui source "
            "folder (`make` installs it)"
        )
    try:
        from training import train
    except ImportError:
        root = Path(__file__).resolve().parents[2]
        if not (root / "training" / "train.py").is_file():
            raise SjtuiError(
                f"the training code is not next to this sjtui ({root / 'training'} is missing); run sjtui train "
                "from a source checkout"
            ) from None
        sys.path.insert(0, str(root))
        from training import train
    return train


def run(args) -> int:
    from sjtui.errors import SjtuiError
    from sjtui.labels.store import _resolve_db_path

    if args.steps < 1:
        raise SjtuiError(f"--steps {args.steps}: give at least 1")
    labels = _resolve_db_path(args.labels)
    if not labels.is_file():
        raise SjtuiError(
            f"no labels database at {labels}; rate some pairs first (the labelling mode writes them there), "
            "then train"
        )
    train = _import_training()
    result = train.finetune_from_labels(
        labels,
        library=args.library,
        base_dir=args.base,
        out_dir=args.out,
        steps=args.steps,
        seed=args.seed,
        log=lambda text: print(f"note: {text}", file=sys.stderr),
    )
    if args.json:
        print(json.dumps(result, indent=2))
    elif result["installed"]:
        print(
            f"fine-tuned on {result['n_ratings']} ratings in {result['seconds']:.1f} s; installed "
            f"{result['version']} into {result['out_dir']} (previous versions stay: `sjtui model list`)"
        )
    else:
        print(f"fine-tuned on {result['n_ratings']} ratings; not installed: {result['reason']}")
    return 0
