"""The one-hop kernels compiled ahead of time, so that a jam does not load numba.

The live analyzer's compiled path (:mod:`sjtui.dsp._hop_kernel`) is two
functions, but numba's JIT brings numba, llvmlite and LLVM's code generator
into the process to run them: measured, +143 MB resident for the cached
kernels against +18 MB for the same two functions compiled ahead of time,
at the same speed. So they are compiled once per machine (and per version of
the kernel source, numba and Python) into a plain extension module with
``numba.pycc``, in a child process (numba is imported there only), and
loaded from the user cache folder without numba. Their results are the JIT
path's bit for bit (tests/test_dsp_hop_aot.py).

Where the build cannot run (no C compiler, a numba without ``pycc``, a
read-only cache folder), :func:`load` returns None and the analyzer takes the
JIT path as before; :func:`problem` says why.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.metadata
import os
import shutil
import subprocess
import sys
import threading
import types
from pathlib import Path

from sjtui.extension import load_extension_file

# The kernels' return conventions, shared with sjtui.dsp._hop_kernel (numba reads them there
# as compile-time constants): ingest returns (frames completed << FRAME_BITS) | first frame,
# or NOT_HANDLED.
FRAME_BITS = 40
NOT_HANDLED = -1

MODULE_NAME = "_hop_aot"  # the extension's PyInit name; the file's folder carries the key
BUILD_TIMEOUT_S = 300
# A build's folder that no process has loaded for this long belongs to an old sjtui, numba or
# Python: removed after the next build. Two installs sharing the cache each touch their own.
UNUSED_FOR_S = 30 * 24 * 3600

_lock = threading.Lock()
_loaded: types.SimpleNamespace | None = None
_problem: str | None = None


def cache_dir() -> Path:
    """``$SJTUI_CACHE_DIR``, else ``platformdirs.user_cache_dir("sjtui")``."""
    override = os.environ.get("SJTUI_CACHE_DIR")
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_cache_dir("sjtui"))


def build_key() -> str:
    """What the compiled module depends on: the kernel source, numba, Python and the platform."""
    source = (Path(__file__).with_name("_hop_kernel.py")).read_bytes()
    try:
        numba_version = importlib.metadata.version("numba")
    except importlib.metadata.PackageNotFoundError:
        numba_version = "none"
    parts = [
        source,
        numba_version.encode(),
        sys.version.encode(),
        importlib.machinery.EXTENSION_SUFFIXES[0].encode(),
    ]
    return hashlib.sha256(b"\0".join(parts)).hexdigest()[:16]


def module_path() -> Path:
    return cache_dir() / f"hop-{build_key()}" / (MODULE_NAME + importlib.machinery.EXTENSION_SUFFIXES[0])


def problem() -> str | None:
    """Why the ahead-of-time kernels are not in use (None when they are, or before :func:`load`)."""
    return _problem


def load() -> types.SimpleNamespace | None:
    """The compiled kernels (``ingest``, ``hop``, ``entry_point``, ``FRAME_BITS``, ``NOT_HANDLED``,
    as :mod:`sjtui.dsp._hop_kernel` offers them), built first where they are not yet; None if they
    cannot be had (:func:`problem` says why). Once per process."""
    global _loaded, _problem
    with _lock:
        if _loaded is not None or _problem is not None:
            return _loaded
        path = module_path()
        if not path.exists():
            _problem = _build(path)
            if _problem is not None:
                return None
            _remove_unused_builds(path.parent)
        try:
            os.utime(path.parent)  # in use: keeps this build from being taken for an old one
        except OSError:
            pass
        try:
            module = load_extension_file(MODULE_NAME, path)
        except (ImportError, OSError) as error:
            _problem = f"{path} cannot be loaded ({error}); delete it to rebuild"
            return None
        _loaded = types.SimpleNamespace(
            ingest=module.ingest,
            hop=module.hop,
            entry_point=lambda f: f,
            FRAME_BITS=FRAME_BITS,
            NOT_HANDLED=NOT_HANDLED,
        )
        return _loaded


def _remove_unused_builds(keep: Path) -> None:
    """Delete the other ``hop-*`` build folders not loaded for :data:`UNUSED_FOR_S` (~700 KB each)."""
    import time

    cutoff = time.time() - UNUSED_FOR_S
    for folder in keep.parent.glob("hop-*"):
        try:
            if folder != keep and ".build-" not in folder.name and folder.stat().st_mtime < cutoff:
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            pass


def _build(path: Path) -> str | None:
    """Compile into ``path``'s folder in a child process; None on success, else the reason."""
    folder = path.parent
    staging = folder.with_name(f"{folder.name}.build-{os.getpid()}")
    try:
        staging.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            [sys.executable, "-m", "sjtui.dsp.hop_aot", str(staging)],
            capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False,
        )  # fmt: skip
        built = staging / path.name
        if result.returncode != 0 or not built.exists():
            lines = (result.stderr or result.stdout).strip().splitlines()
            return "building the compiled analysis kernels failed: " + (
                lines[-1] if lines else f"exit {result.returncode}"
            )
        try:
            os.replace(staging, folder)  # whole folder at once: a reader never sees half a module
        except OSError:
            if not path.exists():  # not another process that finished first
                raise
        return None
    except (OSError, subprocess.SubprocessError) as error:
        return f"building the compiled analysis kernels failed: {error}"
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _compile(out_dir: str) -> None:
    """In the child: numba.pycc compiles _hop_kernel's two entry points into ``out_dir``."""
    import warnings

    warnings.simplefilter("ignore")  # pycc is marked for deprecation; the JIT path stays the fallback
    from numba.pycc import CC

    from sjtui.dsp import _hop_kernel as kernel

    cc = CC(MODULE_NAME)
    cc.output_dir = out_dir
    cc.verbose = False
    for name in ("ingest", "hop"):
        dispatcher = getattr(kernel, name)
        (signature,) = dispatcher.nopython_signatures
        cc.export(name, signature)(dispatcher.py_func)
    cc.compile()


if __name__ == "__main__":
    _compile(sys.argv[1])
