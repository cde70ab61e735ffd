"""The chart's main value combinations, rendered and linted with the real Helm library, and
the shipped policy library proven to decide in the chart exactly as in policies/.

Combinations (COMBOS, written as `helm install --set` expressions): the seed's install
(only clusterID and apiEndpoint: gitops without a repository, so audit), gitops with a
repository and a token Secret, direct, direct with nodeDrain.enabled, existing Secrets
for both tokens, an existing policy ConfigMap, no OPA sidecar, audit, audit with
nodeDrain.enabled. Cases:
- each lints with no warning and no error;
- each: every container image pinned (an explicit tag, never latest); liveness and
  readiness probes on every container, on a port the container declares; every container
  non-root, read-only root filesystem, no privilege escalation, ALL capabilities dropped,
  seccomp RuntimeDefault; every volume mount names a volume;
- each: the ClusterRole grants exactly the rule groups the combination needs (reads and
  its own records always; workload/HPA writes unless audit; node facts with nodeDrain;
  cordon and evictions only with nodeDrain outside audit), leases in a Role;
- each: every DAKR_* and POD_* variable the Deployment sets is looked up by the code's
  environment readers (every public function of reconciler/config/env.py taking `env`,
  called with a recording mapping of the rendered values); besides those only HOME and
  TMPDIR, and tokens only from Secret references;
- each: the policy engine wiring (sidecar: OPA 1.x with --watch and --ignore=.*, the
  reconciler reaches it on localhost and mounts no policies; no sidecar: the ConfigMap is
  mounted read-only into the reconciler, DAKR_POLICY_DIR names the mount, no
  DAKR_OPA_URL) and the NOTES printed for it;
- the policies ConfigMap: the library's files under flattened keys, byte for byte, and
  its data.yaml as it is; policies.data deep-merged into the one data.yaml (maps merge,
  lists and false replace), from `--set` and from a values map; policies.files added, and
  replacing a library key; no ConfigMap with existingConfigMap; policies.files that are
  not .rego, a policies.data that is not a map, and an override that is a string where the
  library has a number or a list (what `--set` makes of 0.8 and []) fail the render;
- equivalence: the rendered ConfigMap (defaults, and with a policies.data override),
  written out as a ConfigMap volume is (a hidden ..<timestamp> directory holding the
  files, ..data and every key symlinked), loaded into the embedded engine, gives the same
  data.config and the same decision documents, one by one and batched, as the engine
  loaded from policies/ (with the override as a second data file) for every sample of
  rego-tests/data/samples.json and variants of it (kube-system, low confidence, the
  operator in direct mode), each input made by the pipeline's builder; the same through
  the OPA Data API stand-in (tests/fakes/opaserver) and the sidecar client; a visible copy
  of the hidden directory does break the load, so the hidden one really is skipped.
"""

from __future__ import annotations

import copy
import inspect
import json
import re
import types
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.adapters.opa import embedded, sidecar
from reconciler.adapters.opa import engine as opa
from reconciler.config import env as config_env
from reconciler.domain import decision, policy_input, validation
from tests import samples
from tests.fakes.opaserver import OpaServer
from tests.integration.chart.support import (
    ALWAYS,
    CHART_DIR,
    DRAIN,
    NAMESPACE,
    NODE_FACTS,
    RELEASE,
    WRITES,
    Rendered,
    merge_rules,
    render,
    rules_table,
    sync_policies,
)

SEED = ["clusterID=c-123", "apiEndpoint=api.devzero.io:443"]
REPO = "https://git.example.test/org/fleet.git"
COMBOS: dict[str, list[str]] = {
    "defaults": SEED,
    "gitops": [*SEED, f"gitops.repoURL={REPO}", "gitops.tokenSecret.name=forge-token"],
    "direct": [*SEED, "mode=direct"],
    "direct-drain": [*SEED, "mode=direct", "nodeDrain.enabled=true"],
    "existing-secrets": [*SEED, "apiTokenSecret.name=dakr-api", "apiTokenSecret.key=api-token",
                         f"gitops.repoURL={REPO}", "gitops.tokenSecret.name=forge",
                         "gitops.tokenSecret.key=pat"],
    "existing-policies": [*SEED, "policies.existingConfigMap=team-policies"],
    "no-sidecar": [*SEED, "opa.sidecar.enabled=false"],
    "audit": [*SEED, "mode=audit"],
    "audit-drain": [*SEED, "mode=audit", "nodeDrain.enabled=true"],
}

