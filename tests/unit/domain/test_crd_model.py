"""The CRD schemas in manifests/crds/ and the model agree, both ways.

Cases:
- a fully populated WorkloadRecommendation / NodeGroupRecommendation (every optional field,
  every status field) validates against its CRD's openAPIV3Schema: types, enums, required,
  patterns, minimum/maximum (a field in the model but not in the CRD fails here);
- every property the CRD declares under spec and status is produced by the model
  (a field in the CRD but not in the model fails here);
- the enums in the CRD are exactly the model's actions, target kinds and phases;
- the sample recommendations in examples/ validate against the CRDs after a model round trip.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.adapters import files
from reconciler.domain import model, quantity, validation

ROOT = Path(__file__).resolve().parents[3]
CRDS = {
    model.WORKLOAD: ROOT / "manifests" / "crds" / "workloadrecommendations.yaml",
    model.NODE_GROUP: ROOT / "manifests" / "crds" / "nodegrouprecommendations.yaml",
}


def schema_of(kind: str) -> dict[str, Any]:
    crd = yaml.safe_load(CRDS[kind].read_text())
    assert crd["spec"]["names"]["kind"] == kind
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == model.VERSION]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def full_status() -> model.Status:
    return model.Status(
        phase=model.APPLIED,
        conditions=(model.Condition("Applied", "True", "Merged", "merged as #7",
                                    "2026-11-24T10:00:00Z", 2),),
        decision=model.DecisionSummary(True, "gitops", ("r: m",), ("w",), "d-1",
                                       "sha256:0123456789abcdef"),
        previous={"containers": {"server": {"requests": {"cpu": "200m"}}}, "replicas": 1},
        liveMigration={"persist": "webhook", "pods": []},
        pullRequest=model.PullRequestRef("https://forge/pr/7", 7, "dakr/batch-1", "a" * 40,
                                         "merged"),
        appliedAt="2026-11-24T10:00:00Z", observedGeneration=2,
        projectedSavings="$42.30/month", message="ok",
    )


def full_workload() -> model.WorkloadRecommendation:
    q = quantity.parse
    return model.WorkloadRecommendation(
        recommendationId="rec-0001", name="rec-0001", namespace="default",
        action=model.RIGHTSIZING,
        targetRef=model.TargetRef("Deployment", "cartservice", "apps/v1"),
        containers=(model.ContainerResources("server", {"cpu": q("100m"), "memory": q("64Mi")},
                                             {"cpu": q("200m"), "memory": q("128Mi")}),),
        replicas=3, hpa=model.HpaBounds(2, 6), confidence=0.9,
        projectedSavings=model.Savings(42.3, "USD"), source="platform", autoApply=True,
        status=full_status(),
    )


def full_node_group() -> model.NodeGroupRecommendation:
    return model.NodeGroupRecommendation(
        recommendationId="ng-0001", name="ng-0001", nodeGroup="default-pool",
        action="consolidate", targetNodeCount=3, currentNodeCount=5,
        nodesToRemove=("node-a", "node-b"), priority=5,
        projectedSavings=model.Savings(120.0, "USD"), source="platform", status=full_status(),
    )


def check(value: Any, schema: dict[str, Any], path: str, problems: list[str]) -> None:
    """A small structural-schema validator: enough to catch drift between CRD and model."""
    if schema.get("x-kubernetes-int-or-string"):
        if not isinstance(value, (int, str)):
            problems.append(f"{path}: not int-or-string")
        if isinstance(value, str) and "pattern" in schema and not re.search(
                schema["pattern"], value):
            problems.append(f"{path}: {value!r} does not match {schema['pattern']}")
        return
    t = schema.get("type")
    types = {"object": dict, "array": list, "string": str, "boolean": bool,
             "integer": int, "number": (int, float)}
    if (t and not isinstance(value, types[t])) or (t in ("integer", "number")
                                                  and isinstance(value, bool)):
        problems.append(f"{path}: {value!r} is not {t}")
        return
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"{path}: {value!r} not in enum {schema['enum']}")
    if isinstance(value, str):
        if "pattern" in schema and not re.search(schema["pattern"], value):
            problems.append(f"{path}: {value!r} does not match {schema['pattern']}")
        if "minLength" in schema and len(value) < schema["minLength"]:
            problems.append(f"{path}: shorter than {schema['minLength']}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            problems.append(f"{path}: below minimum")
        if "maximum" in schema and value > schema["maximum"]:
            problems.append(f"{path}: above maximum")
    if isinstance(value, dict):
        if schema.get("x-kubernetes-preserve-unknown-fields"):
            return
        for req in schema.get("required", []):
            if req not in value:
                problems.append(f"{path}.{req}: required by the CRD, missing from the model")
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for k, v in value.items():
            if path == "" and k == "metadata":
                continue  # ObjectMeta: validated by the API server, not the CRD schema
            if k in props:
                check(v, props[k], f"{path}.{k}", problems)
            elif isinstance(extra, dict):
                check(v, extra, f"{path}.{k}", problems)
            else:
                problems.append(f"{path}.{k}: produced by the model, unknown to the CRD")
    if isinstance(value, list) and "items" in schema:
        for i, v in enumerate(value):
            check(v, schema["items"], f"{path}[{i}]", problems)


def declared(schema: dict[str, Any], path: str) -> set[str]:
    """Every property path the schema declares (not descending into free-form maps)."""
    out: set[str] = set()
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return out
    for k, sub in (schema.get("properties") or {}).items():
        p = f"{path}.{k}"
        out.add(p)
        out |= declared(sub, p)
    if "items" in schema:
        out |= declared(schema["items"], f"{path}[]")
    return out


def produced(value: Any, path: str) -> set[str]:
    out: set[str] = set()
    if isinstance(value, dict):
        for k, v in value.items():
            p = f"{path}.{k}"
            out.add(p)
            out |= produced(v, p)
    elif isinstance(value, list):
        for v in value:
            out |= produced(v, f"{path}[]")
    return out


FULL = {model.WORKLOAD: full_workload, model.NODE_GROUP: full_node_group}


@pytest.mark.parametrize("kind", model.KINDS)
def test_full_model_validates_against_crd(kind: str) -> None:
    problems: list[str] = []
    check(FULL[kind]().to_dict(), schema_of(kind), "", problems)
    assert problems == []


@pytest.mark.parametrize("kind", model.KINDS)
@pytest.mark.parametrize("section", ["spec", "status"])
def test_every_crd_field_is_produced_by_the_model(kind: str, section: str) -> None:
    schema = schema_of(kind)["properties"][section]
    doc = FULL[kind]().to_dict()[section]
    # Resource maps are free-form (cpu, memory, ...): compare their parent keys only.
    want = {p for p in declared(schema, "") if ".requests." not in p and ".limits." not in p}
    have = {p for p in produced(doc, "") if ".requests." not in p and ".limits." not in p
            and not p.startswith((".previous.", ".liveMigration."))}
    assert want - have == set(), "declared in the CRD, never produced by the model"
    assert have - want == set(), "produced by the model, not declared in the CRD"


def test_enums_match_the_model() -> None:
    wspec = schema_of(model.WORKLOAD)["properties"]["spec"]["properties"]
    assert set(wspec["action"]["enum"]) == set(model.WORKLOAD_ACTIONS)
    assert set(wspec["targetRef"]["properties"]["kind"]["enum"]) == set(model.TARGET_KINDS)
    nspec = schema_of(model.NODE_GROUP)["properties"]["spec"]["properties"]
    assert set(nspec["action"]["enum"]) == set(model.NODE_GROUP_ACTIONS)
    for kind in model.KINDS:
        phase = schema_of(kind)["properties"]["status"]["properties"]["phase"]
        assert set(phase["enum"]) == set(model.PHASES)


def test_example_recommendations_validate_against_crds() -> None:
    docs = files.load_documents(ROOT / "examples" / "recommendations.yaml")
    ok = [r.recommendation for r in validation.parse_many(docs) if r.recommendation]
    assert len(ok) >= 10
    for rec in ok:
        problems: list[str] = []
        check(rec.to_dict(), schema_of(rec.kind), "", problems)
        assert problems == [], rec.id
