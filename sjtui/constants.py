"""Feature constants shared by the live app and by training.

A model records the values it was trained with (see ``feature_constants``);
the runtime refuses a model whose constants differ from these.
"""

from __future__ import annotations

# --- audio -----------------------------------------------------------------
SUPPORTED_SAMPLE_RATES_HZ = (44100, 48000)
DEFAULT_SAMPLE_RATE_HZ = 48000
MIN_BLOCK_SIZE = 64
MAX_BLOCK_SIZE = 1024

# --- STFT ------------------------------------------------------------------
FRAME_SIZE = 1024  # samples; 21 ms at 48 kHz: resolves the low E (82 Hz) in ~2 bins
HOP_SIZE = 256  # samples; 5.3 ms at 48 kHz: onset decisions within 2 hops = 10.7 ms

# --- bands -----------------------------------------------------------------
# Edges in Hz, chosen for the guitar rather than for speech or a full mix:
#   low  (40-250 Hz):  fundamentals of the low strings (E2 = 82 Hz .. ~B3) and
#                      the thump of palm mutes; where a kick drum would answer.
#   mid  (250-2000 Hz): chord body and upper fundamentals; strums and riffs.
#   high (2000-8000 Hz): pick attack, string noise, distortion fizz; the
#                      sharpest onsets, where hats and snare would answer.
# The top edge is fixed at 8 kHz (below both supported Nyquists) so that
# 44.1 and 48 kHz analyses see the same content.
BAND_NAMES = ("low", "mid", "high")
BAND_EDGES_HZ = ((40.0, 250.0), (250.0, 2000.0), (2000.0, 8000.0))

# --- grid ------------------------------------------------------------------
# A "beat" is a quarter note everywhere in sjtui (as in MIDI): BPM counts
# quarter notes, 6/8 has 3 beats of 12 steps (36 steps per bar), 7/8 has 42.
# 12 steps per quarter hold straight 16ths (every 3 steps), 8th-note triplets
# (every 4) and 16th triplets (every 2) alike.
STEPS_PER_BEAT = 12
MIDI_CLOCK_PPQN = 24
BARS_PER_WINDOW = 4

# --- drums -----------------------------------------------------------------
DRUM_VOICES = (
    "kick",
    "snare",
    "closed_hat",
    "open_hat",
    "low_tom",
    "mid_tom",
    "high_tom",
    "crash",
    "ride",
)


def feature_constants() -> dict:
    """The constants a trained model depends on, as plain data."""
    return {
        "frame_size": FRAME_SIZE,
        "hop_size": HOP_SIZE,
        "band_names": list(BAND_NAMES),
        "band_edges_hz": [list(edge) for edge in BAND_EDGES_HZ],
        "steps_per_beat": STEPS_PER_BEAT,
        "bars_per_window": BARS_PER_WINDOW,
        "drum_voices": list(DRUM_VOICES),
    }
