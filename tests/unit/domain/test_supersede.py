"""Field-level supersede (reconciler.domain.supersede), table tests.

Cases:
- fields(): container requests/limits per resource, replicas, each HPA bound, a node group
  as one field;
- resolve(): different fields (rightsizing + replicas) -> nobody superseded; the same
  fields -> the older superseded by the newer; a partial overlap -> the older keeps the
  rest (overridden lists what it lost); several newer ones together cover an older one;
  different containers do not compete; node groups: the newer wins;
- without(): drops the overridden requests/limits, empty containers, replicas, HPA bounds,
  and leaves the rest as it was.
"""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.domain import model, supersede, validation


def rec(rid: str, containers: list[dict[str, Any]] | None = None, *,
        replicas: int | None = None, hpa: dict[str, int] | None = None,
        target: str = "web") -> model.Recommendation:
    spec: dict[str, Any] = {"recommendationId": rid,
                            "action": "Rightsizing" if containers else "ReplicaScaling",
                            "targetRef": {"kind": "Deployment", "name": target}}
    if containers is not None:
        spec["containers"] = containers
    if replicas is not None:
        spec["replicas"] = replicas
    if hpa is not None:
        spec["hpa"] = hpa
    return validation.parse({"apiVersion": model.API_VERSION, "kind": model.WORKLOAD,
                             "metadata": {"namespace": "shop"}, "spec": spec})


def res(name: str, requests: dict[str, str] | None = None,
        limits: dict[str, str] | None = None) -> dict[str, Any]:
    r: dict[str, Any] = {}
    if requests:
        r["requests"] = requests
    if limits:
        r["limits"] = limits
    return {"name": name, "resources": r}


def node_group(rid: str) -> model.Recommendation:
    return validation.parse({"apiVersion": model.API_VERSION, "kind": model.NODE_GROUP,
                             "spec": {"recommendationId": rid, "nodeGroup": "pool",
                                      "action": "consolidate", "targetNodeCount": 2}})


def test_fields() -> None:
    r = rec("a", [res("app", {"cpu": "100m", "memory": "64Mi"}, {"cpu": "200m"})],
            replicas=3)
    assert supersede.fields(r) == {
        ("containers", "app", "requests", "cpu"), ("containers", "app", "requests", "memory"),
        ("containers", "app", "limits", "cpu"), ("replicas",)}
    assert supersede.fields(rec("b", hpa={"minReplicas": 2})) == {("hpa", "minReplicas")}
    assert supersede.fields(node_group("n")) == {("nodeGroup",)}
    assert supersede.describe(("containers", "app", "limits", "cpu")) == "app limits.cpu"


CPU = [res("app", {"cpu": "100m"})]
CPU_MEM = [res("app", {"cpu": "100m", "memory": "64Mi"})]
MEM = [res("app", {"memory": "80Mi"})]
OTHER = [res("sidecar", {"cpu": "10m"})]


@pytest.mark.parametrize(("recs", "superseded", "overridden"), [
    # rightsizing + replica change: different fields, both stay whole
    ([rec("a", CPU_MEM), rec("b", replicas=4)], {}, {}),
    # the same fields: the older goes
    ([rec("a", CPU), rec("b", [res("app", {"cpu": "150m"})])], {"a": ("b",)}, {}),
    # partial overlap: the older keeps memory
    ([rec("a", CPU_MEM), rec("b", CPU)], {}, {"a": {("containers", "app", "requests", "cpu")}}),
    # two newer ones together cover the older one
    ([rec("a", CPU_MEM), rec("b", CPU), rec("c", MEM)], {"a": ("b", "c")}, {}),
    # another container does not compete
    ([rec("a", CPU), rec("b", OTHER)], {}, {}),
    # replicas set twice
    ([rec("a", replicas=2), rec("b", replicas=5)], {"a": ("b",)}, {}),
    # one HPA bound each: both kept
    ([rec("a", hpa={"minReplicas": 2}), rec("b", hpa={"maxReplicas": 9})], {}, {}),
    # node groups: the newer wins
    ([node_group("n1"), node_group("n2")], {"n1": ("n2",)}, {}),
    # a single recommendation
    ([rec("a", CPU)], {}, {}),
])
def test_resolve(recs: list[model.Recommendation], superseded: dict[str, tuple[str, ...]],
                 overridden: dict[str, set[supersede.Field]]) -> None:
    got = supersede.resolve(recs)
    assert got.superseded == superseded
    assert {k: set(v) for k, v in got.overridden.items()} == overridden


def test_without_keeps_only_what_is_left() -> None:
    r = rec("a", [res("app", {"cpu": "100m", "memory": "64Mi"}, {"cpu": "200m"}),
                  res("side", {"cpu": "10m"})], replicas=3)
    assert isinstance(r, model.WorkloadRecommendation)
    left = supersede.without(r, frozenset({
        ("containers", "app", "requests", "cpu"), ("containers", "side", "requests", "cpu"),
        ("replicas",)}))
    assert isinstance(left, model.WorkloadRecommendation)
    assert [c.name for c in left.containers] == ["app"]
    assert set(left.containers[0].requests) == {"memory"}
    assert set(left.containers[0].limits) == {"cpu"}
    assert left.replicas is None and left.id == "a"
    h = rec("h", hpa={"minReplicas": 2, "maxReplicas": 6})
    assert isinstance(h, model.WorkloadRecommendation)
    cut = supersede.without(h, frozenset({("hpa", "minReplicas")}))
    assert isinstance(cut, model.WorkloadRecommendation)
    assert cut.hpa == model.HpaBounds(maxReplicas=6)
    gone = supersede.without(h, frozenset({("hpa", "minReplicas"), ("hpa", "maxReplicas")}))
    assert isinstance(gone, model.WorkloadRecommendation) and gone.hpa is None
    assert supersede.without(r, frozenset()) is r
