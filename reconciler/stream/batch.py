"""Several upserts in one store transaction, so the stream is not bound by one fsync per item.

``SqliteStore.upsert`` commits (and fsyncs) once per call, which caps ingestion at roughly
2,000 recommendations per second on a laptop disk. A stream batch only needs to be durable
as a whole before its acks go out, so one commit per batch is enough.

The store protocol has no batch method yet. Until it does (``SqliteStore.upsert_many`` is
the natural home for this), ``upsert_many`` uses a store's own ``upsert_many`` when it has
one, runs the SQLite store's documented write steps inside a single ``BEGIN IMMEDIATE``
when it is a ``SqliteStore``, and otherwise falls back to one ``upsert`` per item.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from reconciler import errors
from reconciler.adapters import sqlite_store, store


@dataclass(frozen=True)
class Item:
    kind: str
    id: str
    namespace: str
    name: str
    spec: dict[str, Any]


def upsert_many(st: store.Store, items: Sequence[Item]) -> list[store.UpsertResult]:
    """Upsert every item; results in the same order. All or nothing for the SQLite store."""
    if not items:
        return []
    native = getattr(st, "upsert_many", None)
    if callable(native):
        results: list[store.UpsertResult] = native(
            [(i.kind, i.id, i.namespace, i.name, i.spec) for i in items])
        return results
    if isinstance(st, sqlite_store.SqliteStore):
        return _sqlite_upsert_many(st, items)
    return [st.upsert(i.kind, i.id, i.namespace, i.name, i.spec) for i in items]


def _sqlite_upsert_many(st: sqlite_store.SqliteStore,
                        items: Sequence[Item]) -> list[store.UpsertResult]:
    """``SqliteStore.upsert`` for each item, in one transaction (same semantics, one commit).

    Mirrors ``SqliteStore.upsert`` step for step, with shortcuts that do not change the
    outcome: existing records are looked up with one query per kind, new rows go in with
    ``executemany``, the version counter is read and written once (each write still gets
    its own consecutive version, in order), and a new record is built from what was just
    inserted instead of being read back. An item that changes a record written earlier in
    the same batch first flushes the pending inserts, so it sees exactly what a sequence of
    single upserts would. The integration tests compare the results through the store's
    public ``get``, ``list`` and ``watch``.
    """
    for i in items:
        sqlite_store._check_kind(i.kind)
        if not i.id:
            raise errors.PermanentError(f"{i.kind}: a recommendation id is required")
    texts = [sqlite_store._dump(i.spec, f"{i.kind} {i.id} spec") for i in items]
    out: list[store.UpsertResult] = []
    now = sqlite_store._now()
    with st._transaction() as tx:
        existing = _existing(tx, items)
        version = int(tx.execute("SELECT value FROM counter WHERE row_key = 0").fetchone()[0])
        start = version
        pending_records: list[tuple[Any, ...]] = []
        pending_changes: list[tuple[int, str, str]] = []
        written: dict[tuple[str, str], tuple[str, store.Record]] = {}

        def flush() -> None:
            tx.executemany(f"INSERT INTO records ({sqlite_store._COLUMNS}) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", pending_records)
            tx.executemany("INSERT INTO changes (resource_version, type, record) "
                           "VALUES (?, ?, ?)", pending_changes)
            pending_records.clear()
            pending_changes.clear()

        for item, spec_text in zip(items, texts, strict=True):
            key = (item.kind, item.id)
            current = written.get(key) or existing.get(key)
            if current is not None and current[0] == spec_text:
                out.append(store.UpsertResult(record=current[1], created=False, changed=False))
                continue
            version += 1
            if current is None:
                pending_records.append((item.kind, item.id, item.namespace, item.name,
                                        spec_text, "{}", version, 1, now))
                rec = store.Record(kind=item.kind, id=item.id, namespace=item.namespace,
                                   name=item.name, spec=item.spec, status={},
                                   resource_version=str(version), generation=1, created_at=now)
                pending_changes.append((version, sqlite_store.ADDED,
                                        sqlite_store._snapshot(rec)))
                created = True
            else:
                flush()
                tx.execute("UPDATE records SET spec = ?, resource_version = ?, "
                           "generation = generation + 1 WHERE kind = ? AND id = ?",
                           (spec_text, version, item.kind, item.id))
                updated = sqlite_store.SqliteStore._select(tx, item.kind, item.id)
                assert updated is not None  # written in this transaction
                rec = updated
                sqlite_store.SqliteStore._log(tx, sqlite_store.MODIFIED, rec)
                created = False
            written[key] = (spec_text, rec)
            out.append(store.UpsertResult(record=rec, created=created, changed=True))
        flush()
        if version != start:
            tx.execute("UPDATE counter SET value = ? WHERE row_key = 0", (version,))
    return out


_LOOKUP_CHUNK = 500  # well under SQLite's limit on bound parameters


def _existing(tx: Any, items: Sequence[Item]) -> dict[tuple[str, str], tuple[str, store.Record]]:
    """(kind, id) -> (stored spec text, record) for the items already in the store."""
    found: dict[tuple[str, str], tuple[str, store.Record]] = {}
    by_kind: dict[str, list[str]] = {}
    for i in items:
        by_kind.setdefault(i.kind, []).append(i.id)
    for kind, ids in by_kind.items():
        unique = list(dict.fromkeys(ids))
        for n in range(0, len(unique), _LOOKUP_CHUNK):
            chunk = unique[n:n + _LOOKUP_CHUNK]
            rows = tx.execute(
                f"SELECT {sqlite_store._COLUMNS} FROM records WHERE kind = ? AND id IN "
                f"({', '.join('?' * len(chunk))})", (kind, *chunk)).fetchall()
            for row in rows:
                found[(row[0], row[1])] = (row[4], sqlite_store._record(row))
    return found
