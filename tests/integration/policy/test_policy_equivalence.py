"""The rewritten default library decides exactly as the library it replaced.

The library was rewritten for speed (issue 16: fewer evaluation steps per decision); its
answers must not move. ``tests/data/policy-before/`` is the library as it was before
(``policies/`` with its ``data.yaml``, frozen), and both are asked the same questions.

Cases covered:
- 10,240 inputs generated from the shared samples (rego-tests/data/samples.json) by a
  seeded generator, under five configurations layered over each library's data.yaml
  (opted in; as shipped; scoped rules, one naming a profile that does not exist, and
  default-scope exclusions; a strict profile with maintenance windows; audit/review
  routing with bad settings and no minimum change): the decision documents
  of the old and the new library are identical, key for key (allow, mode, deny rules and
  messages in order, warnings, bounds, execution), through the batch entry point
  (``data.dakr.batch``, as ``decide_many`` asks), the old library sent each input whole
  and the new one only what its rules read (``EmbeddedEngine.sent``, as a decision sends
  it);
- the inputs vary what the rules read: kinds, actions and namespaces, target names,
  kinds, labels and annotations, requests and limits on both sides of every per-step,
  absolute and minimum-change threshold (each profile's), limit removal and decrease,
  unknown and extra containers, replicas and HPA bounds around the step and the minimum,
  PodDisruptionBudgets, node facts (do-not-disrupt, budgets, unknown nodes, group
  sizes), the time against the windows, the cooldown history, confidence around the
  minimum and absent, autoApply, the GitOps tool, the operator's mode and namespace, and
  malformed fields the validation denies;
- the set exercises the library: every rule of policies/README.md fires on some inputs
  and not on others, every kind of warning, bounds (cpu, memory, replicas, HPA),
  execution (liveMigration, nodeConsolidation) and mode (audit, gitops, direct) occurs;
- the generator is deterministic: the same seed gives the same inputs.

Only inputs of the documented contract are generated (quantities are numbers or null,
as the pipeline normalizes them): a value of the wrong type makes either library fail
closed, not necessarily at the same step.
"""

from __future__ import annotations

import copy
import json
import random
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from reconciler.adapters.opa import embedded
from reconciler.adapters.opa import engine as opa
from tests import samples

ROOT = Path(__file__).resolve().parents[3]
BEFORE = ROOT / "tests" / "data" / "policy-before"
SEED = 16
PER_CONFIG = 2048  # x 5 configurations
BATCH = 512
MI = 1048576

RULES = {
    "InvalidInput", "NotCovered", "OutOfScope", "RequestAboveLimit", "LimitRemoval",
    "MemoryLimitDecrease", "LimitChange", "MinimumChange", "NoResources",
    "UnknownContainer", "MaintenanceWindow", "Cooldown", "MinimumConfidence",
    "NoConfidence", "InvalidConfig", "HPAOwnsReplicas", "MinReplicas", "InvalidHPA",
    "NoHPA", "NoReplicaChange", "NodeChangesDisabled", "MaxNodesConsolidated",
    "DoNotDisrupt", "PDBBlocksDrain", "NodeFactsMissing", "NodeGroupMinSize",
}

WARNINGS = {
    "cpu clamp": " cpu request clamped from ",
    "memory clamp": " memory request clamped from ",
    "replicas clamp": "replicas clamped from ",
    "hpa clamp": "HPA minReplicas clamped from ",
    "pdb": "allows no disruption now",
    "audit": "approval is audit-only",
    "review": "approval requires review",
    "autoApply": "the source asked for review",
    "managed": "routed to gitops so a direct patch is not reverted",
    "no confidence": "no confidence given",
}

# -- configurations: layered over each library's own data.yaml -----------------------

WINDOWS = [
    {"days": ["Tuesday"], "start": "09:00", "end": "11:00", "timezone": "UTC"},
    {"days": ["Saturday", "Sunday"], "start": "22:00", "end": "02:00",
     "timezone": "Europe/Paris"},
    {"start": "13:30", "end": "14:00"},
]

