"""Labelling: rated (guitar clip, groove) pairs, kept safe, for training the model on a player's taste.

- :mod:`sjtui.labels.store`: the SQLite label store and the clips beside it.
- :mod:`sjtui.labels.clips`: FLAC clips named by the hash of their samples.
- :mod:`sjtui.labels.exchange`: export / import (JSONL or CSV plus the clips).
- :mod:`sjtui.labels.pairing`: which groove to pair next with a guitar loop.
- :mod:`sjtui.labels.loops`: guitar loops from recordings and generated riffs.

A labelling session, as the ``sjtui label`` screen would run it::

    grooves = GrooveStore()
    library = grooves.load_library(embedding_model=...)
    keys = groove_key_index(grooves)                      # GrooveKey -> (id, name)
    store = LabelStore.open(groove_store=grooves)
    loops, problems = loops_from_folder(folder)           # or generated_loops(n)
    for k, loop in enumerate(loops):
        clip = store.add_clip(loop.audio, loop.sample_rate_hz, loop.fingerprint, loop.clip_meta())
        recent = ids_of_keys(store.recent_groove_keys(clip), keys)
        eligible = eligible_mask(library.bpm, library.meters, loop.bpm, loop.meter,
                                 groove_ids=library.ids, exclude_ids=recent)
        scores = library.embeddings @ guitar_embedding(loop.fingerprint)
        for pick in plan_pairs(scores, library.ids, eligible, n=3, seed=session_seed, start=3 * k):
            ...play loop + groove pick.groove_id, read a key 0-5 (or skip)...
            store.add_rating(clip, pick.groove_id, rating, note, model_version, pick.strategy)

Each ``add_rating`` returns after its commit (fsynced): from then on the
rating survives a killed process or a power cut. The jam screen calls
:meth:`LabelStore.save_jam_rating` with the last 4 bars instead. Training
iterates :meth:`LabelStore.ratings` (clip path, fingerprint, groove key and
current groove id, rating) without analysing audio again.

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
