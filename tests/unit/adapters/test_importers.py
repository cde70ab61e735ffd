"""VPA objects and KRR reports turned into recommendation documents.

Cases:
- VPA: `target` becomes the container requests (limits untouched); the VPA README's
  hamster status converts to a document the validator accepts; several containers;
  unsupported target kinds, VPAs without a recommendation yet and non-VPA documents are
  skipped with a reason; the id is stable for the same status and changes with it;
- KRR: requests and limits from `recommended` (cores to millicores and bytes to MiB, both
  rounded up); a `null` limit ("no limit") and a "?" value (no data) are left out; a limit
  below the request is dropped; containers of one workload are grouped into one
  recommendation; unsupported kinds are skipped; a report without `scans` is refused;
- every produced document passes `validation.parse`;
- `read` unpacks `List` documents and multi-document YAML.
"""

from __future__ import annotations

import copy
import pathlib
from typing import Any

import pytest

from reconciler.adapters import files, importers
from reconciler.domain import errors, validation

HAMSTER = {
    "apiVersion": "autoscaling.k8s.io/v1", "kind": "VerticalPodAutoscaler",
    "metadata": {"name": "hamster-vpa", "namespace": "default"},
    "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "hamster"},
             "updatePolicy": {"updateMode": "Off"}},
    "status": {"recommendation": {"containerRecommendations": [{
        "containerName": "hamster",
        "lowerBound": {"cpu": "25m", "memory": "262144k"},
        "target": {"cpu": "587m", "memory": "262144k"},
        "uncappedTarget": {"cpu": "587m", "memory": "262144k"},
        "upperBound": {"cpu": "21147m", "memory": "387500k"}}]}},
}


def _vpa(**changes: Any) -> dict[str, Any]:
    v = copy.deepcopy(HAMSTER)
    for path, value in changes.items():
        node = v
        keys = path.split("__")
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = value
    return v


@pytest.mark.parametrize(("vpa", "containers"), [
    (HAMSTER, [{"name": "hamster",
                "resources": {"requests": {"cpu": "587m", "memory": "262144k"}}}]),
    (_vpa(status={"recommendation": {"containerRecommendations": [
        {"containerName": "app", "target": {"cpu": "100m"}},
        {"containerName": "sidecar", "target": {"memory": 134217728}}]}}),
     [{"name": "app", "resources": {"requests": {"cpu": "100m"}}},
      {"name": "sidecar", "resources": {"requests": {"memory": "134217728"}}}]),
])
def test_vpa_target_becomes_requests(vpa: dict[str, Any],
                                     containers: list[dict[str, Any]]) -> None:
    result = importers.from_vpa([vpa])
    assert not result.skipped
    (doc,) = result.documents
    assert doc["spec"]["containers"] == containers
    assert doc["spec"]["targetRef"] == {"kind": "Deployment", "name": "hamster"}
    assert doc["metadata"]["namespace"] == "default"
    rec = validation.parse(doc)
    assert rec.id.startswith("vpa-default-hamster-vpa-")


@pytest.mark.parametrize(("doc", "reason"), [
    (_vpa(spec={"targetRef": {"kind": "CronJob", "name": "x"}}), "targets CronJob"),
    (_vpa(status={}), "has no recommendation yet"),
    (_vpa(status={"recommendation": {"containerRecommendations": [
        {"containerName": "app"}]}}), "has no recommendation yet"),
    ({"kind": "Deployment"}, "not a VerticalPodAutoscaler"),
    ("text", "not a VerticalPodAutoscaler"),
])
def test_vpa_skips_with_a_reason(doc: Any, reason: str) -> None:
    result = importers.from_vpa([doc])
    assert not result.documents
    assert len(result.skipped) == 1 and reason in result.skipped[0].reason


def test_vpa_id_is_stable_and_follows_the_content() -> None:
    a = importers.from_vpa([HAMSTER]).documents[0]["spec"]["recommendationId"]
    b = importers.from_vpa([copy.deepcopy(HAMSTER)]).documents[0]["spec"]["recommendationId"]
    changed = _vpa(status={"recommendation": {"containerRecommendations": [
        {"containerName": "hamster", "target": {"cpu": "600m", "memory": "262144k"}}]}})
    c = importers.from_vpa([changed]).documents[0]["spec"]["recommendationId"]
    assert a == b != c


