"""Causal onset picking per band, on quantised spectral flux.

A frame ``t`` of band ``b`` is an onset when, with ``q`` the band's flux in
quanta (integers, see :data:`sjtui.dsp.spectral.FLUX_QUANTUM`):

1. ``q[t] >= threshold_ratio * mean(q[t-W .. t-1]) + delta`` (adaptive
   threshold: the mean of the past ``W = threshold_frames`` frames, so a
   steady strum pattern raises the bar and a quiet passage lowers it);
2. ``q[t] > max(q[t-P .. t-1])`` with ``P = rise_frames`` (the flux is still
   rising: the first frame of an attack, not its decay);
3. the band's energy is at least ``min_energy_db``;
4. at least ``min_interval_frames`` frames since the band's last onset;
5. within ``mask_frames[b]`` of the band's last onset, at least
   ``mask_ratio[b]`` times that onset's flux (per band; 0 = off). A strong
   attack masks the weaker ripples that follow it, e.g. the weak second
   rise of the high band 120-450 ms after the attack of a distorted
   sustained chord. Per band because the bands differ: in the high band
   that mask only removes false onsets, in the low and mid bands the same
   mask also drops real notes that follow a stronger one (figures in
   :class:`sjtui.dsp.analysis.AnalysisConfig`). A masked frame does not
   become the band's last onset, so a following frame of the same attack
   that still rises may pass.
6. within ``echo_frames[b]`` frames after the last onset of ANY band (this
   band's included), at least ``echo_quanta[b]`` flux quanta (per band; 0 =
   off). An attack often rises in the mid band a second time 60-150 ms after
   its first onset in some band (the second wave of a distorted or
   palm-muted attack); that echo is weak, a new note mostly is not. An
   absolute floor, not a ratio: the echo is weak whatever the band and
   strength of the onset before it. Within a frame the bands are decided in
   order (low, mid, high), and an onset decided earlier in the same frame
   counts (0 frames after it): a mid onset in the frame of a low onset is
   inside the low onset's window, but a high onset of that frame opens a
   window for the mid band only from the next frame on. A frame this rule
   drops is not an onset: it opens no window and is not the band's last
   onset.

Nothing looks ahead: the decision for frame ``t`` is made when frame ``t`` is
complete. Because ``q`` holds integers, the moving sums are exact and the
result does not depend on how the frames were batched.

The picker keeps ``W`` frames of history per band and the frame and flux of
each band's last onset (the last onset of any band is the latest of these); :meth:`OnsetPicker.process` takes any number of frames.
"""

from __future__ import annotations

import numpy as np

ONSET_DTYPE = np.dtype(
    [("sample", np.int64), ("band", np.int8), ("strength", np.float32), ("decided_at", np.int64)]
)
_NO_ONSET = -(2**40)


def empty_onsets() -> np.ndarray:
    """An empty onset array (``ONSET_DTYPE``)."""
    return np.empty(0, dtype=ONSET_DTYPE)


