"""Hot reload: a model version that appears mid-jam is used from the next 4-bar decision, without stopping.

Fast mode (simulated clock) on the built-in grooves; the user model folder is a
temporary data folder (``SJTUI_DATA_DIR``) into which a freshly exported
(seeded, untrained) model is written while the jam runs.
"""

from __future__ import annotations

import queue
import time

import pytest

from sjtui.engine import EngineOptions, create_engine
from tests.test_engine_fast import library_dir, song  # noqa: F401 - fixtures


@pytest.fixture(autouse=True)
def private_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("SJTUI_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("SJTUI_DATA_DIR", str(tmp_path / "data"))


def _export(out, seed: int, version: str) -> None:
    pytest.importorskip("torch")
    from training.export import export_model, untrained_summary
    from training.towers import build_two_tower

    export_model(build_two_tower(seed=seed), out, version=version, training=untrained_summary(3))


def _jam(library_dir):  # noqa: F811
    samples, _ = song([("straight8", 8, 1.0), ("funk16", 8, 1.0)])
    engine = create_engine(
        EngineOptions(samples=samples, loop=True, fast=True, bpm=120.0, library=str(library_dir), state_file=False)
    )
    return engine.start()


def _bars_until(engine, condition, timeout_s: float = 60.0) -> list[dict]:
    reports = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not condition(reports):
        try:
            reports.append(engine.bar_reports.get(timeout=0.1))
        except queue.Empty:
            pass
        assert engine.error is None
        assert not engine.finished.is_set()
    return reports


def test_a_new_model_in_the_user_folder_is_used_from_the_next_decision(library_dir, tmp_path):  # noqa: F811
    engine = _jam(library_dir)
    try:
        before = engine.model_version
        first = _bars_until(engine, lambda r: len([x for x in r if x["groove"]]) >= 4)
        _export(tmp_path / "data" / "model", seed=11, version="0.0.2-reload")
        after = _bars_until(engine, lambda r: "0.0.2-reload" in engine.snapshot().model_version, timeout_s=90)
        # the jam went on meanwhile, and keeps going with the new model
        more = _bars_until(engine, lambda r: len([x for x in r if x["groove"]]) >= 8)
        snap = engine.snapshot()
    finally:
        engine.close()
    assert "0.0.2-reload" not in before
    assert "0.0.2-reload" in snap.model_version
    assert engine.model.version == "0.0.2-reload" and engine.model_reloads == 1
    switched = [e.text for e in snap.log if "model switched" in e.text]
    assert len(switched) == 1 and "0.0.2-reload" in switched[0], [e.text for e in snap.log]
    # no bar was skipped: bar numbers run on without a gap across the reload
    bars = [r["bar"] for r in first + after + more]
    assert bars == list(range(bars[0], bars[0] + len(bars)))
    assert all(r["groove"] for r in more)
    # the library's embeddings under the new model were filled (cached for the next start)
    assert engine.ranker.embeddings is not None and engine.ranker.model is engine.model


def test_a_broken_new_model_keeps_the_current_one_with_a_warning(library_dir, tmp_path):  # noqa: F811
    engine = _jam(library_dir)
    try:
        before = engine.model_version
        _bars_until(engine, lambda r: len([x for x in r if x["groove"]]) >= 2)
        staging = tmp_path / "staging"
        _export(staging, seed=12, version="0.0.3-broken")
        onnx = sorted(staging.glob("*.onnx"))[0]
        onnx.write_bytes(onnx.read_bytes()[:1000])  # truncated: fails its checksum
        (tmp_path / "data").mkdir(exist_ok=True)
        staging.rename(tmp_path / "data" / "model")  # appears at once, already broken
        reports = _bars_until(engine, lambda r: any("cannot be used" in w for w in engine.snapshot().warnings), 90)
        more = _bars_until(engine, lambda r: len([x for x in r if x["groove"]]) >= 4)
        snap = engine.snapshot()
    finally:
        engine.close()
    assert snap.model_version == before and before
    assert engine.model_reloads == 0
    assert any("keeping" in w and "cannot be used" in w for w in snap.warnings), snap.warnings
    assert reports is not None and all(r["groove"] for r in more)
