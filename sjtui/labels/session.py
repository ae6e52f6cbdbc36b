"""A labelling session without a screen: which pair is up, what a key does, what gets saved.

The ``sjtui label`` screen (:mod:`sjtui.ui.label_app`) only draws this
object and forwards keys to it, so everything it does is testable without
Textual::

    session = LabelSession(loops, library, store, groove_of=grooves.get, scores_of=scores, player=player)
    pair = session.start()           # the first pair, playing
    session.rate(4, note="busy hat") # committed at once, next pair playing
    session.skip()                   # nothing saved, next pair playing
    session.replay()
    session.close()                  # audio and MIDI closed

Pairs: each loop is paired with ``picks_per_loop`` grooves chosen by
:func:`sjtui.labels.pairing.plan_pairs` from the model's scores of that
loop (``scores_of(loop)`` -> ``(n_grooves,)``, NaN for grooves without an
embedding; None scores -> exploration only), among grooves that fit the
loop's meter and tempo and were not rated with this clip before. A loop no
groove fits is passed over and noted in :attr:`LabelSession.problems`.

The clip is saved (FLAC + row) only when its first rating is confirmed, and
each rating is its own committed transaction
(:meth:`sjtui.labels.store.LabelStore.add_rating`); skipping writes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sjtui.labels.errors import LabelError
from sjtui.labels.pairing import DEFAULT_MIX, PairingError, PairingMix, Pick, eligible_mask, plan_pairs

MAX_NOTE_CHARS = 500


@dataclass
class Pair:
    """One (loop, groove) to rate."""

    number: int  # 1-based position in the session
    loop_index: int
    loop: object  # sjtui.labels.loops.GuitarLoop
    groove: object  # sjtui.grooves.vho.Groove (its `id` set)
    pick: Pick


class LabelSession:
    """Walks through loops × chosen grooves; saves ratings; drives a :class:`~sjtui.labels.player.PairPlayer`."""

    def __init__(
        self,
        loops: list,
        library,
        store,
        *,
        groove_of: Callable[[int], object],
        scores_of: Callable[[object], np.ndarray | None] | None = None,
        player=None,
        model_version: str | None = None,
        picks_per_loop: int = 3,
        mix: PairingMix = DEFAULT_MIX,
        seed: int = 0,
        close_store: bool = False,
    ):
        if not loops:
            raise LabelError("no guitar loops to rate; give --folder DIR with recordings, or --generated N")
        if library is None or len(library.ids) == 0:
            raise LabelError("the groove library is empty; import grooves (`sjtui grooves import`) first")
        if picks_per_loop < 1:
            raise LabelError(f"picks per loop {picks_per_loop}: give at least 1")
        self.loops = list(loops)
        self.library = library
        self.store = store
        self.groove_of = groove_of
        self.scores_of = scores_of
        self.player = player
        self.model_version = model_version
        self.picks_per_loop = int(picks_per_loop)
        self.mix = mix
        self.seed = int(seed)
        self.current: Pair | None = None
        self.rated = 0
        self.skipped = 0
        self.problems: list[str] = []
        self.last_saved: int | None = None  # id of the last rating row
        self._queue: list[Pick] = []
        self._loop_index = -1
        self._picks_made = 0
        self._number = 0
        self._clip_hashes: dict[int, str] = {}
        self._closed = False
        self._close_store = close_store
        self.on_close: list[Callable[[], None]] = []  # more to close after the store (the groove store)
        self.player_note: str | None = None  # why the player is not the one asked for (shown by the screen)

    # ------------------------------------------------------------------ walking
    def _recent_ids(self, loop) -> list[int]:
        from sjtui.labels.clips import audio_hash
        from sjtui.labels.pairing import ids_of_keys
        from sjtui.labels.store import groove_key_index

        groove_store = getattr(self.store, "groove_store", None)
        if groove_store is None:
            return []
        keys = self.store.recent_groove_keys(audio_hash(loop.audio, loop.sample_rate_hz))
        return ids_of_keys(keys, groove_key_index(groove_store)) if keys else []

    def _plan(self, index: int) -> list[Pick]:
        loop = self.loops[index]
        lib = self.library
        eligible = eligible_mask(
            lib.bpm, lib.meters, loop.bpm, loop.meter, groove_ids=lib.ids, exclude_ids=self._recent_ids(loop)
        )
        scores = self.scores_of(loop) if self.scores_of is not None else None
        if scores is None:
            scores = np.full(len(lib.ids), np.nan)
        picks = plan_pairs(
            scores,
            lib.ids,
            eligible,
            n=self.picks_per_loop,
            mix=self.mix,
            seed=self.seed,
            start=self._picks_made,
        )
        self._picks_made += len(picks)
        return picks

    def _advance(self) -> Pair | None:
        """The next pair (playing it), or None when every loop is done."""
        while not self._queue:
            self._loop_index += 1
            if self._loop_index >= len(self.loops):
                self.current = None
                if self.player is not None:
                    self.player.stop()
                return None
            try:
                self._queue = self._plan(self._loop_index)
            except PairingError as error:
                loop = self.loops[self._loop_index]
                self.problems.append(f"loop {self._loop_index + 1} ({_loop_label(loop)}): {error}")
        pick = self._queue.pop(0)
        self._number += 1
        groove = self.groove_of(pick.groove_id)
        self.current = Pair(self._number, self._loop_index, self.loops[self._loop_index], groove, pick)
        self.play()
        return self.current

    def start(self) -> Pair | None:
        return self._advance() if self.current is None else self.current

    @property
    def done(self) -> bool:
        return self.current is None and self._loop_index >= len(self.loops)

    # ------------------------------------------------------------------ keys
    def play(self) -> None:
        if self.player is not None and self.current is not None:
            self.player.play(self.current.loop, self.current.groove)

    def replay(self) -> None:
        """Hear the current pair again from its first beat."""
        self.play()

    def rate(self, rating: int, note: str = "") -> int:
        """Save ``rating`` 0..5 (and ``note``) for the current pair, committed; then the next pair. Returns the row id.

        A failed save (locked, read-only, full disk) raises the store's
        :class:`LabelError` and keeps the current pair, so the player can
        try again; nothing already saved is touched.
        """
        pair = self.current
        if pair is None:
            raise LabelError("nothing to rate: every loop of this session is done")
        if isinstance(rating, bool) or not isinstance(rating, (int, np.integer)) or not 0 <= rating <= 5:
            raise LabelError(f"rating {rating!r} must be a whole number 0..5")
        note = (note or "").strip()[:MAX_NOTE_CHARS]
        clip_hash = self._clip_hashes.get(pair.loop_index)
        if clip_hash is None:
            loop = pair.loop
            clip_hash = self.store.add_clip(
                loop.audio, loop.sample_rate_hz, loop.fingerprint, loop.clip_meta()
            )
            self._clip_hashes[pair.loop_index] = clip_hash
        row = self.store.add_rating(
            clip_hash, pair.groove, int(rating), note, self.model_version, pair.pick.strategy
        )
        self.last_saved = row
        self.rated += 1
        self._advance()
        return row

    def skip(self) -> Pair | None:
        """No rating for this pair (nothing saved); the next one."""
        if self.current is None:
            return None
        self.skipped += 1
        return self._advance()

    def position_s(self) -> float | None:
        return None if self.player is None else self.player.position_s()

    def close(self) -> None:
        """Stop and close the player (All Notes Off on MIDI). Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            if self.player is not None:
                self.player.close()
        finally:
            if self._close_store:
                self.store.close()
            for close in self.on_close:
                close()


def _loop_label(loop) -> str:
    origin = getattr(loop, "origin", {}) or {}
    if "file" in origin:
        where = f"{origin['file']} bar {origin.get('first_bar', 0) + 1}"
    elif "riff_style" in origin:
        where = f"generated {origin['riff_style']} riff, {origin.get('program', '')}"
    else:
        where = getattr(loop, "source", "loop")
    return f"{where}, {loop.bpm:.0f} BPM {loop.meter}"


loop_label = _loop_label
