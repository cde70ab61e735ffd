"""Recommendation sources other than custom resources: the platform's gRPC stream, files,
VPA objects and KRR reports, taken into the store.

The store is the hand-over point: the stream acks a recommendation once it is stored, and
the batch picks it up from there, so a crash between the two loses nothing; taking the
same recommendation in again changes nothing (the id is the idempotency key).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reconciler.adapters import files, importers
from reconciler.adapters.opa import platform_data as policy_data
from reconciler.adapters.store import bulk as batch
from reconciler.adapters.store import port as store
from reconciler.domain import errors, model, validation
from reconciler.runtime import rollbacks
from reconciler.stream import client
from reconciler.stream import state as stream_state

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
class Round:
    taken_in: int = 0
    refused: list[str] | None = None
    by_source: dict[str, int] = field(default_factory=dict)  # taken in, per source kind
    refused_by_source: dict[str, int] = field(default_factory=dict)


def take_in(sources: Sequence[Source], st: store.Store, stream_state_path: Path, *,
            idle: float = 2.0, token_file: str | None = None, token: str = "",
            accept_rollbacks: bool = False, platform_data: Path | None = None) -> Round:
    """Bring every source's recommendations into the store (idempotent by id).

    ``accept_rollbacks``: accept the platform's rollback requests (recorded on the
    recommendation, acked once stored, carried out by the round); without it they are
    refused (nacked), as by an operator that cannot roll back. ``platform_data``: where the
    platform's policy parameters are kept (``adapters/opa/platform_data.py``); without it
    they are refused.
    """
    out = Round(refused=[])
    for src in sources:
        if src.kind == "platform":
            state = stream_state.StreamState(stream_state_path)
            try:
                cfg = client.ClientConfig(target=src.where, token_file=token_file, token=token)

                def on_rollback(kind: str, rec_id: str, reason: str) -> None:
                    rollbacks.request(st, kind, rec_id, reason)

                def on_policy_update(data: dict[str, Any]) -> None:
                    assert platform_data is not None
                    policy_data.update(platform_data, data)

                stats = client.StreamClient(
                    cfg, st, state, on_rollback=on_rollback if accept_rollbacks else None,
                    on_policy_update=on_policy_update if platform_data is not None else None,
                ).run(until_idle=idle)
            finally:
                state.close()
            out.taken_in += stats.stored
            out.by_source[src.kind] = out.by_source.get(src.kind, 0) + stats.stored
            continue
        docs: list[Any]
        if src.kind == "file":
            docs = files.load_documents(src.where)
        else:
            result = importers.load(src.kind, src.where)
            docs = list(result.documents)
            for s in result.skipped:
                log.warning("%s: skipped %s: %s", src.where, s.source, s.reason)
        items: list[batch.Item] = []
        for p in validation.parse_many(docs):
            if p.recommendation is None:
                assert out.refused is not None
                out.refused.append(f"{p.raw_id or f'item {p.index}'}: "
                                   + "; ".join(str(e) for e in p.errors))
                out.refused_by_source[src.kind] = out.refused_by_source.get(src.kind, 0) + 1
                continue
            r = p.recommendation
            items.append(batch.Item.of(r))
        n = sum(1 for u in batch.upsert_many(st, items) if u.changed)
        out.taken_in += n
        out.by_source[src.kind] = out.by_source.get(src.kind, 0) + n
    return out


def pending(st: store.Store) -> list[dict[str, Any]]:
    """Everything the batch still has to decide, in custom-resource form: new records, and
    records whose spec changed since a batch last looked at them (a newer generation)."""
    return [r.to_document() for kind in model.KINDS for r in st.list(kind=kind)
            if r.phase == model.PENDING or not r.observed]
