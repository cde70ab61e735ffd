"""The Helm chart in manifests/, rendered and linted with the real Helm library.

helm-python-sdk (import name ``helm_python``) binds Helm's Go SDK through ctypes; it renders
and lints offline, with no helm binary and no cluster. If the native library cannot be used
here, the Helm tests skip with the reason and the CRD file tests still run.

Cases:
- lint: default values and every override below lint without warnings; lint is shown to be
  real (invalid object names give warnings, a broken CRD file gives an error).
- RBAC: the ClusterRole of a writing operator (direct; gitops with a repository) grants
  exactly the expected (group, resource) -> verbs table; no
  wildcard verbs, resources or groups; nodes/proxy never, unless
  liveMigration.checkpointRestore in a writing mode: then nodes/proxy create, Jobs, pod
  create/delete/patch, evictions and ReplicaSet get, and a separate ClusterRole with
  nodes/checkpoint create for the API server's kubelet client, bound to the user
  liveMigration.checkpoint.apiServerUser names (no binding without it); none of it in audit
  mode; no registry fails the render; NOTES warn that nodes/proxy amounts to exec on the
  node and say what the API server's identity needs;
  pods/resize (with pod get/list/watch and ReplicaSet list) only with
  liveMigration.enabled in a writing mode; pods list and nodes get only with
  clusterFacts.nodes (and the env that turns node facts on); evictions and node patch,
  list and watch (marks) only with nodeDrain.enabled (in direct mode here; audit mode's
  read-only table is in test_chart_values.py); leases only
  in a namespaced Role; bindings point at the chart's ServiceAccount;
  rbac.create=false and leaderElection.enabled=false drop the corresponding objects.
- Deployment: OPA sidecar Data API bound to localhost (flag, env URL, no 8181 container
  port), probes on the diagnostic port; an opa.addr that leaves the pod or an unknown mode
  fails the render; every container non-root, read-only root filesystem, no privilege
  escalation, all capabilities dropped; probes on both containers.
- policies ConfigMap: holds the shipped library by default and is mounted into OPA, which
  runs with --watch and --ignore=.*; policies.files join the library and change nothing in
  the pod template (no checksum annotation rolls the pod); not created when
  policies.existingConfigMap names one.
- gitops token only from a Secret reference; mode=direct renders no gitops settings.
- CRDs (from the files and as Helm loads them): group, version, scope, status subresource,
  printer columns, short names, categories; spec field names, required fields and enums;
  identical status schemas; metav1.Condition status enum kept as strings; quantity and id
  patterns (table tests); every openAPIV3Schema is structural, and the structural checker
  itself rejects non-structural schemas (table test).
"""

from __future__ import annotations

import re
import shutil
import types
from pathlib import Path
from typing import Any

import pytest

from tests.integration.chart import support
from tests.integration.chart.support import (
    CHART_DIR,
    CRD_DIR,
    GROUP,
    NAMESPACE,
    RELEASE,
)
from tests.integration.chart.support import load_yaml_docs as _load_yaml_docs
from tests.integration.chart.support import render as _render
from tests.integration.chart.support import rules_table as _rules_table

# (apiGroup, resource) -> verbs. The operator's whole footprint when it writes (direct, or
# gitops with a repository): anything added to the chart must be added here on purpose.
# The rule groups (and audit mode's smaller set) are in support.py.
EXPECTED_CLUSTER_RULES = support.merge_rules(support.ALWAYS, support.WRITES)

# Overrides that must all render and lint cleanly.
OVERRIDES: dict[str, dict[str, Any]] = {
    "defaults": {},
    "direct-mode": {"mode": "direct"},
    "node-facts": {"clusterFacts": {"nodes": True}},
    "node-drain": {"mode": "direct", "nodeDrain": {"enabled": True}},
    "no-rbac": {"rbac": {"create": False}},
    "no-leader-election": {"leaderElection": {"enabled": False}},
    "existing-sa": {"serviceAccount": {"create": False, "name": "ops"}},
    "existing-policies": {"policies": {"existingConfigMap": "team-policies"}},
    "inline-policies": {"policies": {"files": {"decision.rego": "package dakr\n"}}},
    "gitops-configured": {
        "clusterID": "c-123",
        "apiTokenSecret": {"name": "dakr-api"},
        "gitops": {"repoURL": "https://example.test/org/repo.git", "tokenSecret": {"name": "gt"}},
    },
    "checkpoint-restore": {"mode": "direct", "liveMigration": {
        "checkpointRestore": True,
        "checkpoint": {"registry": "registry.example/checkpoints",
                       "apiServerUser": "kube-apiserver-kubelet-client"}}},
}


# ---------------------------------------------------------------- helpers


