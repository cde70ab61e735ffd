"""Where recommendations come from besides custom resources: the platform's gRPC stream
(held open by the operator for its whole life), files, VPA objects and KRR reports.

The store is the hand-over point: the stream acks a recommendation once it is stored,
and the work is queued from there, so a crash between the two loses nothing; taking the
same recommendation in again changes nothing (the id is the idempotency key).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from reconciler.adapters import files, importers
from reconciler.adapters.store import bulk as batch
from reconciler.adapters.store import port as store
from reconciler.domain import errors, validation
from reconciler.domain import limits as limits_mod

log = logging.getLogger(__name__)

SOURCE_KINDS = ("platform", "file", "vpa", "krr")


@dataclass(frozen=True)
class Source:
    kind: str    # platform | file | vpa | krr
    where: str   # HOST:PORT or a path

    @classmethod
    def parse(cls, text: str) -> Source:
        kind, sep, where = text.partition(":")
        if not sep or kind not in SOURCE_KINDS or not where:
            raise errors.ConfigError(
                f"--source {text!r}: expected one of platform:HOST:PORT, file:PATH, "
                "vpa:PATH, krr:PATH")
        return cls(kind, where)


@dataclass
class Intake:
    """What one pass over the file sources took in."""

    stored: list[store.Record] = field(default_factory=list)  # new or changed
    refused: list[str] = field(default_factory=list)
    by_source: dict[str, int] = field(default_factory=dict)  # taken in, per source kind
    refused_by_source: dict[str, int] = field(default_factory=dict)


def take_in(sources: Sequence[Source], st: store.Store,
            limits: limits_mod.InputLimits = limits_mod.DEFAULT) -> Intake:
    """Bring the file, VPA and KRR sources into the store (idempotent by id); a source
    that cannot be read is reported and skipped, the others go on."""
    out = Intake()
    for src in sources:
        if src.kind == "platform":
            continue  # the operator holds the stream itself
        try:
            docs: list[Any]
            if src.kind == "file":
                docs = files.load_documents(src.where, limits)
            else:
                result = importers.load(src.kind, src.where, limits)
                docs = list(result.documents)
                for s in result.skipped:
                    log.warning("%s: skipped %s: %s", src.where, s.source, s.reason)
        except errors.ReconcilerError as e:
            out.refused.append(f"{src.kind}:{src.where}: {e}")
            out.refused_by_source[src.kind] = out.refused_by_source.get(src.kind, 0) + 1
            continue
        items: list[batch.Item] = []
        for p in validation.parse_many(docs):
            if p.recommendation is None:
                out.refused.append(f"{p.raw_id or f'item {p.index}'}: "
                                   + "; ".join(str(e) for e in p.errors))
                out.refused_by_source[src.kind] = out.refused_by_source.get(src.kind, 0) + 1
                continue
            items.append(batch.Item.of(p.recommendation))
        stored = [u.record for u in batch.upsert_many(st, items) if u.changed]
        out.stored.extend(stored)
        out.by_source[src.kind] = out.by_source.get(src.kind, 0) + len(stored)
    return out
