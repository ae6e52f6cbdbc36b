"""Loading a compiled extension module from its file, without importing the package around it."""

from __future__ import annotations

import importlib.machinery
import importlib.util
from pathlib import Path
from types import ModuleType


def load_extension_file(name: str, path: Path | str) -> ModuleType:
    """The extension module at ``path``; ``name``'s last part must be the module's PyInit name.

    ImportError or OSError when the file cannot be loaded. Not put in ``sys.modules``.
    """
    loader = importlib.machinery.ExtensionFileLoader(name, str(path))
    module = importlib.util.module_from_spec(
        importlib.util.spec_from_file_location(name, str(path), loader=loader)
    )
    loader.exec_module(module)
    return module
