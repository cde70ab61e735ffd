"""Both policy engines give the same answers on the default library.

Cases covered (each runs through the embedded engine AND the sidecar client against the
Data API server on loopback):
- the decision table: every default rule's allow and deny side that a pipeline input
  can reach (scope, guardrails and clamping bounds, timing, approval routing, GitOps
  routing, replicas and HPA, node consolidation, input validation);
- decide_many returns the same decisions as decide, in order (batch entry point), and
  an input whose evaluation fails denies only itself;
- the sidecar records OPA's decision_id; the embedded engine mints one per decision
  (the same input again reuses the cached decision and its id);
- the sidecar reuses one keep-alive connection and sends the bearer token.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from reconciler.adapters.opa import embedded as opa_embedded
from reconciler.adapters.opa import engine as opa
from reconciler.adapters.opa import sidecar as opa_sidecar
from reconciler.domain import decision
from tests import samples
from tests.fakes.opaserver import OpaServer

MI = 1048576
SERVER = "/normalized/containers/server"

# name, sample, patches, expected allow, expected deny rules, expected mode (None: any)
TABLE: list[tuple[str, str, dict[str, Any], bool, set[str], str | None]] = [
    ("rightsizing allowed", "rightsizing", {}, True, set(), "gitops"),
    ("kube-system out of scope", "rightsizing",
     {"/recommendation/metadata/namespace": "kube-system"}, False, {"OutOfScope"}, None),
    ("operator namespace out of scope", "rightsizing",
     {"/recommendation/metadata/namespace": "dakr-operator"}, False, {"OutOfScope"}, None),
    ("exclude label", "rightsizing",
     {"/target/metadata/labels/dakr.devzero.io~1exclude": "true"}, False, {"OutOfScope"}, None),
    ("kind not in scope", "rightsizing",
     {"/recommendation/spec/targetRef/kind": "CronJob"}, False, {"OutOfScope"}, None),
    ("payments rule requires review", "rightsizing",
     {"/recommendation/metadata/namespace": "payments"}, True, set(), "gitops"),
    ("low confidence", "rightsizing",
     {"/recommendation/spec/confidence": 0.5}, False, {"MinimumConfidence"}, None),
    ("cooldown", "rightsizing",
     {"/history/lastApplied": {"recommendationId": "rec-0", "at": "2026-11-24T09:30:00Z"}},
     False, {"Cooldown"}, None),
    ("cooldown over", "rightsizing",
     {"/history/lastApplied": {"recommendationId": "rec-0", "at": "2026-11-24T08:00:00Z"}},
     True, set(), "gitops"),
    ("argocd label routes to gitops", "rightsizing",
     {"/target/metadata/labels/argocd.argoproj.io~1instance": "shop"}, True, set(), "gitops"),
    ("flux from cluster facts routes to gitops", "rightsizing",
     {"/cluster/gitops/tool": "flux"}, True, set(), "gitops"),
    ("autoApply false routes to gitops", "rightsizing",
     {"/recommendation/spec/autoApply": False}, True, set(), "gitops"),
    ("request above limit", "rightsizing",
     {SERVER + "/proposed/requests/cpu": 0.35, SERVER + "/proposed/limits/cpu": 0.3},
     False, {"RequestAboveLimit"}, None),
    ("memory limit decrease", "rightsizing",
     {SERVER + "/proposed/limits/memory": 192 * MI}, False, {"MemoryLimitDecrease"}, None),
    ("limit removal", "rightsizing",
     {SERVER + "/proposed/limits/cpu": None}, False, {"LimitRemoval"}, None),
    ("change too small", "rightsizing",
     {SERVER + "/proposed/requests/cpu": 0.199, SERVER + "/proposed/requests/memory": 128 * MI},
     False, {"MinimumChange"}, None),
    ("container the target lacks", "rightsizing",
     {SERVER + "/found": False}, False, {"UnknownContainer"}, None),
    ("replicas up", "replica_scaling", {}, True, set(), "gitops"),
    ("replicas below minimum", "replica_scaling",
     {"/normalized/replicas/proposed": 0, "/recommendation/spec/replicas": 0},
     False, {"MinReplicas"}, None),
    ("HPA owns replicas", "replica_scaling",
     {"/cluster/hpa": {"metadata": {"name": "frontend"}, "spec": {"minReplicas": 2}}},
     False, {"HPAOwnsReplicas"}, None),
    ("HPA bounds allowed", "hpa_scaling", {}, True, set(), "gitops"),
    ("HPA min above max", "hpa_scaling",
     {"/recommendation/spec/hpa/minReplicas": 7, "/recommendation/spec/hpa/maxReplicas": 6},
     False, {"InvalidHPA"}, None),
    ("HPA bounds without an HPA", "hpa_scaling", {"/cluster/hpa": None}, False, {"NoHPA"}, None),
    ("node consolidation allowed", "nodegroup", {}, True, set(), None),
    ("do-not-disrupt pod", "nodegroup",
     {"/cluster/nodes/1/pods/0/annotations": {"karpenter.sh/do-not-disrupt": "true"}},
     False, {"DoNotDisrupt"}, None),
    ("PDB allows no disruption", "nodegroup",
     {"/cluster/nodes/0/pods/0/pdbDisruptionsAllowed": 0}, False, {"PDBBlocksDrain"}, None),
    ("too many nodes at once", "nodegroup",
     {"/recommendation/spec/nodesToRemove": ["node-a", "node-b", "node-c"],
      "/cluster/nodes/2": {"name": "node-c", "labels": {}, "pods": []}},
     False, {"MaxNodesConsolidated"}, None),
    ("below node-group minimum", "nodegroup",
     {"/recommendation/spec/targetNodeCount": 1}, False, {"NodeGroupMinSize"}, None),
    ("node without facts", "nodegroup",
     {"/recommendation/spec/nodesToRemove": ["node-a", "node-z"]},
     False, {"NodeFactsMissing"}, None),
    ("now is not RFC 3339", "rightsizing", {"/now": "yesterday"}, False, {"InvalidInput"}, None),
    ("unknown recommendation kind", "rightsizing",
     {"/recommendation/kind": "Something"}, False, {"InvalidInput"}, None),
]


def _patched(sample: str, patches: dict[str, Any]) -> dict[str, Any]:
    doc = samples.sample(sample)
    if "/cluster/nodes/2" in patches:  # appending needs the list to grow first
        doc["cluster"]["nodes"].append({})
    for pointer, value in patches.items():
        samples.set_pointer(doc, pointer, value)
    return doc


@pytest.fixture(scope="module")
def server() -> Iterator[OpaServer]:
    with OpaServer(samples.POLICIES, samples.DATA_FILES, token="s3cret") as srv:
        yield srv


@pytest.fixture(scope="module")
def embedded() -> Iterator[opa_embedded.EmbeddedEngine]:
    eng = opa_embedded.EmbeddedEngine(samples.POLICIES, samples.DATA_FILES)
    assert eng.last_error is None
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def sidecar(server: OpaServer) -> Iterator[opa_sidecar.SidecarEngine]:
    eng = opa_sidecar.SidecarEngine(server.url, timeout=5.0, token="s3cret")
    yield eng
    eng.close()


@pytest.fixture(params=["embedded", "sidecar"])
def engine(request: pytest.FixtureRequest) -> opa.PolicyEngine:
    eng: opa.PolicyEngine = request.getfixturevalue(request.param)
    return eng


@pytest.mark.parametrize(
    ("sample", "patches", "allow", "rules", "mode"),
    [pytest.param(*row[1:], id=row[0]) for row in TABLE],
)
def test_decision_table(
    engine: opa.PolicyEngine,
    sample: str,
    patches: dict[str, Any],
    allow: bool,
    rules: set[str],
    mode: str | None,
) -> None:
    d = engine.decide(_patched(sample, patches))
    assert {x.rule for x in d.deny} == rules, d.reasons
    assert d.allow is allow
    if mode is not None:
        assert d.mode == mode


def test_clamped_request_comes_back_as_bounds(engine: opa.PolicyEngine) -> None:
    # 200m -> 50m is a 75 % cut; the balanced profile allows 50 % per step -> 100m.
    d = engine.decide(_patched("rightsizing", {SERVER + "/proposed/requests/cpu": 0.05}))
    assert d.allow
    assert d.bounds == {"containers": {"server": {"requests": {"cpu": 0.1}}}}
    assert any("clamped from 50m to 100m" in w for w in d.warnings)


def test_replica_step_is_clamped(engine: opa.PolicyEngine) -> None:
    d = engine.decide(_patched("replica_scaling", {"/normalized/replicas/proposed": 12,
                                                   "/recommendation/spec/replicas": 12}))
    assert d.allow
    assert d.bounds == {"replicas": 7}  # current 2 + at most 5 per step


def test_both_engines_agree_on_the_whole_document(
    embedded: opa_embedded.EmbeddedEngine, sidecar: opa_sidecar.SidecarEngine
) -> None:
    for row in TABLE:
        inp = _patched(row[1], row[2])
        a = embedded.decide(inp).to_dict()
        b = sidecar.decide(inp).to_dict()
        a.pop("decision_id")
        b.pop("decision_id")
        assert a == b, row[0]


def test_decide_many_matches_decide_in_order(engine: opa.PolicyEngine) -> None:
    inputs = [_patched(row[1], row[2]) for row in TABLE]
    many = engine.decide_many(inputs)
    assert len(many) == len(inputs)
    for inp, got in zip(inputs, many, strict=True):
        one = engine.decide(inp)
        assert (got.allow, got.mode, got.deny, got.warnings, got.bounds) == (
            one.allow, one.mode, one.deny, one.warnings, one.bounds)
    assert engine.decide_many([]) == []


def test_sidecar_records_opa_decision_id(server: OpaServer,
                                         sidecar: opa_sidecar.SidecarEngine) -> None:
    d = sidecar.decide(samples.sample("rightsizing"))
    assert d.decision_id
    assert d.decision_id == server.seen.decision_ids[-1]


def test_embedded_engine_mints_a_decision_id(embedded: opa_embedded.EmbeddedEngine) -> None:
    a = embedded.decide(samples.sample("rightsizing"))
    b = embedded.decide(samples.sample("replica_scaling"))
    assert a.decision_id and b.decision_id and a.decision_id != b.decision_id
    # the same question again is the same decision (the decision cache), id included
    assert embedded.decide(samples.sample("rightsizing")).decision_id == a.decision_id


def test_sidecar_keeps_one_connection_and_sends_token(tmp_path: Any) -> None:
    with OpaServer(samples.POLICIES, samples.DATA_FILES, token="t0k") as srv:
        eng = opa_sidecar.SidecarEngine(srv.url, token="t0k")
        for _ in range(5):
            assert eng.decide(samples.sample("rightsizing")).allow
        eng.close()
        assert srv.seen.connections == 1
        posts = [r for r in srv.seen.requests if r[0] == "POST"]
        assert len(posts) == 5
        assert all(r[1] == "/v1/data/dakr/decision" for r in posts)
        assert all(r[2].get("Authorization") == "Bearer t0k" for r in posts)
        assert posts[0][3] == {"input": samples.sample("rightsizing")}


def test_unavailable_is_the_only_allowless_shape() -> None:
    # Guard on the contract the tables rely on: the fail-closed answer is a deny.
    d = decision.unavailable("x")
    assert not d.allow and d.deny[0].rule == decision.POLICY_UNAVAILABLE


def test_one_failing_input_does_not_deny_its_neighbours(engine: opa.PolicyEngine) -> None:
    good = samples.sample("rightsizing")
    bad = samples.sample("rightsizing", {"/now": 5})  # regex.match on a number: eval error
    got = engine.decide_many([good, bad, good])
    assert [d.allow for d in got] == [True, False, True]
    assert got[1].deny[0].rule == decision.POLICY_UNAVAILABLE