# combination -> (rule groups, the mode the operator runs in, containers)
EXPECTED: dict[str, tuple[list[dict[tuple[str, str], frozenset[str]]], str, list[str]]] = {
    "defaults": ([ALWAYS], "audit", ["reconciler", "opa"]),
    "gitops": ([ALWAYS, WRITES], "gitops", ["reconciler", "opa"]),
    "direct": ([ALWAYS, WRITES], "direct", ["reconciler", "opa"]),
    "direct-drain": ([ALWAYS, WRITES, NODE_FACTS, DRAIN], "direct", ["reconciler", "opa"]),
    "existing-secrets": ([ALWAYS, WRITES], "gitops", ["reconciler", "opa"]),
    "existing-policies": ([ALWAYS], "audit", ["reconciler", "opa"]),
    "no-sidecar": ([ALWAYS], "audit", ["reconciler"]),
    "audit": ([ALWAYS], "audit", ["reconciler", "opa"]),
    "audit-drain": ([ALWAYS, NODE_FACTS], "audit", ["reconciler", "opa"]),
}

# Consumed by git (HOME: its global config, GIT_ASKPASS helpers) and tempfile (TMPDIR), not
# by the reconciler's own readers: both point at the writable emptyDirs.
NOT_READ_BY_THE_CODE = {"HOME", "TMPDIR"}