RULESET = [
    {"name": "payments-review", "priority": 10, "match": {"namespaces": ["payments"]},
     "settings": {"approval": "review", "profile": "conservative"}},
    {"name": "payments-low", "priority": 1, "match": {"namespaces": ["payments"]},
     "settings": {"approval": "audit"}},
    {"name": "checkout", "match": {"names": ["^checkout$"]},
     "settings": {"profile": "aggressive", "applyMode": "direct",
                  "replicas": {"minReplicas": 2, "maxReplicaChange": 2}}},
    {"name": "batch", "match": {"labels": {"tier": "batch"}},
     "settings": {"approval": "audit", "liveMigration": {"fallback": "recreate"}}},
    {"name": "frozen", "match": {"namespaces": ["frozen"]}, "enabled": False},
    {"name": "ops", "match": {"namespaceRegex": ["^ops-"]},
     "settings": {"timing": {"maintenanceWindows": WINDOWS, "cooldownMinutes": 15,
                             "minConfidence": 0.5, "withoutConfidence": "deny"},
                  "guardrails": {"maxDecreasePercent": 33, "allowLimitRemoval": True,
                                 "allowMemoryLimitDecrease": True, "minCpuCores": 0.05,
                                 "maxMemoryBytes": 512 * MI}}},
    {"name": "cart-live", "match": {"names": ["^cart"], "namespaces": ["default", "shop"]},
     "settings": {"liveMigration": {"persist": "template", "move": "checkpoint",
                                    "maxPodsResizing": 2, "resizeRunning": True}}},
    {"name": "bad", "match": {"names": ["^bad-"]},
     "settings": {"applyMode": "kubectl", "approval": "sometimes",
                  "liveMigration": {"fallback": "evict", "persist": "annotation",
                                    "move": "teleport", "deferredTimeoutSeconds": 0,
                                    "resizeRunning": "yes"}}},
    {"name": "frontend-team", "match": {"names": ["^front"], "labels": {"team": "web"}},
     "settings": {"profile": "conservative", "guardrails": {"allowLimitChanges": True}}},
    # a profile name no profile has: no per-step limits, no minimum change
    {"name": "typo", "match": {"names": ["^redis"]}, "settings": {"profile": "balancd"}},
]

CONFIGS: dict[str, dict[str, Any]] = {
    "opted-in": {"config": {"scope": {"includeNamespaceRegex": [".*"]}}},
    "shipped": {},
    "scoped": {"config": {
        "scope": {"includeNamespaces": ["default", "shop"],
                  "includeNamespaceRegex": ["^team-", "^ops-"],
                  "excludeNamespaces": ["shop"], "excludeNamespaceRegex": ["^team-b$"],
                  "excludeNamePatterns": ["^redis-"],
                  "excludeLabels": {"dakr.devzero.io/exclude": "true", "tier": "system"}},
        "rules": RULESET}},
    "strict": {"config": {
        "systemNamespaces": ["kube-system", "kube-public"],
        "scope": {"includeNamespaceRegex": [".*"], "kinds": ["Deployment", "StatefulSet"]},
        "defaults": {"profile": "conservative", "applyMode": "direct",
                     "guardrails": {"maxCpuCores": 2, "minMemoryBytes": 64 * MI},
                     "timing": {"maintenanceWindows": WINDOWS, "minConfidence": 0.8,
                                "withoutConfidence": "deny", "cooldownMinutes": 30},
                     "replicas": {"minReplicas": 2, "maxReplicaChange": 1},
                     "nodes": {"maxNodesConsolidated": 1, "consolidation": "drain"},
                     "liveMigration": {"move": "checkpoint", "inProgressTimeoutSeconds": 60}}}},
    "routing": {"config": {
        "scope": {"includeNamespaces": ["default", "payments", "team-a"]},
        "defaults": {"approval": "audit", "profile": "aggressive",
                     "guardrails": {"minChangePercent": 0},
                     "nodes": {"enabled": False, "consolidation": "delete"},
                     "liveMigration": {"persist": "annotation", "maxPodsResizing": -1}},
        "rules": [
            {"name": "review", "match": {"namespaces": ["payments"]},
             "settings": {"approval": "review"}},
            {"name": "auto", "match": {"namespaces": ["team-a"]},
             "settings": {"approval": "auto", "applyMode": "gitops"}},
            {"name": "direct", "match": {"names": ["^cart"]},
             "settings": {"approval": "auto", "applyMode": "direct"}}]}},
}

