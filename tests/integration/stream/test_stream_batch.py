"""`batch.upsert_many` against the real SQLite store: the same outcome as single upserts.

Cases (one batch mixing them all, compared with the same items upserted one at a time into
a second store with the same history):
- new records, an id repeated unchanged inside the batch (a duplicate), an id changed
  later in the same batch (ADDED then MODIFIED), a record already stored and unchanged,
  one already stored and changed, both kinds;
- the per-item results (created, changed, version, generation, spec), `list()` and the
  `watch` change log agree exactly (creation times aside);
- a store that is not a SqliteStore gets one `upsert` per item, with the same results;
- an item without an id fails the whole batch and writes nothing.
"""

from __future__ import annotations

import pathlib
from typing import Any

import pytest

from reconciler.adapters.store import bulk as batch
from reconciler.adapters.store import port as store
from reconciler.adapters.store import sqlite as sqlite_store
from reconciler.domain import errors, model

W, N = model.WORKLOAD, model.NODE_GROUP


def _item(kind: str, rec_id: str, value: int) -> batch.Item:
    return batch.Item(kind, rec_id, "default" if kind == W else "", rec_id, {"v": value})


HISTORY = [_item(W, "old-same", 1), _item(W, "old-changed", 1), _item(N, "ng-old", 1)]
BATCH = [
    _item(W, "a", 1), _item(W, "b", 1), _item(W, "a", 1),  # duplicate inside the batch
    _item(W, "c", 1), _item(W, "c", 2),  # changed inside the batch
    _item(W, "old-same", 1), _item(W, "old-changed", 2),
    _item(N, "ng-new", 1), _item(N, "ng-old", 1), _item(W, "b", 1),
]


def _fresh(path: pathlib.Path) -> sqlite_store.SqliteStore:
    st = sqlite_store.SqliteStore(path)
    for i in HISTORY:
        st.upsert(i.kind, i.id, i.namespace, i.name, i.spec)
    return st


def _result_view(r: store.UpsertResult) -> tuple[Any, ...]:
    rec = r.record
    return (r.created, r.changed, rec.kind, rec.id, rec.resource_version, rec.generation,
            rec.spec, rec.status, rec.namespace, rec.name)


def _log(st: sqlite_store.SqliteStore) -> list[store.Event]:
    """Every change the file's log holds, both kinds, in order."""
    events = [e for kind in model.KINDS for e in st.watch_records(kind, "0", 0)
              if e.type != store.BOOKMARK]
    return sorted(events, key=lambda e: int(e.resource_version))


def _record_view(rec: store.Record | None) -> tuple[Any, ...]:
    assert rec is not None
    return (rec.kind, rec.id, rec.namespace, rec.name, rec.spec, rec.status,
            rec.resource_version, rec.generation)


class _Wrapped:
    """A Store that is not a SqliteStore (as the Kubernetes store will be)."""

    def __init__(self, inner: sqlite_store.SqliteStore) -> None:
        self.inner = inner
        self.calls = 0

    def upsert(self, kind: str, rec_id: str, namespace: str, name: str,
               spec: dict[str, Any]) -> store.UpsertResult:
        self.calls += 1
        return self.inner.upsert(kind, rec_id, namespace, name, spec)


def test_upsert_many_matches_single_upserts(tmp_path: pathlib.Path) -> None:
    batched, single, generic = (_fresh(tmp_path / f"{n}.db") for n in ("b", "s", "g"))
    got = batch.upsert_many(batched, BATCH)
    want = [single.upsert(i.kind, i.id, i.namespace, i.name, i.spec) for i in BATCH]
    wrapped = _Wrapped(generic)
    via_fallback = batch.upsert_many(wrapped, BATCH)  # type: ignore[arg-type]
    assert wrapped.calls == len(BATCH)
    assert [_result_view(r) for r in got] == [_result_view(r) for r in want]
    assert [_result_view(r) for r in via_fallback] == [_result_view(r) for r in want]
    assert [_record_view(r) for r in batched.list()] == [_record_view(r) for r in single.list()]
    log_b = [(c.type, _record_view(c.record)) for c in _log(batched)]
    log_s = [(c.type, _record_view(c.record)) for c in _log(single)]
    assert log_b == log_s
    assert [t for t, _ in log_b].count("MODIFIED") == 2  # c changed, old-changed changed
    assert batched.list_records(W)[1] == single.list_records(W)[1]
    for st in (batched, single, generic):
        st.close()


def test_a_bad_item_fails_the_whole_batch(tmp_path: pathlib.Path) -> None:
    st = sqlite_store.SqliteStore(tmp_path / "s.db")
    with pytest.raises(errors.PermanentError, match="id is required"):
        batch.upsert_many(st, [_item(W, "fine", 1), _item(W, "", 1)])
    assert st.list() == [] and _log(st) == []
    st.close()