def _merge(a: dict[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, Mapping) and isinstance(
            out.get(k), dict) else copy.deepcopy(v)
    return out


def values_of(helm: types.ModuleType, sets: list[str]) -> dict[str, Any]:
    """The values `helm install --set A --set B ...` passes (each parsed by Helm itself)."""
    out: dict[str, Any] = {}
    for expression in sets:
        out = _merge(out, helm.parse_set_string(expression))
    return out


@pytest.fixture(scope="module")
def rendered(helm: types.ModuleType, chart: Any) -> dict[str, Rendered]:
    return {name: render(chart, values_of(helm, sets)) for name, sets in COMBOS.items()}


# ---------------------------------------------------------------- lint


@pytest.mark.parametrize("combo", COMBOS)
def test_combination_lints_clean(helm: types.ModuleType, combo: str) -> None:
    report = helm.lint(CHART_DIR, values_of(helm, COMBOS[combo]), strict=True,
                       namespace=NAMESPACE)
    assert report["total_charts_linted"] == 1
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


# ---------------------------------------------------------------- pod


@pytest.mark.parametrize("combo", COMBOS)
def test_containers_images_probes_and_security(rendered: dict[str, Rendered],
                                               combo: str) -> None:
    r = rendered[combo]
    pod = r.pod()
    assert [c["name"] for c in pod["containers"]] == EXPECTED[combo][2]
    assert "initContainers" not in pod
    pod_sc = pod["securityContext"]
    volumes = {v["name"] for v in pod["volumes"]}
    for c in pod["containers"]:
        name, image = c["name"], c["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag and tag not in ("", "latest"), (name, image)
        ports = {p["name"] for p in c.get("ports", [])}
        for probe in ("livenessProbe", "readinessProbe"):
            assert c[probe]["httpGet"]["port"] in ports, (name, probe)
        sc = c["securityContext"]
        effective = {**pod_sc, **sc}
        assert effective["runAsNonRoot"] is True, name
        assert effective.get("runAsUser", 1) != 0, name
        assert effective["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert sc["readOnlyRootFilesystem"] is True, name
        assert sc["allowPrivilegeEscalation"] is False, name
        assert sc["capabilities"] == {"drop": ["ALL"]}, name
        assert not sc.get("privileged", False), name
        assert {m["name"] for m in c.get("volumeMounts", [])} <= volumes, name
    assert pod_sc["runAsUser"] != 0


@pytest.mark.parametrize("combo", COMBOS)
def test_rbac_is_what_the_combination_needs(rendered: dict[str, Rendered], combo: str) -> None:
    want = merge_rules(*EXPECTED[combo][0])
    r = rendered[combo]
    assert rules_table(r.one("ClusterRole")) == want
    assert rules_table(r.one("Role")) == {
        ("coordination.k8s.io", "leases"): frozenset(
            {"get", "list", "watch", "create", "update", "patch"})}
    for binding in ("ClusterRoleBinding", "RoleBinding"):
        assert r.one(binding)["subjects"] == [{
            "kind": "ServiceAccount", "name": r.one("ServiceAccount")["metadata"]["name"],
            "namespace": NAMESPACE}]


# ---------------------------------------------------------------- environment


class RecordingEnv(Mapping[str, str]):
    """A read-only environment that records every name looked up in it."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = dict(values)
        self.looked_up: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.looked_up.add(key)
        return self._values[key]

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self.looked_up.add(key)
        return key in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


def env_values(r: Rendered) -> dict[str, str]:
    """The reconciler's environment as the pod would see it (Secrets and the downward API
    stood in for by plausible values)."""
    out: dict[str, str] = {}
    for name, entry in r.env("reconciler").items():
        if "value" in entry:
            out[name] = str(entry["value"])
        elif "secretKeyRef" in entry.get("valueFrom", {}):
            out[name] = "s3cr3t"
        elif entry.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == \
                "metadata.namespace":
            out[name] = NAMESPACE
        else:
            out[name] = f"{RELEASE}-dakr-reconciler-5d8f7c9b4-x2x7q"
    return out


def env_readers() -> dict[str, Any]:
    readers = {
        name: fn for name, fn in inspect.getmembers(config_env, inspect.isfunction)
        if fn.__module__ == config_env.__name__ and not name.startswith("_")
        and "env" in inspect.signature(fn).parameters
    }
    assert {"run_defaults", "log_level", "leader_settings"} <= set(readers)
    return readers


@pytest.mark.parametrize("combo", COMBOS)
def test_every_variable_the_chart_sets_is_read(rendered: dict[str, Rendered],
                                               combo: str) -> None:
    values = env_values(rendered[combo])
    recording = RecordingEnv(values)
    for fn in env_readers().values():
        fn(recording)  # also proves every rendered value parses (durations, booleans, level)
    ours = {n for n in values if n.startswith(("DAKR_", "POD_"))}
    assert ours - recording.looked_up == set()
    assert set(values) - ours == NOT_READ_BY_THE_CODE


@pytest.mark.parametrize("combo", COMBOS)
def test_tokens_only_from_secret_references(rendered: dict[str, Rendered], combo: str) -> None:
    env = rendered[combo].env("reconciler")
    for name, entry in env.items():
        if "TOKEN" in name:
            assert set(entry) == {"name", "valueFrom"}, name
    refs = {n: e["valueFrom"]["secretKeyRef"] for n, e in env.items()
            if "secretKeyRef" in e.get("valueFrom", {})}
    want = {
        "gitops": {"DAKR_GITOPS_TOKEN": {"name": "forge-token", "key": "token"}},
        "existing-secrets": {"DAKR_API_TOKEN": {"name": "dakr-api", "key": "api-token"},
                             "DAKR_GITOPS_TOKEN": {"name": "forge", "key": "pat"}},
    }
    assert refs == want.get(combo, {})


@pytest.mark.parametrize("combo", COMBOS)
def test_run_settings_per_combination(rendered: dict[str, Rendered], combo: str) -> None:
    r = rendered[combo]
    values = env_values(r)
    defaults = config_env.run_defaults(values)
    runs_as = EXPECTED[combo][1]
    assert defaults["mode"] == values["DAKR_MODE"]
    assert defaults["cluster_id"] == "c-123"
    assert config_env.platform_endpoint(values) == "api.devzero.io:443"
    if runs_as == "gitops":
        assert defaults["repo"] == REPO
    else:
        assert not [n for n in values if n.startswith("DAKR_GITOPS_")]
    if "drain" in combo:
        assert defaults["node_facts"] is True
    else:
        assert "node_facts" not in defaults
    if combo == "no-sidecar":
        assert "opa_url" not in defaults
        assert str(defaults["policies"]) == "/etc/dakr/policies"
    else:
        assert defaults["opa_url"] == "http://localhost:8181"
        assert "policies" not in defaults


# ---------------------------------------------------------------- policy engine wiring


@pytest.mark.parametrize("combo", COMBOS)
def test_policy_engine_wiring(rendered: dict[str, Rendered], combo: str) -> None:
    r = rendered[combo]
    volumes = {v["name"]: v for v in r.pod()["volumes"]}
    cm_name = ("team-policies" if combo == "existing-policies"
               else f"{RELEASE}-dakr-reconciler-policies")
    assert volumes["policies"] == {"name": "policies", "configMap": {"name": cm_name}}
    assert len(r.all("ConfigMap")) == (0 if combo == "existing-policies" else 1)
    mounts = {m["name"]: m for m in r.container("reconciler")["volumeMounts"]}
    if combo == "no-sidecar":
        assert mounts["policies"] == {"name": "policies", "mountPath": "/etc/dakr/policies",
                                      "readOnly": True}
        assert "Policy engine:   embedded in the reconciler" in r.notes
        return
    assert "policies" not in mounts
    opa_c = r.container("opa")
    assert opa_c["image"] == f"openpolicyagent/opa:{r_values_tag()}"
    assert opa_c["args"][:3] == ["run", "--server", "--addr=localhost:8181"]
    assert {"--watch", "--ignore=.*"} <= set(opa_c["args"])
    assert opa_c["args"][-1] == "/policies"
    assert opa_c["volumeMounts"] == [{"name": "policies", "mountPath": "/policies",
                                      "readOnly": True}]
    assert f"OPA {r_values_tag()} sidecar" in r.notes


def r_values_tag() -> str:
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    tag: str = values["opa"]["image"]["tag"]
    return tag


NOTES: dict[str, list[str]] = {
    "defaults": ["Mode:            audit (mode gitops without gitops.repoURL)",
                 "Audit mode: recommendations are recorded and decided, nothing is written. "
                 "Set\ngitops.repoURL (and gitops.tokenSecret.name) for pull requests, "
                 "or mode=direct."],
    "gitops": [f"Pull requests go to {REPO} (base main, github)",
               "The forge token comes from Secret forge-token, key token."],
    "direct": ["Direct mode: approved changes are patched through the Kubernetes API",
               "Node groups are not marked or drained: that is a separate switch, "
               "nodeDrain.enabled=true"],
    "direct-drain": ["Node group recommendations mark their nodes for the node operator",
                     "or cordon and drain them (drain)"],
    "existing-secrets": ["The forge token comes from Secret forge, key pat."],
    "existing-policies": ["Policies: your ConfigMap team-policies (the shipped library is "
                          "not used)"],
    "no-sidecar": ["Audit mode"],
    "audit": ["Mode:            audit\n",
              "Audit mode: recommendations are recorded and decided, nothing is written. "
              "Set mode=direct,\nor mode=gitops with gitops.repoURL, to apply them."],
    "audit-drain": ["Audit mode"],
}
OPT_IN = ("It covers no workload until you opt in, e.g.\n"
          "  --set 'policies.data.config.scope.includeNamespaces={team-a}'\n"
          "(or a rule under policies.data.config.rules); until then every recommendation "
          "is decided\nNotCovered and nothing is applied.")


@pytest.mark.parametrize("combo", COMBOS)
def test_notes_say_the_next_step(rendered: dict[str, Rendered], combo: str) -> None:
    notes = rendered[combo].notes
    for phrase in NOTES[combo]:
        assert phrase in notes, (phrase, notes)
    assert "Cluster ID:      c-123" in notes
    assert "no policies are loaded" not in notes
    if combo == "existing-policies":
        assert OPT_IN not in notes
    else:
        assert OPT_IN in notes
        assert f"Policies: the shipped library (ConfigMap {RELEASE}-dakr-reconciler-policies)." \
            in notes
    assert "without credentials" not in notes


def test_notes_when_already_opted_in_or_without_a_token(helm: types.ModuleType,
                                                        chart: Any) -> None:
    opted = render(chart, values_of(helm, [
        *SEED, "policies.data.config.scope.includeNamespaces={shop}"])).notes
    assert OPT_IN not in opted
    assert "with your policies.data." in opted
    assert "Covered: what policies.data.config.scope and .rules opt in" in opted
    no_token = render(chart, values_of(helm, [*SEED, f"gitops.repoURL={REPO}"])).notes
    assert "gitops.tokenSecret.name is empty: pushes and pull requests run without " \
        "credentials" in no_token


# ---------------------------------------------------------------- policies ConfigMap


def library_configmap() -> dict[str, str]:
    """What the ConfigMap must hold by default: the library, keys flattened."""
    sync = sync_policies()
    return {sync.configmap_key(rel): content.decode()
            for rel, content in sync.library().items()}


def test_default_configmap_is_the_library_byte_for_byte(rendered: dict[str, Rendered]) -> None:
    data = rendered["defaults"].one("ConfigMap")["data"]
    assert data == library_configmap()
    assert data["data.yaml"] == (samples.POLICIES / "data.yaml").read_text()
    assert data["dakr.decision.rego"] == (samples.POLICIES / "dakr" / "decision.rego").read_text()


def test_policies_data_is_deep_merged_into_one_data_file(helm: types.ModuleType,
                                                         chart: Any) -> None:
    library = yaml.safe_load((samples.POLICIES / "data.yaml").read_text())
    overrides = {"config": {"scope": {"includeNamespaces": ["shop", "team-a"],
                                      "excludeLabels": {"team": "frozen"}},
                            "defaults": {"guardrails": {"maxCpuCores": 8}},
                            "systemNamespaces": [],
                            "custom": {"enabled": False}}}
    for values in (
        {"policies": {"data": overrides}},
        _merge(values_of(helm, ["policies.data.config.scope.includeNamespaces={shop,team-a}",
                                "policies.data.config.scope.excludeLabels.team=frozen",
                                "policies.data.config.defaults.guardrails.maxCpuCores=8",
                                "policies.data.config.custom.enabled=false"]),
               helm.parse_set_json("policies.data.config.systemNamespaces=[]")),
    ):
        data = render(chart, values).one("ConfigMap")["data"]
        assert {k for k in data if k.endswith(".yaml")} == {"data.yaml"}
        merged = yaml.safe_load(data["data.yaml"])
        assert merged == opa.merge_data([library, overrides])
        assert merged["config"]["scope"]["excludeLabels"] == {
            **library["config"]["scope"]["excludeLabels"], "team": "frozen"}
        assert merged["config"]["systemNamespaces"] == []  # a list replaces, even empty
        assert {k: v for k, v in data.items() if k != "data.yaml"} == {
            k: v for k, v in library_configmap().items() if k != "data.yaml"}


def test_policies_files_join_or_replace_library_files(chart: Any) -> None:
    data = render(chart, {"policies": {"files": {
        "team.rego": "package team\n", "scope.rules.rego": "package dakr.scope\n"}}}).one(
        "ConfigMap")["data"]
    library = library_configmap()
    assert set(data) == set(library) | {"team.rego"}
    assert data["team.rego"] == "package team\n"
    assert data["scope.rules.rego"] == "package dakr.scope\n"


@pytest.mark.parametrize(("values", "message"), [
    ({"policies": {"files": {"data.yaml": "config: {}"}}},
     'policies.files: "data.yaml" must be a .rego file'),
    ({"policies": {"files": {"a b.rego": "package a"}}}, "is not a valid ConfigMap key"),
    ({"policies": {"data": "config: {}"}}, "policies.data must be a map"),
    ({"opa": {"image": {"tag": ""}}}, "opa.image.tag must be set"),
    # What `--set` makes of 0.8 and of []: strings, which Rego would compare without error.
    ({"policies": {"data": {"config": {"defaults": {"timing": {"minConfidence": "0.8"}}}}}},
     'policies.data.config.defaults.timing.minConfidence: "0.8" is a string where the '
     "library has a number: use --set-json"),
    ({"policies": {"data": {"config": {"systemNamespaces": "[]"}}}},
     'policies.data.config.systemNamespaces: "[]" is a string where the library has a list'),
])
def test_render_refuses_unusable_policy_values(helm: types.ModuleType, chart: Any,
                                               values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmRenderError, match=re.escape(message)):
        render(chart, values)


# ---------------------------------------------------------------- equivalence


def mount_configmap(data: Mapping[str, str], root: Path) -> Path:
    """Lay ``data`` out as the kubelet mounts a ConfigMap volume: the files in a hidden
    ``..<timestamp>`` directory, ``..data`` pointing at it, each key a symlink through it."""
    root.mkdir(parents=True)
    stamp = root / "..2026_01_01_00_00_00.123456789"
    stamp.mkdir()
    for key, text in data.items():
        (stamp / key).write_text(text)
    (root / "..data").symlink_to(stamp.name)
    for key in data:
        (root / key).symlink_to(f"..data/{key}")
    return root


VARIANTS: dict[str, dict[str, Any]] = {
    "as-is": {},
    "operator-direct": {"/cluster/operatorMode": "direct"},
    "low-confidence": {"/recommendation/spec/confidence": 0.3},
    "kube-system": {"/recommendation/metadata/namespace": "kube-system",
                    "/target/metadata/namespace": "kube-system"},
}


def policy_inputs() -> dict[str, dict[str, Any]]:
    """Every sample and its variants, each made by the pipeline's own input builder."""
    out: dict[str, dict[str, Any]] = {}
    for name, s in sorted(samples.load().items()):
        for variant, patches in VARIANTS.items():
            if variant == "kube-system" and s["target"] is None:
                continue  # cluster-scoped: no namespace to move
            if variant == "low-confidence" and "confidence" not in s["recommendation"]["spec"]:
                continue
            p = samples.sample(name, patches)
            rec = validation.parse(p["recommendation"])
            out[f"{name}/{variant}"] = policy_input.build(
                rec, p["target"], now=p["now"], cluster=p["cluster"], history=p["history"],
                operator=policy_input.Operator(
                    namespace=p["cluster"]["operatorNamespace"],
                    mode=p["cluster"]["operatorMode"],
                    checkpoint_restore=p["cluster"]["checkpointRestore"]))
    return out


def sample_namespaces() -> list[str]:
    return sorted({s["recommendation"]["metadata"]["namespace"] for s in samples.load().values()
                   if s["recommendation"]["metadata"].get("namespace")})


def comparable(d: decision.Decision) -> dict[str, Any]:
    return {"allow": d.allow, "mode": d.mode, "deny": [x.to_dict() for x in d.deny],
            "warnings": list(d.warnings), "bounds": d.bounds}


CASES = ["defaults", "override"]


@pytest.fixture(scope="module")
def engines(helm: types.ModuleType, chart: Any,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[
                dict[str, tuple[embedded.EmbeddedEngine, embedded.EmbeddedEngine, Path]]]:
    """Per case: (engine from policies/, engine from the rendered ConfigMap, its mount)."""
    override = _merge(
        values_of(helm, ["policies.data.config.scope.includeNamespaces={"
                         + ",".join(sample_namespaces()) + "}"])["policies"]["data"],
        {"config": {"defaults": {"profile": "conservative", "timing": {"minConfidence": 0.8}}}})
    out = {}
    for case in CASES:
        values = {"policies": {"data": override}} if case == "override" else {}
        data = render(chart, values_of(helm, SEED) | values).one("ConfigMap")["data"]
        tmp = tmp_path_factory.mktemp(case)
        mount = mount_configmap(data, tmp / "policies")
        data_files = [samples.POLICIES / "data.yaml"]
        if case == "override":
            (tmp / "override.json").write_text(json.dumps(override))
            data_files.append(tmp / "override.json")
        reference = embedded.EmbeddedEngine(samples.POLICIES, data_files, reload_interval=0)
        from_chart = embedded.EmbeddedEngine(mount, reload_interval=0)
        for eng in (reference, from_chart):
            assert eng.healthy() and eng.last_error is None, eng.last_error
        out[case] = (reference, from_chart, mount)
    yield out
    for reference, from_chart, _ in out.values():
        reference.close()
        from_chart.close()


@pytest.mark.parametrize("case", CASES)
def test_chart_policies_decide_as_the_library(engines: dict[str, Any], case: str) -> None:
    reference, from_chart, _ = engines[case]
    assert from_chart.evaluate("config", {}) == reference.evaluate("config", {})
    inputs = policy_inputs()
    assert len(inputs) >= len(samples.load())
    for name, inp in inputs.items():
        want = reference.evaluate(opa.DECISION_PATH, inp)
        assert isinstance(want, dict) and isinstance(want.get("allow"), bool), name
        assert from_chart.evaluate(opa.DECISION_PATH, inp) == want, name
        assert not reference.decide(inp).policy_unavailable, name
    batch_want = [comparable(d) for d in reference.decide_many(list(inputs.values()))]
    batch_got = [comparable(d) for d in from_chart.decide_many(list(inputs.values()))]
    assert batch_got == batch_want


def test_override_reaches_the_engine(engines: dict[str, Any]) -> None:
    _, from_chart, _ = engines["override"]
    config = from_chart.evaluate("config", {})
    assert config["scope"]["includeNamespaces"] == sample_namespaces()
    assert config["defaults"]["timing"]["minConfidence"] == 0.8
    assert config["defaults"]["profile"] == "conservative"


@pytest.mark.parametrize("case", CASES)
def test_chart_policies_decide_as_the_library_over_the_data_api(engines: dict[str, Any],
                                                                case: str) -> None:
    reference, _, mount = engines[case]
    inputs = policy_inputs()
    with OpaServer(engine=embedded.EmbeddedEngine(mount, reload_interval=0)) as server:
        client = sidecar.SidecarEngine(server.url, timeout=10)
        try:
            for name, inp in inputs.items():
                got = client.decide(inp)
                assert not got.policy_unavailable, (name, got.reasons)
                assert comparable(got) == comparable(reference.decide(inp)), name
        finally:
            client.close()


def test_hidden_configmap_directory_is_really_skipped(engines: dict[str, Any],
                                                     tmp_path: Path) -> None:
    """A visible copy of the ..<timestamp> directory (every module twice) breaks the load:
    the mounted layout loads only because hidden paths are skipped."""
    _, _, mount = engines["defaults"]
    (stamp,) = [p for p in mount.iterdir() if p.name.startswith("..2")]
    broken = tmp_path / "policies"
    broken.mkdir()
    for p in stamp.iterdir():
        (broken / p.name).write_text(p.read_text())
        (broken / "visible-copy").mkdir(exist_ok=True)
        (broken / "visible-copy" / p.name).write_text(p.read_text())
    eng = embedded.EmbeddedEngine(broken, reload_interval=0)
    try:
        assert not eng.healthy()
        assert eng.last_error is not None
    finally:
        eng.close()
