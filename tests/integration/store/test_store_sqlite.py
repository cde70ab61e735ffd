"""The SQLite recommendation store: the shared store contract plus SQLite-only behaviour.

Cases covered:
- every case of ``tests/store_contract.py`` (``StoreContract``) against real SQLite files;
- the file is created with its parent directories and uses WAL journal mode;
- resource versions are one store-wide increasing integer; ``latest_version`` is "0" for an
  empty store and then the last write's version; a replay does not move it;
- watch pages through more changes than one page holds, in order;
- a malformed ``since`` is a PermanentError raised at the call;
- another connection holding the write lock past the busy timeout gives TemporaryError
  (from sqlite3.OperationalError); other sqlite failures (a directory as the file) give
  PermanentError;
- a spec or status that is not JSON-storable, and an empty id, are PermanentErrors;
- a file with a newer schema version is refused;
- a closed store refuses to work, and closing twice is fine;
- an upsert with an unchanged spec keeps the namespace and name chosen at creation.
"""

from __future__ import annotations

import functools
import pathlib
import sqlite3
import sys
from collections.abc import Callable, Iterator

import pytest

from reconciler.adapters.store import port as store_api
from reconciler.adapters.store import sqlite as sqlite_store
from reconciler.domain import errors, model

# pytest's default "prepend" import mode puts only this directory on sys.path (it has no
# __init__.py), so the repository root is added for the ``tests`` package; spawned child
# processes inherit this sys.path and can import the contract's worker.
_ROOT = str(pathlib.Path(__file__).resolve().parents[3])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from tests import store_contract  # noqa: E402

W = model.WORKLOAD