def _crd_files() -> dict[str, dict[str, Any]]:
    """CRDs as written on disk, keyed by kind."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(CRD_DIR.glob("*.yaml")):
        for doc in _load_yaml_docs(path.read_text()):
            out[doc["spec"]["names"]["kind"]] = doc
    return out


def _version(crd: dict[str, Any]) -> dict[str, Any]:
    versions: list[dict[str, Any]] = crd["spec"]["versions"]
    assert len(versions) == 1
    return versions[0]


def _schema(crd: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = _version(crd)["schema"]["openAPIV3Schema"]
    return schema


_JUNCTORS = ("allOf", "anyOf", "oneOf", "not")
_FORBIDDEN_IN_JUNCTORS = ("description", "type", "default", "additionalProperties", "nullable")


def _structural_violations(node: Any, path: str = "", *, root: bool = True) -> list[str]:
    """Reasons the schema is not structural, per the apiextensions rules.

    Why a checker of our own: there is no kube-apiserver here to reject a bad CRD, and a
    non-structural schema is refused by `apiextensions.k8s.io/v1` at install time.
    """
    if not isinstance(node, dict):
        return [f"{path or '<root>'}: schema node is not a mapping"]
    where = path or "<root>"
    problems: list[str] = []
    int_or_string = node.get("x-kubernetes-int-or-string") is True
    preserve = node.get("x-kubernetes-preserve-unknown-fields") is True
    if int_or_string and "type" in node:
        problems.append(f"{where}: x-kubernetes-int-or-string must not set type")
    if not node.get("type") and not int_or_string and not preserve:
        problems.append(f"{where}: no type")
    if "properties" in node and "additionalProperties" in node:
        problems.append(f"{where}: properties and additionalProperties together")
    if ("properties" in node or "additionalProperties" in node) and node.get("type") != "object":
        problems.append(f"{where}: properties on a non-object")
    if "items" in node and node.get("type") != "array":
        problems.append(f"{where}: items on a non-array")
    if node.get("type") == "array" and "items" not in node:
        problems.append(f"{where}: array without items")
    for junctor in _JUNCTORS:
        if junctor not in node:
            continue
        branches = node[junctor] if isinstance(node[junctor], list) else [node[junctor]]
        for i, branch in enumerate(branches):
            for key in _FORBIDDEN_IN_JUNCTORS:
                allowed = (
                    int_or_string
                    and junctor == "anyOf"
                    and key == "type"
                    and branch.get("type") in ("integer", "string")
                )
                if key in branch and not allowed:
                    problems.append(f"{where}.{junctor}[{i}]: sets {key}")
    list_type = node.get("x-kubernetes-list-type")
    if list_type == "map":
        items = node.get("items", {})
        keys = node.get("x-kubernetes-list-map-keys") or []
        if not keys:
            problems.append(f"{where}: list-type map without list-map-keys")
        for key in keys:
            if key not in items.get("required", []):
                problems.append(f"{where}: list-map key {key!r} is not required")
            if items.get("properties", {}).get(key, {}).get("type") not in ("string", "integer"):
                problems.append(f"{where}: list-map key {key!r} is not a scalar")
    if list_type == "set" and node.get("items", {}).get("type") in ("object", "array"):
        problems.append(f"{where}: list-type set of non-scalars")
    for name, child in (node.get("properties") or {}).items():
        if root and name == "metadata":
            extra = set(child) - {"type", "description", "properties"}
            if child.get("type") != "object" or extra:
                problems.append(f"{where}.metadata: only type object is allowed")
            if set(child.get("properties", {})) - {"name", "generateName"}:
                problems.append(f"{where}.metadata: restricts fields other than name")
            continue
        problems += _structural_violations(child, f"{path}.{name}", root=False)
    if isinstance(node.get("additionalProperties"), dict):
        problems += _structural_violations(node["additionalProperties"], f"{path}.*", root=False)
    if isinstance(node.get("items"), dict):
        problems += _structural_violations(node["items"], f"{path}[]", root=False)
    return problems


# ---------------------------------------------------------------- lint


@pytest.mark.parametrize("values", OVERRIDES.values(), ids=OVERRIDES.keys())
def test_chart_lints_without_warnings(helm: types.ModuleType, values: dict[str, Any]) -> None:
    report = helm.lint(CHART_DIR, values, strict=True, namespace=NAMESPACE)
    assert report["total_charts_linted"] == 1
    assert report["errors"] == []
    serious = [m for m in report["messages"] if m["severity"] >= 2]
    assert serious == []


def test_lint_reports_invalid_object_names(helm: types.ModuleType) -> None:
    report = helm.lint(CHART_DIR, {"fullnameOverride": "Bad_Name"}, namespace=NAMESPACE)
    paths = {m["path"] for m in report["messages"] if m["severity"] >= 2}
    assert "templates/deployment.yaml" in paths


def test_lint_parses_crd_files(helm: types.ModuleType, tmp_path: Path) -> None:
    broken = tmp_path / "dakr-reconciler"
    shutil.copytree(CHART_DIR, broken)
    crd = broken / "crds" / "workloadrecommendations.yaml"
    crd.write_text(crd.read_text().replace("scope: Namespaced", "scope: [Namespaced", 1))
    report = helm.lint(broken)
    errors = [m for m in report["messages"] if m["severity"] == 3]
    assert [m["path"] for m in errors] == ["crds/workloadrecommendations.yaml"]


# ---------------------------------------------------------------- RBAC


def test_cluster_role_grants_exactly_what_the_operator_needs(chart: Any) -> None:
    for override in ("direct-mode", "gitops-configured"):
        rendered = _render(chart, OVERRIDES[override])
        assert _rules_table(rendered.one("ClusterRole")) == EXPECTED_CLUSTER_RULES, override


@pytest.mark.parametrize("values", OVERRIDES.values(), ids=OVERRIDES.keys())
def test_no_wildcards_in_any_rule(chart: Any, values: dict[str, Any]) -> None:
    rendered = _render(chart, values)
    for role in rendered.all("ClusterRole") + rendered.all("Role"):
        for rule in role["rules"]:
            for field in ("verbs", "resources", "apiGroups"):
                assert "*" not in rule.get(field, []), (role["metadata"]["name"], rule)
            assert "nonResourceURLs" not in rule
            assert "resourceNames" not in rule or rule["resourceNames"]


@pytest.mark.parametrize("values", OVERRIDES.values(), ids=OVERRIDES.keys())
def test_no_grant_for_features_not_enabled(chart: Any, values: dict[str, Any]) -> None:
    rules = _rules_table(_operator_role(_render(chart, values))) if values.get(
        "rbac", {}).get("create", True) else {}
    if not values.get("liveMigration", {}).get("checkpointRestore"):
        assert ("", "nodes/proxy") not in rules  # exec on every node: only when asked
        assert ("batch", "jobs") not in rules
    if not values.get("liveMigration", {}).get("enabled"):
        assert ("", "pods/resize") not in rules
    if not values.get("nodeDrain", {}).get("enabled"):
        if not values.get("liveMigration", {}).get("checkpointRestore"):
            assert ("", "pods/eviction") not in rules  # a move evicts the old pod too
        assert rules.get(("", "nodes"), frozenset()) <= {"get"}  # no cordon


def test_resize_rights_only_with_live_migration(chart: Any) -> None:
    default = _rules_table(_render(chart, OVERRIDES["direct-mode"]).one("ClusterRole"))
    live = _rules_table(_operator_role(_render(chart, {**OVERRIDES["direct-mode"],
                                                       "liveMigration": {"enabled": True}})))
    assert live.pop(("", "pods/resize")) == frozenset({"patch"})
    assert live.pop(("apps", "replicasets")) == frozenset({"list"})
    assert live.pop(("", "pods")) == frozenset({"get", "list", "watch"})
    assert live == default
    audit = _render(chart, {"mode": "audit", "liveMigration": {"enabled": True}})
    assert ("", "pods/resize") not in _rules_table(_operator_role(audit))


def _operator_role(rendered: Any) -> dict[str, Any]:
    """The operator's ClusterRole (the admission webhook has its own, read-only one, and
    the API server's kubelet client one for checkpoints)."""
    (role,) = [r for r in rendered.all("ClusterRole")
               if not r["metadata"]["name"].endswith(("-webhook", "-kubelet-checkpoint"))]
    return dict(role)


