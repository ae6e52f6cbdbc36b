"""The built-in synth: numpy drums sample-exact, FluidSynth within its 64-sample chunk, live through JACK."""

from __future__ import annotations

import time

import numpy as np
import pytest

from sjtui.grooves.drum_map import VOICE_TO_GM_NOTE
from sjtui.midi.events import EVENT_DTYPE, groove_events
from sjtui.midi.scheduler import MidiScheduler
from sjtui.synth.drums import DrumSynth, render_one_shots
from sjtui.transport.timebase import TempoMap
from tests.test_midi_events import random_groove

RATE = 48000


def note_events(samples, notes, velocity=100, channel=9) -> np.ndarray:
    events = np.zeros(len(samples), dtype=EVENT_DTYPE)
    events["sample"] = samples
    events["status"] = 0x90 | channel
    events["data1"] = notes
    events["data2"] = velocity
    events["size"] = 3
    return events


def first_nonzero(x: np.ndarray, threshold: float = 0.0) -> int:
    hits = np.flatnonzero(np.abs(x) > threshold)
    return int(hits[0]) if hits.size else -1


def test_one_shots_cover_every_voice():
    shots = render_one_shots(RATE)
    assert len(shots) == len(VOICE_TO_GM_NOTE)
    for shot in shots:
        assert shot.dtype == np.float32 and 0.79 < np.abs(shot).max() <= 0.8001
        assert np.abs(shot[:16]).max() > 1e-3  # the attack is at the first samples

    # the kick is low, the closed hat high: spectral centroids in order
    def centroid(x):
        spectrum = np.abs(np.fft.rfft(x[:4096]))
        return float((np.fft.rfftfreq(4096, 1 / RATE) * spectrum).sum() / spectrum.sum())

    kick, snare, hat = shots[0], shots[1], shots[2]
    assert centroid(kick) < centroid(snare) < centroid(hat)