# -- the generator ----------------------------------------------------------------------

Input = dict[str, Any]
Mutation = Callable[[random.Random, Input], None]

NAMESPACES = ["default", "shop", "payments", "team-a", "team-b", "ops-1", "frozen",
              "kube-system", "kube-public", "dakr-operator", "legacy", ""]
NAMES = ["cartservice", "checkout", "frontend", "redis-cart", "bad-app", "cart-live", ""]
KINDS = ["Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", ""]
NOWS = ["2026-11-24T10:00:00Z", "2026-11-24T09:00:00Z", "2026-11-24T11:00:00Z",
        "2026-11-24T13:45:00+00:00", "2026-11-28T22:30:00Z", "2026-11-29T00:30:00.5Z",
        "2026-11-30T00:30:00Z", "2026-11-24T10:00:00+01:00", "2026-11-24T10:00:00.123Z",
        "noon", "2026-11-24 10:00", "2026-11-24T10:00Z"]
CPU_PERCENTS = [0.25, 0.33, 0.5, 0.67, 0.9, 0.95, 0.98, 1, 1.02, 1.05, 1.1, 1.5, 2, 3, 4]


def _near(rnd: random.Random, x: float, integer: bool) -> float | int:
    """A value at (as computed, float noise included), just under or just over x."""
    if integer:
        return max(0, int(x) + rnd.choice([-1, 0, 0, 0, 1]))
    return rnd.choice([x, x, x, round(x, 9), round(x - 0.001, 9), round(x + 0.001, 9),
                       x - 1e-9, x + 1e-9])


def _quantity(rnd: random.Random, res: str, cur: Any) -> Any:
    """A proposed request or limit: around a threshold of the current value, an absolute
    bound, or anything."""
    integer = res == "memory"
    base = cur if isinstance(cur, (int, float)) and cur else (0.2 if res == "cpu" else 128 * MI)
    r = rnd.random()
    if r < 0.6:
        return _near(rnd, base * rnd.choice(CPU_PERCENTS), integer)
    if r < 0.75:
        bounds = ([0.01, 0.05, 16, 2] if res == "cpu"
                  else [16 * MI, 64 * MI, 512 * MI, 64 * 1024 * MI])
        return _near(rnd, rnd.choice(bounds), integer)
    if r < 0.9:
        return rnd.randint(16, 2000) * MI if integer else round(rnd.uniform(0.001, 3), 3)
    return base


def _container(rnd: random.Random, inp: Input, name: str) -> dict[str, Any]:
    cts = inp["normalized"].setdefault("containers", {})
    if name not in cts:
        cts[name] = {"found": True,
                     "current": {"requests": {"cpu": 0.1, "memory": 64 * MI},
                                 "limits": {"cpu": 0.5, "memory": 128 * MI}},
                     "proposed": {"requests": {"cpu": 0.1, "memory": 64 * MI},
                                  "limits": {"cpu": 0.5, "memory": 128 * MI}}}
    ct: dict[str, Any] = cts[name]
    return ct


def m_requests(rnd: random.Random, inp: Input) -> None:
    ct = _container(rnd, inp, rnd.choice(["server", "server", "sidecar"]))
    for res in rnd.sample(["cpu", "memory"], rnd.randint(1, 2)):
        cur = ct["current"]["requests"].get(res)
        ct["proposed"]["requests"][res] = _quantity(rnd, res, cur)


def m_current(rnd: random.Random, inp: Input) -> None:
    ct = _container(rnd, inp, rnd.choice(["server", "sidecar"]))
    res = rnd.choice(["cpu", "memory"])
    side = rnd.choice(["requests", "limits"])
    choice = rnd.random()
    if choice < 0.3:
        ct["current"][side].pop(res, None)
    elif choice < 0.4:
        ct["current"][side][res] = 0
    else:
        ct["current"][side][res] = _quantity(rnd, res, ct["current"][side].get(res))
    if rnd.random() < 0.5:  # the pipeline overlays the current values on the proposal
        ct["proposed"][side].setdefault(res, ct["current"][side].get(res))


