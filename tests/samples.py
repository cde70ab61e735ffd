"""The sample policy inputs shared by the Rego tests and the Python tests.

``rego-tests/data/samples.json`` is loaded as ``data.samples`` by the Rego test runner and
read here by the Python tests, so both exercise one input shape and it cannot drift.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SAMPLES_FILE = ROOT / "rego-tests" / "data" / "samples.json"
POLICIES = ROOT / "policies"
# Coverage is opt-in (policies/scope/scope.rego): the suite opts every namespace in.
OPT_IN = ROOT / "tests" / "data" / "opt-in.yaml"
DATA_FILES = (POLICIES / "data.yaml", OPT_IN)
AS_SHIPPED = (POLICIES / "data.yaml",)

_DELETE = object()
DELETE: Any = _DELETE  # a patch value that removes the key


def load() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(SAMPLES_FILE.read_text())
    samples: dict[str, Any] = doc["samples"]
    return samples


def sample(name: str, patches: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A deep copy of one sample with JSON-pointer patches applied (``add`` semantics)."""
    doc: dict[str, Any] = copy.deepcopy(load()[name])
    for pointer, value in (patches or {}).items():
        set_pointer(doc, pointer, value)
    return doc


def set_pointer(doc: Any, pointer: str, value: Any) -> None:
    parts = [p.replace("~1", "/").replace("~0", "~") for p in pointer.lstrip("/").split("/")]
    node = doc
    for p in parts[:-1]:
        node = node[int(p)] if isinstance(node, list) else node.setdefault(p, {})
    last = parts[-1]
    if isinstance(node, list):
        node[int(last)] = copy.deepcopy(value)
    elif value is _DELETE:
        node.pop(last, None)
    else:
        node[last] = copy.deepcopy(value)
