"""Tempo estimation accuracy on rendered riffs and estimates for the real recordings.

The real chain: generate_riff -> render_riff (FluidSynth, GM guitars) ->
sjtui.dsp.analysis.analyze -> sjtui.transport.tempo_estimate.estimate_from_features.
Peer in the same run: librosa's tempo estimator (``librosa.feature.tempo``
with its default prior) on the same audio.

acc1: share of riffs whose estimate is within 4 % of the true tempo;
acc2: the same allowing double or half. Riffs use seeds from 1000 on (the
estimator's prior centre was chosen on riff onsets with seeds 0-239).

    .venv/bin/python bench/tempo.py --json            # 120 riffs, all styles
    .venv/bin/python bench/tempo.py --n 240 --listen-s 8
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sjtui.audio.render import render_riff  # noqa: E402
from sjtui.audio.riffs import STYLES, generate_riff  # noqa: E402
from sjtui.dsp.analysis import analyze  # noqa: E402
from sjtui.transport.tempo_estimate import estimate_from_features  # noqa: E402

PROGRAMS = ("clean", "muted", "overdrive", "distortion", "steel")
SAMPLE_RATE_HZ = 48000


def default_audio_dir() -> Path:
    shared = os.environ.get("SJTUI_SHARED")
    base = Path(shared) if shared else Path(__file__).resolve().parents[1].parent / "shared"
    return base / "datasets" / "guitar-audio"


def cases(n: int, seed0: int = 1000, only: list[str] | None = None):
    rng = np.random.default_rng(seed0)
    styles = list(STYLES)
    for i in range(n):
        style = styles[i % len(styles)]
        if only and style not in only:
            rng.uniform()
            continue
        meter, _feel, (lo, hi), _builder = STYLES[style]
        lo, hi = max(lo, 70), min(hi, 180)
        bpm = round(float(rng.uniform(lo, hi)), 1)
        yield style, bpm, seed0 + i, PROGRAMS[i % len(PROGRAMS)]


def rendered(riff, program: str, cache: Path) -> np.ndarray:
    text = f"{riff.style}-{riff.bpm}-{riff.meter}-{program}-{len(riff.notes)}-{riff.notes[:3]}"
    key = hashlib.sha1(text.encode()).hexdigest()
    path = cache / f"{key}.npy"
    if path.is_file():
        return np.load(path)
    audio = render_riff(riff, program=program, sample_rate_hz=SAMPLE_RATE_HZ)
    np.save(path, audio)
    return audio


def hit(estimate: float | None, truth: float, tolerance: float = 0.04) -> tuple[bool, bool]:
    if estimate is None or not np.isfinite(estimate):
        return False, False
    ratio = estimate / truth
    acc1 = abs(ratio - 1) <= tolerance
    acc2 = acc1 or abs(ratio * 2 - 1) <= tolerance or abs(ratio / 2 - 1) <= tolerance
    return acc1, acc2


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=120, help="number of rendered riffs (default 120)")
    parser.add_argument("--bars", type=int, default=8)
    parser.add_argument("--listen-s", type=float, default=8.0, help="use only the first S seconds (0 = all)")
    parser.add_argument("--audio-dir", type=Path, default=default_audio_dir())
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "sjtui-bench-tempo")
    parser.add_argument("--no-peer", action="store_true", help="skip librosa")
    parser.add_argument("--styles", nargs="*", help="only these riff styles (default: all)")
    parser.add_argument("--no-recordings", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    args.cache.mkdir(parents=True, exist_ok=True)

    rows = []
    t_ours = t_peer = 0.0
    for style, bpm, seed, program in cases(args.n, only=args.styles):
        riff = generate_riff(style, bpm, bars=args.bars, seed=seed, humanize_ms=5.0)
        audio = rendered(riff, program, args.cache)
        if args.listen_s > 0:
            audio = audio[: int(args.listen_s * SAMPLE_RATE_HZ)]
        t0 = time.perf_counter()
        features = analyze(audio, SAMPLE_RATE_HZ)
        est = estimate_from_features(features, SAMPLE_RATE_HZ, meter=riff.meter)
        est44 = estimate_from_features(features, SAMPLE_RATE_HZ, meter=None)  # meter unknown: 4/4 assumed
        t_ours += time.perf_counter() - t0
        row = {
            "style": style, "meter": str(riff.meter), "program": program, "bpm": bpm,
            "estimate": est.bpm, "confidence": round(est.confidence, 3), "ambiguous": est.ambiguous,
            "estimate_meter_unknown": est44.bpm,
        }
        row["acc1"], row["acc2"] = hit(est.bpm, bpm)
        if est.downbeat_sample is not None and row["acc1"]:
            bar_s = 60.0 / bpm * float(riff.meter.beats_per_bar)
            phase = (est.downbeat_sample / SAMPLE_RATE_HZ / bar_s) % 1.0
            row["downbeat_ok"] = bool(min(phase, 1 - phase) * bar_s < 60.0 / bpm / 4)  # within a 16th
        else:
            row["downbeat_ok"] = False
        row["acc1_meter_unknown"], row["acc2_meter_unknown"] = hit(est44.bpm, bpm)
        if not args.no_peer:
            import librosa

            t0 = time.perf_counter()
            peer = float(librosa.feature.tempo(y=audio, sr=SAMPLE_RATE_HZ)[0])
            t_peer += time.perf_counter() - t0
            row["librosa"] = peer
            row["librosa_acc1"], row["librosa_acc2"] = hit(peer, bpm)
        rows.append(row)

    n = len(rows)
    result = {
        "acc1": round(sum(r["acc1"] for r in rows) / n, 4),
        "acc2": round(sum(r["acc2"] for r in rows) / n, 4),
        "n": n,
        "acc1_meter_unknown": round(sum(r["acc1_meter_unknown"] for r in rows) / n, 4),
        "acc2_meter_unknown": round(sum(r["acc2_meter_unknown"] for r in rows) / n, 4),
        "listen_s": args.listen_s,
        "downbeat_acc": round(sum(r["downbeat_ok"] for r in rows) / n, 4),
        "ambiguous_flagged": sum(r["ambiguous"] for r in rows),
        "wrong_but_flagged_ambiguous": sum((not r["acc1"]) and r["ambiguous"] for r in rows),
        "ours_s_per_riff": round(t_ours / n / 2, 5),
    }
    if not args.no_peer:
        result["librosa_acc1"] = round(sum(r["librosa_acc1"] for r in rows) / n, 4)
        result["librosa_acc2"] = round(sum(r["librosa_acc2"] for r in rows) / n, 4)
        result["librosa_s_per_riff"] = round(t_peer / n, 5)
        result["speed_ratio_librosa_over_ours"] = round(t_peer / max(t_ours / 2, 1e-9), 2)
    per_style = {}
    for r in rows:
        s = per_style.setdefault(r["style"], [0, 0, 0])
        s[0] += r["acc1"]
        s[1] += r["acc2"]
        s[2] += 1
    result["per_style"] = {
        k: {"acc1": round(a / c, 3), "acc2": round(b / c, 3), "n": c} for k, (a, b, c) in per_style.items()
    }
    result["failures"] = [
        {k: r[k] for k in ("style", "meter", "program", "bpm", "estimate", "confidence", "ambiguous")}
        for r in rows if not r["acc1"]
    ]

    recordings = []
    if args.no_recordings:
        pass
    elif args.audio_dir.is_dir():
        import soundfile as sf

        for path in sorted(args.audio_dir.glob("*.wav")):
            audio, rate = sf.read(path, dtype="float32", always_2d=True)
            audio = audio.mean(axis=1)
            est = estimate_from_features(analyze(audio, rate), rate)
            entry = {"file": path.name, "duration_s": round(len(audio) / rate, 2), **est.as_dict(rate)}
            if not args.no_peer:
                import librosa

                entry["librosa_bpm"] = round(float(librosa.feature.tempo(y=audio, sr=rate)[0]), 2)
            recordings.append(entry)
    else:
        result["recordings_missing"] = str(args.audio_dir)
    result["recordings"] = recordings

    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(f"rendered riffs: n={n} acc1={result['acc1']:.3f} acc2={result['acc2']:.3f} "
              f"(meter unknown: acc1={result['acc1_meter_unknown']:.3f} "
              f"acc2={result['acc2_meter_unknown']:.3f})")
        if not args.no_peer:
            print(f"librosa peer:   acc1={result['librosa_acc1']:.3f} acc2={result['librosa_acc2']:.3f} "
                  f"({result['speed_ratio_librosa_over_ours']}x our time)")
        for style, s in result["per_style"].items():
            print(f"  {style:10s} acc1={s['acc1']:.2f} acc2={s['acc2']:.2f} n={s['n']}")
        for f in result["failures"]:
            print(f"  miss: {f}")
        for r in recordings:
            print(f"  {r['file']:34s} {r['duration_s']:6.1f} s  bpm={r['bpm']} conf={r['confidence']} "
                  f"state={r['state']} alt={r['alternatives']} librosa={r.get('librosa_bpm')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
