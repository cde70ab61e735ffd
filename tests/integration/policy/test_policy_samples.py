"""The shared sample inputs are what the pipeline really sends to the policies.

rego-tests/data/samples.json feeds the Rego tests (data.samples) and the Python tests.
Cases covered:
- each sample equals what the pipeline's own input builder (policy_input.build) makes
  from the sample's recommendation, target, cluster facts, history and time, so when the
  builder changes the input shape this fails and the samples (and the policies reading
  them) must follow;
- every sample carries each top-level key of the documented contract;
- the default library allows every unmodified sample (they are the "allow side" the Rego
  tests patch one field at a time to reach each deny);
- the library says how an allowed change is carried out: the LiveMigration sample's
  decision carries the shipped live-migration settings (no fallback, the webhook keeps the
  values), the node group's says mark, a Rightsizing's says nothing;
- a node group's minimum size read from its MachineDeployment's autoscaler annotation
  reaches the library's NodeGroupMinSize rule through the input builder.
"""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.adapters.opa import embedded
from reconciler.domain import decision, policy_input, validation
from tests import samples

CONTRACT_KEYS = {"recommendation", "target", "normalized", "cluster", "history", "now"}


@pytest.mark.parametrize("name", sorted(samples.load()))
def test_sample_is_what_the_pipeline_builds(name: str) -> None:
    s = samples.sample(name)
    rec = validation.parse(s["recommendation"])
    built = policy_input.build(rec, s["target"], now=s["now"], cluster=s["cluster"],
                               history=s["history"],
                               operator=policy_input.Operator(
                                   namespace=s["cluster"]["operatorNamespace"],
                                   mode=s["cluster"]["operatorMode"],
                                   checkpoint_restore=s["cluster"]["checkpointRestore"]))
    assert built == s


@pytest.mark.parametrize("name", sorted(samples.load()))
def test_sample_has_the_contract_keys(name: str) -> None:
    s = samples.sample(name)
    assert set(s) == CONTRACT_KEYS
    assert {"operatorNamespace", "operatorMode", "hpa", "pdbs", "gitops", "nodes",
            "nodeGroup"} <= set(
        s["cluster"])


def test_default_library_allows_every_sample() -> None:
    eng = embedded.EmbeddedEngine(samples.POLICIES, samples.DATA_FILES)
    for name, s in samples.load().items():
        d = eng.decide(s)
        assert d.allow, (name, d.reasons)
    eng.close()


def test_default_library_says_how_to_carry_out() -> None:
    eng = embedded.EmbeddedEngine(samples.POLICIES, samples.DATA_FILES)
    try:
        live = eng.decide(samples.sample("live_migration"))
        assert live.live == decision.LivePolicy() and not live.node_consolidation
        assert eng.decide(samples.sample("nodegroup")).node_consolidation == "mark"
        plain = eng.decide(samples.sample("rightsizing"))
        assert plain.live is None and not plain.node_consolidation
    finally:
        eng.close()


def _node_group_rec() -> Any:
    return validation.parse({
        "apiVersion": "dakr.devzero.io/v1alpha1", "kind": "NodeGroupRecommendation",
        "spec": {"recommendationId": "ng-1", "nodeGroup": "pool", "action": "consolidate",
                 "currentNodeCount": 3, "targetNodeCount": 2}})


def _md(replicas: int, annotations: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "cluster.x-k8s.io/v1beta1", "kind": "MachineDeployment",
            "metadata": {"name": "pool", "annotations": annotations},
            "spec": {"replicas": replicas}}


def test_node_group_min_size_is_enforced_by_the_default_policy() -> None:
    """The annotation reaches the library's NodeGroupMinSize rule (real embedded OPA)."""
    engine = embedded.EmbeddedEngine(samples.POLICIES, samples.DATA_FILES, reload_interval=-1)
    try:
        min_size = policy_input.MIN_SIZE_ANNOTATION
        now = "2026-11-24T10:00:00Z"
        below = engine.decide(policy_input.build(
            _node_group_rec(), _md(3, {min_size: "3"}), now=now))
        within = engine.decide(policy_input.build(
            _node_group_rec(), _md(3, {min_size: "2"}), now=now))
    finally:
        engine.close()
    assert "NodeGroupMinSize" in {d.rule for d in below.deny}
    assert "NodeGroupMinSize" not in {d.rule for d in within.deny}