def m_limits(rnd: random.Random, inp: Input) -> None:
    ct = _container(rnd, inp, rnd.choice(["server", "server", "sidecar"]))
    res = rnd.choice(["cpu", "memory"])
    r = rnd.random()
    if r < 0.25:
        ct["proposed"]["limits"][res] = None  # removal
    elif r < 0.4:
        ct["proposed"]["limits"].pop(res, None)
    elif r < 0.5:
        ct["current"]["limits"].pop(res, None)
    else:
        ct["proposed"]["limits"][res] = _quantity(rnd, res, ct["current"]["limits"].get(res))


def m_request_removed(rnd: random.Random, inp: Input) -> None:
    ct = _container(rnd, inp, "server")
    for side in rnd.choice([["proposed"], ["current"], ["proposed", "current"]]):
        ct[side]["requests"].pop(rnd.choice(["cpu", "memory"]), None)


def m_containers(rnd: random.Random, inp: Input) -> None:
    r = rnd.random()
    if r < 0.3:
        inp["normalized"]["containers"] = {}
    elif r < 0.6:
        _container(rnd, inp, rnd.choice(["server", "sidecar"]))["found"] = False
    elif r < 0.8:
        ct = _container(rnd, inp, "server")
        ct["proposed"] = copy.deepcopy(ct["current"])  # nothing changes
    else:
        inp["normalized"].pop("containers", None)


def m_namespace(rnd: random.Random, inp: Input) -> None:
    ns = rnd.choice(NAMESPACES)
    if rnd.random() < 0.15:
        inp["recommendation"]["metadata"].pop("namespace", None)
        if inp["target"] is not None:
            inp["target"]["metadata"]["namespace"] = ns
    else:
        inp["recommendation"]["metadata"]["namespace"] = ns


def m_target(rnd: random.Random, inp: Input) -> None:
    spec = inp["recommendation"]["spec"]
    r = rnd.random()
    if r < 0.5:
        spec.setdefault("targetRef", {})["name"] = rnd.choice(NAMES)
    elif r < 0.85:
        spec.setdefault("targetRef", {})["kind"] = rnd.choice(KINDS)
    elif r < 0.95:
        spec.setdefault("targetRef", {}).pop("name", None)
    else:
        inp["target"] = None


def m_labels(rnd: random.Random, inp: Input) -> None:
    if inp["target"] is None:
        return
    meta = inp["target"]["metadata"]
    key, value = rnd.choice([
        ("dakr.devzero.io/exclude", "true"), ("dakr.devzero.io/exclude", "false"),
        ("tier", "batch"), ("tier", "system"), ("team", "web"), ("app", "cartservice"),
        ("argocd.argoproj.io/instance", "shop"), ("kustomize.toolkit.fluxcd.io/name", "apps"),
        ("helm.toolkit.fluxcd.io/name", "shop")])
    meta.setdefault("labels", {})[key] = value
    if rnd.random() < 0.3:
        meta.setdefault("annotations", {})[rnd.choice([
            "argocd.argoproj.io/tracking-id", "argocd.argoproj.io/sync-options",
            "example.com/other"])] = "x"


def m_action(rnd: random.Random, inp: Input) -> None:
    rec = inp["recommendation"]
    r = rnd.random()
    if r < 0.7:
        rec["spec"]["action"] = rnd.choice(["Rightsizing", "LiveMigration", "ReplicaScaling",
                                            "Delete", "consolidate"])
    elif r < 0.85:
        rec["spec"].pop("action", None)
    else:
        rec["kind"] = rnd.choice(["Pod", "NodeGroupRecommendation", ""])


