"""manifests/sync_policies.py (which copies the policy library into the chart), imported
by path for the tests: the chart directory is no Python package, and must not get a
__pycache__/ that Helm would see."""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "manifests" / "sync_policies.py"
NAME = "dakr_chart_sync_policies"


def load() -> types.ModuleType:
    if NAME in sys.modules:
        return sys.modules[NAME]
    spec = importlib.util.spec_from_file_location(NAME, SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[NAME] = module
    saved, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:
        spec.loader.exec_module(module)
    finally:
        sys.dont_write_bytecode = saved
    return module