@pytest.mark.parametrize("block", [64, 256, 1000])
def test_numpy_synth_starts_each_note_at_its_exact_sample(block):
    tempo_map = TempoMap.constant(RATE, 131.0, anchor_sample=777)
    events = groove_events(random_groove(31, bars=2, density=0.04), tempo_map, 0)  # no voice stealing
    n = int(events["sample"].max()) + RATE
    full = DrumSynth(RATE).render_events(events, n, block=block)
    ons = np.flatnonzero((events["status"] & 0xF0) == 0x90)
    for index in ons[:: max(1, ons.size // 25)]:
        without = DrumSynth(RATE).render_events(np.delete(events, index), n, block=block)
        residual = full - without  # mixing is linear: exactly this note's contribution
        # (float32 sums in another order differ by ~1e-8 before it; the attack is above 1e-4)
        assert first_nonzero(residual, 1e-6) == events["sample"][index]


def test_numpy_synth_chokes_open_hat_and_all_sound_off_silences():
    synth = DrumSynth(RATE)
    open_hat, closed_hat = VOICE_TO_GM_NOTE["open_hat"], VOICE_TO_GM_NOTE["closed_hat"]
    events = note_events([100, 5000], [open_hat, closed_hat])
    out = synth.render_events(events, 20000)
    alone = DrumSynth(RATE).render_events(note_events([5000], [closed_hat]), 20000)
    assert np.array_equal(out[5000:], alone[5000:])  # the open hat stopped when the closed one came
    synth = DrumSynth(RATE)
    cc = np.zeros(1, dtype=EVENT_DTYPE)
    cc[0] = (3000, 0xB9, 120, 0, 3)
    ringing = np.sort(np.concatenate([note_events([0], [VOICE_TO_GM_NOTE["crash"]]), cc]), order="sample")
    out = synth.render_events(ringing, 10000)
    assert np.abs(out[:3000]).max() > 0.1 and not out[3000:].any()


def test_fluidsynth_engine_places_notes_within_its_chunk():
    fluid = pytest.importorskip("sjtui.synth.fluid")
    try:
        engine = fluid.FluidSynthEngine(RATE)
    except Exception as error:  # no libfluidsynth or SoundFont on this machine
        pytest.skip(f"FluidSynth not usable: {error}")
    engine.close()
    samples = [1000, 30000, 61111]
    events = note_events(samples, [36, 38, 42])
    lone = []
    for i in range(len(samples)):
        engine = fluid.FluidSynthEngine(RATE)
        lone.append(engine.render_events(events[i : i + 1], 90000))
        engine.close()
    for sample, out in zip(samples, lone):
        onset = first_nonzero(out, 1e-5)
        assert sample <= onset <= sample + fluid.FLUID_CHUNK + 32, (sample, onset)
        assert np.abs(out[onset : onset + 2000]).max() > 0.01


def _synth_take(gaps, stall_at_s: float | None = None, after_the_gap: int = 0):
    """A take for :func:`without_xruns`: kicks at ``start + cumsum(gaps)`` through the synth's
    PortAudio output on JACK, captured by a JACK client at their frames; ``stall_at_s`` after
    ``start`` the synth's callback is held up 30 ms once, as a descheduled thread would be, and
    the last ``after_the_gap`` kicks are handed over only once the synth has found the gap
    (within ~3 s), so that an unrelated xrun later on has little time to fall before them.
    Result: (the backend, the captured audio from its first frame, the kicks' samples)."""
    import jack

    from sjtui.synth.backend import SynthBackend
    from tests.test_audio_device import XrunCounter

    class StallOnce(SynthBackend):
        stall = False

        def _callback(self, outdata, frames, time_info, status) -> None:
            if self.stall:
                self.stall = False
                time.sleep(0.030)
            super()._callback(outdata, frames, time_info, status)

    def take():
        client = jack.Client("synth-capture", no_start_server=True)
        port = client.inports.register("in")
        blocks: list[tuple[int, np.ndarray]] = []

        def process(frames):
            blocks.append((client.last_frame_time, port.get_array().copy()))

        client.set_process_callback(process)
        with XrunCounter() as server:
            client.activate()
            backend = StallOnce(engine="numpy", sample_rate_hz=RATE)
            try:
                sources = [
                    p.name
                    for p in client.get_ports(is_audio=True, is_output=True)
                    if p.name.startswith("PortAudio")
                ]
                client.connect(sources[0], port)
                with MidiScheduler(backend, state=False) as scheduler:
                    start = int(scheduler.clock() + 0.2 * RATE)
                    samples = start + np.cumsum(gaps)
                    events = note_events(samples, [36] * len(samples))
                    first = len(samples) - after_the_gap
                    scheduler.submit(events[: 2 * first])  # a note-on and a note-off per kick
                    deadline = time.monotonic() + 20
                    stall_at = None if stall_at_s is None else start + stall_at_s * RATE
                    while backend.now_sample() < samples[-1] + RATE // 2 and time.monotonic() < deadline:
                        if stall_at is not None and backend.now_sample() > stall_at:
                            backend.stall, stall_at = True, None
                        if first < len(samples) and backend.gap_count:
                            scheduler.submit(events[2 * first :])
                            first = len(samples)
                        time.sleep(0.02)
            finally:
                backend.close()
                client.deactivate()
                client.close()
        # placed by frame time: on a loaded machine a cycle of this capture can be skipped (an xrun),
        # which would shorten a plain concatenation
        first = blocks[0][0]
        audio = np.zeros(blocks[-1][0] + blocks[-1][1].size - first, dtype=np.float32)
        for frame, block in blocks:
            audio[frame - first : frame - first + block.size] = block
        return (backend, audio, samples), server.xruns

    return take


def _kick_onsets(audio: np.ndarray, count: int) -> list[int]:
    onsets = []
    position = 0
    for _ in range(count):
        onset = position + first_nonzero(audio[position:])
        onsets.append(onset)
        position = onset + 24_000  # the kick one-shot is 0.5 s: zeros after it
        assert not audio[onset + 24_000 : onset + 24_000 + 4000].any()
    return onsets


@pytest.mark.jack
def test_synth_backend_plays_through_the_jack_output_sample_exactly(portaudio_jack):
    from tests.test_audio_device import without_xruns

    def judge(result):
        backend, audio, samples = result
        assert backend.late_events == 0
        assert np.array_equal(np.diff(_kick_onsets(audio, len(samples))), np.diff(samples))

    gaps = np.array([0, 28_800, 31_111, 29_999, 40_000])  # > one-shot length: silence between
    # the synth counts the frames it rendered: a cycle its callback missed (an xrun) shifts what follows
    without_xruns(_synth_take(gaps), judge)


@pytest.mark.jack
def test_a_stalled_synth_steps_over_the_cycles_it_missed(portaudio_jack):
    """30 ms in the synth's callback: JACK skips its cycles; within ~3 s (two detector windows) the
    synth's clock has stepped over them, and the kicks after that sound on their frames again."""
    from tests.test_audio_device import without_xruns

    def judge(result):
        backend, audio, samples = result
        # the stall: 30 ms and the time to take the GIL back (other xruns may add gaps of their own)
        assert backend.gap_count >= 1 and backend.frames_skipped >= 2 * 256, backend.frames_skipped
        onsets = _kick_onsets(audio, len(samples))
        late = (np.array(onsets) - onsets[0]) - (samples - samples[0])  # frames, against the first kick
        # after the stall, back on the frames the scheduler meant: without the step the kicks are
        # 5 periods (1280 frames) or more late; the step's estimate is good to the lateness of the
        # earliest callbacks the detector compared, a few frames, less than half a period
        assert np.abs(late[1:]).max() < 128, ("still late after the stall", late.tolist(), backend.frames_skipped)

    gaps = np.array([0, 28_800, 5 * RATE, 30_000])  # kicks at 0 and 0.6 s, stall at 1.5 s, kicks at 5.6 and 6.2 s
    # the stall itself costs a few xruns of the server (5 here), so a failing take is always taken again
    without_xruns(_synth_take(gaps, stall_at_s=1.5, after_the_gap=2), judge)