def m_confidence(rnd: random.Random, inp: Input) -> None:
    spec = inp["recommendation"]["spec"]
    r = rnd.random()
    if r < 0.25:
        spec.pop("confidence", None)
        if rnd.random() < 0.5:
            spec["source"] = rnd.choice(["krr", "vpa", ""])
    else:
        spec["confidence"] = rnd.choice([0, 0.49, 0.5, 0.51, 0.69, 0.7, 0.71, 0.79, 0.8,
                                         0.81, 1, round(rnd.random(), 2)])


def m_auto_apply(rnd: random.Random, inp: Input) -> None:
    spec = inp["recommendation"]["spec"]
    if rnd.random() < 0.3:
        spec.pop("autoApply", None)
    else:
        spec["autoApply"] = rnd.random() < 0.5


def m_now(rnd: random.Random, inp: Input) -> None:
    if rnd.random() < 0.05:
        inp.pop("now", None)
    else:
        inp["now"] = rnd.choice(NOWS)


def m_history(rnd: random.Random, inp: Input) -> None:
    r = rnd.random()
    if r < 0.15:
        inp["history"] = {"lastApplied": None}
    elif r < 0.9:
        at = rnd.choice(["2026-11-24T09:59:00Z", "2026-11-24T09:45:00Z", "2026-11-24T09:30:00Z",
                         "2026-11-24T09:00:00Z", "2026-11-24T08:59:59Z", "2026-11-24T08:00:00Z",
                         "2026-11-24T10:30:00+01:00", "2026-11-23T10:00:00Z"])
        inp["history"] = {"lastApplied": {"recommendationId": "rec-0", "at": at}}
    else:
        inp["history"] = {"lastApplied": {"recommendationId": "rec-0", "at": "last week"}}


def m_cluster(rnd: random.Random, inp: Input) -> None:
    cl = inp["cluster"]
    r = rnd.random()
    if r < 0.3:
        cl["operatorMode"] = rnd.choice(["gitops", "direct", "audit", "kubectl"])
    elif r < 0.4:
        cl.pop("operatorMode", None)
    elif r < 0.5:
        cl["operatorNamespace"] = rnd.choice(["dakr-operator", "ops-1", "payments"])
    elif r < 0.55:
        cl.pop("operatorNamespace", None)
    elif r < 0.8:
        cl["gitops"] = {"tool": rnd.choice(["argocd", "flux", "spinnaker", None])}
    else:
        cl["pdbs"] = [{"metadata": {"name": f"pdb-{i}"},
                       "status": {"disruptionsAllowed": rnd.choice([0, 1, 2])}}
                      for i in range(rnd.randint(0, 2))]
        if cl["pdbs"] and rnd.random() < 0.2:
            cl["pdbs"][0].pop("status")


def m_replicas(rnd: random.Random, inp: Input) -> None:
    r = rnd.random()
    spec = inp["recommendation"]["spec"]
    if r < 0.6:
        cur = rnd.choice([1, 2, 3, 5, 10])
        n = max(0, cur + rnd.choice([-6, -5, -4, -2, -1, 0, 1, 2, 4, 5, 6, 10]))
        inp["normalized"]["replicas"] = {"current": cur, "proposed": n}
        spec["replicas"] = n
    elif r < 0.75:
        inp["normalized"].pop("replicas", None)
        spec["replicas"] = rnd.choice([0, 1, 3, 12])
    elif r < 0.85:
        inp["normalized"].pop("replicas", None)
        spec.pop("replicas", None)
        if inp["target"] is not None and rnd.random() < 0.5:
            inp["target"]["spec"].pop("replicas", None)
    else:
        inp["normalized"]["replicas"] = {"proposed": rnd.choice([1, 9])}


def m_hpa(rnd: random.Random, inp: Input) -> None:
    spec = inp["recommendation"]["spec"]
    r = rnd.random()
    if r < 0.5:
        lo = rnd.choice([0, 1, 2, 3, 7, 8, 9, 10])
        spec["hpa"] = {"minReplicas": lo, "maxReplicas": lo + rnd.choice([-1, 0, 4])}
    elif r < 0.65:
        spec.pop("hpa", None)
    if rnd.random() < 0.5:
        inp["cluster"]["hpa"] = None if rnd.random() < 0.3 else {
            "metadata": {"name": "checkout"},
            "spec": {"minReplicas": rnd.choice([1, 3, 9]), "maxReplicas": 12}}


