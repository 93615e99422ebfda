"""Shared by the tests of ``samples/``: the builder script imported from its path."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


def load_make_samples() -> ModuleType:
    """``samples/make_samples.py`` imported from its path (it is not part of the package)."""
    path = SAMPLES / "make_samples.py"
    spec = importlib.util.spec_from_file_location("make_samples", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module
