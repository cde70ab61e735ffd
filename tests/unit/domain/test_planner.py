"""The planner: recommendation + decision + target -> edits (``reconciler.core.planner``).

Cases covered:
- table of container proposals against a target Deployment: only changed values are edits;
  equal values in another form (``0.2`` vs ``200m``, ``0.0625Gi`` vs ``64Mi``, YAML ints
  and floats on either side) give no edit; fields the recommendation leaves out are not
  touched; a key missing on the target gives ``old=None``; several containers;
- bounds from the decision override the proposal: a number is cores for CPU and bytes for
  memory; ``{min, max}`` quantities clamp; a bound equal to the current value gives no
  edit; bounds of another container or booleans do not apply; ``{"replicas": 3}`` and
  ``{"replicas": {min, max}}``;
- refusals: a request above an existing limit, a limit below an existing request, a bound
  that pushes a request above a limit -> ``errors.PermanentError``; a container missing on
  the target -> ``errors.NotFoundError`` naming the containers it has; target ``None`` ->
  ``NotFoundError``; a node group recommendation -> ``PermanentError``;
- replicas: the key absent on the Deployment means 1 (setting 1 is no edit, setting 3 is
  ``(None, 3)``); equal is no edit; scaling to 0;
- ``previous()`` holds the old values (``None`` for keys that did not exist) and
  ``container_changes()`` has the ``{container: {requests, limits}}`` shape;
- ``containers_of`` / ``current_resources`` read a Pod as well as a pod template.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from reconciler.domain import decision, errors, model, planner, validation

ALLOW = decision.Decision(allow=True, mode="gitops")

TARGET: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "cartservice", "namespace": "default"},
    "spec": {
        "replicas": 2,
        "template": {
            "spec": {
                "containers": [
                    {
                        "name": "server",
                        "image": "cartservice:v1",
                        "resources": {
                            "requests": {"cpu": "200m", "memory": "64Mi"},
                            "limits": {"cpu": "500m", "memory": "256Mi"},
                        },
                    },
                    {"name": "sidecar", "resources": {"requests": {"cpu": 0.05}}},
                    {"name": "bare"},
                ]
            }
        },
    },
}


def _rec(containers: list[dict[str, Any]] | None = None, *, action: str = "Rightsizing",
         replicas: int | None = None) -> model.WorkloadRecommendation:
    spec: dict[str, Any] = {
        "recommendationId": "rec-0001",
        "action": action,
        "targetRef": {"kind": "Deployment", "name": "cartservice"},
    }
    if containers is not None:
        spec["containers"] = containers
    if replicas is not None:
        spec["replicas"] = replicas
    rec = validation.parse({"apiVersion": "dakr.devzero.io/v1alpha1",
                            "kind": "WorkloadRecommendation",
                            "metadata": {"namespace": "default"}, "spec": spec})
    assert isinstance(rec, model.WorkloadRecommendation)
    return rec


def _c(name: str, requests: dict[str, Any] | None = None,
       limits: dict[str, Any] | None = None) -> dict[str, Any]:
    res: dict[str, Any] = {}
    if requests is not None:
        res["requests"] = requests
    if limits is not None:
        res["limits"] = limits
    return {"name": name, "resources": res}


def _target(**container_resources: dict[str, Any]) -> dict[str, Any]:
    """TARGET with some containers' ``resources`` replaced."""
    t = copy.deepcopy(TARGET)
    for c in t["spec"]["template"]["spec"]["containers"]:
        if c["name"] in container_resources:
            c["resources"] = container_resources[c["name"]]
    return t


def _edits(p: planner.Plan) -> list[tuple[str, str, str, str | None, str]]:
    return [(e.container, e.section, e.resource, e.old, e.new) for e in p.resources]