def m_nodes(rnd: random.Random, inp: Input) -> None:
    spec = inp["recommendation"]["spec"]
    r = rnd.random()
    if r < 0.3:
        spec["nodesToRemove"] = rnd.choice([["node-a"], ["node-b"], ["node-a", "node-b"],
                                            ["node-a", "node-b", "node-c"], ["node-z"], []])
    elif r < 0.55:
        pod = rnd.choice(inp["cluster"]["nodes"])["pods"][0]
        pod["annotations"] = {"karpenter.sh/do-not-disrupt": rnd.choice(["true", "false"])}
    elif r < 0.75:
        pod = rnd.choice(inp["cluster"]["nodes"])["pods"][0]
        if rnd.random() < 0.2:
            pod.pop("pdbDisruptionsAllowed", None)
        else:
            pod["pdbDisruptionsAllowed"] = rnd.choice([0, 1])
    elif r < 0.9:
        if rnd.random() < 0.4:
            spec.pop("targetNodeCount", None)
        else:
            spec["targetNodeCount"] = rnd.choice([1, 2, 3, 4])
        if rnd.random() < 0.5:
            inp["cluster"]["nodeGroup"] = rnd.choice([
                None, {"name": "default-pool", "currentSize": 3},
                {"name": "default-pool", "minSize": 2, "currentSize": rnd.choice([3, 4, 5])},
                {"name": "default-pool", "minSize": 4, "currentSize": 5}])
    else:
        inp["cluster"]["nodes"] = inp["cluster"]["nodes"][:1]


WORKLOAD: list[Mutation] = [
    m_requests, m_requests, m_requests, m_current, m_limits, m_limits, m_request_removed,
    m_containers, m_namespace, m_namespace, m_target, m_labels, m_action, m_confidence,
    m_confidence, m_auto_apply, m_now, m_history, m_history, m_cluster, m_cluster,
    m_replicas, m_hpa]
NODES: list[Mutation] = [m_nodes, m_nodes, m_nodes, m_now, m_history, m_cluster, m_action,
                         m_namespace, m_confidence]
SAMPLES = [("rightsizing", 35), ("live_migration", 15), ("replica_scaling", 15),
           ("hpa_scaling", 15), ("nodegroup", 20)]


def generate(n: int, seed: int) -> list[Input]:
    """n inputs: a sample with up to five mutations (none for a few, the allowed side)."""
    rnd = random.Random(seed)
    base = samples.load()
    names = [name for name, _ in SAMPLES]
    weights = [w for _, w in SAMPLES]
    out: list[Input] = []
    for _ in range(n):
        name = rnd.choices(names, weights)[0]
        inp = copy.deepcopy(base[name])
        pool = NODES if name == "nodegroup" else WORKLOAD
        for mutate in rnd.choices(pool, k=rnd.choice([0, 1, 2, 2, 3, 3, 4, 5])):
            mutate(rnd, inp)
        out.append(inp)
    return out


# -- asking both libraries --------------------------------------------------------------


def _decide_all(eng: embedded.EmbeddedEngine, inputs: list[Input], lean: bool) -> list[Any]:
    """The raw decision documents, through the batch entry point; an input whose
    evaluation fails is asked alone and answers ("error", code). With ``lean`` each input
    is cut to what the library reads, as a decision sends it (``EmbeddedEngine.sent``)."""
    out: list[Any] = []
    for i in range(0, len(inputs), BATCH):
        chunk = [eng.sent(one) for one in inputs[i:i + BATCH]] if lean else inputs[i:i + BATCH]
        try:
            docs = eng.evaluate(opa.BATCH_PATH, {"items": chunk})
        except opa.PolicyError:
            docs = []
            for one in chunk:
                try:
                    docs.append(eng.evaluate(opa.DECISION_PATH, one))
                except opa.PolicyError as e:
                    docs.append(("error", e.code))
        out.extend(docs)
    return out


