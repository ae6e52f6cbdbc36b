"""The runtime never needs torch, and only the UI imports Textual."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import sjtui


def _modules_after_import(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
        check=True,
        capture_output=True,
        text=True,
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def _runtime_modules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(sjtui.__path__, prefix="sjtui."):
        if not info.name.startswith("sjtui.ui") and info.name != "sjtui.__main__":
            names.append(info.name)
    return names


def test_importing_sjtui_is_light():
    loaded = _modules_after_import("import sjtui, sjtui.cli")
    assert "torch" not in loaded
    assert "numpy" not in loaded, "`sjtui --help` should not pay for numpy"
    assert "textual" not in loaded


def test_no_runtime_module_imports_torch_or_textual():
    modules = _runtime_modules()
    assert "sjtui.meter" in modules
    code = "\n".join(f"import {name}" for name in modules)
    loaded = _modules_after_import(code)
    assert "torch" not in loaded
    assert "textual" not in loaded
