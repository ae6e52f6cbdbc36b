"""The one-hop kernels compiled ahead of time (sjtui.dsp.hop_aot): the JIT kernels' results bit for
bit, no numba in the process that uses them, built once and kept, and the JIT path when the build
cannot run."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import soundfile as sf

from sjtui.dsp import _hop_kernel, analysis, hop_aot
from sjtui.dsp.analysis import Features, OnlineAnalyzer


@pytest.fixture(scope="module")
def guitar(guitar_audio_dir):
    x, rate = sf.read(guitar_audio_dir / "berklee_guitar_riff_cutup4.wav", dtype="float32")
    return np.tile(x[: 2 * rate], 3), rate


def _stream(x: np.ndarray, rate: int, block: int) -> Features:
    analyzer = OnlineAnalyzer(rate)
    assert analyzer._live is not None
    return Features.concat([analyzer.process(x[i : i + block]) for i in range(0, x.size, block)])


def _fields(f: Features) -> tuple:
    return f.first_frame, f.frame_sample, f.energy_db, f.flux, f.onsets


@pytest.mark.parametrize("block", [1, 100, 256, 1000, 4096])
def test_ahead_of_time_and_jit_kernels_give_the_same_features_bit_for_bit(guitar, block, monkeypatch):
    x, rate = guitar
    kernels = hop_aot.load()
    assert kernels is not None, hop_aot.problem()  # make test installs a C compiler
    monkeypatch.setattr(analysis, "_load_hop_kernel", lambda: kernels)
    compiled = _stream(x, rate, block)
    monkeypatch.setattr(analysis, "_load_hop_kernel", lambda: _hop_kernel)
    jit = _stream(x, rate, block)
    assert compiled.onsets.size > 10
    for a, b in zip(_fields(compiled), _fields(jit)):
        assert np.array_equal(a, b)


def _run(code: str, cache_dir, guitar_file) -> dict:
    env = dict(os.environ, SJTUI_CACHE_DIR=str(cache_dir))
    script = textwrap.dedent(
        f"""
        import json, sys
        import numpy as np, soundfile as sf
        from sjtui.dsp import hop_aot
        from sjtui.dsp.analysis import Features, OnlineAnalyzer, analyze
        x, rate = sf.read({str(guitar_file)!r}, dtype="float32")
        x = x[: 2 * rate].copy()
        analyzer = OnlineAnalyzer(rate)
        live = Features.concat([analyzer.process(x[i : i + 256]) for i in range(0, x.size, 256)])
        reference = analyze(x, rate)
        same = all(np.array_equal(a, b) for a, b in [(live.energy_db, reference.energy_db),
                   (live.flux, reference.flux), (live.onsets, reference.onsets)])
        {code}
        print(json.dumps(dict(same=same, live=analyzer._live is not None, numba="numba" in sys.modules,
                              problem=hop_aot.problem(), out=out)))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    import json

    return json.loads(result.stdout.strip().splitlines()[-1])


def test_a_fresh_machine_builds_once_and_then_runs_without_numba(tmp_path, guitar_audio_dir):
    recording = guitar_audio_dir / "berklee_guitar_riff_cutup4.wav"
    first = _run("out = str(hop_aot.module_path())", tmp_path / "cache", recording)
    assert first == {**first, "same": True, "live": True, "numba": False, "problem": None}
    built = os.stat(first["out"])
    again = _run("out = str(hop_aot.module_path())", tmp_path / "cache", recording)
    assert again == first
    kept = os.stat(first["out"])
    assert (kept.st_ino, kept.st_mtime_ns) == (built.st_ino, built.st_mtime_ns)  # loaded, not rebuilt
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [
        os.path.basename(os.path.dirname(first["out"]))
    ]


def test_where_the_build_cannot_run_the_jit_path_takes_over(tmp_path, guitar_audio_dir):
    blocker = tmp_path / "a-file"
    blocker.write_text("the cache folder cannot be made under a file")
    result = _run("out = None", blocker / "cache", guitar_audio_dir / "berklee_guitar_riff_cutup4.wav")
    assert result["same"] and result["live"] and result["numba"]
    assert "building the compiled analysis kernels failed" in result["problem"]


def test_a_new_build_removes_old_builds_no_one_loaded_for_a_month(tmp_path, guitar_audio_dir):
    cache = tmp_path / "cache"
    old, recent = cache / "hop-0123456789abcdef", cache / "hop-fedcba9876543210"
    for folder in (old, recent):
        folder.mkdir(parents=True)
        (folder / "_hop_aot.so").write_bytes(b"an older build")
    month_ago = time.time() - 31 * 24 * 3600
    os.utime(old, (month_ago, month_ago))
    result = _run("out = str(hop_aot.module_path())", cache, guitar_audio_dir / "berklee_guitar_riff_cutup4.wav")
    assert result["problem"] is None
    assert sorted(p.name for p in cache.iterdir()) == sorted(
        [recent.name, os.path.basename(os.path.dirname(result["out"]))]
    )