@pytest.mark.parametrize(
    ("containers", "target", "expected"),
    [
        pytest.param([_c("server", {"cpu": "100m"})], TARGET,
                      [("server", "requests", "cpu", "200m", "100m")], id="lower-cpu-request"),
        pytest.param([_c("server", {"cpu": "0.2"})], TARGET, [], id="equal-other-form"),
        pytest.param([_c("server", {"cpu": 0.2})], TARGET, [], id="equal-yaml-float"),
        pytest.param([_c("server", {"memory": "0.0625Gi"})], TARGET, [],
                     id="equal-memory-other-form"),
        pytest.param([_c("server", {"cpu": "200m", "memory": "64Mi"},
                         {"cpu": "500m", "memory": "256Mi"})], TARGET, [], id="all-equal"),
        pytest.param([_c("server", limits={"memory": "128Mi"})], TARGET,
                     [("server", "limits", "memory", "256Mi", "128Mi")], id="limit-only"),
        pytest.param([_c("server", {"cpu": "150m"}, {"cpu": "1"})], TARGET,
                     [("server", "requests", "cpu", "200m", "150m"),
                      ("server", "limits", "cpu", "500m", "1")], id="request-and-limit"),
        pytest.param([_c("server", {"ephemeral-storage": "1Gi"})], TARGET,
                     [("server", "requests", "ephemeral-storage", None, "1Gi")],
                     id="missing-key-old-none"),
        pytest.param([_c("bare", {"cpu": "100m", "memory": "1.5Gi"})], TARGET,
                     [("bare", "requests", "cpu", None, "100m"),
                      ("bare", "requests", "memory", None, "1536Mi")],
                     id="no-resources-on-target"),
        pytest.param([_c("sidecar", {"cpu": "50m"})], TARGET, [],
                     id="target-yaml-float-equal"),
        pytest.param([_c("sidecar", {"cpu": "25m"}), _c("server", {"memory": "96Mi"})], TARGET,
                     [("sidecar", "requests", "cpu", "0.05", "25m"),
                      ("server", "requests", "memory", "64Mi", "96Mi")],
                     id="two-containers-in-rec-order"),
        pytest.param([_c("server", {"cpu": "1"})],
                     _target(server={"requests": {"cpu": 1}, "limits": {"cpu": 2}}), [],
                     id="target-yaml-int-equal"),
        pytest.param([_c("server", {"cpu": 2})],
                     _target(server={"requests": {"cpu": 1}, "limits": {"cpu": 2}}),
                     [("server", "requests", "cpu", "1", "2")], id="raise-to-limit"),
    ],
)
def test_container_edits(containers: list[dict[str, Any]], target: dict[str, Any],
                         expected: list[tuple[str, str, str, str | None, str]]) -> None:
    before = copy.deepcopy(target)
    p = planner.plan(_rec(containers), ALLOW, target)
    assert _edits(p) == expected
    assert p.empty == (not expected)
    assert p.replicas is None
    assert target == before, "the planner must not mutate the observed object"


def test_absent_fields_untouched() -> None:
    p = planner.plan(_rec([_c("server", {"cpu": "100m"})]), ALLOW, TARGET)
    changes = p.container_changes()
    assert changes == {"server": {"requests": {"cpu": "100m"}, "limits": {}}}
    assert "sidecar" not in changes


def test_plan_identity_fields() -> None:
    p = planner.plan(_rec([_c("server", {"cpu": "100m"})]), ALLOW, TARGET)
    assert (p.rec_id, p.kind, p.namespace, p.name) == (
        "rec-0001", "Deployment", "default", "cartservice")


def _bounds(**b: Any) -> decision.Decision:
    return decision.Decision(allow=True, mode="gitops", bounds=b)


