"""Which recommendations for one target replace which, field by field.

The platform sends a rightsizing and a replica recommendation for the same Deployment
together; they touch different fields, so both must be applied. A newer recommendation
overrides an older one only in the fields both set (the same container's request or limit
of one resource, the replica count, one HPA bound); the older one keeps the rest, and is
``Superseded`` only when every field it sets is overridden by newer ones.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from reconciler.domain import model

Field = tuple[str, ...]


def fields(rec: model.Recommendation) -> frozenset[Field]:
    """The fields of the target a recommendation sets."""
    if isinstance(rec, model.NodeGroupRecommendation):
        return frozenset({("nodeGroup",)})
    out: set[Field] = set()
    for c in rec.containers:
        out.update(("containers", c.name, "requests", r) for r in c.requests)
        out.update(("containers", c.name, "limits", r) for r in c.limits)
    if rec.replicas is not None:
        out.add(("replicas",))
    if rec.hpa is not None:
        if rec.hpa.minReplicas is not None:
            out.add(("hpa", "minReplicas"))
        if rec.hpa.maxReplicas is not None:
            out.add(("hpa", "maxReplicas"))
    return frozenset(out)


def describe(f: Field) -> str:
    """A field as a person reads it: ``server requests.cpu``, ``replicas``."""
    if f[0] == "containers":
        return f"{f[1]} {f[2]}.{f[3]}"
    return ".".join(f)


@dataclass(frozen=True)
class Resolution:
    """``superseded``: id -> the newer ids that override every field it sets.
    ``overridden``: id -> the fields newer ones override, for those that keep some."""

    superseded: dict[str, tuple[str, ...]]
    overridden: dict[str, frozenset[Field]]


def resolve(recs: Sequence[model.Recommendation]) -> Resolution:
    """``recs`` are one target's live recommendations, oldest first."""
    superseded: dict[str, tuple[str, ...]] = {}
    overridden: dict[str, frozenset[Field]] = {}
    for i, rec in enumerate(recs):
        mine = fields(rec)
        newer = [(r.id, fields(r)) for r in recs[i + 1:]]
        taken = frozenset(f for f in mine if any(f in theirs for _, theirs in newer))
        if not taken:
            continue
        if taken == mine:
            superseded[rec.id] = tuple(dict.fromkeys(
                rid for rid, theirs in newer if theirs & mine))
        else:
            overridden[rec.id] = taken
    return Resolution(superseded, overridden)


def without(rec: model.Recommendation, drop: frozenset[Field]) -> model.Recommendation:
    """``rec`` with the ``drop`` fields taken out: what is left of it to apply."""
    if not drop or isinstance(rec, model.NodeGroupRecommendation):
        return rec
    containers = []
    for c in rec.containers:
        req = {r: q for r, q in c.requests.items()
               if ("containers", c.name, "requests", r) not in drop}
        lim = {r: q for r, q in c.limits.items()
               if ("containers", c.name, "limits", r) not in drop}
        if req or lim:
            containers.append(dataclasses.replace(c, requests=req, limits=lim))
    hpa = rec.hpa
    if hpa is not None:
        hpa = model.HpaBounds(
            minReplicas=None if ("hpa", "minReplicas") in drop else hpa.minReplicas,
            maxReplicas=None if ("hpa", "maxReplicas") in drop else hpa.maxReplicas)
        if hpa.minReplicas is None and hpa.maxReplicas is None:
            hpa = None
    return dataclasses.replace(
        rec, containers=tuple(containers), hpa=hpa,
        replicas=None if ("replicas",) in drop else rec.replicas)
