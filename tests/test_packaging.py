"""A wheel of sjtui carries the shipped model and the built-in grooves, and finds them once installed.

A user who installs with pip has no source tree: what the runtime reads must be package data.
Built here with the venv's own setuptools (no build isolation: no download), installed into a
folder of its own and used from another working directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(out), str(REPO)],
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "PIP_NO_INPUT": "1"},
    )  # fmt: skip
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:]
    (path,) = out.glob("sjtui-*.whl")
    return path


def test_the_wheel_holds_every_file_of_the_shipped_model_and_every_builtin_groove(wheel):
    from sjtui.grooves.textgrid import BUILTIN_GROOVES_DIR
    from sjtui.model.runtime import SHIPPED_MODEL_DIR

    names = set(zipfile.ZipFile(wheel).namelist())
    manifest = json.loads((SHIPPED_MODEL_DIR / "manifest.json").read_text())
    listed = {entry["file"] for entry in _file_entries(manifest)}
    assert listed, "the manifest names the model's files"
    for name in sorted(listed | {"manifest.json"}):
        assert f"sjtui/data/models/{name}" in names, f"{name} of the shipped model is missing from the wheel"
    for path in sorted(BUILTIN_GROOVES_DIR.glob("*.groove")):
        assert f"sjtui/data/grooves/{path.name}" in names, f"{path.name} is missing from the wheel"


def test_an_installed_wheel_loads_its_model_and_grooves_without_the_source_tree(wheel, tmp_path):
    target = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target", str(target), str(wheel)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert install.returncode == 0, install.stdout[-2000:] + install.stderr[-2000:]
    probe = (
        "import json, sjtui\n"
        "from sjtui.model.runtime import load_model\n"
        "from sjtui.grooves.textgrid import load_builtin\n"
        "loaded = load_model()\n"
        "print(json.dumps({'package': sjtui.__file__, 'model': str(loaded.directory),\n"
        "                  'fallback': loaded.fallback_reason, 'grooves': len(load_builtin())}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(target), "SJTUI_DATA_DIR": str(tmp_path / "data")}
    run = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    found = json.loads(run.stdout.strip().splitlines()[-1])
    assert Path(found["package"]).is_relative_to(target), found  # the installed copy, not the checkout
    assert Path(found["model"]).is_relative_to(target) and found["fallback"] is None, found
    assert found["grooves"] > 0, found


def _file_entries(node):
    """Every ``{"file": ...}`` entry anywhere in the manifest."""
    if isinstance(node, dict):
        if isinstance(node.get("file"), str):
            yield node
        for value in node.values():
            yield from _file_entries(value)
    elif isinstance(node, list):
        for value in node:
            yield from _file_entries(value)