@pytest.mark.parametrize(
    ("containers", "bounds", "expected"),
    [
        pytest.param([_c("server", {"cpu": "100m"})],
                     {"containers": {"server": {"requests": {"cpu": 0.15}}}},
                     [("server", "requests", "cpu", "200m", "150m")], id="cpu-cores"),
        pytest.param([_c("server", {"cpu": "100m"}, {"cpu": "2"})],
                     {"containers": {"server": {"requests": {"cpu": 1}}}},
                     [("server", "requests", "cpu", "200m", "1"),
                      ("server", "limits", "cpu", "500m", "2")], id="cpu-int-cores"),
        pytest.param([_c("server", {"memory": "32Mi"})],
                     {"containers": {"server": {"requests": {"memory": 100 * 2**20}}}},
                     [("server", "requests", "memory", "64Mi", "100Mi")], id="memory-bytes"),
        pytest.param([_c("server", {"memory": "32Mi"})],
                     {"containers": {"server": {"requests": {"memory": 149999999.5}}}},
                     [("server", "requests", "memory", "64Mi", "150M")],
                     id="memory-float-bytes-rounded-up"),
        pytest.param([_c("server", {"cpu": "100m"})],
                     {"containers": {"server": {"requests": {"cpu": 0.2}}}}, [],
                     id="bound-equals-current"),
        pytest.param([_c("server", {"cpu": "100m"})],
                     {"containers": {"server": {"requests": {"cpu": {"min": "150m"}}}}},
                     [("server", "requests", "cpu", "200m", "150m")], id="clamp-min"),
        pytest.param([_c("server", limits={"cpu": "2"})],
                     {"containers": {"server": {"limits": {"cpu": {"max": "1"}}}}},
                     [("server", "limits", "cpu", "500m", "1")], id="clamp-max"),
        pytest.param([_c("server", {"cpu": "100m"})],
                     {"containers": {"server": {"requests": {"cpu": {"min": "50m",
                                                                     "max": "150m"}}}}},
                     [("server", "requests", "cpu", "200m", "100m")], id="within-min-max"),
        pytest.param([_c("server", {"cpu": "100m"})],
                     {"containers": {"sidecar": {"requests": {"cpu": 0.3}}}},
                     [("server", "requests", "cpu", "200m", "100m")],
                     id="other-container-bound"),
        pytest.param([_c("server", {"cpu": "100m"})],
                     {"containers": {"server": {"limits": {"cpu": 0.3}}}},
                     [("server", "requests", "cpu", "200m", "100m")],
                     id="other-section-bound"),
        pytest.param([_c("server", {"cpu": "100m"})],
                     {"containers": {"server": {"requests": {"cpu": True}}}},
                     [("server", "requests", "cpu", "200m", "100m")], id="bool-bound-ignored"),
    ],
)
def test_bounds(containers: list[dict[str, Any]], bounds: dict[str, Any],
                expected: list[tuple[str, str, str, str | None, str]]) -> None:
    p = planner.plan(_rec(containers), _bounds(**bounds), TARGET)
    assert _edits(p) == expected


@pytest.mark.parametrize(
    ("rec_replicas", "bounds", "target_replicas", "expected"),
    [
        pytest.param(5, {}, 2, (2, 5), id="scale-up"),
        pytest.param(2, {}, 2, None, id="equal"),
        pytest.param(0, {}, 2, (2, 0), id="to-zero"),
        pytest.param(3, {}, None, (None, 3), id="absent-key-defaults-to-1"),
        pytest.param(1, {}, None, None, id="absent-key-set-1-no-edit"),
        pytest.param(0, {}, None, (None, 0), id="absent-key-to-zero"),
        pytest.param(5, {"replicas": 3}, 2, (2, 3), id="bound-number-overrides"),
        pytest.param(5, {"replicas": 2}, 2, None, id="bound-equals-current"),
        pytest.param(10, {"replicas": {"min": 2, "max": 4}}, 2, (2, 4), id="bound-max"),
        pytest.param(1, {"replicas": {"min": 3}}, 2, (2, 3), id="bound-min"),
        pytest.param(3, {"replicas": True}, 2, (2, 3), id="bool-bound-ignored"),
    ],
)
def test_replicas(rec_replicas: int, bounds: dict[str, Any], target_replicas: int | None,
                  expected: tuple[int | None, int] | None) -> None:
    target = copy.deepcopy(TARGET)
    if target_replicas is None:
        del target["spec"]["replicas"]
    else:
        target["spec"]["replicas"] = target_replicas
    rec = _rec(action="ReplicaScaling", replicas=rec_replicas)
    p = planner.plan(rec, _bounds(**bounds), target)
    assert p.replicas == expected
    assert p.resources == ()
    assert p.empty == (expected is None)


@pytest.mark.parametrize(
    ("containers", "bounds", "target", "needles"),
    [
        pytest.param([_c("server", {"cpu": "600m"})], {}, TARGET,
                     ["'server'", "requests.cpu 600m", "limits.cpu 500m"],
                     id="request-above-existing-limit"),
        pytest.param([_c("server", limits={"memory": "32Mi"})], {}, TARGET,
                     ["requests.memory 64Mi", "limits.memory 32Mi"],
                     id="limit-below-existing-request"),
        pytest.param([_c("server", {"cpu": "1"}, {"cpu": "1"})],
                     {"containers": {"server": {"requests": {"cpu": 2}}}}, TARGET,
                     ["requests.cpu 2", "limits.cpu 1"], id="bound-pushes-above-limit"),
        pytest.param([_c("server", {"cpu": "100m"})], {},
                     _target(server={"requests": {"cpu": "200m"}, "limits": {"cpu": "lots"}}),
                     ["invalid cpu value"], id="target-holds-garbage"),
    ],
)
def test_refused_as_permanent(containers: list[dict[str, Any]], bounds: dict[str, Any],
                              target: dict[str, Any], needles: list[str]) -> None:
    with pytest.raises(errors.PermanentError) as exc:
        planner.plan(_rec(containers), _bounds(**bounds), target)
    assert not isinstance(exc.value, errors.NotFoundError)
    for needle in needles:
        assert needle in str(exc.value)


