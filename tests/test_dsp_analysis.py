"""Analysis: online == offline for every block size, calibrated energy, bad input, decision latency."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from sjtui.constants import BAND_NAMES, HOP_SIZE
from sjtui.dsp.analysis import (
    ENERGY_FLOOR_DB,
    AnalysisConfig,
    Features,
    OnlineAnalyzer,
    analyze,
    merge_band_onsets,
)
from sjtui.errors import AudioError


@pytest.fixture(scope="module")
def guitar(guitar_audio_dir):
    """1 s of a real guitar riff (44.1 kHz), with onsets in every band."""
    x, rate = sf.read(guitar_audio_dir / "berklee_guitar_riff_cutup4.wav", dtype="float32")
    return x[:rate].copy(), rate


def _same(a: Features, b: Features) -> bool:
    return (
        a.first_frame == b.first_frame
        and np.array_equal(a.frame_sample, b.frame_sample)
        and np.array_equal(a.energy_db, b.energy_db)
        and np.array_equal(a.flux, b.flux)
        and np.array_equal(a.onsets, b.onsets)
    )


def _blockwise(analyzer: OnlineAnalyzer, x: np.ndarray, block_size: int) -> Features:
    return Features.concat([analyzer.process(x[i : i + block_size]) for i in range(0, x.size, block_size)])


def test_offline_result_has_documented_shapes(guitar):
    x, rate = guitar
    f = analyze(x, rate)
    n = x.size // HOP_SIZE
    assert f.first_frame == 0
    assert f.frame_sample.dtype == np.int64 and np.array_equal(f.frame_sample, (np.arange(n) + 1) * HOP_SIZE)
    assert f.energy_db.shape == f.flux.shape == (len(BAND_NAMES), n)
    assert f.energy_db.dtype == f.flux.dtype == np.float32
    assert (f.flux >= 0).all()
    # a riff with chords and single notes: onsets in every band, in time order
    assert set(f.onsets["band"].tolist()) == {0, 1, 2}
    assert np.all(np.diff(f.onsets["decided_at"]) >= 0)
    assert np.all(f.onsets["decided_at"] - f.onsets["sample"] == AnalysisConfig().onset_lag_hops * HOP_SIZE)


def test_every_block_size_from_1_to_4096_gives_the_offline_result(guitar):
    """madmom's test_process_online: one call, block by block, and after reset() agree exactly."""
    x, rate = guitar
    reference = analyze(x, rate)
    assert reference.onsets.size > 5
    analyzer = OnlineAnalyzer(rate)
    whole = analyzer.process(x)
    assert _same(whole, reference)
    failures = []
    for block_size in range(1, 4097):
        analyzer.reset()
        if not _same(_blockwise(analyzer, x, block_size), reference):
            failures.append(block_size)
    assert failures == []
    # irregular blocks, as a real callback may deliver
    analyzer.reset()
    rng = np.random.default_rng(7)
    cuts = np.unique(rng.integers(0, x.size, size=300))
    parts = [analyzer.process(chunk) for chunk in np.split(x, cuts)]
    assert _same(Features.concat(parts), reference)


def test_reset_forgets_everything(guitar):
    x, rate = guitar
    analyzer = OnlineAnalyzer(rate)
    first = _blockwise(analyzer, x, 300)
    analyzer.process(np.ones(1000, dtype=np.float32))  # leave state behind
    analyzer.reset()
    assert _same(_blockwise(analyzer, x, 300), first)


