"""Cluster facts for the policy input (reconciler.facts) against the test API server, through
the real `kubernetes` client and the Kube adapter, then decided by the REAL default policy
library (policies/, embedded OPA).

Cases:
- HPA: found for its workload; none -> null; an HPA for another workload (other name, or a
  StatefulSet of the same name) is ignored;
- PDBs of a workload: selected by matchLabels, by matchExpressions, by the empty selector;
  not by a non-matching or null selector, nor from another namespace; matched against the
  pod template labels, not the workload's own labels; an unknown target -> no PDBs, no LIST;
- node facts: the exact facts of each node (labels; pods with namespace, name, annotations;
  pdbDisruptionsAllowed = min over the selecting PDBs, 0 for a budget whose status is stale,
  absent without PDB; finished pods skipped; DaemonSet pods and mirror pods marked; pods of
  other nodes absent); a node that does not exist is left out (one GET, no pod LIST);
- bounded requests: 20 workload recommendations in 2 namespaces -> 2 HPA LISTs + 2 PDB
  LISTs and nothing else; 5 node-group recommendations over 2 nodes -> 2 node GETs + 2 pod
  LISTs + one PDB LIST per pod namespace; a second collect() on the same adapter reads
  nothing, forget() makes it read again;
- failures: a 403 on a PDB LIST and a persistent 500 on an HPA LIST fail only the
  recommendations of that namespace (Permanent / Temporary errors naming the read), each
  failing LIST is tried once per collect() (with its bounded retries), the other
  recommendations get their facts; a 500 on one node's pod LIST and a 403 on a node GET fail
  only the node-group recommendations that need them;
- RBAC: a service account with only the suggested ClusterRole rules (hpa list, pdb list,
  pods list, nodes get) collects everything; without the PDB rule it gets a Forbidden error;
- end to end with the default library: replicas for an HPA-owned Deployment -> HPAOwnsReplicas
  (and the same input without facts shows the gap this closes); without an HPA -> allowed;
  a PDB at 0 on the target -> the rollout warning; removing a node with a do-not-disrupt pod
  -> DoNotDisrupt, with a PDB at 0 -> PDBBlocksDrain, a node that does not exist ->
  NodeFactsMissing, only clear nodes -> allowed (and without facts, refused);
- facts are copies: editing them does not change what the next collect() returns.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from reconciler.adapters import kube
from reconciler.adapters.opa import embedded
from reconciler.domain import errors, model, policy_input, validation
from reconciler.flow import facts
from tests import samples
from tests.fakes.kubeapi.handle import KubeApi

ROOT = Path(__file__).resolve().parents[3]
FAST = kube.Options(qps=1000, burst=1000, retries=2, backoff=0.01, backoff_max=0.02,
                    timeout=5.0)
NOW = "2026-11-24T10:00:00Z"
JSON = dict[str, Any]


# --------------------------------------------------------------------------- builders


def make_kube(api: KubeApi, client: Any = None) -> kube.Kube:
    return kube.Kube(client or api.api_client(), FAST, limiter=kube.RateLimiter(1000, 1000))


def workload_rec(rec_id: str, name: str, namespace: str = "default", kind: str = "Deployment",
                 replicas: int | None = None) -> model.WorkloadRecommendation:
    spec: JSON = {"recommendationId": rec_id, "targetRef": {"kind": kind, "name": name},
                  "confidence": 0.9}
    if replicas is not None:
        spec.update(action="ReplicaScaling", replicas=replicas)
    else:
        spec.update(action="Rightsizing", containers=[
            {"name": "app", "resources": {"requests": {"cpu": "150m"}}}])
    rec = validation.parse({"apiVersion": model.API_VERSION, "kind": model.WORKLOAD,
                            "metadata": {"namespace": namespace}, "spec": spec})
    assert isinstance(rec, model.WorkloadRecommendation)
    return rec


def node_rec(rec_id: str, *nodes: str) -> model.NodeGroupRecommendation:
    rec = validation.parse({
        "apiVersion": model.API_VERSION, "kind": model.NODE_GROUP,
        "spec": {"recommendationId": rec_id, "nodeGroup": "default-pool",
                 "action": "consolidate", "currentNodeCount": 5,
                 "targetNodeCount": 5 - len(nodes), "nodesToRemove": list(nodes)}})
    assert isinstance(rec, model.NodeGroupRecommendation)
    return rec


def hpa(name: str, target: str, namespace: str = "default", kind: str = "Deployment") -> JSON:
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": kind, "name": target},
                     "minReplicas": 2, "maxReplicas": 6}}


def pdb(name: str, selector: JSON | None, allowed: int, namespace: str = "default",
        generation: int = 1, observed: int = 1) -> JSON:
    """A PDB as the disruption controller leaves it (status computed and observed)."""
    spec: JSON = {"minAvailable": 1}
    if selector is not None:
        spec["selector"] = selector
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": name, "namespace": namespace, "generation": generation},
            "spec": spec,
            "status": {"disruptionsAllowed": allowed, "currentHealthy": 2,
                       "desiredHealthy": 1, "expectedPods": 2, "observedGeneration": observed}}


def pod(api: KubeApi, name: str, node: str, namespace: str = "default",
        labels: dict[str, str] | None = None, phase: str = "Running",
        annotations: dict[str, str] | None = None, owner: JSON | None = None) -> JSON:
    p = api.pod(name, namespace, labels=labels, node=node, phase=phase, owner=owner)
    if annotations:
        p["metadata"]["annotations"] = dict(annotations)
    return p


def owner(kind: str, name: str, api_version: str = "apps/v1") -> JSON:
    return {"apiVersion": api_version, "kind": kind, "name": name, "uid": f"uid-{name}",
            "controller": True}


def names(items: list[JSON]) -> set[str]:
    return {i["metadata"]["name"] for i in items}


def only_list_and_get(api: KubeApi) -> dict[tuple[str, str], int]:
    counts: dict[tuple[str, str], int] = {}
    for (verb, resource, sub), n in api.requests.snapshot().items():
        assert sub == ""
        counts[(verb, resource)] = counts.get((verb, resource), 0) + n
    return counts


# --------------------------------------------------------------------------- HPA


def test_hpa_found_missing_and_for_other_workloads(kubeapi: KubeApi) -> None:
    web, api_d, worker = (kubeapi.deployment(n) for n in ("web", "api", "worker"))
    kubeapi.seed(web, api_d, worker,
                 hpa("web-hpa", "web"),
                 hpa("ghost-hpa", "ghost"),                 # a workload that is not ours
                 hpa("api-sts", "api", kind="StatefulSet"),  # same name, another kind
                 hpa("worker-hpa", "worker", namespace="other"))
    recs = [workload_rec("r-web", "web"), workload_rec("r-api", "api"),
            workload_rec("r-worker", "worker")]
    got = facts.collect(make_kube(kubeapi), recs,
                        {"r-web": web, "r-api": api_d, "r-worker": worker})
    assert all(f.ok for f in got.values())
    found = got["r-web"].cluster["hpa"]
    assert found["metadata"]["name"] == "web-hpa"
    assert found["kind"] == "HorizontalPodAutoscaler"
    assert "managedFields" not in found["metadata"]
    assert got["r-api"].cluster["hpa"] is None
    assert got["r-worker"].cluster["hpa"] is None  # its HPA lives in another namespace
    assert kubeapi.requests.count("list", "horizontalpodautoscalers") == 1


# --------------------------------------------------------------------------- PDBs of a workload


def test_pdbs_selecting_the_pod_template(kubeapi: KubeApi) -> None:
    web = kubeapi.deployment("web", labels={"app": "web", "tier": "front"})
    web["metadata"]["labels"] = {"app": "web-meta"}  # the workload's own labels differ
    kubeapi.ensure_namespace("other")
    kubeapi.seed(
        web,
        pdb("by-label", {"matchLabels": {"app": "web"}}, 1),
        pdb("by-expr", {"matchExpressions": [
            {"key": "tier", "operator": "In", "values": ["front", "mid"]},
            {"key": "env", "operator": "DoesNotExist"}]}, 0),
        pdb("everything", {}, 2),
        pdb("no-selector", None, 0),
        pdb("other-app", {"matchLabels": {"app": "api"}}, 1),
        pdb("not-web", {"matchExpressions": [
            {"key": "app", "operator": "NotIn", "values": ["web"]}]}, 1),
        pdb("by-workload-labels", {"matchLabels": {"app": "web-meta"}}, 1),
        pdb("elsewhere", {"matchLabels": {"app": "web"}}, 0, namespace="other"),
    )
    recs = [workload_rec("r-web", "web"), workload_rec("r-unknown", "gone")]
    got = facts.collect(make_kube(kubeapi), recs, {"r-web": web, "r-unknown": None})
    selected = got["r-web"].cluster["pdbs"]
    assert names(selected) == {"by-label", "by-expr", "everything"}
    assert {p["metadata"]["namespace"] for p in selected} == {"default"}
    by_expr = next(p for p in selected if p["metadata"]["name"] == "by-expr")
    assert by_expr["status"]["disruptionsAllowed"] == 0  # as stored: the rollout warning reads it
    assert got["r-unknown"].cluster == {"hpa": None, "pdbs": []}
    assert kubeapi.requests.count("list", "poddisruptionbudgets") == 1  # default only


# --------------------------------------------------------------------------- node facts


def seed_nodes(api: KubeApi) -> None:
    """node-a: mixed pods, all clear; node-b: a do-not-disrupt pod; node-c: PDBs at 0
    (directly, and through a stale budget); node-d: clear, one PDB at 1; node-x: not
    consolidated. node-gone does not exist."""
    for ns in ("jobs", "data", "kube-system"):
        api.ensure_namespace(ns)
    api.seed(
        api.node("node-a", labels={"karpenter.sh/nodepool": "default-pool", "zone": "a"}),
        api.node("node-b", labels={"karpenter.sh/nodepool": "default-pool"}),
        api.node("node-c", labels={"karpenter.sh/nodepool": "default-pool"}),
        api.node("node-d", labels={"karpenter.sh/nodepool": "default-pool"}),
        api.node("node-x"),
        pdb("web-pdb", {"matchLabels": {"app": "web"}}, 1),
        pdb("db-loose", {"matchLabels": {"app": "db"}}, 2, namespace="data"),
        pdb("db-strict", {"matchExpressions": [
            {"key": "app", "operator": "In", "values": ["db"]}]}, 0, namespace="data"),
        pdb("queue-pdb", {"matchLabels": {"app": "queue"}}, 3, namespace="data",
            generation=2, observed=1),  # edited, not yet observed: evictions refused
        pdb("web-elsewhere", {"matchLabels": {"app": "web"}}, 0, namespace="jobs"),
        # node-a
        pod(api, "web-1", "node-a", labels={"app": "web"},
            annotations={"note": "kept"}, owner=owner("ReplicaSet", "web-5d8f")),
        pod(api, "batch-1", "node-a", namespace="jobs", labels={"app": "batch"},
            owner=owner("Job", "batch", "batch/v1")),
        pod(api, "done-1", "node-a", labels={"app": "web"}, phase="Succeeded"),
        pod(api, "failed-1", "node-a", namespace="data", labels={"app": "db"}, phase="Failed"),
        pod(api, "logs-x1", "node-a", namespace="kube-system", labels={"app": "logs"},
            owner=owner("DaemonSet", "logs")),
        pod(api, "etcd-node-a", "node-a", namespace="kube-system",
            annotations={"kubernetes.io/config.mirror": "abc"},
            owner=owner("Node", "node-a", "v1")),
        # node-b
        pod(api, "keeper-1", "node-b", labels={"app": "keeper"},
            annotations={"karpenter.sh/do-not-disrupt": "true"}),
        # node-c
        pod(api, "db-0", "node-c", namespace="data", labels={"app": "db"}),
        pod(api, "queue-0", "node-c", namespace="data", labels={"app": "queue"}),
        # node-d
        pod(api, "web-2", "node-d", labels={"app": "web"}),
        pod(api, "logs-x2", "node-d", namespace="kube-system", labels={"app": "logs"},
            owner=owner("DaemonSet", "logs")),
        # node-x (not consolidated)
        pod(api, "web-3", "node-x", labels={"app": "web"}),
    )


def test_node_facts(kubeapi: KubeApi) -> None:
    seed_nodes(kubeapi)
    rec = node_rec("ng-1", "node-a", "node-b", "node-c", "node-gone")
    got = facts.collect(make_kube(kubeapi), [rec], {})
    assert got["ng-1"].ok, got["ng-1"].error
    assert got["ng-1"].cluster == {"nodes": [
        {"name": "node-a", "labels": {"karpenter.sh/nodepool": "default-pool", "zone": "a"},
         "pods": [
             {"namespace": "default", "name": "web-1", "annotations": {"note": "kept"},
              "pdbDisruptionsAllowed": 1},
             {"namespace": "jobs", "name": "batch-1", "annotations": {}},
             {"namespace": "kube-system", "name": "etcd-node-a",
              "annotations": {"kubernetes.io/config.mirror": "abc"}, "mirror": True},
             {"namespace": "kube-system", "name": "logs-x1", "annotations": {},
              "daemonSet": True},
         ]},
        {"name": "node-b", "labels": {"karpenter.sh/nodepool": "default-pool"}, "pods": [
            {"namespace": "default", "name": "keeper-1",
             "annotations": {"karpenter.sh/do-not-disrupt": "true"}}]},
        {"name": "node-c", "labels": {"karpenter.sh/nodepool": "default-pool"}, "pods": [
            {"namespace": "data", "name": "db-0", "annotations": {},
             "pdbDisruptionsAllowed": 0},
            {"namespace": "data", "name": "queue-0", "annotations": {},
             "pdbDisruptionsAllowed": 0}]},
    ]}
    # node-gone: one GET (404), no pod LIST
    assert kubeapi.requests.count("get", "nodes") == 4
    assert kubeapi.requests.count("list", "pods") == 3


# --------------------------------------------------------------------------- request bounds


def test_requests_are_bounded(kubeapi: KubeApi) -> None:
    targets: dict[str, JSON | None] = {}
    recs: list[model.Recommendation] = []
    for ns in ("team-a", "team-b"):
        kubeapi.ensure_namespace(ns)
        for i in range(10):
            d = kubeapi.deployment(f"app-{i}", namespace=ns)
            kubeapi.seed(d, pdb(f"app-{i}", {"matchLabels": {"app": f"app-{i}"}}, 1,
                                namespace=ns))
            if i % 2 == 0:
                kubeapi.seed(hpa(f"app-{i}", f"app-{i}", namespace=ns))
            rid = f"{ns}-{i}"
            recs.append(workload_rec(rid, f"app-{i}", namespace=ns))
            targets[rid] = d
    seed_nodes(kubeapi)
    node_recs = [node_rec(f"ng-{i}", "node-a", "node-d") for i in range(5)]
    api = make_kube(kubeapi)
    kubeapi.requests.reset()

    got = facts.collect(api, recs, targets)
    assert len(got) == 20 and all(f.ok for f in got.values())
    assert [names(got[f"team-a-{i}"].cluster["pdbs"]) for i in range(3)] == [
        {"app-0"}, {"app-1"}, {"app-2"}]
    assert [got[f"team-b-{i}"].cluster["hpa"] is not None for i in range(4)] == [
        True, False, True, False]
    assert only_list_and_get(kubeapi) == {("list", "horizontalpodautoscalers"): 2,
                                          ("list", "poddisruptionbudgets"): 2}

    kubeapi.requests.reset()
    got_nodes = facts.collect(api, node_recs, {})
    assert all(f.ok and len(f.cluster["nodes"]) == 2 for f in got_nodes.values())
    # pod namespaces on node-a and node-d: default, jobs, kube-system
    assert only_list_and_get(kubeapi) == {("get", "nodes"): 2, ("list", "pods"): 2,
                                          ("list", "poddisruptionbudgets"): 3}

    kubeapi.requests.reset()
    again = facts.collect(api, [*recs, *node_recs], targets)
    assert kubeapi.requests.snapshot() == {}  # all from the adapter's cache
    assert again == {**got, **got_nodes}

    api.forget()
    facts.collect(api, [*recs, *node_recs], targets)
    assert kubeapi.requests.count("list", "horizontalpodautoscalers") == 2
    assert kubeapi.requests.count("get", "nodes") == 2


# --------------------------------------------------------------------------- failures


def test_failed_lists_fail_only_their_recommendations(kubeapi: KubeApi) -> None:
    targets: dict[str, JSON | None] = {}
    recs: list[model.Recommendation] = []
    for ns in ("default", "team-b", "team-c"):
        kubeapi.ensure_namespace(ns)
        for i in range(2):
            d = kubeapi.deployment(f"app-{i}", namespace=ns)
            kubeapi.seed(d)
            rid = f"{ns}-{i}"
            recs.append(workload_rec(rid, f"app-{i}", namespace=ns))
            targets[rid] = d
    kubeapi.seed(hpa("app-0", "app-0", namespace="team-b"))
    kubeapi.faults.fail_next(5, 403, verb="list", resource="poddisruptionbudgets",
                             namespace="team-b")
    kubeapi.faults.fail_next(50, 500, verb="list", resource="horizontalpodautoscalers",
                             namespace="team-c")
    got = facts.collect(make_kube(kubeapi), recs, targets)

    assert got["default-0"].ok and got["default-1"].ok
    for rid in ("team-b-0", "team-b-1"):
        err = got[rid].error
        assert isinstance(err, errors.PermanentError), err
        assert "PodDisruptionBudget" in str(err) and "team-b" in str(err)
        assert "Deployment/app-" in str(err)
        assert got[rid].cluster == {}
    for rid in ("team-c-0", "team-c-1"):
        err = got[rid].error
        assert isinstance(err, errors.TemporaryError), err
        assert "HorizontalPodAutoscaler" in str(err) and "team-c" in str(err)
    # each failing LIST once per collect(): 403 not retried, 500 retried FAST.retries times
    per_ns: dict[tuple[str, str], int] = {}
    for info in kubeapi.requests.log:
        per_ns[(info.resource, info.namespace)] = per_ns.get(
            (info.resource, info.namespace), 0) + 1
    assert per_ns[("poddisruptionbudgets", "team-b")] == 1
    assert per_ns[("horizontalpodautoscalers", "team-c")] == 1 + FAST.retries
    assert ("poddisruptionbudgets", "team-c") not in per_ns  # stopped at the HPA
    assert set(facts.failures(got)) == {"team-b-0", "team-b-1", "team-c-0", "team-c-1"}
    assert set(facts.cluster_map(got)) == {"default-0", "default-1"}


def test_failed_node_reads_fail_only_their_recommendations(kubeapi: KubeApi) -> None:
    seed_nodes(kubeapi)
    api = make_kube(kubeapi)
    api.pods_on_node("node-a")  # read before the faults: served from the adapter's cache
    kubeapi.requests.reset()
    kubeapi.faults.fail_next(50, 500, verb="list", resource="pods")
    kubeapi.faults.fail_next(1, 403, verb="get", resource="nodes", name="node-c")
    got = facts.collect(api, [node_rec("ng-a", "node-a"), node_rec("ng-d", "node-d"),
                              node_rec("ng-c", "node-c"), node_rec("ng-ad", "node-a", "node-d")],
                        {})
    assert got["ng-a"].ok and [n["name"] for n in got["ng-a"].cluster["nodes"]] == ["node-a"]
    err_d = got["ng-d"].error
    assert isinstance(err_d, errors.TemporaryError) and "node-d" in str(err_d), err_d
    assert "NodeGroup/default-pool" in str(err_d)
    err_c = got["ng-c"].error
    assert isinstance(err_c, errors.PermanentError) and "Node node-c" in str(err_c), err_c
    assert not got["ng-ad"].ok  # one unreadable node is enough to fail the recommendation
    assert kubeapi.requests.count("list", "pods") == 1 + FAST.retries  # node-d, once


# --------------------------------------------------------------------------- RBAC


ROLE = """
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: dakr-facts}
rules:
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [list]
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [list]
- apiGroups: [""]
  resources: [pods]
  verbs: [list]