def test_long_names_still_give_a_valid_id() -> None:
    long_name = "x" * 250
    doc = importers.from_vpa([_vpa(metadata={"name": long_name, "namespace": "ns"})]).documents[0]
    rec = validation.parse(doc)
    assert len(rec.id) <= 253


def _scan(kind: str = "Deployment", name: str = "cart", container: str = "server",
          requests: dict[str, Any] | None = None,
          limits: dict[str, Any] | None = None) -> dict[str, Any]:
    def wrap(d: dict[str, Any] | None) -> dict[str, Any]:
        return {k: {"value": v, "severity": "OK"} for k, v in (d or {}).items()}
    return {"object": {"cluster": None, "name": name, "container": container, "pods": [],
                       "hpa": None, "namespace": "shop", "kind": kind,
                       "allocations": {"requests": {}, "limits": {}}},
            "recommended": {"requests": wrap(requests), "limits": wrap(limits),
                            "info": {"cpu": None, "memory": None}},
            "severity": "OK", "metrics": {}}


@pytest.mark.parametrize(("scan", "resources"), [
    (_scan(requests={"cpu": 0.0123, "memory": 104857600.0},
           limits={"cpu": None, "memory": 104857600.0}),
     {"requests": {"cpu": "13m", "memory": "100Mi"}, "limits": {"memory": "100Mi"}}),
    (_scan(requests={"cpu": 2.0, "memory": 1.5 * 2**30}, limits={"cpu": "?", "memory": "?"}),
     {"requests": {"cpu": "2000m", "memory": "1536Mi"}}),
    (_scan(requests={"cpu": 0.0001, "memory": 1000.0}),
     {"requests": {"cpu": "1m", "memory": "1Mi"}}),
    (_scan(requests={"cpu": 0.5}, limits={"cpu": 0.25}),  # a limit below the request: dropped
     {"requests": {"cpu": "500m"}}),
    (_scan(requests={"cpu": "?", "memory": 268435456.0}, limits={"memory": 536870912.0}),
     {"requests": {"memory": "256Mi"}, "limits": {"memory": "512Mi"}}),
])
def test_krr_values(scan: dict[str, Any], resources: dict[str, Any]) -> None:
    result = importers.from_krr({"scans": [scan]})
    (doc,) = result.documents
    assert doc["spec"]["containers"] == [{"name": "server", "resources": resources}]
    assert doc["spec"]["source"] == "krr"
    validation.parse(doc)


def test_krr_groups_containers_and_skips_what_it_cannot_use() -> None:
    report = {"scans": [
        _scan(container="server", requests={"cpu": 0.1}),
        _scan(kind="StatefulSet", name="db", container="pg", requests={"memory": 2**30}),
        _scan(container="proxy", requests={"memory": 2**26}),
        _scan(kind="Job", name="migrate", requests={"cpu": 0.1}),
        _scan(name="idle", requests={"cpu": "?", "memory": None}),
    ]}
    result = importers.from_krr(report)
    got = [(d["spec"]["targetRef"]["kind"], d["spec"]["targetRef"]["name"],
            [c["name"] for c in d["spec"]["containers"]]) for d in result.documents]
    assert got == [("Deployment", "cart", ["server", "proxy"]), ("StatefulSet", "db", ["pg"])]
    reasons = {s.source: s.reason for s in result.skipped}
    assert "kind Job is not supported" in reasons["Job shop/migrate container server"]
    assert "no values" in reasons["Deployment shop/idle container server"]
    for d in result.documents:
        validation.parse(d)


@pytest.mark.parametrize("report", [{}, {"scans": "x"}, [], "text"])
def test_krr_without_scans_is_refused(report: Any) -> None:
    with pytest.raises(errors.ConfigError, match="scans"):
        importers.from_krr(report)


def test_read_unpacks_lists_and_documents(tmp_path: pathlib.Path) -> None:
    f = tmp_path / "vpas.yaml"
    f.write_text("kind: VerticalPodAutoscalerList\nitems: [{a: 1}, {b: 2}]\n---\n{c: 3}\n---\n")
    assert files.load_documents(str(f)) == [{"a": 1}, {"b": 2}, {"c": 3}]
    with pytest.raises(errors.ConfigError, match="cannot read"):
        files.load_documents(str(tmp_path / "missing.yaml"))
