"""Labelling: rated (guitar clip, groove) pairs, kept safe, for training the model on a player's taste.

- :mod:`sjtui.labels.store`: the SQLite label store and the clips beside it.
- :mod:`sjtui.labels.clips`: FLAC clips named by the hash of their samples.
- :mod:`sjtui.labels.exchange`: export / import (JSONL or CSV plus the clips).
- :mod:`sjtui.labels.pairing`: which groove to pair next with a guitar loop.
- :mod:`sjtui.labels.loops`: guitar loops from recordings and generated riffs.

Heavy modules (soundfile, the analysis) are imported where they are used.
"""

from sjtui.labels.errors import (
    LabelError,
    LabelStoreDamagedError,
    LabelStoreFullError,
    LabelStoreLockedError,
    LabelStoreNewerError,
    LabelStoreReadOnlyError,
)
from sjtui.labels.store import CLIP_SOURCES, SCHEMA_VERSION, STRATEGIES, GrooveKey, LabelStore, RatedPair

__all__ = [
    "CLIP_SOURCES",
    "SCHEMA_VERSION",
    "STRATEGIES",
    "GrooveKey",
    "LabelError",
    "LabelStore",
    "LabelStoreDamagedError",
    "LabelStoreFullError",
    "LabelStoreLockedError",
    "LabelStoreNewerError",
    "LabelStoreReadOnlyError",
    "RatedPair",
]
