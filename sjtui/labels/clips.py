"""Audio clips on disk: FLAC files named by the content hash of their samples.

The name is the sha256 of the *samples*, not of the FLAC bytes, so the same
audio encoded again (another FLAC level, another encoder, a WAV) has the
same name and is stored once:

    sha256( b"sjtui-clip-v1\\0" | u32 sample rate | u16 channels |
            the samples as 24-bit PCM in int32 little-endian, interleaved )

Clips are stored as 24-bit FLAC (the samples are quantised to 24 bits once,
here, so the file holds exactly the hashed values; 24 bits keep 144 dB of
range, far below any guitar signal's noise). A 16-bit file of the same audio
hashes the same as its 24-bit copy because both are read back as 24-bit
values.

Writes are atomic: the FLAC is encoded in memory, written to a temporary
file in the clips folder, fsynced, renamed to its final name and the folder
fsynced. A process killed at any moment leaves either no file or the whole
file (plus, at worst, a ``.tmp-*`` file that :func:`remove_stale_temp_files`
deletes later). A full disk raises :class:`LabelStoreFullError` and leaves no
partial file.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import re
import struct
from pathlib import Path

import numpy as np

from sjtui.labels.errors import LabelError, LabelStoreFullError, LabelStoreReadOnlyError

CLIP_SUFFIX = ".flac"
HASH_DOMAIN = b"sjtui-clip-v1\0"
PCM_BITS = 24
_FULL_SCALE = float(1 << (PCM_BITS - 1))
_HASH_RE = re.compile(r"^[0-9a-f]{64}$")
_TEMP_PREFIX = ".tmp-"


def is_clip_hash(text: str) -> bool:
    return isinstance(text, str) and bool(_HASH_RE.match(text))


def quantize_pcm24(audio: np.ndarray) -> np.ndarray:
    """float samples in -1..1, shape ``(n,)`` or ``(n, channels)`` -> int32 24-bit values, ``(n, channels)``.

    NaN/Inf become 0; values beyond full scale are clipped.
    """
    x = np.asarray(audio, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise LabelError(
            f"clip audio must be (n_samples,) or (n_samples, n_channels) with samples, got shape {x.shape}"
        )
    x = np.where(np.isfinite(x), x, 0.0)
    return np.clip(np.rint(x * _FULL_SCALE), -_FULL_SCALE, _FULL_SCALE - 1).astype(np.int32)


def pcm_hash(pcm24: np.ndarray, sample_rate_hz: int) -> str:
    """sha256 (hex) of 24-bit PCM ``(n, channels)`` int32 at ``sample_rate_hz`` (see the module docstring)."""
    pcm24 = np.ascontiguousarray(pcm24, dtype="<i4")
    digest = hashlib.sha256(HASH_DOMAIN)
    digest.update(struct.pack("<IH", int(sample_rate_hz), int(pcm24.shape[1])))
    digest.update(memoryview(pcm24).cast("B"))
    return digest.hexdigest()


def audio_hash(audio: np.ndarray, sample_rate_hz: int) -> str:
    """The clip hash of float audio ``(n,)`` or ``(n, channels)``."""
    return pcm_hash(quantize_pcm24(audio), sample_rate_hz)


def encode_flac(pcm24: np.ndarray, sample_rate_hz: int) -> bytes:
    """24-bit FLAC bytes of ``pcm24`` ``(n, channels)`` int32."""
    import soundfile as sf

    buffer = io.BytesIO()
    # int32 input is written by its top 24 bits: shift the 24-bit values up so nothing is rounded
    sf.write(buffer, np.left_shift(pcm24, 8), int(sample_rate_hz), format="FLAC", subtype="PCM_24")
    return buffer.getvalue()


def read_clip_pcm(path: str | Path) -> tuple[np.ndarray, int]:
    """``(pcm24 (n, channels) int32, sample_rate_hz)`` of a clip file (any lossless format soundfile reads)."""
    import soundfile as sf

    try:
        data, rate = sf.read(str(path), dtype="int32", always_2d=True)
    except Exception as error:  # soundfile raises LibsndfileError, RuntimeError, TypeError
        raise LabelError(f"clip file {path} cannot be read ({error}); it is damaged or not audio") from None
    return np.right_shift(data, 8), int(rate)


def read_clip(path: str | Path) -> tuple[np.ndarray, int]:
    """``(audio (n,) float32 mono or (n, channels), sample_rate_hz)`` of a clip file."""
    pcm, rate = read_clip_pcm(path)
    audio = (pcm / _FULL_SCALE).astype(np.float32)
    return (audio[:, 0] if audio.shape[1] == 1 else audio), rate


def file_hash(path: str | Path) -> str:
    """The clip hash of the audio in ``path`` (equal to the file name of an intact clip)."""
    pcm, rate = read_clip_pcm(path)
    return pcm_hash(pcm, rate)


def _raise_for_os_error(error: OSError, what: str) -> None:
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        raise LabelStoreFullError(
            f"no space left on the disk while {what} ({error.strerror}); free some space and rate again. "
            "The rating was not saved; earlier ratings are safe"
        ) from None
    if error.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        raise LabelStoreReadOnlyError(
            f"cannot write while {what} ({error.strerror}); make the folder writable or set SJTUI_DATA_DIR "
            "to a writable folder. The rating was not saved; earlier ratings are safe"
        ) from None
    raise LabelError(f"cannot write while {what}: {error}") from None


def fsync_dir(folder: Path) -> None:
    fd = os.open(str(folder), os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes_atomic(final: Path, data: bytes, what: str) -> None:
    """Write ``data`` to ``final`` via temp file + fsync + rename + folder fsync."""
    folder = final.parent
    temp = folder / f"{_TEMP_PREFIX}{os.getpid()}-{final.name}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(str(temp), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, final)
        fsync_dir(folder)
    except OSError as error:
        try:
            temp.unlink()
        except OSError:
            pass
        _raise_for_os_error(error, what)


def write_clip(
    clips_dir: Path, pcm24: np.ndarray, sample_rate_hz: int, clip_hash: str | None = None
) -> tuple[str, Path, bool]:
    """Store ``pcm24`` as ``clips_dir/<hash>.flac``; ``(hash, path, written)``.

    An existing file of that name whose audio has that hash is kept
    (``written`` False); one that does not (damaged) is replaced.
    """
    clip_hash = clip_hash or pcm_hash(pcm24, sample_rate_hz)
    final = clips_dir / f"{clip_hash}{CLIP_SUFFIX}"
    if final.is_file():
        try:
            if file_hash(final) == clip_hash:  # rare (the same audio saved twice): worth one decode
                return clip_hash, final, False
        except LabelError:
            pass  # damaged by something else: replaced below
    write_bytes_atomic(final, encode_flac(pcm24, sample_rate_hz), f"saving clip {final.name} in {clips_dir}")
    return clip_hash, final, True


def remove_stale_temp_files(clips_dir: Path) -> int:
    """Delete ``.tmp-PID-*`` files left by processes that no longer run; returns how many."""
    removed = 0
    if not clips_dir.is_dir():
        return 0
    for temp in clips_dir.glob(f"{_TEMP_PREFIX}*"):
        pid_text = temp.name[len(_TEMP_PREFIX) :].split("-", 1)[0]
        if pid_text.isdigit() and _pid_alive(int(pid_text)):  # a running process may still be writing it
            continue
        try:
            temp.unlink()
            removed += 1
        except OSError:
            pass
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
