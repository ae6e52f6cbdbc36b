"""A :class:`~sjtui.dsp.fingerprint.Fingerprint` as a compact, self-describing blob.

Training reads the fingerprint of every rated clip from the label database
instead of analysing the audio again, so the blob keeps everything the
fingerprint holds, exactly (float32 arrays are stored bit for bit).

Layout (all little-endian)::

    b"SJFP" | u8 format version (1) | u32 header length | header (UTF-8 JSON) |
    energy  float32 (n_bands, n_bars, steps_per_bar), C order |
    novelty float32 (same shape) |
    onsets  n_onsets records of <i1 band, <i2 bar, <i2 step, <f4 strength, <f4 offset (13 bytes)

The header holds ``shape``, ``n_onsets``, ``meter``, ``bpm``, ``first_bar``
and ``start_sample``. A 4/4 window is 4.6 kB plus 13 bytes per onset.
"""

from __future__ import annotations

import json
import struct

import numpy as np

from sjtui.dsp.fingerprint import ONSET_DTYPE, Fingerprint
from sjtui.labels.errors import LabelError
from sjtui.meter import parse_meter

MAGIC = b"SJFP"
FORMAT_VERSION = 1
_ONSET_DTYPE_LE = ONSET_DTYPE.newbyteorder("<")
_PREFIX = struct.Struct("<4sBI")


def encode_fingerprint(fingerprint: Fingerprint) -> bytes:
    """The blob of ``fingerprint`` (see the module docstring)."""
    energy = np.ascontiguousarray(fingerprint.energy, dtype="<f4")
    novelty = np.ascontiguousarray(fingerprint.novelty, dtype="<f4")
    if energy.ndim != 3 or novelty.shape != energy.shape:
        raise LabelError(
            f"fingerprint energy {energy.shape} and novelty {novelty.shape} must share one "
            "(n_bands, n_bars, steps_per_bar) shape; pass a Fingerprint from sjtui.dsp.fingerprint"
        )
    onsets = np.asarray(fingerprint.onsets).astype(_ONSET_DTYPE_LE)
    header = json.dumps(
        {
            "shape": list(energy.shape),
            "n_onsets": int(onsets.size),
            "meter": str(fingerprint.meter),
            "bpm": float(fingerprint.bpm),
            "first_bar": int(fingerprint.first_bar),
            "start_sample": float(fingerprint.start_sample),
        },
        sort_keys=True,
    ).encode()
    return b"".join(
        (
            _PREFIX.pack(MAGIC, FORMAT_VERSION, len(header)),
            header,
            energy.tobytes(),
            novelty.tobytes(),
            onsets.tobytes(),
        )
    )


def decode_fingerprint(blob: bytes) -> Fingerprint:
    """The :class:`Fingerprint` stored in ``blob``; :class:`LabelError` when it is not one."""
    blob = bytes(blob)
    try:
        magic, version, header_len = _PREFIX.unpack_from(blob, 0)
        if magic != MAGIC:
            raise ValueError(f"starts with {magic!r}, not {MAGIC!r}")
        if version > FORMAT_VERSION:
            raise ValueError(
                f"format version {version} is newer than this sjtui's {FORMAT_VERSION}; update sjtui"
            )
        offset = _PREFIX.size
        header = json.loads(blob[offset : offset + header_len])
        offset += header_len
        shape = tuple(int(d) for d in header["shape"])
        n_cells = int(np.prod(shape))
        energy = np.frombuffer(blob, dtype="<f4", count=n_cells, offset=offset).reshape(shape)
        offset += 4 * n_cells
        novelty = np.frombuffer(blob, dtype="<f4", count=n_cells, offset=offset).reshape(shape)
        offset += 4 * n_cells
        n_onsets = int(header["n_onsets"])
        onsets = np.frombuffer(blob, dtype=_ONSET_DTYPE_LE, count=n_onsets, offset=offset)
        offset += _ONSET_DTYPE_LE.itemsize * n_onsets
        if offset != len(blob):
            raise ValueError(f"{len(blob) - offset} bytes left over")
        return Fingerprint(
            energy=energy.astype(np.float32),
            novelty=novelty.astype(np.float32),
            onsets=onsets.astype(ONSET_DTYPE),
            meter=parse_meter(header["meter"]),
            bpm=float(header["bpm"]),
            first_bar=int(header["first_bar"]),
            start_sample=float(header["start_sample"]),
        )
    except (ValueError, KeyError, TypeError, struct.error, json.JSONDecodeError) as error:
        raise LabelError(
            f"stored fingerprint cannot be read ({error}); the clip's audio can be analysed again"
        ) from None
