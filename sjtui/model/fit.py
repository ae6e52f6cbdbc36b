"""Hard filters for choosing grooves: tempo fit (with half and double time) and meter.

MODEL-NOTES: a groove played far from its recorded tempo stops sounding
like itself, so tempo and meter are treated as hard filters (or strong
features) and the evaluation reports how often picks fit (``tempo_ok``,
``meter_ok``). One definition serves the selection and the evaluation; the
result is the ``allowed`` mask of :func:`sjtui.model.runtime.best_grooves`.
"""

from __future__ import annotations

import numpy as np

from sjtui.meter import Meter, parse_meter

TEMPO_TOLERANCE = 0.08
"""A groove fits when its tempo is within 8 % of the guitar's, or of double or half of it."""


def tempo_fits(guitar_bpm: float, groove_bpm: np.ndarray, tolerance: float = TEMPO_TOLERANCE) -> np.ndarray:
    """``(n,)`` bool: groove tempi within ``tolerance`` of ``guitar_bpm``, ``2 * guitar_bpm`` or ``guitar_bpm / 2``."""
    ratio = np.asarray(groove_bpm, dtype=np.float64) / float(guitar_bpm)
    return (
        (np.abs(ratio - 1.0) <= tolerance)
        | (np.abs(ratio / 2.0 - 1.0) <= tolerance)
        | (np.abs(ratio * 2.0 - 1.0) <= tolerance)
    )


def meter_fits(guitar_meter: Meter | str, groove_meters) -> np.ndarray:
    """``(n,)`` bool: grooves in the guitar's meter (6/8 and 3/4 differ: same length, other feel)."""
    meter = parse_meter(guitar_meter)
    return np.array([parse_meter(m) == meter for m in groove_meters], dtype=bool)


def allowed_grooves(
    guitar_bpm: float, guitar_meter: Meter | str, groove_bpm: np.ndarray, groove_meters
) -> np.ndarray:
    """``(n,)`` bool: grooves that fit both tempo and meter."""
    return tempo_fits(guitar_bpm, groove_bpm) & meter_fits(guitar_meter, groove_meters)