CHECKPOINT = {"mode": "direct", "liveMigration": {
    "checkpointRestore": True, "checkpoint": {"registry": "registry.example/checkpoints"}}}


def test_checkpoint_rights_only_with_checkpoint_restore(chart: Any) -> None:
    default = _rules_table(_render(chart, OVERRIDES["direct-mode"]).one("ClusterRole"))
    rendered = _render(chart, CHECKPOINT)
    assert _rules_table(_operator_role(rendered)) == support.merge_rules(
        default, support.CHECKPOINT_RESTORE)
    (kubelet_role,) = [r for r in rendered.all("ClusterRole")
                       if r["metadata"]["name"] == f"{RELEASE}-dakr-reconciler-kubelet-checkpoint"]
    assert _rules_table(kubelet_role) == {("", "nodes/checkpoint"): frozenset({"create"})}
    # Bound to the API server's identity only when the user is named.
    assert [b["metadata"]["name"] for b in rendered.all("ClusterRoleBinding")] == [
        f"{RELEASE}-dakr-reconciler"]
    bound = _render(chart, OVERRIDES["checkpoint-restore"])
    (binding,) = [b for b in bound.all("ClusterRoleBinding")
                  if b["metadata"]["name"].endswith("-kubelet-checkpoint")]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io",
                                  "kind": "ClusterRole",
                                  "name": kubelet_role["metadata"]["name"]}
    assert binding["subjects"] == [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                                    "name": "kube-apiserver-kubelet-client"}]
    # With the webhook too, the pod verbs add up.
    both = _render(chart, {**CHECKPOINT, "liveMigration": {
        **CHECKPOINT["liveMigration"], "enabled": True}})
    assert _rules_table(_operator_role(both))[("", "pods")] == frozenset(
        {"get", "list", "watch", "create", "delete", "patch"})
    # Audit mode writes nothing: no node proxy, no Jobs, no role for the API server.
    audit = _render(chart, {**CHECKPOINT, "mode": "audit"})
    rules = _rules_table(_operator_role(audit))
    assert ("", "nodes/proxy") not in rules and ("batch", "jobs") not in rules
    assert [r["metadata"]["name"] for r in audit.all("ClusterRole")] == [
        f"{RELEASE}-dakr-reconciler"]


