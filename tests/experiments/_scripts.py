"""Load a benchmark entry point of ``experiments/`` as a module (they are scripts, not part of
the installed packages)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"


def load_script(name: str) -> ModuleType:
    """A fresh module object for ``experiments/<name>.py``."""
    spec = importlib.util.spec_from_file_location(f"{name}_script", EXPERIMENTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # a script's @dataclass looks its module up there
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module
