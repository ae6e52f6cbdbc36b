"""Choosing the groove for the next 4-bar window: ranking and the switching policy.

Two parts, both pure (no threads, no clocks):

- :class:`GrooveRanker` ranks the library's beats for one guitar window. The
  judgement comes from the model (dot product of the guitar embedding with the
  groove embeddings, :func:`sjtui.model.runtime.best_grooves`); grooves whose
  tempo (8 %, double/half allowed) or meter does not fit are never candidates
  (:func:`sjtui.model.fit.tempo_fits`, :func:`~sjtui.model.fit.meter_fits`).
  Without a model there is no judgement to make: the fitting grooves are
  ordered deterministically by tempo and meter only (built-in library first,
  then nearest tempo, then id) and carry no score; no hand-written matching
  rule stands in for the model.
- :class:`SwitchPolicy` decides whether to keep the current groove or take
  another: switch only when the best beats the current by ``switch_margin``
  and at least ``min_bars_between_switches`` bars have passed; lock keeps the
  current groove; skip takes the best groove not played recently; a groove
  that no longer fits (tempo or meter changed) is replaced at once.

Fills: :meth:`GrooveRanker.fill_for` picks a library fill in the meter, of the
current groove's style where there is one, nearest in tempo (deterministic).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from sjtui.config import EngineConfig
from sjtui.meter import Meter, parse_meter
from sjtui.model.fit import meter_fits, tempo_fits

NO_MODEL_MESSAGE = "no model: choosing by tempo and meter only"


@dataclass(frozen=True)
class Ranking:
    """Candidates for one window, best first. ``scores`` is None without a model.

    ``indices``: (k,) int64 rows of the library; ``current_score``: the
    current groove's score for this window (None without a model or when it
    does not fit); ``current_fits``: the current groove may still be played.
    """

    indices: np.ndarray
    scores: np.ndarray | None
    current_score: float | None
    current_fits: bool
    selection_ms: float
    n_allowed: int

    def score_of(self, index: int) -> float | None:
        if self.scores is None:
            return None
        hit = np.flatnonzero(self.indices == index)
        return float(self.scores[hit[0]]) if hit.size else None


class GrooveRanker:
    """Ranks the library's beats for a fingerprint (see the module docstring).

    ``library``: a :class:`sjtui.grooves.store.GrooveLibrary`; ``model``: an
    :class:`sjtui.model.runtime.EncoderPair` or None; ``groove_embeddings``:
    ``(n, d)`` float32 of the library under that model (rows of NaN are never
    chosen).
    """

    def __init__(self, library, model=None, groove_embeddings: np.ndarray | None = None, config: EngineConfig | None = None):
        self.library = library
        self.model = model
        self.config = config or EngineConfig()
        self.is_beat = np.asarray(library.kinds) == "beat"
        self.is_fill = np.asarray(library.kinds) == "fill"
        self.is_builtin = np.asarray(library.sources) == "builtin"
        self.bpm = np.asarray(library.bpm, dtype=np.float64)
        self._meter_names = np.asarray(library.meters).astype(str)
        self._meter_masks: dict[str, np.ndarray] = {}
        self._fit_cache: tuple | None = None
        self.embeddings = None
        if model is not None:
            if groove_embeddings is None or groove_embeddings.shape[0] != len(library):
                raise ValueError("a model needs the library's groove embeddings (n, d)")
            self.embeddings = np.ascontiguousarray(groove_embeddings, dtype=np.float32)
            self._embedded = np.isfinite(self.embeddings).all(axis=1)
            self.embeddings = np.where(self._embedded[:, None], self.embeddings, 0.0).astype(np.float32)

    def warm_up(self, bpm: float = 120.0, meter: Meter | str = "4/4") -> float:
        """Rank a silent window once and return how long it took (ms).

        The first ranking of a process pays one-off costs (onnxruntime's
        first run allocates its buffers, numpy's first calls on these
        shapes): measured 10-19 ms against ~1 ms after. Done when the ranker
        is built, so the jam's first decision does not pay them.
        """
        from sjtui.dsp.fingerprint import N_BANDS, compute_fingerprint
        from sjtui.dsp.onsets import empty_onsets
        from sjtui.transport.timebase import TempoMap

        tempo_map = TempoMap.constant(48000, bpm, meter)
        no_frames = np.zeros((N_BANDS, 0))
        silent = compute_fingerprint(np.zeros(0, np.int64), no_frames, no_frames, empty_onsets(), tempo_map, 0)
        return self.rank(silent if self.model is not None else None, bpm, meter).selection_ms

    # -- filters ---------------------------------------------------------------------

    def meter_mask(self, meter: Meter | str) -> np.ndarray:
        key = str(parse_meter(meter))
        mask = self._meter_masks.get(key)
        if mask is None:
            mask = meter_fits(key, self._meter_names)
            self._meter_masks[key] = mask
        return mask

    def allowed(self, bpm: float, meter: Meter | str) -> np.ndarray:
        """(n,) bool: beats that fit the tempo (with double/half) and the meter."""
        mask = self.is_beat & self.meter_mask(meter) & tempo_fits(bpm, self.bpm, self.config.tempo_tolerance)
        if self.embeddings is not None:
            mask &= self._embedded
        return mask

    def meters_available(self) -> list[str]:
        return sorted(set(self._meter_names[self.is_beat].tolist()))

    def describe_no_fit(self, bpm: float, meter: Meter | str) -> str:
        """Why nothing fits, with what exists."""
        meter = str(parse_meter(meter))
        in_meter = self.is_beat & self.meter_mask(meter)
        if not in_meter.any():
            return (
                f"the groove library has no grooves in {meter}; meters with grooves: "
                f"{', '.join(self.meters_available()) or 'none'}. Set --meter to one of these or import grooves"
            )
        tempos = np.unique(np.round(self.bpm[in_meter]).astype(int))
        return (
            f"no {meter} groove fits {bpm:g} BPM (within {self.config.tempo_tolerance:.0%}, or half/double time); "
            f"{meter} grooves exist at {', '.join(map(str, tempos[:24].tolist()))} BPM. "
            "Set the tempo near one of these or import more grooves (`sjtui grooves import`)"
        )

    # -- ranking -----------------------------------------------------------------------

    def tempo_distance(self, bpm: float) -> np.ndarray:
        """(n,) |log2 of the tempo ratio| to the nearest of 1, 2, 1/2 (0 = the same tempo)."""
        r = np.log2(self.bpm / float(bpm))
        return np.minimum.reduce([np.abs(r), np.abs(r - 1.0), np.abs(r + 1.0)])

    def rank(self, fingerprint, bpm: float, meter: Meter | str, current: int | None = None) -> Ranking:
        """Candidates for the window whose ``fingerprint`` was just taken (None without playing)."""
        t0 = time.perf_counter()
        allowed, fitting, fitting_embeddings = self._fitting(bpm, meter)
        n_allowed = int(fitting.size)
        current_fits = current is not None and bool(allowed[current])
        k = self.config.top_k
        if self.model is not None and fingerprint is not None:
            from sjtui.model.runtime import best_grooves

            query = self.model.embed_guitar(fingerprint)[0]
            if n_allowed:
                rows, scores = best_grooves(query, fitting_embeddings, k)
                indices = fitting[rows]
            else:
                indices, scores = np.zeros(0, np.int64), np.zeros(0, np.float32)
            current_score = float(self.embeddings[current] @ query) if current_fits else None
            return Ranking(indices, scores, current_score, current_fits, (time.perf_counter() - t0) * 1e3, n_allowed)
        # no model (or nothing heard yet): fitting grooves by tempo and meter only
        candidates = fitting
        if candidates.size:
            order = np.lexsort((self.library.ids[candidates], self.tempo_distance(bpm)[candidates], ~self.is_builtin[candidates]))
            candidates = candidates[order][:k]
        return Ranking(candidates.astype(np.int64), None, None, current_fits, (time.perf_counter() - t0) * 1e3, n_allowed)

    def _fitting(self, bpm: float, meter: Meter | str):
        """(allowed mask, the fitting grooves' rows, their embeddings as one block) at this tempo and meter.

        Kept for the last tempo and meter, so a decision multiplies only the fitting grooves'
        embeddings: at 120 BPM in 4/4 with the GMD imported, 2,969 of 11,076 grooves, a 1.5 MB
        block instead of the whole 5.7 MB, which after seconds of other work has left the cache.
        """
        key = (float(bpm), str(parse_meter(meter)))
        cached = self._fit_cache
        if cached is None or cached[0] != key:
            allowed = self.allowed(bpm, meter)
            rows = np.flatnonzero(allowed)
            block = None if self.embeddings is None else np.ascontiguousarray(self.embeddings[rows])
            cached = self._fit_cache = (key, allowed, rows, block)  # one assignment: readers see old or new
        return cached[1:]

    def fill_for(self, groove_index: int | None, bpm: float, meter: Meter | str) -> int | None:
        """A fill in ``meter``: same style as the groove first, then nearest tempo, then id; None if none."""
        mask = self.is_fill & self.meter_mask(meter)
        candidates = np.flatnonzero(mask)
        if candidates.size == 0:
            return None
        style = None if groove_index is None else str(self.library.styles[groove_index])
        other_style = np.asarray([str(self.library.styles[i]) != style for i in candidates])
        order = np.lexsort((self.library.ids[candidates], self.tempo_distance(bpm)[candidates], other_style))
        return int(candidates[order[0]])


@dataclass(frozen=True)
class Decision:
    """What plays in the next window: ``index`` (None: nothing fits), why, and its score."""

    index: int | None
    score: float | None
    switched: bool
    reason: str  # "first" | "better" | "keep" | "locked" | "patience" | "no-fit" | "forced" | "skip" | "no-model"


class SwitchPolicy:
    """Keeps the current groove unless a clearly better one has waited long enough (hysteresis + patience)."""

    def __init__(self, config: EngineConfig | None = None):
        self.config = config or EngineConfig()
        self.recent: list[int] = []  # grooves of the last windows, newest last

    def note_played(self, index: int | None) -> None:
        if index is None:
            return
        self.recent.append(int(index))
        del self.recent[: -max(1, self.config.recent_window_count)]

    def decide(self, ranking: Ranking, current: int | None, bars_since_switch: int, locked: bool) -> Decision:
        if current is not None and locked and ranking.current_fits:
            return Decision(current, ranking.current_score, False, "locked")
        if ranking.indices.size == 0:
            if current is not None and locked:
                return Decision(current, None, False, "locked")
            return Decision(None, None, current is not None, "no-fit")
        best = int(ranking.indices[0])
        best_score = None if ranking.scores is None else float(ranking.scores[0])
        if current is None:
            return Decision(best, best_score, True, "first")
        if not ranking.current_fits:
            return Decision(best, best_score, best != current, "forced")
        if best == current:
            return Decision(current, ranking.current_score, False, "keep")
        if ranking.scores is None:
            return Decision(current, None, False, "no-model")
        if bars_since_switch < self.config.min_bars_between_switches:
            return Decision(current, ranking.current_score, False, "patience")
        current_score = ranking.current_score if ranking.current_score is not None else -np.inf
        if best_score - current_score >= self.config.switch_margin:
            return Decision(best, best_score, True, "better")
        return Decision(current, ranking.current_score, False, "keep")

    def skip(self, ranking: Ranking, current: int | None) -> Decision:
        """The best candidate that is neither current nor recent (else the best other than current)."""
        others = [int(i) for i in ranking.indices.tolist() if int(i) != current]
        if not others:
            return Decision(current, ranking.current_score, False, "skip")
        fresh = [i for i in others if i not in self.recent]
        choice = (fresh or others)[0]
        return Decision(choice, ranking.score_of(choice), True, "skip")
