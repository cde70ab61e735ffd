"""Helpers the chart tests share: where the chart is, a render's objects indexed for
assertions, the RBAC rules as a (group, resource) -> verbs table, and the chart's
sync_policies.py loaded as a module (it lives in the chart, not in a package)."""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[3]
CHART_DIR = ROOT / "manifests"
CRD_DIR = CHART_DIR / "crds"
RELEASE = "dakr"
NAMESPACE = "dakr-system"
GROUP = "dakr.devzero.io"


def load_yaml_docs(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


class Rendered:
    """A render's objects, indexed the way the assertions need them."""

    def __init__(self, manifests: dict[str, str]) -> None:
        self.notes = ""
        self.objects: list[dict[str, Any]] = []
        for name, text in manifests.items():
            if name.endswith("NOTES.txt"):
                self.notes = text
            else:
                self.objects += load_yaml_docs(text)

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def one(self, kind: str) -> dict[str, Any]:
        found = self.all(kind)
        assert len(found) == 1, f"expected one {kind}, got {len(found)}"
        return found[0]

    def pod(self) -> dict[str, Any]:
        spec: dict[str, Any] = self.one("Deployment")["spec"]["template"]["spec"]
        return spec

    def containers(self) -> list[dict[str, Any]]:
        return list(self.pod()["containers"])

    def container(self, name: str) -> dict[str, Any]:
        (found,) = [c for c in self.containers() if c["name"] == name]
        return dict(found)

    def env(self, container: str) -> dict[str, dict[str, Any]]:
        return {e["name"]: e for e in self.container(container).get("env", [])}


def render(chart: Any, values: dict[str, Any] | None = None) -> Rendered:
    manifests: dict[str, str] = chart.render(values or {}, name=RELEASE, namespace=NAMESPACE)
    return Rendered(manifests)


def rules_table(role: dict[str, Any]) -> dict[tuple[str, str], frozenset[str]]:
    table: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        for group in rule.get("apiGroups", []):
            for resource in rule.get("resources", []):
                table.setdefault((group, resource), set()).update(rule["verbs"])
    return {key: frozenset(verbs) for key, verbs in table.items()}


def sync_policies() -> types.ModuleType:
    """manifests/sync_policies.py, imported by path (the chart is no Python package)."""
    name = "dakr_chart_sync_policies"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, CHART_DIR / "sync_policies.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    # No manifests/__pycache__/: the chart directory holds only what Helm should see.
    saved, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:
        spec.loader.exec_module(module)
    finally:
        sys.dont_write_bytecode = saved
    return module