- apiGroups: [""]
  resources: [nodes]
  verbs: [get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: dakr-facts}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: dakr-facts}
subjects: [{kind: ServiceAccount, name: dakr-reconciler, namespace: dakr-operator}]
"""


@pytest.mark.parametrize("without_pdbs", [False, True])
def test_rbac_rules_suffice(kubeapi: KubeApi, without_pdbs: bool) -> None:
    seed_nodes(kubeapi)
    web = kubeapi.deployment("web")
    kubeapi.seed(web, hpa("web", "web"))
    role = ROLE
    if without_pdbs:
        role = role.replace("[poddisruptionbudgets]", "[poddisruptionbudgets-not]")
    kubeapi.enable_rbac(role)
    sa = kubeapi.service_account_client("dakr-operator", "dakr-reconciler")
    got = facts.collect(make_kube(kubeapi, sa),
                        [workload_rec("r-web", "web"), node_rec("ng", "node-a", "node-b")],
                        {"r-web": web})
    if not without_pdbs:
        assert got["r-web"].ok and got["ng"].ok, facts.failures(got)
        assert got["r-web"].cluster["hpa"]["metadata"]["name"] == "web"
        assert names(got["r-web"].cluster["pdbs"]) == {"web-pdb"}
        assert len(got["ng"].cluster["nodes"]) == 2
    else:
        for rid in ("r-web", "ng"):
            err = got[rid].error
            assert isinstance(err, errors.PermanentError)
            assert "forbidden" in str(err).lower() and "poddisruptionbudgets" in str(err)


# --------------------------------------------------------------------------- with the policies


@pytest.fixture(scope="module")
def engine() -> Any:
    eng = embedded.EmbeddedEngine(ROOT / "policies", samples.DATA_FILES)
    yield eng
    eng.close()


def decide(engine: Any, rec: model.Recommendation, target: JSON | None,
           got: dict[str, facts.Facts] | None) -> Any:
    cluster = got[rec.id].cluster if got is not None else None
    return engine.decide(policy_input.build(rec, target, now=NOW, cluster=cluster))


def rules(dec: Any) -> set[str]:
    return {d.rule for d in dec.deny}


def test_policy_hpa_owned_replicas(kubeapi: KubeApi, engine: Any) -> None:
    owned = kubeapi.deployment("checkout", replicas=2)
    free = kubeapi.deployment("cart", replicas=2, labels={"app": "cart"})
    kubeapi.seed(owned, free, hpa("checkout", "checkout"),
                 pdb("cart", {"matchLabels": {"app": "cart"}}, 0))
    r_owned = workload_rec("r-owned", "checkout", replicas=4)
    r_free = workload_rec("r-free", "cart", replicas=4)
    r_resize = workload_rec("r-resize", "cart")
    got = facts.collect(make_kube(kubeapi), [r_owned, r_free, r_resize],
                        {"r-owned": owned, "r-free": free, "r-resize": free})

    dec = decide(engine, r_owned, owned, got)
    assert not dec.allow and "HPAOwnsReplicas" in rules(dec), dec.reasons
    assert any("checkout" in d.msg for d in dec.deny if d.rule == "HPAOwnsReplicas")
    # The gap this closes: the same input without cluster facts is not refused for it.
    assert "HPAOwnsReplicas" not in rules(decide(engine, r_owned, owned, None))

    dec = decide(engine, r_free, free, got)
    assert dec.allow and "HPAOwnsReplicas" not in rules(dec), dec.reasons

    dec = decide(engine, r_resize, free, got)
    assert dec.allow, dec.reasons
    assert any("PodDisruptionBudget cart allows no disruption" in w for w in dec.warnings)


def test_policy_node_consolidation(kubeapi: KubeApi, engine: Any) -> None:
    seed_nodes(kubeapi)
    recs = {"dnd": node_rec("ng-dnd", "node-a", "node-b"),
            "pdb0": node_rec("ng-pdb0", "node-c"),
            "gone": node_rec("ng-gone", "node-d", "node-gone"),
            "clear": node_rec("ng-clear", "node-a", "node-d")}
    got = facts.collect(make_kube(kubeapi), list(recs.values()), {})
    decisions = {k: decide(engine, r, None, got) for k, r in recs.items()}

    assert rules(decisions["dnd"]) == {"DoNotDisrupt"}, decisions["dnd"].reasons
    assert "keeper-1" in decisions["dnd"].deny[0].msg
    assert rules(decisions["pdb0"]) == {"PDBBlocksDrain"}, decisions["pdb0"].reasons
    assert {d.msg.split(" pod ")[1].split(" ")[0] for d in decisions["pdb0"].deny} == {
        "data/db-0", "data/queue-0"}
    assert rules(decisions["gone"]) == {"NodeFactsMissing"}, decisions["gone"].reasons
    assert decisions["clear"].allow, decisions["clear"].reasons
    # Without facts every consolidation is refused: what GitOps mode does today.
    blind = decide(engine, recs["clear"], None, None)
    assert rules(blind) == {"NodeFactsMissing"}


def test_facts_do_not_alias_the_cache(kubeapi: KubeApi) -> None:
    """Facts handed to policy are copies: editing them cannot corrupt a later decision."""
    web = kubeapi.deployment("web")
    kubeapi.seed(web, hpa("web", "web"), pdb("web-pdb", {"matchLabels": {"app": "web"}}, 1))
    api = make_kube(kubeapi)
    rec = workload_rec("r", "web")
    first = facts.collect(api, [rec], {"r": web})["r"].cluster
    pristine = copy.deepcopy(first)
    first["hpa"]["spec"]["minReplicas"] = 99
    first["pdbs"][0]["status"]["disruptionsAllowed"] = 99
    assert facts.collect(api, [rec], {"r": web})["r"].cluster == pristine