def test_missing_container_is_not_found() -> None:
    with pytest.raises(errors.NotFoundError) as exc:
        planner.plan(_rec([_c("web", {"cpu": "100m"})]), ALLOW, TARGET)
    msg = str(exc.value)
    assert "'web'" in msg
    assert "Deployment/cartservice" in msg
    assert "has: bare, server, sidecar" in msg


def test_missing_target_is_not_found() -> None:
    with pytest.raises(errors.NotFoundError) as exc:
        planner.plan(_rec([_c("server", {"cpu": "100m"})]), ALLOW, None)
    assert "Deployment/cartservice" in str(exc.value)
    assert "default" in str(exc.value)


def test_node_group_is_not_planned_here() -> None:
    ng = validation.parse({
        "apiVersion": "dakr.devzero.io/v1alpha1", "kind": "NodeGroupRecommendation",
        "spec": {"recommendationId": "ng-1", "nodeGroup": "pool", "action": "scale",
                 "targetNodeCount": 3},
    })
    with pytest.raises(errors.PermanentError):
        planner.plan(ng, ALLOW, TARGET)


def test_previous_and_container_changes() -> None:
    rec = _rec([_c("server", {"cpu": "100m", "ephemeral-storage": "1Gi"},
                   {"memory": "128Mi"}),
                _c("sidecar", {"cpu": "50m"})], replicas=4)
    p = planner.plan(rec, ALLOW, TARGET)
    assert p.previous() == {
        "containers": {"server": {"requests": {"cpu": "200m", "ephemeral-storage": None},
                                  "limits": {"memory": "256Mi"}}},
        "replicas": 2,
    }
    assert p.container_changes() == {
        "server": {"requests": {"cpu": "100m", "ephemeral-storage": "1Gi"},
                   "limits": {"memory": "128Mi"}},
    }


def test_previous_of_replicas_absent_key_is_none() -> None:
    target = copy.deepcopy(TARGET)
    del target["spec"]["replicas"]
    p = planner.plan(_rec(action="ReplicaScaling", replicas=3), ALLOW, target)
    assert p.previous() == {"replicas": None}
    assert p.container_changes() == {}


def test_empty_plan_has_empty_previous() -> None:
    p = planner.plan(_rec([_c("server", {"cpu": "0.2"})]), ALLOW, TARGET)
    assert p.empty
    assert p.previous() == {}
    assert p.container_changes() == {}


def test_current_resources_of_a_pod() -> None:
    pod = {"kind": "Pod", "spec": {"containers": [
        {"name": "app", "resources": {"requests": {"cpu": 1, "memory": "1Gi"}}},
        "not-a-container",
    ]}}
    assert planner.current_resources(pod) == {
        "app": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {}}}
    assert [c["name"] for c in planner.containers_of(pod)] == ["app"]
    assert planner.containers_of({"spec": {}}) == []


@pytest.mark.parametrize(("observed", "expected"), [
    ({"spec": {"replicas": 5}}, (5, 3)),
    ({"spec": {"replicas": 3}}, None),     # already there: no edit
    (None, (None, 3)),                     # unknown size: set it, nothing to restore
    ({"spec": {"replicas": True}}, (None, 3)),
])
def test_plan_node_group(observed: dict[str, Any] | None,
                         expected: tuple[int | None, int] | None) -> None:
    rec = model.NodeGroupRecommendation(recommendationId="ng", name="ng", nodeGroup="pool",
                                        action="scale", targetNodeCount=3)
    p = planner.plan_node_group(rec, observed)
    assert p.replicas == expected
    assert p.empty == (expected is None)
    assert (p.kind, p.name) == (model.NODE_GROUP, "pool")
