"""Model versions: which exist, which is active, switching and rolling back.

Layout (the one ``sjtui train`` writes through ``training/export.py``):

- ``sjtui/data/models/`` (package data, so in a wheel too): the **shipped** model (never changed here).
- the user's model folder (:func:`sjtui.model.runtime.user_model_dir`,
  ``<data dir>/model/``): ``manifest.json`` is the **active** user version
  (:func:`sjtui.model.runtime.load_model` uses it when it passes its checks,
  else the shipped model). Encoder and reference files carry the version in
  their names (``guitar_encoder-0.1.0+user.20261126150000.onnx``), so the
  files of earlier versions stay beside the new ones; an install keeps the
  manifest it replaces as ``manifest.json.bak-<stamp>``. Each such manifest
  whose files are still there is a **previous version** to roll back to.

:func:`use_version` makes a version active by copying its manifest over
``manifest.json`` (atomically, after the same checks the runtime does, in a
staging folder: manifest format, feature constants, sha256 of each file,
onnxruntime loading them); the manifest it replaces is kept as a backup
unless an identical one already is. A broken version is refused and the
active model is untouched. ``use_version("shipped")`` moves the user's
``manifest.json`` aside (kept as a backup), so the runtime falls back to
the shipped model; ``use VERSION`` brings any user version back.

:func:`not_worse` is the rule for installing a fine-tuned model: it may
replace the active one only when its held-out figure is at least the
active one's (see the report of ``sjtui train``).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from sjtui.model.errors import ModelError
from sjtui.model.manifest import MANIFEST_FILE, read_manifest

SHIPPED = "shipped"
BACKUP_PREFIX = MANIFEST_FILE + ".bak-"
FIGURES = ("recall_at_1", "mrr", "roc_auc")


@dataclass
class ModelVersion:
    version: str
    where: str  # "shipped" | "user"
    manifest_path: Path
    active: bool = False
    problem: str | None = None  # why it cannot be used, or None
    created_utc: str = ""
    training: str = ""
    evaluation: dict = field(default_factory=dict)  # figures (name -> value), or {} when not evaluated
    evaluation_status: str = "not evaluated"

    def to_json(self) -> dict:
        return {
            "version": self.version,
            "where": self.where,
            "manifest": str(self.manifest_path),
            "active": self.active,
            "usable": self.problem is None,
            "problem": self.problem,
            "created_utc": self.created_utc,
            "training": self.training,
            "evaluation_status": self.evaluation_status,
            "evaluation": self.evaluation,
        }


def _dirs(user_dir, shipped_dir) -> tuple[Path, Path]:
    from sjtui.model.runtime import SHIPPED_MODEL_DIR, user_model_dir

    return (
        Path(user_dir) if user_dir is not None else user_model_dir(),
        Path(shipped_dir) if shipped_dir is not None else SHIPPED_MODEL_DIR,
    )


def _figures(manifest: dict) -> tuple[str, dict]:
    evaluation = manifest.get("evaluation") or {}
    status = str(evaluation.get("status", "not evaluated"))
    figures = evaluation.get("model") if isinstance(evaluation.get("model"), dict) else evaluation
    out = {k: round(float(figures[k]), 4) for k in FIGURES if isinstance(figures.get(k), (int, float))}
    return status, out


def check_version(manifest_path: Path) -> None:
    """Run the runtime's checks on the model a manifest describes; :class:`ModelError` if it is unusable.

    The manifest is copied into a temporary staging folder with hard links
    (or copies) of its files, so a backup manifest is checked exactly as it
    would be loaded once active.
    """
    from sjtui.model.runtime import EncoderPair

    directory = manifest_path.parent
    staging = Path(tempfile.mkdtemp(prefix="sjtui-model-check-"))  # never inside the shipped model folder
    try:
        try:
            manifest = json.loads(manifest_path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ModelError(f"model manifest {manifest_path} cannot be read ({error})") from None
        shutil.copyfile(manifest_path, staging / MANIFEST_FILE)
        names = []
        if isinstance(manifest, dict):
            for entry in list((manifest.get("encoders") or {}).values()) + [manifest.get("reference") or {}]:
                if isinstance(entry, dict) and isinstance(entry.get("file"), str):
                    names.append(entry["file"])
        for name in names:
            source = directory / name
            if Path(name).name == name and source.is_file():
                try:
                    os.link(source, staging / name)
                except OSError:
                    shutil.copyfile(source, staging / name)
        pair = EncoderPair(staging)
        if (pair.manifest.get("reference") or {}).get("file"):
            pair.check_reference()
    except ModelError as error:
        raise ModelError(str(error).replace(str(staging), str(directory))) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _entry(manifest_path: Path, where: str, check: bool) -> ModelVersion | None:
    try:
        manifest = read_manifest(manifest_path.parent) if manifest_path.name == MANIFEST_FILE else None
        if manifest is None:
            manifest = json.loads(manifest_path.read_text())
    except (ModelError, OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        return ModelVersion("?", where, manifest_path, problem=str(error))
    if not isinstance(manifest, dict) or "version" not in manifest:
        return ModelVersion("?", where, manifest_path, problem=f"{manifest_path} is not a model manifest")
    status, figures = _figures(manifest)
    item = ModelVersion(
        version=str(manifest["version"]),
        where=where,
        manifest_path=manifest_path,
        created_utc=str(manifest.get("created_utc", "")),
        training=str((manifest.get("training") or {}).get("summary", ""))[:200],
        evaluation=figures,
        evaluation_status=status,
    )
    if check:
        try:
            check_version(manifest_path)
        except ModelError as error:
            item.problem = str(error)
    return item


def list_versions(user_dir=None, shipped_dir=None, *, check: bool = True) -> list[ModelVersion]:
    """Every model version: the shipped one, the active user one, previous user ones (newest first).

    Exactly one is marked ``active``: the user's ``manifest.json`` when it
    passes its checks, else the shipped model (what :func:`load_model` uses).
    ``check``: run the runtime's checks on each (sha256, onnxruntime).
    """
    user_dir, shipped_dir = _dirs(user_dir, shipped_dir)
    out: list[ModelVersion] = []
    shipped = _entry(shipped_dir / MANIFEST_FILE, SHIPPED, check)
    current = None
    if (user_dir / MANIFEST_FILE).is_file():
        current = _entry(user_dir / MANIFEST_FILE, "user", check)
        out.append(current)
    seen = {current.version} if current is not None else set()
    backups = (
        sorted(user_dir.glob(BACKUP_PREFIX + "*"), key=lambda p: p.name, reverse=True)
        if user_dir.is_dir()
        else []
    )
    for path in backups:
        item = _entry(path, "user", check)
        if item is None or item.version in seen:
            continue
        seen.add(item.version)
        out.append(item)
    out.append(shipped)
    if current is not None and current.problem is None:
        current.active = True
    else:
        shipped.active = True
    return out


def _backup(user_dir: Path, *, keep_active: bool = False) -> str | None:
    """Keep ``manifest.json`` as a backup (reuse an identical one); remove it unless ``keep_active``.

    The backup is a second name (hard link, else a copy) made before anything
    else changes, so a process killed at any moment leaves either the old
    active manifest or the new one, never none (``keep_active``: the caller
    replaces it atomically next).
    """
    active = user_dir / MANIFEST_FILE
    if not active.is_file():
        return None
    content = active.read_bytes()
    kept = next((path for path in user_dir.glob(BACKUP_PREFIX + "*") if path.read_bytes() == content), None)
    if kept is None:
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        kept = user_dir / f"{BACKUP_PREFIX}{stamp}"
        n = 1
        while kept.exists():
            kept = user_dir / f"{BACKUP_PREFIX}{stamp}-{n}"
            n += 1
        try:
            os.link(active, kept)
        except OSError:  # no hard links on this file system
            shutil.copy2(active, kept)
    if not keep_active:
        active.unlink()
    return kept.name


def use_version(version: str, user_dir=None, shipped_dir=None) -> ModelVersion:
    """Make ``version`` (or ``"shipped"``) the active model; returns it. The previous one stays for rollback.

    Raises :class:`ModelError` naming the versions that exist for an unknown
    name, and for a version that fails its checks (nothing is changed then).
    """
    user_dir, shipped_dir = _dirs(user_dir, shipped_dir)
    versions = list_versions(user_dir, shipped_dir, check=False)
    if version == SHIPPED:
        shipped = next(v for v in versions if v.where == SHIPPED)
        check_version(shipped.manifest_path)
        _backup(user_dir)
        return ModelVersion(**{**shipped.__dict__, "active": True})
    matches = [v for v in versions if v.where == "user" and v.version == version]
    if not matches:
        names = [f"{v.version} ({v.where})" for v in versions if v.version != "?"]
        raise ModelError(
            f"there is no model version {version!r}; versions here: {', '.join(names) or 'none'}. "
            f"`sjtui model use shipped` goes back to the shipped model"
        )
    chosen = matches[0]
    try:
        check_version(chosen.manifest_path)
    except ModelError as error:
        active = next((v for v in list_versions(user_dir, shipped_dir, check=True) if v.active), None)
        keeps = f"; the active model ({active.version}, {active.where}) stays" if active else ""
        raise ModelError(f"model version {version} cannot be used: {error}{keeps}") from None
    active_path = user_dir / MANIFEST_FILE
    if chosen.manifest_path == active_path:
        return ModelVersion(**{**chosen.__dict__, "active": True})
    content = chosen.manifest_path.read_bytes()
    _backup(user_dir, keep_active=True)
    tmp = user_dir / (MANIFEST_FILE + ".tmp")
    tmp.write_bytes(content)
    os.replace(tmp, active_path)
    return ModelVersion(**{**chosen.__dict__, "manifest_path": active_path, "active": True})


def not_worse(candidate: dict, current: dict, figure: str = "mrr", tolerance: float = 0.0) -> bool:
    """True when ``candidate``'s held-out ``figure`` is at least ``current``'s minus ``tolerance``.

    Both are manifest ``evaluation`` objects evaluated on the same held-out
    ratings. A candidate without the figure is worse (it cannot show it is
    not); a current model without it is beaten by any evaluated candidate.
    """
    _, new = _figures({"evaluation": candidate})
    _, old = _figures({"evaluation": current})
    if figure not in new:
        return False
    if figure not in old:
        return True
    return new[figure] >= old[figure] - tolerance