@pytest.mark.parametrize("frame_size,hop_size", [(512, 128), (1024, 256), (2048, 512)])
@pytest.mark.parametrize("rate", [44100, 48000])
def test_full_scale_sine_reads_0_db_whatever_the_frame_size(frame_size, hop_size, rate):
    t = np.arange(rate) / rate
    config = AnalysisConfig(frame_size=frame_size, hop_size=hop_size)
    for level_db in (0.0, -20.0):
        amplitude = 10 ** (level_db / 20)
        f = analyze((amplitude * np.sin(2 * np.pi * 1000.0 * t)).astype(np.float32), rate, config)
        steady = f.energy_db[:, f.n_frames // 2 :]
        assert np.allclose(steady[1], level_db, atol=0.2)  # 1 kHz is in the mid band
        assert (steady[0] < level_db - 40).all() and (steady[2] < level_db - 40).all()


def test_silence_gives_the_energy_floor_and_no_onsets():
    f = analyze(np.zeros(48000, dtype=np.float32), 48000)
    assert (f.energy_db == ENERGY_FLOOR_DB).all()
    assert (f.flux == 0).all()
    assert f.onsets.size == 0
    # near-silence (a noise floor far below 16 bits) reads at or above the floor, never below
    whisper = np.random.default_rng(1).standard_normal(48000).astype(np.float32) * np.float32(1e-7)
    quiet = analyze(whisper, 48000)
    assert quiet.energy_db.min() >= ENERGY_FLOOR_DB and quiet.onsets.size == 0


def test_dc_offset_reaches_no_band(guitar):
    x, rate = guitar
    clean = analyze(x, rate)
    offset = analyze(x + np.float32(0.25), rate)
    # after the first frame_size samples (where the DC steps up from the silence before
    # the stream), only float32 rounding of the shifted samples differs
    settled = slice(16, None)  # frame + flux reference window
    assert np.allclose(offset.energy_db[:, settled], clean.energy_db[:, settled], atol=0.05)
    assert np.allclose(offset.flux[:, settled], clean.flux[:, settled], atol=2e-3)
    late = offset.onsets[offset.onsets["decided_at"] > 16 * HOP_SIZE]
    clean_late = clean.onsets[clean.onsets["decided_at"] > 16 * HOP_SIZE]
    assert np.array_equal(late[["sample", "band"]], clean_late[["sample", "band"]])
    dc_only = analyze(np.full(48000, 0.5, dtype=np.float32), 48000)
    assert (dc_only.energy_db[:, 4:] <= ENERGY_FLOOR_DB + 1e-3).all() and dc_only.onsets.size <= 3


def test_nan_and_inf_become_silence_and_are_counted(guitar):
    x, rate = guitar
    bad = x.copy()
    bad[1000:1010] = np.nan
    bad[20000] = np.inf
    bad[30000] = -np.inf
    zeroed = x.copy()
    zeroed[1000:1010] = 0
    zeroed[[20000, 30000]] = 0
    expected = analyze(zeroed, rate)
    got = analyze(bad, rate)
    assert got.nonfinite_samples == 12
    assert _same(got, expected)
    analyzer = OnlineAnalyzer(rate)
    online = _blockwise(analyzer, bad, 256)
    assert _same(online, expected) and online.nonfinite_samples == 12 == analyzer.nonfinite_samples
    assert np.isfinite(online.energy_db).all() and np.isfinite(online.flux).all()


def test_clipping_is_counted_and_analysed():
    rate = 48000
    t = np.arange(rate) / rate
    x = np.clip(1.5 * np.sin(2 * np.pi * 220 * t), -1, 1).astype(np.float32)
    f = analyze(x, rate)
    assert f.clipped_samples == np.count_nonzero(np.abs(x) >= 0.999) > 1000
    assert np.isfinite(f.energy_db).all()
    analyzer = OnlineAnalyzer(rate)
    assert _blockwise(analyzer, x, 64).clipped_samples == f.clipped_samples


@pytest.mark.parametrize("rate", [8000, 16000, 11025, 500000])
def test_unsupported_sample_rate_is_a_clear_error(rate):
    with pytest.raises(AudioError, match=r"44100 and 48000"):
        analyze(np.zeros(1000, dtype=np.float32), rate)
    with pytest.raises(AudioError, match=str(rate)):
        OnlineAnalyzer(rate)


def test_bad_shapes_and_configs_are_clear_errors():
    with pytest.raises(AudioError, match="mono"):
        analyze(np.zeros((100, 2), dtype=np.float32), 48000)
    with pytest.raises(AudioError, match="float"):
        analyze(np.zeros(100, dtype=np.int16), 48000)
    with pytest.raises(AudioError, match="hop size"):
        AnalysisConfig(hop_size=2048).validate()
    with pytest.raises(AudioError, match="frame size"):
        OnlineAnalyzer(48000, AnalysisConfig(frame_size=1001))


def test_empty_and_short_input():
    f = analyze(np.zeros(0, dtype=np.float32), 48000)
    assert f.n_frames == 0 and f.energy_db.shape == (3, 0) and f.onsets.size == 0
    analyzer = OnlineAnalyzer(48000)
    assert analyzer.process(np.zeros(0, dtype=np.float32)).n_frames == 0
    assert analyzer.process(np.zeros(HOP_SIZE - 1, dtype=np.float32)).n_frames == 0
    assert analyzer.process(np.zeros(1, dtype=np.float32)).n_frames == 1


def test_onsets_are_decided_within_two_hops_of_an_attack():
    """Plucks (decaying noise bursts) at known samples: every one is found, decided <= 2 hops after it."""
    rate = 48000
    rng = np.random.default_rng(3)
    x = np.zeros(4 * rate, dtype=np.float32)
    attacks = np.arange(rate // 4, x.size - rate // 4, rate // 3) + rng.integers(0, HOP_SIZE, 11)
    decay = np.exp(-np.arange(6000) / 1200.0)
    for a in attacks:
        x[a : a + decay.size] += (0.3 * rng.standard_normal(decay.size) * decay).astype(np.float32)
    f = analyze(x, rate)
    merged = merge_band_onsets(f.onsets, int(0.05 * rate))
    assert merged.size == attacks.size
    latency = merged["decided_at"] - attacks
    assert (latency > 0).all() and (latency <= 2 * HOP_SIZE).all()
    assert np.abs(merged["sample"] - attacks).max() <= HOP_SIZE
    # every band hears a broadband pluck
    assert set(f.onsets["band"].tolist()) == {0, 1, 2}


@pytest.mark.parametrize(
    "frame_size,hop_size,rate", [(2048, 512, 48000), (512, 128, 44100), (1024, 441, 44100)]
)
def test_other_frame_and_hop_sizes_stream_exactly(guitar, frame_size, hop_size, rate):
    x, _ = guitar  # played back as if recorded at `rate`
    config = AnalysisConfig(frame_size=frame_size, hop_size=hop_size)
    reference = analyze(x, rate, config)
    assert reference.frame_sample[0] == hop_size and reference.onsets.size > 3
    analyzer = OnlineAnalyzer(rate, config)
    for block_size in (1, 63, hop_size - 1, hop_size, hop_size + 1, 3 * hop_size + 5, 5000):
        analyzer.reset()
        assert _same(_blockwise(analyzer, x, block_size), reference), block_size


def test_live_blocks_take_the_compiled_path_and_match_offline_over_many_buffer_refills(guitar):
    """256-sample blocks run the compiled one-hop path and stay equal to the numpy batch path.

    10 s of audio refills the analyzer's buffer ~13 times (the compiled path drops stale samples
    itself); blocks of other dtypes, read-only blocks and a NaN mid-stream go through the general
    path in between and the stream still matches.
    """
    x, rate = guitar
    x = np.tile(x, 10)
    reference = analyze(x, rate)
    analyzer = OnlineAnalyzer(rate)
    assert analyzer._live is not None  # numba is a runtime dependency
    parts = []
    for i, start in enumerate(range(0, x.size, HOP_SIZE)):
        block = x[start : start + HOP_SIZE]
        if i % 97 == 5:
            block = block.astype(np.float64)
        elif i % 89 == 7:
            block = block.copy()
            block.flags.writeable = False
        parts.append(analyzer.process(block))
    assert _same(Features.concat(parts), reference)


def test_linear_energy_threshold_gives_the_same_decisions_as_the_db_comparison():
    """The compiled path compares linear energies; around the threshold every float32 agrees with the dB test."""
    from sjtui.dsp.analysis import energy_db_of, linear_energy_threshold

    for min_db in (-70.0, -60.0, -45.5, -100.0):
        threshold = linear_energy_threshold(min_db)
        bits = np.int64(threshold.view(np.uint32))
        around = np.arange(bits - 2**20, bits + 2**20, dtype=np.int64).astype(np.uint32).view(np.float32)
        db = energy_db_of(around.copy())
        assert np.array_equal(db >= np.float32(min_db), around >= threshold)
    # at or below the floor every frame passes
    from sjtui.dsp.spectral import ENERGY_FLOOR

    assert linear_energy_threshold(ENERGY_FLOOR_DB - 10.0) == ENERGY_FLOOR


def _pluck_pairs(rate: int) -> np.ndarray:
    """Decaying noise bursts in pairs: a strong one, then 150 ms later a weaker one (4 levels), every 0.5 s."""
    rng = np.random.default_rng(5)
    x = np.zeros(6 * rate, dtype=np.float32)
    decay = np.exp(-np.arange(6000) / 1200.0)
    for i, start in enumerate(range(rate // 4, x.size - rate // 2, rate // 2)):
        x[start : start + decay.size] += (0.3 * rng.standard_normal(decay.size) * decay).astype(np.float32)
        echo = start + int(0.15 * rate)
        level = (0.003, 0.01, 0.03, 0.1)[i % 4]
        x[echo : echo + decay.size] += (level * rng.standard_normal(decay.size) * decay).astype(np.float32)
    return x


def test_masks_are_per_band_and_every_path_applies_them_alike(guitar):
    """A different mask per band: each band keeps exactly the onsets its own rule allows, and the batch
    path, the compiled live path, the numpy one-frame path and the numpy batch path of the streaming
    analyzer agree, before and after reset()."""
    rate = 48000
    x = _pluck_pairs(rate)
    mask_ms, mask_ratio = (200.0, 250.0, 300.0), (0.5, 0.4, 0.3)
    unmasked = analyze(x, rate, AnalysisConfig(mask_ms=0.0, mask_ratio=0.0)).onsets
    config = AnalysisConfig(mask_ms=mask_ms, mask_ratio=mask_ratio)
    masked = analyze(x, rate, config).onsets
    # every frame that passes rules 1-3 (threshold, rise, energy): no minimum interval, no mask
    candidates_all = analyze(x, rate, AnalysisConfig(mask_ms=0.0, mask_ratio=0.0, min_interval_ms=0.0)).onsets
    gap = config.frames(config.min_interval_ms, rate)
    for band in range(3):
        candidates = candidates_all[candidates_all["band"] == band]
        kept = masked[masked["band"] == band]
        assert kept.size < np.count_nonzero(unmasked["band"] == band), band  # the mask acts in every band
        # replay rules 4 and 5 with the band's own mask: a candidate is kept iff it is at least
        # `gap` frames after the last kept one and, within the mask, at least ratio times its flux
        window = config.frames(mask_ms[band], rate)
        expected, last_frame, last_strength = [], None, 0.0
        for onset in candidates:
            frame = int(onset["decided_at"]) // HOP_SIZE
            since = None if last_frame is None else frame - last_frame
            if since is None or (
                since >= gap and (since > window or onset["strength"] >= mask_ratio[band] * last_strength)
            ):
                expected.append(int(onset["decided_at"]))
                last_frame, last_strength = frame, float(onset["strength"])
        assert kept["decided_at"].tolist() == expected, band
    # a mask on the high band only leaves the low and mid bands as they are
    high_only = analyze(x, rate, AnalysisConfig(mask_ms=(0.0, 0.0, 300.0), mask_ratio=(0.0, 0.0, 0.3))).onsets
    for band in (0, 1):
        assert np.array_equal(high_only[high_only["band"] == band], unmasked[unmasked["band"] == band])
    assert np.array_equal(high_only[high_only["band"] == 2], masked[masked["band"] == 2])
    # one number for all bands is the same as that number per band
    scalar = analyze(x, rate, AnalysisConfig(mask_ms=250.0, mask_ratio=0.4)).onsets
    per_band = analyze(x, rate, AnalysisConfig(mask_ms=(250.0,) * 3, mask_ratio=(0.4,) * 3)).onsets
    assert np.array_equal(scalar, per_band) and not np.array_equal(scalar, unmasked)

    for signal, signal_rate in ((x, rate), guitar):
        reference = analyze(signal, signal_rate, config)
        analyzer = OnlineAnalyzer(signal_rate, config)
        assert analyzer._live is not None
        # compiled path: one frame per block, several frames per block; 40000 is longer than the
        # analyzer's buffer and takes the numpy batch path
        for block_size in (HOP_SIZE, 1, 300, 5000, 40000):
            analyzer.reset()
            assert _same(_blockwise(analyzer, signal, block_size), reference), block_size
        # float64 blocks take the numpy path: one frame per hop (process_one) and batches
        for block_size in (HOP_SIZE, 1000):
            analyzer.reset()
            assert _same(_blockwise(analyzer, signal.astype(np.float64), block_size), reference), block_size


def _echo_signal(rate: int) -> np.ndarray:
    """Pairs of decaying sine plucks (110 Hz low, 700 Hz mid, 4 kHz high; 2 ms attack): a strong one, then,
    0-100 ms later, one in the same or another band at three levels; a pair every 0.4 s."""
    x = np.zeros(10 * rate, dtype=np.float32)
    t = np.arange(9000) / rate
    envelope = np.exp(-t / 0.05) * np.minimum(1.0, t / 0.002)
    freq_hz = (110.0, 700.0, 4000.0)
    # (band of the first pluck, band of the second, its delay in s)
    pattern = [(0, 1, 0.08), (2, 1, 0.10), (0, 1, 0.0), (2, 1, 0.0), (1, 1, 0.10), (1, 0, 0.09), (2, 2, 0.09)]
    for i, start in enumerate(range(rate // 4, x.size - rate // 2, int(0.4 * rate))):
        first, second, delay_s = pattern[i % len(pattern)]
        level = (0.005, 0.02, 0.08)[(i // len(pattern)) % 3]
        for band, at, amplitude in ((first, start, 0.3), (second, start + int(delay_s * rate), level)):
            x[at : at + t.size] += (amplitude * envelope * np.sin(2 * np.pi * freq_hz[band] * t)).astype(
                np.float32
            )
    return x


def test_echo_rule_acts_across_bands_and_every_path_applies_it_alike(guitar):
    """Rule 6 (echo_ms/echo_flux): within the band's window after the last onset of ANY band, an onset
    needs the band's flux floor. Replayed exactly over all bands at once (bands decided low, mid, high
    within a frame, an earlier band's onset in the same frame counts), and the batch path, the compiled
    live path, the numpy one-frame path and the numpy batch path agree, before and after reset()."""
    rate = 48000
    x = _echo_signal(rate)
    echo_ms, echo_flux = (150.0, 150.0, 200.0), (2.0, 1.5, 0.4)
    no_mask = {"mask_ms": 0.0, "mask_ratio": 0.0}
    config = AnalysisConfig(echo_ms=echo_ms, echo_flux=echo_flux, **no_mask)
    onsets = analyze(x, rate, config).onsets
    # every frame that passes rules 1-3 (threshold, rise, energy): no minimum interval, no echo rule
    candidates = analyze(
        x, rate, AnalysisConfig(echo_ms=0.0, echo_flux=0.0, min_interval_ms=0.0, **no_mask)
    ).onsets
    assert np.all(np.diff(candidates["decided_at"]) >= 0)
    gap = config.frames(config.min_interval_ms, rate)
    window = [config.frames(ms, rate) for ms in echo_ms]
    expected = []
    last = [None] * 3
    last_any = last_any_band = None
    dropped = [0, 0, 0]
    dropped_after_other_band = dropped_in_same_frame = 0
    for onset in candidates:  # time order, then band order
        frame, band = int(onset["decided_at"]) // HOP_SIZE, int(onset["band"])
        if last[band] is not None and frame - last[band] < gap:
            continue
        if last_any is not None and frame - last_any <= window[band] and onset["strength"] < echo_flux[band]:
            dropped[band] += 1
            dropped_after_other_band += last_any_band != band
            dropped_in_same_frame += frame == last_any
            continue
        expected.append((int(onset["decided_at"]), band))
        last[band] = last_any = frame
        last_any_band = band
    assert [(int(o["decided_at"]), int(o["band"])) for o in onsets] == expected
    # the rule acts in every band, after another band's onset and in the frame of an earlier band's onset
    assert min(dropped) > 0 and dropped_after_other_band > 0 and dropped_in_same_frame > 0, dropped
    # ... but an onset of a later band in the same frame does not open the window: a mid onset below
    # its floor is kept in the frame of a high onset
    frames = onsets["decided_at"] // HOP_SIZE
    weak_mid = onsets[(onsets["band"] == 1) & (onsets["strength"] < echo_flux[1])]
    assert any(
        np.any((frames == f // HOP_SIZE) & (onsets["band"] == 2)) for f in weak_mid["decided_at"].tolist()
    )
    # one band only (the default's shape): the other bands keep the onsets they have without the rule
    plain = analyze(x, rate, AnalysisConfig(echo_ms=0.0, echo_flux=0.0, **no_mask)).onsets
    mid_only = analyze(
        x, rate, AnalysisConfig(echo_ms=(0.0, 150.0, 0.0), echo_flux=(0.0, 1.5, 0.0), **no_mask)
    ).onsets
    assert np.count_nonzero(mid_only["band"] == 1) < np.count_nonzero(plain["band"] == 1)
    assert np.array_equal(mid_only[mid_only["band"] != 1], plain[plain["band"] != 1])
    # one number for all bands is the same as that number per band
    scalar = analyze(x, rate, AnalysisConfig(echo_ms=150.0, echo_flux=0.5, **no_mask)).onsets
    per_band = analyze(x, rate, AnalysisConfig(echo_ms=(150.0,) * 3, echo_flux=(0.5,) * 3, **no_mask)).onsets
    assert np.array_equal(scalar, per_band) and not np.array_equal(scalar, plain)

    # the rule together with a mask per band, on this signal and on real guitar
    both = AnalysisConfig(
        echo_ms=echo_ms, echo_flux=echo_flux, mask_ms=(0.0, 0.0, 500.0), mask_ratio=(0.0, 0.0, 0.2)
    )
    for signal, signal_rate, cfg in (
        (x, rate, config),
        (x, rate, both),
        (*guitar, both),
        (*guitar, AnalysisConfig()),
    ):
        reference = analyze(signal, signal_rate, cfg)
        analyzer = OnlineAnalyzer(signal_rate, cfg)
        assert analyzer._live is not None
        # compiled path: one frame per block, several frames per block; 40000 is longer than the
        # analyzer's buffer and takes the numpy batch path
        for block_size in (HOP_SIZE, 1, 300, 5000, 40000):
            analyzer.reset()
            assert _same(_blockwise(analyzer, signal, block_size), reference), block_size
        # float64 blocks take the numpy path: one frame per hop (process_one) and batches
        for block_size in (HOP_SIZE, 1000):
            analyzer.reset()
            assert _same(_blockwise(analyzer, signal.astype(np.float64), block_size), reference), block_size


def test_bad_echo_rules_are_clear_errors():
    with pytest.raises(AudioError, match="echo_ms"):
        AnalysisConfig(echo_ms=(100.0, 200.0)).validate()
    with pytest.raises(AudioError, match="echo_flux .* must be >= 0"):
        OnlineAnalyzer(48000, AnalysisConfig(echo_flux=(0.0, -0.1, 0.0)))
    with pytest.raises(AudioError, match="echo_ms"):
        analyze(np.zeros(1000, dtype=np.float32), 48000, AnalysisConfig(echo_ms=float("nan")))


def test_bad_masks_are_clear_errors():
    with pytest.raises(AudioError, match="mask_ms"):
        AnalysisConfig(mask_ms=(100.0, 200.0)).validate()
    with pytest.raises(AudioError, match="mask_ratio"):
        OnlineAnalyzer(48000, AnalysisConfig(mask_ratio=-0.5))
    with pytest.raises(AudioError, match="delta"):
        analyze(np.zeros(1000, dtype=np.float32), 48000, AnalysisConfig(delta=(0.1, 0.2, 0.3, 0.4)))