def test_checkpoint_restore_needs_a_registry_and_says_what_it_grants(
        helm: types.ModuleType, chart: Any) -> None:
    with pytest.raises(helm.HelmRenderError,
                       match=re.escape("liveMigration.checkpointRestore needs "
                                       "liveMigration.checkpoint.registry")):
        _render(chart, {"mode": "direct", "liveMigration": {"checkpointRestore": True}})
    notes = " ".join(_render(chart, CHECKPOINT).notes.split())
    assert "may create on nodes/proxy, which amounts to exec on every node" in notes
    assert "registry.example/checkpoints" in notes
    assert "set liveMigration.checkpoint.apiServerUser (kubernetes#126232)" in notes
    bound = _render(chart, OVERRIDES["checkpoint-restore"]).notes
    assert "bound to kube-apiserver-kubelet-client" in bound
    assert "Checkpoint/restore" not in _render(chart, OVERRIDES["direct-mode"]).notes


def test_drain_rights_only_with_node_drain(chart: Any) -> None:
    default = _rules_table(_render(chart, OVERRIDES["direct-mode"]).one("ClusterRole"))
    drain = _rules_table(_render(chart, OVERRIDES["node-drain"]).one("ClusterRole"))
    assert drain.pop(("", "pods/eviction")) == frozenset({"create"})
    assert drain.pop(("", "nodes")) == frozenset({"get", "list", "watch", "patch"})
    assert drain.pop(("", "pods")) == frozenset({"list"})
    assert drain == default
    env = {e["name"]: e.get("value") for e in _render(chart, OVERRIDES["node-drain"]).one(
        "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["DAKR_CLUSTER_FACTS_NODES"] == "true"


def test_pod_list_only_with_node_facts(chart: Any) -> None:
    default = _rules_table(_render(chart).one("ClusterRole"))
    nodes = _rules_table(_render(chart, OVERRIDES["node-facts"]).one("ClusterRole"))
    assert ("", "pods") not in default and ("", "nodes") not in default
    assert nodes.pop(("", "pods")) == frozenset({"list"})
    assert nodes.pop(("", "nodes")) == frozenset({"get"})
    assert nodes == default
    env = {e["name"]: e.get("value") for e in _render(chart, OVERRIDES["node-facts"]).one(
        "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["DAKR_CLUSTER_FACTS"] == "true" and env["DAKR_CLUSTER_FACTS_NODES"] == "true"


def test_leases_only_in_a_namespaced_role(chart: Any) -> None:
    rendered = _render(chart)
    assert not any(
        "coordination.k8s.io" in rule.get("apiGroups", [])
        for rule in rendered.one("ClusterRole")["rules"]
    )
    role = rendered.one("Role")
    assert role["metadata"]["namespace"] == NAMESPACE
    assert _rules_table(role) == {
        ("coordination.k8s.io", "leases"): frozenset(
            {"get", "list", "watch", "create", "update", "patch"}
        )
    }
    lease_env = rendered.env("reconciler")["DAKR_LEADER_ELECTION_LEASE"]["value"]
    assert lease_env == f"{RELEASE}-dakr-reconciler-leader"


def test_bindings_point_at_the_chart_service_account(chart: Any) -> None:
    rendered = _render(chart)
    sa = rendered.one("ServiceAccount")
    pod = rendered.one("Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == sa["metadata"]["name"]
    for kind, role_kind in (("ClusterRoleBinding", "ClusterRole"), ("RoleBinding", "Role")):
        binding = rendered.one(kind)
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": NAMESPACE}
        ]
        assert binding["roleRef"]["kind"] == role_kind
        assert binding["roleRef"]["name"] == rendered.one(role_kind)["metadata"]["name"]


@pytest.mark.parametrize(
    ("override", "absent", "present"),
    [
        ("no-rbac", {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}, set()),
        ("no-leader-election", {"Role", "RoleBinding"}, {"ClusterRole", "ClusterRoleBinding"}),
        ("existing-sa", {"ServiceAccount"}, {"ClusterRole", "Role"}),
        ("existing-policies", {"ConfigMap"}, {"Deployment"}),
    ],
)
def test_toggles_drop_objects(
    chart: Any, override: str, absent: set[str], present: set[str]
) -> None:
    kinds = {o["kind"] for o in _render(chart, OVERRIDES[override]).objects}
    assert not kinds & absent
    assert present <= kinds


def test_existing_service_account_is_used(chart: Any) -> None:
    rendered = _render(chart, OVERRIDES["existing-sa"])
    pod = rendered.one("Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "ops"
    assert rendered.one("ClusterRoleBinding")["subjects"][0]["name"] == "ops"


def test_leader_election_off_means_recreate(chart: Any) -> None:
    rendered = _render(chart, OVERRIDES["no-leader-election"])
    assert rendered.one("Deployment")["spec"]["strategy"]["type"] == "Recreate"
    assert rendered.env("reconciler")["DAKR_LEADER_ELECTION"]["value"] == "false"
    assert _render(chart).one("Deployment")["spec"]["strategy"]["type"] == "RollingUpdate"


# ---------------------------------------------------------------- Deployment


def test_opa_sidecar_bound_to_localhost(chart: Any) -> None:
    rendered = _render(chart)
    opa = rendered.container("opa")
    assert opa["image"].startswith("openpolicyagent/opa:1.")
    assert opa["args"][:2] == ["run", "--server"]
    assert "--addr=localhost:8181" in opa["args"]
    assert not [a for a in opa["args"] if "0.0.0.0:8181" in a or a == "--addr=:8181"]
    assert 8181 not in {p["containerPort"] for p in opa.get("ports", [])}
    # The only listener reachable from outside the pod is the diagnostic one (health, metrics).
    assert "--diagnostic-addr=0.0.0.0:8282" in opa["args"]
    for probe in ("livenessProbe", "readinessProbe"):
        assert opa[probe]["httpGet"] == {"path": "/health", "port": "opa-diag"}
    assert {p["name"]: p["containerPort"] for p in opa["ports"]} == {"opa-diag": 8282}
    assert rendered.env("reconciler")["DAKR_OPA_URL"]["value"] == "http://localhost:8181"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"opa": {"addr": "0.0.0.0:8181"}}, "opa.addr must bind to localhost"),
        ({"opa": {"addr": ":8181"}}, "opa.addr must bind to localhost"),
        ({"mode": "yolo"}, "mode must be gitops, direct or audit, got \"yolo\""),
    ],
)
def test_render_refuses_unsafe_values(
    helm: types.ModuleType, chart: Any, values: dict[str, Any], message: str
) -> None:
    with pytest.raises(helm.HelmRenderError, match=re.escape(message)):
        _render(chart, values)


@pytest.mark.parametrize("values", OVERRIDES.values(), ids=OVERRIDES.keys())
def test_containers_are_locked_down(chart: Any, values: dict[str, Any]) -> None:
    rendered = _render(chart, values)
    pod = rendered.one("Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert [c["name"] for c in pod["containers"]] == ["reconciler", "opa"]
    for container in pod["containers"]:
        sc = container["securityContext"]
        assert sc["runAsNonRoot"] is True
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert "add" not in sc["capabilities"]
        assert sc.get("privileged", False) is False
        assert "livenessProbe" in container and "readinessProbe" in container
        assert container["resources"]["requests"]


def test_reconciler_has_writable_scratch_space(chart: Any) -> None:
    rendered = _render(chart)
    pod = rendered.one("Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in rendered.container("reconciler")["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert "emptyDir" in volumes[mounts["/var/lib/dakr"]]
    assert rendered.env("reconciler")["DAKR_WORK_DIR"]["value"] == "/var/lib/dakr"


def test_policies_configmap_holds_the_library_and_is_mounted(chart: Any) -> None:
    rendered = _render(chart)
    cm = rendered.one("ConfigMap")
    assert "data.yaml" in cm["data"] and "dakr.decision.rego" in cm["data"]
    pod = rendered.one("Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["policies"]["configMap"]["name"] == cm["metadata"]["name"]
    opa = rendered.container("opa")
    assert {"name": "policies", "mountPath": "/policies", "readOnly": True} in opa["volumeMounts"]
    assert opa["args"][-1] == "/policies"
    assert "--watch" in opa["args"] and "--ignore=.*" in opa["args"]
    assert "no policies are loaded" not in rendered.notes


def test_policies_from_values_join_the_library_without_rolling_pods(chart: Any) -> None:
    rego = 'package team\n\nlimit := 3\n'
    rendered = _render(chart, {"policies": {"files": {"team.rego": rego}}})
    data = rendered.one("ConfigMap")["data"]
    assert data["team.rego"] == rego
    assert set(data) == set(_render(chart).one("ConfigMap")["data"]) | {"team.rego"}
    # OPA --watch (or the embedded engine's polling) reloads the ConfigMap: nothing in the
    # pod template depends on the policies, so changing them rolls no pod.
    annotations = rendered.one("Deployment")["spec"]["template"]["metadata"].get(
        "annotations", {})
    assert not [a for a in annotations if a.startswith("checksum/")]
    assert rendered.one("Deployment") == _render(chart).one("Deployment")


def test_existing_policies_configmap_is_mounted(chart: Any) -> None:
    rendered = _render(chart, OVERRIDES["existing-policies"])
    pod = rendered.one("Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["policies"]["configMap"]["name"] == "team-policies"


def test_tokens_come_only_from_secrets(chart: Any) -> None:
    rendered = _render(chart, OVERRIDES["gitops-configured"])
    env = rendered.env("reconciler")
    assert env["DAKR_GITOPS_TOKEN"] == {
        "name": "DAKR_GITOPS_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": "gt", "key": "token"}},
    }
    assert env["DAKR_API_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "dakr-api",
        "key": "token",
    }
    assert env["DAKR_GITOPS_REPO_URL"]["value"] == "https://example.test/org/repo.git"
    assert env["DAKR_CLUSTER_ID"]["value"] == "c-123"
    for name, entry in env.items():
        if "TOKEN" in name:
            assert "value" not in entry
    # No secret reference and no empty token variable when none is configured.
    default_env = _render(chart).env("reconciler")
    assert "DAKR_GITOPS_TOKEN" not in default_env
    assert "DAKR_API_TOKEN" not in default_env


def test_direct_mode_renders_no_gitops_settings(chart: Any) -> None:
    env = _render(chart, OVERRIDES["direct-mode"]).env("reconciler")
    assert env["DAKR_MODE"]["value"] == "direct"
    assert not [name for name in env if name.startswith("DAKR_GITOPS_")]


def test_values_defaults(chart: Any) -> None:
    values = chart.values
    assert chart.metadata["apiVersion"] == "v2"
    assert (chart.name, chart.version, chart.metadata["appVersion"]) == (
        "dakr-reconciler",
        "0.1.0",
        "0.1.0",
    )
    assert values["mode"] == "gitops"
    assert values["opa"]["addr"] == "localhost:8181"
    assert values["rbac"]["create"] is True
    assert values["leaderElection"]["enabled"] is True
    assert values["opa"]["sidecar"]["enabled"] is True
    assert values["policies"] == {"data": {}, "files": {}, "existingConfigMap": ""}


# ---------------------------------------------------------------- CRDs


CRD_EXPECTATIONS: dict[str, dict[str, Any]] = {
    "WorkloadRecommendation": {
        "plural": "workloadrecommendations",
        "scope": "Namespaced",
        "short": ["wrec"],
        "target": ".spec.targetRef.name",
        "spec_fields": {
            "recommendationId",
            "action",
            "targetRef",
            "containers",
            "replicas",
            "hpa",
            "confidence",
            "projectedSavings",
            "source",
            "autoApply",
        },
        "required": {"recommendationId", "action", "targetRef"},
        "actions": ["Rightsizing", "ReplicaScaling", "LiveMigration"],
    },
    "NodeGroupRecommendation": {
        "plural": "nodegrouprecommendations",
        "scope": "Cluster",
        "short": ["ngrec"],
        "target": ".spec.nodeGroup",
        "spec_fields": {
            "recommendationId",
            "nodeGroup",
            "action",
            "currentNodeCount",
            "targetNodeCount",
            "nodesToRemove",
            "priority",
            "projectedSavings",
            "source",
        },
        "required": {"recommendationId", "nodeGroup", "action", "targetNodeCount"},
        "actions": ["consolidate", "scale"],
    },
}

STATUS_FIELDS = {
    "phase",
    "conditions",
    "decision",
    "previous",
    "liveMigration",
    "pullRequest",
    "appliedAt",
    "observedGeneration",
    "projectedSavings",
    "message",
}
PHASES = [
    "Pending",
    "Approved",
    "Applying",
    "Applied",
    "Rejected",
    "Failed",
    "RolledBack",
    "Superseded",
]


def test_crd_files_are_the_two_kinds() -> None:
    assert set(_crd_files()) == set(CRD_EXPECTATIONS)


def test_helm_loads_both_crds_unchanged(chart: Any) -> None:
    loaded = {Path(c["name"]).name: c["data"] for c in chart.crds}
    on_disk = {p.name: p.read_text() for p in CRD_DIR.glob("*.yaml")}
    assert loaded == on_disk
    # Helm installs crds/ itself; a CRD among the templates would be owned by the release.
    assert not [o for o in _render(chart).objects if o["kind"] == "CustomResourceDefinition"]


@pytest.mark.parametrize("kind", CRD_EXPECTATIONS)
def test_crd_identity_and_printing(kind: str) -> None:
    crd = _crd_files()[kind]
    want = CRD_EXPECTATIONS[kind]
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["metadata"]["name"] == f"{want['plural']}.{GROUP}"
    spec = crd["spec"]
    assert spec["group"] == GROUP
    assert spec["scope"] == want["scope"]
    assert spec["names"]["plural"] == want["plural"]
    assert spec["names"]["shortNames"] == want["short"]
    assert spec["names"]["categories"] == ["dakr"]
    version = _version(crd)
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}
    columns = [(c["name"], c["type"], c["jsonPath"]) for c in version["additionalPrinterColumns"]]
    assert columns == [
        ("Phase", "string", ".status.phase"),
        ("Target", "string", want["target"]),
        ("Action", "string", ".spec.action"),
        ("Savings", "string", ".status.projectedSavings"),
        ("Age", "date", ".metadata.creationTimestamp"),
    ]


@pytest.mark.parametrize("kind", CRD_EXPECTATIONS)
def test_crd_spec_fields(kind: str) -> None:
    want = CRD_EXPECTATIONS[kind]
    spec = _schema(_crd_files()[kind])["properties"]["spec"]
    assert set(spec["properties"]) == want["spec_fields"]
    assert set(spec["required"]) == want["required"]
    assert spec["properties"]["action"]["enum"] == want["actions"]
    rid = spec["properties"]["recommendationId"]
    assert (rid["type"], rid["maxLength"]) == ("string", 253)


def test_workload_spec_details() -> None:
    spec = _schema(_crd_files()["WorkloadRecommendation"])["properties"]["spec"]["properties"]
    target = spec["targetRef"]
    assert target["properties"]["kind"]["enum"] == ["Deployment", "StatefulSet", "DaemonSet"]
    assert set(target["required"]) == {"kind", "name"}
    assert set(target["properties"]) == {"apiVersion", "kind", "name"}
    containers = spec["containers"]
    assert containers["x-kubernetes-list-type"] == "map"
    assert containers["x-kubernetes-list-map-keys"] == ["name"]
    resources = containers["items"]["properties"]["resources"]["properties"]
    assert set(resources) == {"requests", "limits"}
    for part in resources.values():
        assert part["additionalProperties"]["x-kubernetes-int-or-string"] is True
    assert spec["replicas"]["minimum"] == 0
    assert {k: v["minimum"] for k, v in spec["hpa"]["properties"].items()} == {
        "minReplicas": 1,
        "maxReplicas": 1,
    }
    assert (spec["confidence"]["minimum"], spec["confidence"]["maximum"]) == (0, 1)
    assert set(spec["projectedSavings"]["properties"]) == {"monthly", "currency"}
    assert spec["autoApply"]["type"] == "boolean"


def test_nodegroup_spec_details() -> None:
    spec = _schema(_crd_files()["NodeGroupRecommendation"])["properties"]["spec"]["properties"]
    assert spec["currentNodeCount"]["minimum"] == 0
    assert spec["targetNodeCount"]["minimum"] == 0
    assert spec["nodesToRemove"]["items"] == {"type": "string"}
    assert spec["priority"]["type"] == "integer"


def test_status_schemas_are_identical_and_complete() -> None:
    crds = _crd_files()
    statuses = [_schema(crd)["properties"]["status"] for crd in crds.values()]
    assert statuses[0] == statuses[1]
    status = statuses[0]["properties"]
    assert set(status) == STATUS_FIELDS
    assert status["phase"]["enum"] == PHASES
    assert status["previous"] == {
        "description": status["previous"]["description"],
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": True,
    }
    assert status["decision"]["properties"]["mode"]["enum"] == ["gitops", "direct", "audit"]
    assert set(status["decision"]["properties"]) == {
        "allowed",
        "mode",
        "reasons",
        "warnings",
        "decisionId",
        "policyRevision",
    }
    assert set(status["pullRequest"]["properties"]) == {
        "url",
        "number",
        "branch",
        "commit",
        "state",
    }
    assert status["appliedAt"]["format"] == "date-time"
    assert status["projectedSavings"]["type"] == "string"


def test_conditions_follow_metav1_condition() -> None:
    status = _schema(_crd_files()["WorkloadRecommendation"])["properties"]["status"]
    conditions = status["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    item = conditions["items"]
    assert set(item["properties"]) == {
        "type",
        "status",
        "reason",
        "message",
        "lastTransitionTime",
        "observedGeneration",
    }
    # Unquoted True/False in YAML would become booleans and never match a string status.
    assert item["properties"]["status"]["enum"] == ["True", "False", "Unknown"]
    assert item["properties"]["lastTransitionTime"]["format"] == "date-time"


@pytest.mark.parametrize("kind", CRD_EXPECTATIONS)
def test_crd_schema_is_structural(kind: str) -> None:
    assert _structural_violations(_schema(_crd_files()[kind])) == []


@pytest.mark.parametrize(
    ("schema", "problem"),
    [
        ({"type": "object", "properties": {"a": {"description": "x"}}}, ".a: no type"),
        (
            {"type": "object", "properties": {"a": {"type": "array", "items": {}}}},
            ".a[]: no type",
        ),
        (
            {
                "type": "object",
                "properties": {"a": {"type": "string"}},
                "additionalProperties": {"type": "string"},
            },
            "properties and additionalProperties together",
        ),
        (
            {
                "type": "object",
                "properties": {"q": {"type": "string", "x-kubernetes-int-or-string": True}},
            },
            ".q: x-kubernetes-int-or-string must not set type",
        ),
        (
            {
                "type": "object",
                "properties": {"a": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
            },
            ".a: no type",
        ),
        (
            {
                "type": "object",
                "properties": {
                    "a": {"type": "string", "anyOf": [{"description": "d"}]},
                },
            },
            ".a.anyOf[0]: sets description",
        ),
        (
            {
                "type": "object",
                "properties": {
                    "metadata": {"type": "object", "properties": {"labels": {"type": "object"}}}
                },
            },
            "restricts fields other than name",
        ),
        (
            {
                "type": "object",
                "properties": {
                    "l": {
                        "type": "array",
                        "x-kubernetes-list-type": "map",
                        "x-kubernetes-list-map-keys": ["name"],
                        "items": {"type": "object", "properties": {"name": {"type": "string"}}},
                    }
                },
            },
            "list-map key 'name' is not required",
        ),
        ({"type": "object", "properties": {"a": {"type": "array"}}}, ".a: array without items"),
    ],
)
def test_structural_checker_rejects(schema: dict[str, Any], problem: str) -> None:
    violations = _structural_violations(schema)
    assert any(problem in v for v in violations), violations


QUANTITY_PATTERN = _schema(_crd_files()["WorkloadRecommendation"])["properties"]["spec"][
    "properties"
]["containers"]["items"]["properties"]["resources"]["properties"]["requests"][
    "additionalProperties"
]["pattern"]


@pytest.mark.parametrize(
    ("quantity", "valid"),
    [
        ("100m", True),
        ("64Mi", True),
        ("1.5", True),
        ("2Gi", True),
        ("1e3", True),
        (".5", True),
        ("1 Gi", False),
        ("64MB", False),
        ("abc", False),
        ("", False),
    ],
)
def test_quantity_pattern(quantity: str, valid: bool) -> None:
    assert bool(re.fullmatch(QUANTITY_PATTERN, quantity)) is valid


RECOMMENDATION_ID_PATTERN = _schema(_crd_files()["NodeGroupRecommendation"])["properties"]["spec"][
    "properties"
]["recommendationId"]["pattern"]


@pytest.mark.parametrize(
    ("rid", "valid"),
    [
        ("rec-0001", True),
        ("ng-0001", True),
        ("a", True),
        ("a.b-c.9", True),
        ("Rec-1", False),
        ("-rec", False),
        ("rec-", False),
        ("rec_1", False),
        ("", False),
    ],
)
def test_recommendation_id_pattern(rid: str, valid: bool) -> None:
    assert bool(re.fullmatch(RECOMMENDATION_ID_PATTERN, rid)) is valid


def test_both_crds_share_the_id_pattern() -> None:
    patterns = {
        kind: _schema(crd)["properties"]["spec"]["properties"]["recommendationId"]["pattern"]
        for kind, crd in _crd_files().items()
    }
    assert len(set(patterns.values())) == 1


def test_rendered_environment_configures_reconciler_run(chart: Any) -> None:
    """The Deployment runs `reconciler run` configured through DAKR_* variables and probes
    /healthz and /readyz: the CLI reads exactly those variables and serves those paths on
    the health port, so renaming one on either side fails here."""
    from reconciler.config import env as config_env

    rendered = _render(chart, OVERRIDES["gitops-configured"])
    pod = rendered.one("Deployment")["spec"]["template"]["spec"]
    (container,) = [c for c in pod["containers"] if c["name"] == "reconciler"]
    assert container["args"][0] == "run"
    env = {n: e["value"] for n, e in rendered.env("reconciler").items() if "value" in e}
    defaults = config_env.run_defaults(env)
    assert defaults["mode"] == "gitops"
    assert defaults["store"] == "kube"
    assert defaults["opa_url"] == "http://localhost:8181"
    assert defaults["repo"] == "https://example.test/org/repo.git"
    assert str(defaults["state_dir"]) == "/var/lib/dakr"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert defaults["health_addr"] == f":{ports['health']}"
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