@pytest.fixture
def db_path(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path / "state" / "nested" / "store.db"


class TestSqliteStoreContract(store_contract.StoreContract):
    @pytest.fixture
    def reopen(self, db_path: pathlib.Path) -> Callable[[], sqlite_store.SqliteStore]:
        # A partial of the class is picklable, as the multi-process case needs.
        return functools.partial(sqlite_store.SqliteStore, db_path)

    @pytest.fixture
    def store(self, reopen: Callable[[], sqlite_store.SqliteStore]
              ) -> Iterator[sqlite_store.SqliteStore]:
        s = reopen()
        yield s
        s.close()


@pytest.fixture
def sq(db_path: pathlib.Path) -> Iterator[sqlite_store.SqliteStore]:
    s = sqlite_store.SqliteStore(db_path)
    yield s
    s.close()


def test_file_created_in_wal_mode(sq: sqlite_store.SqliteStore, db_path: pathlib.Path) -> None:
    assert db_path.is_file()
    raw = sqlite3.connect(db_path)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        raw.close()


def history(sq: sqlite_store.SqliteStore) -> list[store_api.Event]:
    """Every change the file's log holds, both kinds, in order."""
    events = [e for kind in (W, model.NODE_GROUP) for e in sq.watch_records(kind, "0", 0)
              if e.type != store_api.BOOKMARK]
    return sorted(events, key=lambda e: int(e.resource_version))


def latest(sq: sqlite_store.SqliteStore) -> str:
    return sq.list_records(W)[1]


def test_versions_are_one_increasing_counter(sq: sqlite_store.SqliteStore) -> None:
    assert latest(sq) == "0"
    a = sq.upsert(W, "a", "default", "a", {"x": 1}).record
    b = sq.upsert(model.NODE_GROUP, "b", "", "b", {"y": 1}).record
    a2 = sq.update_status(W, "a", {"phase": "Approved"}, a.resource_version)
    a3 = sq.upsert(W, "a", "default", "a", {"x": 2}).record
    versions = [int(r.resource_version) for r in (a, b, a2, a3)]
    assert versions == sorted(versions) and len(set(versions)) == 4
    assert latest(sq) == a3.resource_version
    sq.upsert(W, "a", "default", "a", {"x": 2})  # replay
    assert latest(sq) == a3.resource_version
    # Watching from the list's version sees only what comes next.
    assert list(sq.watch_records(W, latest(sq), 0)) == []
    # The log keeps every change (a restarted operator can resume from any version).
    assert [(e.type, e.record.id) for e in history(sq) if e.record is not None] == [
        ("ADDED", "a"), ("ADDED", "b"), ("MODIFIED", "a"), ("MODIFIED", "a")]


def test_watch_pages(sq: sqlite_store.SqliteStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_store, "_WATCH_PAGE", 3)
    rec = sq.upsert(W, "a", "default", "a", {"x": 0}).record
    for i in range(1, 8):
        rec = sq.update_status(W, "a", {"phase": "Applying", "step": i}, rec.resource_version)
    seen = history(sq)
    assert [c.record.status.get("step") for c in seen if c.record is not None] == [
        None, 1, 2, 3, 4, 5, 6, 7]
    assert [c.type for c in seen] == ["ADDED"] + ["MODIFIED"] * 7


@pytest.mark.parametrize("since", ["abc", "-1", "1.5"])
def test_watch_rejects_malformed_since(sq: sqlite_store.SqliteStore, since: str) -> None:
    with pytest.raises(errors.PermanentError, match="invalid resource version"):
        sq.watch_records(W, since, 0)


def test_locked_database_is_temporary(db_path: pathlib.Path) -> None:
    s = sqlite_store.SqliteStore(db_path, busy_timeout=0.1)
    holder = sqlite3.connect(db_path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(errors.TemporaryError) as info:
            s.upsert(W, "a", "default", "a", {"x": 1})
        assert not isinstance(info.value, errors.ConflictError)
        assert isinstance(info.value.__cause__, sqlite3.OperationalError)
        holder.execute("ROLLBACK")
        # Once the lock is gone the same call succeeds, and the failed one left nothing.
        assert s.upsert(W, "a", "default", "a", {"x": 1}).created is True
        assert len(history(s)) == 1
    finally:
        holder.close()
        s.close()


def test_other_sqlite_failures_are_permanent(tmp_path: pathlib.Path) -> None:
    with pytest.raises(errors.PermanentError) as info:
        sqlite_store.SqliteStore(tmp_path)  # a directory, not a database file
    assert not isinstance(info.value, errors.TemporaryError)
    assert isinstance(info.value.__cause__, sqlite3.Error)


@pytest.mark.parametrize("bad", [
    {"when": {1, 2}},          # a set is not JSON
    {"ratio": float("nan")},   # NaN is not JSON
])
def test_unstorable_values_are_permanent(sq: sqlite_store.SqliteStore,
                                         bad: dict[str, object]) -> None:
    with pytest.raises(errors.PermanentError, match="not storable"):
        sq.upsert(W, "a", "default", "a", bad)
    rec = sq.upsert(W, "a", "default", "a", {"x": 1}).record
    with pytest.raises(errors.PermanentError, match="not storable"):
        sq.update_status(W, "a", bad, rec.resource_version)
    assert sq.get(W, "a") == rec


def test_empty_id_rejected(sq: sqlite_store.SqliteStore) -> None:
    with pytest.raises(errors.PermanentError, match="id is required"):
        sq.upsert(W, "", "default", "x", {"x": 1})


def test_newer_schema_refused(db_path: pathlib.Path) -> None:
    sqlite_store.SqliteStore(db_path).close()
    raw = sqlite3.connect(db_path)
    try:
        raw.execute("PRAGMA user_version = 99")
        raw.commit()
    finally:
        raw.close()
    with pytest.raises(errors.PermanentError, match="schema version 99"):
        sqlite_store.SqliteStore(db_path)


def test_closed_store_refuses(db_path: pathlib.Path) -> None:
    s = sqlite_store.SqliteStore(db_path)
    s.upsert(W, "a", "default", "a", {"x": 1})
    s.close()
    s.close()
    with pytest.raises(errors.PermanentError, match="closed"):
        s.get(W, "a")


def test_namespace_and_name_fixed_at_creation(sq: sqlite_store.SqliteStore) -> None:
    first = sq.upsert(W, "a", "default", "a", {"x": 1}).record
    res = sq.upsert(W, "a", "other", "renamed", {"x": 1})
    assert res.changed is False
    assert (res.record.namespace, res.record.name) == ("default", "a")
    assert sq.get(W, "a") == first