def _engine(policies: Path, tmp: Path, name: str) -> embedded.EmbeddedEngine:
    layer = tmp / f"{name}.json"
    layer.write_text(json.dumps(CONFIGS[name]))
    eng = embedded.EmbeddedEngine(policies, [policies / "data.yaml", layer],
                                  reload_interval=-1, cache_size=0)
    assert eng.last_error is None, eng.last_error
    return eng


@pytest.fixture(scope="module")
def decided(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[list[Input], list[Any],
                                                                            list[Any]]]:
    """Per configuration: the inputs, the old library's and the new library's answers
    (the two libraries evaluate side by side, one engine call per batch each)."""
    tmp = tmp_path_factory.mktemp("equivalence")
    out = {}
    with ThreadPoolExecutor(max_workers=2) as pool:
        for k, name in enumerate(CONFIGS):
            inputs = generate(PER_CONFIG, SEED * 100 + k)
            old, new = _engine(BEFORE, tmp, name), _engine(samples.POLICIES, tmp, name)
            try:
                before = pool.submit(_decide_all, old, inputs, False)
                after = pool.submit(_decide_all, new, inputs, True)
                out[name] = (inputs, before.result(), after.result())
            finally:
                old.close()
                new.close()
    return out


def _all(decided: dict[str, tuple[list[Input], list[Any], list[Any]]]) -> Iterator[Any]:
    for _, _, after in decided.values():
        yield from after


@pytest.mark.parametrize("config", list(CONFIGS))
def test_old_and_new_libraries_decide_alike(
    decided: dict[str, tuple[list[Input], list[Any], list[Any]]], config: str,
) -> None:
    inputs, before, after = decided[config]
    assert len(inputs) == len(before) == len(after) == PER_CONFIG
    differ = [n for n, (a, b) in enumerate(zip(before, after, strict=True)) if a != b]
    if differ:
        n = differ[0]
        pytest.fail(f"{len(differ)} of {len(inputs)} decisions differ under {config!r}; "
                    f"first:\ninput {json.dumps(inputs[n])}\nbefore {before[n]}\n"
                    f"after  {after[n]}")


def test_the_set_is_large_and_every_rule_fires_and_does_not(
    decided: dict[str, tuple[list[Input], list[Any], list[Any]]],
) -> None:
    docs = list(_all(decided))
    assert len(docs) >= 10_000
    assert not [d for d in docs if not isinstance(d, dict)], "an input failed to evaluate"
    fired = Counter(r for d in docs for r in {x["rule"] for x in d["deny"]})
    assert set(fired) >= RULES, f"never fired: {sorted(RULES - set(fired))}"
    assert not [r for r in RULES if fired[r] == len(docs)], "a rule fired on every input"
    assert {r for r in fired if fired[r] < 5} == set(), fired
    allowed = sum(1 for d in docs if d["allow"])
    assert 0.1 * len(docs) < allowed < 0.9 * len(docs), allowed


def test_the_set_reaches_every_warning_bound_execution_and_mode(
    decided: dict[str, tuple[list[Input], list[Any], list[Any]]],
) -> None:
    docs = list(_all(decided))
    warned = {k for k, frag in WARNINGS.items()
              if any(frag in w for d in docs for w in d["warnings"])}
    assert warned == set(WARNINGS)
    bounds = [d["bounds"] for d in docs if "bounds" in d]
    reqs = {r for b in bounds for ct in b.get("containers", {}).values() for r in ct["requests"]}
    assert reqs == {"cpu", "memory"}
    assert any("replicas" in b for b in bounds) and any("hpa" in b for b in bounds)
    assert any(len(b.get("containers", {})) > 1 for b in bounds)  # two containers clamped
    execution = {k for d in docs for k in d.get("execution", {})}
    assert execution == {"liveMigration", "nodeConsolidation"}
    assert {"audit", "gitops", "direct"} <= {d["mode"] for d in docs}


def test_the_generator_is_deterministic() -> None:
    assert generate(200, SEED) == generate(200, SEED)
    assert generate(200, SEED) != generate(200, SEED + 1)
