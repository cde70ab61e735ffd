"""Recommendations from other sources: VPA objects and KRR reports.

Teams that are not on the platform still have recommendations: a VerticalPodAutoscaler in
``Off`` mode publishes them in ``status.recommendation``, and KRR (``krr simple -f json``)
prints them as a report. Both are turned into ``WorkloadRecommendation`` documents, the
same form files, the stream and the store carry, and then go through the one validator.

Choices that matter:

- **Only requests from VPA.** VPA's ``target`` is a request; the limit is left alone (an
  absent field is left as it is on the target), which is also what VPA does by default
  for limits unless ``controlledValues`` says otherwise.
- **KRR's ``null`` limit means "no limit"**, which a recommendation cannot express (absent
  means "leave it"), so it is left out; ``"?"`` means KRR had no data, so that value is
  left out too.
- **Ids are derived from the content.** The id is the idempotency key: importing the same
  VPA status twice yields the same id (a no-op), a changed target yields a new one.
- Values are rounded up (CPU to whole millicores, memory to whole MiB): a recommendation
  slightly above the measured need is safe, one below it is not.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.adapters import files
from reconciler.domain import errors, model
from reconciler.domain import limits as limits_mod

_MAX_ID = 253


@dataclass(frozen=True)
class Skipped:
    source: str  # what was skipped, as the user would name it
    reason: str


@dataclass
class ImportResult:
    documents: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


def _digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:10]


def _rec_id(prefix: str, parts: Iterable[str], content: object) -> str:
    """``prefix-part-part-hash``, lowercased, within the 253 characters of a DNS subdomain."""
    digest = _digest(content)
    body = "-".join(p.lower() for p in parts if p)
    room = _MAX_ID - len(prefix) - len(digest) - 2
    body = body[:room].strip("-.")
    return f"{prefix}-{body}-{digest}"


def _document(rec_id: str, namespace: str, kind: str, name: str, source: str,
              containers: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": model.API_VERSION,
        "kind": model.WORKLOAD,
        "metadata": {"namespace": namespace},
        "spec": {"recommendationId": rec_id, "action": model.RIGHTSIZING,
                 "targetRef": {"kind": kind, "name": name}, "containers": containers,
                 "source": source},
    }


# -- VPA ----------------------------------------------------------------------------------

def _quantity_text(value: object) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return str(value)
    return value if isinstance(value, str) and value else None


def from_vpa(objects: Iterable[Any]) -> ImportResult:
    """One recommendation per VPA with a recommendation, requests set to ``target``."""
    result = ImportResult()
    for i, obj in enumerate(objects):
        if not isinstance(obj, Mapping) or obj.get("kind") != "VerticalPodAutoscaler":
            result.skipped.append(Skipped(f"document {i}", "not a VerticalPodAutoscaler"))
            continue
        meta = obj.get("metadata") or {}
        vpa_name = str(meta.get("name", f"document-{i}"))
        namespace = str(meta.get("namespace") or "default")
        label = f"VerticalPodAutoscaler {namespace}/{vpa_name}"
        target = (obj.get("spec") or {}).get("targetRef") or {}
        kind, name = target.get("kind"), target.get("name")
        if kind not in model.TARGET_KINDS or not isinstance(name, str):
            result.skipped.append(Skipped(label, f"targets {kind or 'nothing'}; only "
                                          f"{', '.join(model.TARGET_KINDS)} are supported"))
            continue
        recs = (((obj.get("status") or {}).get("recommendation") or {})
                .get("containerRecommendations") or [])
        containers = []
        for cr in recs:
            if not isinstance(cr, Mapping):
                continue
            requests = {r: q for r in ("cpu", "memory")
                        if (q := _quantity_text((cr.get("target") or {}).get(r))) is not None}
            if cr.get("containerName") and requests:
                containers.append({"name": cr["containerName"],
                                   "resources": {"requests": requests}})
        if not containers:
            result.skipped.append(Skipped(label, "has no recommendation yet "
                                          "(status.recommendation.containerRecommendations)"))
            continue
        rec_id = _rec_id("vpa", [namespace, vpa_name], containers)
        result.documents.append(_document(rec_id, namespace, kind, name, "vpa", containers))
    return result


# -- KRR ----------------------------------------------------------------------------------

def _cpu(cores: float) -> str:
    return f"{max(1, math.ceil(round(cores * 1000, 6)))}m"


def _memory(num_bytes: float) -> str:
    return f"{max(1, math.ceil(round(num_bytes / 2**20, 6)))}Mi"


_FORMAT = {"cpu": _cpu, "memory": _memory}


def _krr_value(entry: object) -> float | None:
    """A usable number from ``{"value": ..., "severity": ...}``; None for null, "?" or NaN."""
    value = entry.get("value") if isinstance(entry, Mapping) else entry
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if not math.isfinite(value) or value <= 0:
        return None
    return float(value)


def from_krr(report: Any) -> ImportResult:
    """One recommendation per workload in a ``krr ... -f json`` report, all containers in it."""
    result = ImportResult()
    scans = report.get("scans") if isinstance(report, Mapping) else None
    if not isinstance(scans, list):
        raise errors.ConfigError("not a KRR JSON report: no 'scans' list (run krr with -f json)")
    workloads: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for scan in scans:
        obj = scan.get("object") if isinstance(scan, Mapping) else None
        if not isinstance(obj, Mapping):
            result.skipped.append(Skipped("scan", "has no 'object'"))
            continue
        kind, name = str(obj.get("kind", "")), str(obj.get("name", ""))
        namespace = str(obj.get("namespace") or "default")
        container = str(obj.get("container", ""))
        label = f"{kind} {namespace}/{name} container {container}"
        if kind not in model.TARGET_KINDS:
            result.skipped.append(Skipped(label, f"kind {kind} is not supported (only "
                                          f"{', '.join(model.TARGET_KINDS)})"))
            continue
        recommended = scan.get("recommended") or {}
        resources: dict[str, dict[str, str]] = {}
        for selector in ("requests", "limits"):
            values = {r: _FORMAT[r](v) for r in ("cpu", "memory")
                      if (v := _krr_value((recommended.get(selector) or {}).get(r))) is not None}
            if values:
                resources[selector] = values
        for r, lim in list(resources.get("limits", {}).items()):
            req = resources.get("requests", {}).get(r)
            if req is not None and _magnitude(req) > _magnitude(lim):
                del resources["limits"][r]  # never propose a limit below the request
        if not resources.get("limits"):
            resources.pop("limits", None)
        if not resources:
            result.skipped.append(Skipped(label, "KRR has no values for it ('?': not enough "
                                          "data)"))
            continue
        workloads.setdefault((namespace, kind, name), []).append(
            {"name": container, "resources": resources})
    for (namespace, kind, name), containers in workloads.items():
        rec_id = _rec_id("krr", [namespace, kind, name], containers)
        result.documents.append(_document(rec_id, namespace, kind, name, "krr", containers))
    return result


def _magnitude(q: str) -> float:
    """Only compares what ``_cpu``/``_memory`` produce (same unit per resource)."""
    return float(q.rstrip("miM"))


def load(source: str, path: str,
         limits: limits_mod.InputLimits = limits_mod.DEFAULT) -> ImportResult:
    """``source`` is ``vpa`` or ``krr``."""
    docs = files.load_documents(path, limits)
    if source == "vpa":
        return from_vpa(docs)
    if source == "krr":
        if len(docs) != 1:
            raise errors.ConfigError(f"{path}: expected one KRR JSON report, found {len(docs)}")
        return from_krr(docs[0])
    raise errors.ConfigError(f"unknown import source {source!r} (expected vpa or krr)")