class OnsetPicker:
    """Stateful causal peak picker over ``(n_frames, n_bands)`` quantised flux.

    Parameters are in frames and flux quanta; see the module docstring.
    """

    def __init__(
        self,
        n_bands: int,
        threshold_frames: int,
        threshold_ratio: float,
        delta_quanta,
        rise_frames: int,
        min_interval_frames: int,
        min_energy_db: float,
        mask_frames=0,
        mask_ratio=0.0,
        echo_frames=0,
        echo_quanta=0.0,
        state: np.ndarray | None = None,
    ):
        """``delta_quanta``, ``mask_frames``, ``mask_ratio``, ``echo_frames``, ``echo_quanta``: one value per
        band (n_bands,) or one for all.

        ``state``: optional C-contiguous (n_bands, threshold_frames + 2) int64 array to keep the state in.
        """
        if threshold_frames < 1 or rise_frames < 1 or rise_frames > threshold_frames:
            raise ValueError("need 1 <= rise_frames <= threshold_frames")
        self.n_bands = n_bands
        self.window = int(threshold_frames)
        self.ratio = float(threshold_ratio)
        # per band, compared with q * W
        self.delta_w = (
            np.broadcast_to(np.asarray(delta_quanta, dtype=np.float64), (n_bands,)) * self.window
        ).copy()
        self._delta_w_list = self.delta_w.tolist()
        self.rise = int(rise_frames)
        self.min_interval = int(min_interval_frames)
        self.min_energy_db = np.float32(min_energy_db)
        # per band; a band with a zero ratio or length has no mask
        self.mask_frames = np.broadcast_to(np.asarray(mask_frames, dtype=np.int64), (n_bands,)).copy()
        self.mask_ratio = np.broadcast_to(np.asarray(mask_ratio, dtype=np.float64), (n_bands,)).copy()
        if (self.mask_frames < 0).any() or (self.mask_ratio < 0).any():
            raise ValueError("mask_frames and mask_ratio must be >= 0")
        self.mask_frames[self.mask_ratio == 0] = 0
        self._mask_frames_list = self.mask_frames.tolist()
        self._mask_ratio_list = self.mask_ratio.tolist()
        # per band; a band with a zero floor or length has no echo rule
        self.echo_frames = np.broadcast_to(np.asarray(echo_frames, dtype=np.int64), (n_bands,)).copy()
        self.echo_quanta = np.broadcast_to(np.asarray(echo_quanta, dtype=np.float64), (n_bands,)).copy()
        if (self.echo_frames < 0).any() or (self.echo_quanta < 0).any():
            raise ValueError("echo_frames and echo_quanta must be >= 0")
        off = (self.echo_frames == 0) | (self.echo_quanta == 0)
        self.echo_frames[off] = 0
        self.echo_quanta[off] = 0.0
        self._echo_frames_list = self.echo_frames.tolist()
        self._echo_quanta_list = self.echo_quanta.tolist()
        # per band: the past W flux quanta (oldest first), the frame of its last onset and that
        # onset's flux quanta; one array so that the compiled live path takes it in one argument
        shape = (n_bands, self.window + 2)
        if state is None:
            state = np.zeros(shape, dtype=np.int64)
        if state.shape != shape or state.dtype != np.int64 or not state.flags.c_contiguous:
            raise ValueError(f"state must be a C-contiguous int64 array of shape {shape}")
        self.state = state
        self._history = self.state[:, : self.window]
        # views for the one-frame path
        self._rise_view = self._history[:, self.window - self.rise :]
        self._history_head = self._history[:, :-1]
        self._history_tail = self._history[:, 1:]
        self._history_last = self._history[:, -1]
        self._last = self.state[:, self.window]
        self._last_q = self.state[:, self.window + 1]
        self._last[...] = _NO_ONSET
        self._last_q[...] = 0
        self._next_frame = 0
        self._ext = np.zeros((n_bands, self.window + 1), dtype=np.int64)

    def reset(self) -> None:
        self._last_q[...] = 0
        self._history[...] = 0
        self._last[...] = _NO_ONSET
        self._next_frame = 0

    def process(self, flux_q: np.ndarray, energy_db: np.ndarray):
        """Pick onsets in a batch of frames.

        ``flux_q``: (n_frames, n_bands) integer-valued flux quanta;
        ``energy_db``: (n_frames, n_bands). Returns ``(frame, band)``: two
        int64 arrays of the onsets found, in time order (frame = absolute
        frame index).
        """
        n = flux_q.shape[0]
        w = self.window
        if n == 1:
            return self.process_one(flux_q[0].tolist(), energy_db[0].tolist())
        q = flux_q.T.astype(np.int64)  # (n_bands, n)
        ext = np.concatenate([self._history, q], axis=1)  # (n_bands, w + n)
        csum = np.zeros((self.n_bands, w + n + 1), dtype=np.int64)
        np.cumsum(ext, axis=1, out=csum[:, 1:])
        past_sum = csum[:, w : w + n] - csum[:, :n]  # sum of the w frames before each frame
        rise_ref = ext[:, w - 1 : w - 1 + n].copy()  # max of the `rise` frames before each frame
        for j in range(w - self.rise, w - 1):
            np.maximum(rise_ref, ext[:, j : j + n], out=rise_ref)
        candidate = (q * w >= self.ratio * past_sum + self.delta_w[:, None]) & (q > rise_ref)
        candidate &= energy_db.T >= self.min_energy_db
        self._history[...] = ext[:, n:]
        first = self._next_frame
        self._next_frame += n
        frame_in_batch, band = np.nonzero(candidate.T)  # time order, then band
        if frame_in_batch.size == 0:
            return frame_in_batch.astype(np.int64), band.astype(np.int64)
        frames = frame_in_batch.astype(np.int64) + first
        keep = np.zeros(frames.size, dtype=bool)
        last = self._last
        last_q = self._last_q
        gap = self.min_interval
        mask, mask_ratio = self._mask_frames_list, self._mask_ratio_list
        echo, echo_quanta = self._echo_frames_list, self._echo_quanta_list
        last_any = max(last.tolist())  # the last onset of any band
        for i, (f, b, qf) in enumerate(zip(frames.tolist(), band.tolist(), q[band, frame_in_batch].tolist())):
            since = f - last[b]
            if (
                since >= gap
                and (since > mask[b] or qf >= mask_ratio[b] * last_q[b])
                and (f - last_any > echo[b] or qf >= echo_quanta[b])
            ):
                last[b] = f
                last_q[b] = qf
                last_any = f
                keep[i] = True
        return frames[keep], band[keep].astype(np.int64)

    def process_one(self, q: list, energy_db: list):
        """One frame given as lists ``q`` and ``energy_db`` (n_bands,).

        Python scalars, with the same arithmetic as the batch path (exact
        integers, IEEE doubles), so both give the same onsets.
        """
        past_sum = np.add.reduce(self._history, axis=1).tolist()
        rise_ref = np.maximum.reduce(self._rise_view, axis=1).tolist()
        np.copyto(self._history_head, self._history_tail)
        self._history_last[...] = q
        frame = self._next_frame
        self._next_frame += 1
        found = []
        last = self._last
        last_q = self._last_q
        floor = float(self.min_energy_db)
        delta_w = self._delta_w_list
        mask, mask_ratio = self._mask_frames_list, self._mask_ratio_list
        echo, echo_quanta = self._echo_frames_list, self._echo_quanta_list
        last_any = max(last.tolist())  # the last onset of any band, this frame's included
        for b in range(self.n_bands):
            qb = int(q[b])
            since = frame - last[b]
            if (
                qb * self.window >= self.ratio * past_sum[b] + delta_w[b]
                and qb > rise_ref[b]
                and energy_db[b] >= floor
                and since >= self.min_interval
                and (since > mask[b] or qb >= mask_ratio[b] * last_q[b])
                and (frame - last_any > echo[b] or qb >= echo_quanta[b])
            ):
                last[b] = frame
                last_q[b] = qb
                last_any = frame
                found.append(b)
        if not found:
            return _NO_FRAMES, _NO_FRAMES
        return np.full(len(found), frame, dtype=np.int64), np.asarray(found, dtype=np.int64)


_NO_FRAMES = np.empty(0, dtype=np.int64)
_NO_FRAMES.flags.writeable = False
