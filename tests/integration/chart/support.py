"""Helpers the chart tests share: where the chart is, a render's objects indexed for
assertions, the RBAC rules as a (group, resource) -> verbs table, and the chart's
sync_policies.py loaded as a module (it lives in the chart, not in a package)."""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

import yaml

from tests import chart_sync

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
    """manifests/sync_policies.py, imported by path (tests/chart_sync.py)."""
    return chart_sync.load()


# The ClusterRole in rule groups: (apiGroup, resource) -> verbs.
ALWAYS: dict[tuple[str, str], frozenset[str]] = {
    ("apps", "deployments"): frozenset({"get", "list", "watch"}),
    ("apps", "statefulsets"): frozenset({"get", "list", "watch"}),
    ("apps", "daemonsets"): frozenset({"get", "list", "watch"}),
    ("apps", "deployments/scale"): frozenset({"get"}),
    ("apps", "statefulsets/scale"): frozenset({"get"}),
    ("autoscaling", "horizontalpodautoscalers"): frozenset({"get", "list", "watch"}),
    (GROUP, "workloadrecommendations"): frozenset(
        {"get", "list", "watch", "create", "patch", "update"}),
    (GROUP, "nodegrouprecommendations"): frozenset(
        {"get", "list", "watch", "create", "patch", "update"}),
    (GROUP, "workloadrecommendations/status"): frozenset({"get", "patch", "update"}),
    (GROUP, "nodegrouprecommendations/status"): frozenset({"get", "patch", "update"}),
    (GROUP, "workloadrecommendations/finalizers"): frozenset({"update"}),
    (GROUP, "nodegrouprecommendations/finalizers"): frozenset({"update"}),
    ("", "events"): frozenset({"create", "patch"}),
    ("policy", "poddisruptionbudgets"): frozenset({"list"}),
    ("apiextensions.k8s.io", "customresourcedefinitions"): frozenset(
        {"get", "list", "create", "patch"}),
}
WRITES = {
    ("apps", "deployments"): frozenset({"patch", "update"}),
    ("apps", "statefulsets"): frozenset({"patch", "update"}),
    ("apps", "daemonsets"): frozenset({"patch", "update"}),
    ("apps", "deployments/scale"): frozenset({"patch", "update"}),
    ("apps", "statefulsets/scale"): frozenset({"patch", "update"}),
    ("autoscaling", "horizontalpodautoscalers"): frozenset({"patch", "update"}),
}
NODE_FACTS = {("", "pods"): frozenset({"list"}), ("", "nodes"): frozenset({"get"})}
DRAIN = {("", "pods/eviction"): frozenset({"create"}),
         ("", "nodes"): frozenset({"list", "watch", "patch"})}  # list, watch: the marked ones
# liveMigration.checkpointRestore (writing modes): pods moved with their process state
# (reconciler/direct/move.py): the kubelet's checkpoint through the node proxy, the restore
# and cleanup Jobs, the replacement pod (created, followed, handed to its ReplicaSet, or
# deleted), the old pod's eviction. tests/integration/direct/test_move.py moves a pod with
# exactly these (and ALWAYS) as a service account.
CHECKPOINT_RESTORE = {
    ("", "nodes/proxy"): frozenset({"create"}),
    ("batch", "jobs"): frozenset({"create", "get", "watch", "delete"}),
    ("", "pods"): frozenset({"get", "watch", "create", "delete", "patch"}),
    ("", "pods/eviction"): frozenset({"create"}),
    ("apps", "replicasets"): frozenset({"get"}),
}


def merge_rules(*groups: dict[tuple[str, str], frozenset[str]]
                ) -> dict[tuple[str, str], frozenset[str]]:
    """One (apiGroup, resource) -> verbs table from rule groups, verbs united."""
    out: dict[tuple[str, str], frozenset[str]] = {}
    for group in groups:
        for key, verbs in group.items():
            out[key] = out.get(key, frozenset()) | verbs
    return out
