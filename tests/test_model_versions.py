"""``sjtui model list|use``: versions in a user model folder laid out as ``sjtui train`` installs them.

User versions are made from the shipped model's real ONNX files, renamed
for their version, and installed the way ``training/export.py``'s
``_install`` does (versioned files beside each other, the replaced
manifest kept as ``manifest.json.bak-<stamp>``), so the runtime's checks
(sha256, onnxruntime, reference embeddings) run on real encoders.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sjtui.model.errors import ModelError
from sjtui.model.manifest import MANIFEST_FILE
from sjtui.model.runtime import SHIPPED_MODEL_DIR, load_model
from sjtui.model.versions import list_versions, not_worse, use_version


def install_version(user_dir: Path, version: str, stamp: str, mrr: float | None = None) -> None:
    """Install a copy of the shipped model as ``version`` into ``user_dir`` like sjtui train does."""
    manifest = json.loads((SHIPPED_MODEL_DIR / MANIFEST_FILE).read_text())
    user_dir.mkdir(parents=True, exist_ok=True)
    entries = [*manifest["encoders"].values(), manifest["reference"]]
    for entry in entries:
        old = entry["file"]
        new = old.replace(manifest["version"], version)
        shutil.copyfile(SHIPPED_MODEL_DIR / old, user_dir / new)
        entry["file"] = new
    manifest["version"] = version
    manifest["training"].pop("checkpoint", None)
    manifest["training"]["summary"] = f"fine-tuned ({version})"
    manifest["evaluation"] = (
        {"status": "not evaluated", "summary": "fine-tuned"}
        if mrr is None
        else {"status": "evaluated", "model": {"mrr": mrr, "recall_at_1": 0.5}}
    )
    active = user_dir / MANIFEST_FILE
    if active.exists():
        os.replace(active, user_dir / f"{MANIFEST_FILE}.bak-{stamp}")
    active.write_text(json.dumps(manifest, indent=2))


@pytest.fixture()
def user_dir(tmp_path):
    directory = tmp_path / "model"
    install_version(directory, "0.1.0+user.1", "20261126T100000")
    install_version(directory, "0.1.0+user.2", "20261126T110000", mrr=0.9)
    return directory


def _active(versions):
    (active,) = [v for v in versions if v.active]
    return active


def test_list_shows_every_version_the_active_one_and_figures(user_dir):
    versions = list_versions(user_dir)
    assert [(v.version, v.where) for v in versions] == [
        ("0.1.0+user.2", "user"),
        ("0.1.0+user.1", "user"),
        ("0.1.0", "shipped"),
    ]
    assert all(v.problem is None for v in versions)
    assert _active(versions).version == "0.1.0+user.2"
    assert versions[0].evaluation == {"recall_at_1": 0.5, "mrr": 0.9}
    assert versions[1].evaluation == {} and versions[1].evaluation_status == "not evaluated"
    shipped = versions[2]
    assert shipped.evaluation_status == "evaluated" and 0 < shipped.evaluation["mrr"] <= 1


def test_use_rollback_and_back_to_shipped(user_dir):
    assert load_model(user_dir=user_dir).model.version == "0.1.0+user.2"
    use_version("0.1.0+user.1", user_dir)
    assert _active(list_versions(user_dir)).version == "0.1.0+user.1"
    assert load_model(user_dir=user_dir).model.version == "0.1.0+user.1"  # what the jam loads
    # the version it replaced stays for rollback, listed once
    names = [v.version for v in list_versions(user_dir)]
    assert names.count("0.1.0+user.2") == 1 and names.count("0.1.0+user.1") == 1
    use_version("shipped", user_dir)
    loaded = load_model(user_dir=user_dir)
    assert loaded.directory == SHIPPED_MODEL_DIR and loaded.fallback_reason is None
    assert _active(list_versions(user_dir)).where == "shipped"
    use_version("0.1.0+user.2", user_dir)
    assert load_model(user_dir=user_dir).model.version == "0.1.0+user.2"
    # switching back and forth does not pile up identical backups
    use_version("0.1.0+user.1", user_dir)
    use_version("0.1.0+user.2", user_dir)
    backups = sorted(p.read_bytes() for p in user_dir.glob(MANIFEST_FILE + ".bak-*"))
    assert len(backups) == len(set(backups))


def test_unknown_version_lists_what_exists(user_dir):
    with pytest.raises(ModelError) as error:
        use_version("2.0.0", user_dir)
    text = str(error.value)
    assert "'2.0.0'" in text and "0.1.0+user.1 (user)" in text and "0.1.0 (shipped)" in text


def test_broken_version_is_refused_and_the_active_one_keeps_working(user_dir):
    broken = user_dir / "guitar_encoder-0.1.0+user.1.onnx"
    broken.write_bytes(broken.read_bytes()[:1000])  # truncated
    before = (user_dir / MANIFEST_FILE).read_bytes()
    with pytest.raises(ModelError) as error:
        use_version("0.1.0+user.1", user_dir)
    assert "0.1.0+user.1 cannot be used" in str(error.value) and "truncated" in str(error.value)
    assert "active model (0.1.0+user.2, user) stays" in str(error.value)
    assert (user_dir / MANIFEST_FILE).read_bytes() == before
    assert load_model(user_dir=user_dir).model.version == "0.1.0+user.2"
    listed = {v.version: v for v in list_versions(user_dir)}
    assert listed["0.1.0+user.1"].problem and not listed["0.1.0+user.1"].active


def test_broken_active_version_lists_shipped_as_active(user_dir):
    (user_dir / "groove_encoder-0.1.0+user.2.onnx").unlink()
    versions = list_versions(user_dir)
    assert _active(versions).where == "shipped"
    assert "missing" in versions[0].problem
    loaded = load_model(user_dir=user_dir)
    assert loaded.directory == SHIPPED_MODEL_DIR and "missing" in loaded.fallback_reason


def test_not_worse():
    assert not_worse({"model": {"mrr": 0.8}}, {"model": {"mrr": 0.8}})
    assert not not_worse({"model": {"mrr": 0.7}}, {"model": {"mrr": 0.8}})
    assert not_worse({"model": {"mrr": 0.79}}, {"model": {"mrr": 0.8}}, tolerance=0.02)
    assert not not_worse({"status": "not evaluated"}, {"model": {"mrr": 0.8}})
    assert not_worse({"model": {"mrr": 0.1}}, {"status": "not evaluated"})


def test_cli_list_and_use(user_dir):
    def sjtui(*args):
        return subprocess.run(
            [sys.executable, "-m", "sjtui", "model", "--user-dir", str(user_dir), *args],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip

    listed = sjtui("list", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [r["version"] for r in rows if r["active"]] == ["0.1.0+user.2"]
    used = sjtui("use", "0.1.0+user.1")
    assert used.returncode == 0 and "0.1.0+user.1" in used.stdout
    text = sjtui("list").stdout
    assert "* 0.1.0+user.1" in text
    bad = sjtui("use", "nope")
    assert bad.returncode == 2 and "versions here" in bad.stderr
