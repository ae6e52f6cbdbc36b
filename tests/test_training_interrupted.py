"""`sjtui train` killed with SIGKILL at any moment: the current model keeps working, nothing half-written is used.

The run is a real `sjtui train` process on a real labels database, killed
after increasing delays (while torch imports, while it reads the ratings,
trains, evaluates and installs); after each kill the user's model folder
must list its versions, the active one must be the one installed before
(or, if the run got that far, the complete new one) and must load and pass
its reference check. A final run that is not killed finishes normally.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from tests.test_model_versions import install_version
from tests.test_training_smoke import _base_model_dir, _labels_db, tiny  # noqa: F401  (fixture)

REPO = Path(__file__).resolve().parent.parent


def _train_command(labels, library, base, out, steps: int) -> list[str]:
    return [
        sys.executable, "-m", "sjtui", "train", "--labels", str(labels), "--library", str(library),
        "--base", str(base), "--out", str(out), "--steps", str(steps), "--json",
    ]  # fmt: skip


def _active_version(out: Path):
    from sjtui.model.runtime import EncoderPair
    from sjtui.model.versions import list_versions

    versions = list_versions(out, check=True)  # must not raise on whatever the killed run left
    (active,) = [v for v in versions if v.active]
    assert active.problem is None, active.problem
    pair = EncoderPair(active.manifest_path.parent)
    pair.check_reference()  # the files the manifest names are complete and give the stored outputs
    return active.version


def test_a_killed_training_run_leaves_the_current_model_working(tmp_path, tiny):  # noqa: F811
    from sjtui.grooves.store import GrooveStore

    part, _, guitars = tiny
    base, _ = _base_model_dir(tmp_path, part)
    library = tmp_path / "library"
    with GrooveStore(library) as store:
        labels, _ = _labels_db(tmp_path, guitars, store)
    out = tmp_path / "user-model"
    install_version(out, "0.1.0+user.1", "20261126T100000")
    assert _active_version(out) == "0.1.0+user.1"
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")

    # how long a whole run takes here, to spread the kills over it
    started = time.monotonic()
    done = subprocess.run(
        _train_command(labels, library, base, out, 60), cwd=tmp_path, env=env, capture_output=True, text=True, check=False,
        timeout=300,
    )  # fmt: skip
    whole_s = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    first = json.loads(done.stdout)
    installed_version = _active_version(out)
    assert installed_version == (first["version"] if first["installed"] else "0.1.0+user.1")

    kills = []
    for fraction in (0.1, 0.3, 0.5, 0.7, 0.85, 0.95):
        before = _active_version(out)
        proc = subprocess.Popen(
            _train_command(labels, library, base, out, 60), cwd=tmp_path, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        time.sleep(fraction * whole_s)
        finished = proc.poll() is not None
        if not finished:
            os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)
        after = _active_version(out)
        # a killed run changes nothing or installs a whole new version, never a broken one
        assert after == before or not finished and after != before and after.startswith("0.1.0"), (
            before,
            after,
        )
        kills.append((fraction, finished, before, after))
        leftovers = [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
        assert not leftovers or _active_version(out), leftovers

    # and the next run after all that works as usual
    final = subprocess.run(
        _train_command(labels, library, base, out, 60), cwd=tmp_path, env=env, capture_output=True, text=True, check=False,
        timeout=300,
    )  # fmt: skip
    assert final.returncode == 0, (final.stderr, kills)
    result = json.loads(final.stdout)
    assert _active_version(out) == (result["version"] if result["installed"] else after)
    assert any(not finished for _, finished, _, _ in kills), kills  # at least one run really was killed
    print(f"whole run {whole_s:.1f} s; kills (fraction, finished, before, after): {kills}")


INSTALL_DRIVER = """
import os, sys, time
sys.path.insert(0, sys.argv[2])
import training.export as X
from training.towers import build_two_tower

real_replace, real_link = os.replace, os.link

def slow(name, real):
    def call(*args):
        print(name, os.path.basename(str(args[-1])), flush=True)  # the test kills us during the sleep
        time.sleep(0.4)
        return real(*args)
    return call

os.replace, os.link = slow("replace", real_replace), slow("link", real_link)
X.export_model(build_two_tower(int(sys.argv[3])), sys.argv[1], version=sys.argv[4],
               training={"status": "untrained", "summary": "install-kill test"})
print("done", flush=True)
"""


def test_a_model_install_killed_between_any_two_file_operations_keeps_a_working_active_model(tmp_path):
    """The install's file operations are slowed and the installing process is killed after each one in turn."""
    out = tmp_path / "user-model"
    install_version(out, "0.1.0+user.1", "20261126T100000")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    seen = []
    for k in range(1, 12):
        before = _active_version(out)
        version = f"0.1.0+user.{k + 1}"
        proc = subprocess.Popen(
            [sys.executable, "-c", INSTALL_DRIVER, str(out), str(REPO), str(k), version],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        operations, killed = [], False
        for line in proc.stdout:
            words = line.split()
            if words and words[0] in ("replace", "link"):
                operations.append(" ".join(words))
                if len(operations) == k:  # killed during the k-th file operation of the install
                    os.kill(proc.pid, signal.SIGKILL)
                    killed = True
                    break
        proc.communicate(timeout=60)
        after = _active_version(out)
        assert after in (before, version), (k, operations, before, after)
        seen.append((k, operations, killed, after))
        if not killed:  # the install ran to its end: the new version is active
            assert proc.returncode == 0 and after == version, (seen, proc.returncode)
            break
    assert len(seen) >= 4 and not seen[-1][2], seen  # several operations to be killed in, then a whole run
    print(seen)
