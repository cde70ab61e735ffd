"""The recommendation store in a local SQLite file, for running without a cluster.

It mirrors the Kubernetes API semantics the pipeline relies on, so the pipeline cannot tell
the two backends apart:

- ``resource_version`` is one store-wide counter (like the API server's), bumped by every
  write, so a watch can resume from any version it has seen;
- a status update is a compare-and-swap on that version: a writer that read a stale record
  gets ``errors.ConflictError`` instead of silently overwriting someone else's update;
- replaying the same spec is a no-op (the recommendation id is the idempotency key), and a
  new spec bumps ``generation`` while keeping the status, as a spec update does to a CR.

Several threads and processes may write at once. Every write runs in ``BEGIN IMMEDIATE``,
which takes SQLite's single write lock up front: the read that checks the version and the
write that follows cannot interleave with another writer, and versions are handed out in
commit order, so a watcher never sees version N+1 before N. Waiting for the lock is bounded
by a busy timeout; running out of it is a ``TemporaryError`` (retry later).

Each write also appends a snapshot to a ``changes`` table, so ``watch`` reports every write
in order, including several writes to the same record, even across restarts.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import os
import pathlib
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from reconciler.adapters.store import port as store
from reconciler.domain import clock, errors, model

ADDED, MODIFIED = store.ADDED, store.MODIFIED

# Bump when the schema changes; a file with a newer schema is refused rather than misread.
_SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    seq              INTEGER PRIMARY KEY,
    kind             TEXT NOT NULL,
    id               TEXT NOT NULL,
    namespace        TEXT NOT NULL,
    name             TEXT NOT NULL,
    spec             TEXT NOT NULL,
    status           TEXT NOT NULL,
    resource_version INTEGER NOT NULL,
    generation       INTEGER NOT NULL,
    created_at       TEXT NOT NULL,
    UNIQUE (kind, id)
);
CREATE TABLE IF NOT EXISTS changes (
    resource_version INTEGER PRIMARY KEY,
    type             TEXT NOT NULL,
    record           TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS counter (
    row_key INTEGER PRIMARY KEY CHECK (row_key = 0),
    value INTEGER NOT NULL
);
INSERT OR IGNORE INTO counter (row_key, value) VALUES (0, 0);
"""
_COLUMNS = "kind, id, namespace, name, spec, status, resource_version, generation, created_at"

# A page of the changes log: (resource_version, type, record snapshot) rows.
_ChangeRows = list[tuple[int, str, str]]

_POLL_SECONDS = 0.05
_WATCH_PAGE = 500


@contextlib.contextmanager
def translated(what: str = "sqlite store") -> Iterator[None]:
    """The one place where sqlite3 errors become the project's error types (this store's
    and the stream state's files alike; ``what`` names the file in messages).

    A locked or busy database means another writer held the lock for longer than the busy
    timeout: the same call can succeed later. Anything else (corrupt file, disk full, a
    read-only directory, a schema mismatch) will not fix itself.
    """
    try:
        yield
    except sqlite3.OperationalError as e:
        text = str(e).lower()
        if "locked" in text or "busy" in text:
            raise errors.TemporaryError(f"{what} busy: {e}") from e
        raise errors.PermanentError(f"{what}: {e}") from e
    except sqlite3.Error as e:
        raise errors.PermanentError(f"{what}: {e}") from e


def _check_kind(kind: str) -> None:
    if kind not in model.KINDS:
        raise errors.ConfigError(
            f"unknown recommendation kind {kind!r}: expected one of {', '.join(model.KINDS)}")


def _dump(value: dict[str, Any], what: str) -> str:
    """Canonical JSON: equal dicts give equal text, so a replay is detected by comparing text.

    ``ensure_ascii=False`` keeps non-ASCII text readable in the file; SQLite TEXT is UTF-8.
    """
    if not isinstance(value, dict):
        raise errors.PermanentError(f"{what} must be a mapping, got {type(value).__name__}")
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False)
    except (TypeError, ValueError) as e:
        raise errors.PermanentError(f"{what} is not storable as JSON: {e}") from e


def _load(text: str) -> dict[str, Any]:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise errors.PermanentError(f"sqlite store: stored JSON is not an object: {text[:80]}")
    return value


def _now() -> str:
    return clock.rfc3339()


def _record(row: tuple[Any, ...]) -> store.Record:
    kind, rec_id, namespace, name, spec, status, rv, generation, created_at = row
    return store.Record(kind=kind, id=rec_id, namespace=namespace, name=name,
                        spec=_load(spec), status=_load(status), resource_version=str(rv),
                        generation=int(generation), created_at=created_at)


def _snapshot(rec: store.Record) -> str:
    return json.dumps({
        "kind": rec.kind, "id": rec.id, "namespace": rec.namespace, "name": rec.name,
        "spec": rec.spec, "status": rec.status, "resource_version": rec.resource_version,
        "generation": rec.generation, "created_at": rec.created_at,
    }, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _from_snapshot(text: str) -> store.Record:
    d = _load(text)
    return store.Record(kind=d["kind"], id=d["id"], namespace=d["namespace"], name=d["name"],
                        spec=d["spec"], status=d["status"],
                        resource_version=d["resource_version"], generation=d["generation"],
                        created_at=d["created_at"])


def _parse_since(since: str) -> int:
    if since == "":
        return 0
    try:
        value = int(since)
    except ValueError:
        value = -1
    if value < 0:
        raise errors.PermanentError(
            f"invalid resource version {since!r}: expected a version this store returned")
    return value


class SqliteStore:
    """``store.Store`` in one SQLite file; safe for several threads and processes.

    Each thread gets its own connection (a sqlite3 connection is not meant to be shared
    between threads mid-transaction), and a process that forked gets fresh ones.
    """

    def __init__(self, path: str | pathlib.Path, busy_timeout: float = 10.0) -> None:
        self.path = pathlib.Path(path)
        self._busy_timeout = busy_timeout
        self._local = threading.local()
        self._lock = threading.Lock()
        self._conns: list[sqlite3.Connection] = []
        self._closed = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise errors.PermanentError(f"sqlite store: cannot create {self.path.parent}: {e}"
                                        ) from e
        self._init_schema()

    # -- connections and transactions ----------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        if self._closed:
            raise errors.PermanentError(f"sqlite store {self.path} is closed")
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            return conn
        with translated():
            # isolation_level=None: no implicit transactions, so reads never hold a lock
            # and every write transaction is the explicit BEGIN IMMEDIATE below.
            conn = sqlite3.connect(self.path, timeout=self._busy_timeout,
                                   isolation_level=None, check_same_thread=False)
        self._local.conn = conn
        self._local.pid = os.getpid()
        with self._lock:
            self._conns.append(conn)
        return conn

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        with translated():
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def _init_schema(self) -> None:
        conn = self._conn()
        with translated():
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise errors.PermanentError(
                f"sqlite store {self.path}: cannot use WAL journal mode (got {mode!r})")
        with self._transaction() as tx:
            found = tx.execute("PRAGMA user_version").fetchone()[0]
            if found > _SCHEMA_VERSION:
                raise errors.PermanentError(
                    f"sqlite store {self.path} has schema version {found}, newer than this "
                    f"reconciler's {_SCHEMA_VERSION}")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    tx.execute(statement)
            tx.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")

    @staticmethod
    def _next_version(tx: sqlite3.Connection) -> int:
        tx.execute("UPDATE counter SET value = value + 1 WHERE row_key = 0")
        value: int = tx.execute("SELECT value FROM counter WHERE row_key = 0").fetchone()[0]
        return value

    @staticmethod
    def _log(tx: sqlite3.Connection, change_type: str, rec: store.Record) -> None:
        tx.execute("INSERT INTO changes (resource_version, type, record) VALUES (?, ?, ?)",
                   (int(rec.resource_version), change_type, _snapshot(rec)))

    @staticmethod
    def _select(tx: sqlite3.Connection, kind: str, rec_id: str) -> store.Record | None:
        row = tx.execute(f"SELECT {_COLUMNS} FROM records WHERE kind = ? AND id = ?",
                         (kind, rec_id)).fetchone()
        return None if row is None else _record(row)

    # -- the Store protocol ---------------------------------------------------------------

    def get(self, kind: str, rec_id: str) -> store.Record | None:
        _check_kind(kind)
        conn = self._conn()
        with translated():
            return self._select(conn, kind, rec_id)

    def list(self, kind: str | None = None, phase: str | None = None) -> list[store.Record]:
        if kind is not None:
            _check_kind(kind)
        conn = self._conn()
        with translated():
            if kind is None:
                rows = conn.execute(f"SELECT {_COLUMNS} FROM records ORDER BY seq").fetchall()
            else:
                rows = conn.execute(f"SELECT {_COLUMNS} FROM records WHERE kind = ? ORDER BY seq",
                                    (kind,)).fetchall()
        records = [_record(r) for r in rows]
        # Filtered here, through Record.phase, so "no phase means Pending" has one definition.
        return [r for r in records if phase is None or r.phase == phase]

    def upsert(self, kind: str, rec_id: str, namespace: str, name: str,
               spec: dict[str, Any], *, finalizers: Sequence[str] = (),
               current: Any = store.UNREAD) -> store.UpsertResult:
        """See ``store.Store.upsert``.

        ``namespace`` and ``name`` are fixed when the record is created, as a Kubernetes
        object cannot be renamed; later upserts with the same id only carry the spec.
        ``finalizers`` and ``current`` are not needed here: nobody but this process deletes
        a record of a local file, and the read happens inside the write transaction anyway.
        """
        _check_kind(kind)
        if not rec_id:
            raise errors.PermanentError(f"{kind}: a recommendation id is required")
        spec_text = _dump(spec, f"{kind} {rec_id} spec")
        with self._transaction() as tx:
            row = tx.execute("SELECT spec FROM records WHERE kind = ? AND id = ?",
                             (kind, rec_id)).fetchone()
            if row is None:
                rv = self._next_version(tx)
                tx.execute(
                    f"INSERT INTO records ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (kind, rec_id, namespace, name, spec_text, "{}", rv, 1, _now()))
                created, changed, change_type = True, True, ADDED
            elif row[0] == spec_text:
                current = self._select(tx, kind, rec_id)
                assert current is not None  # read under the write lock just above
                return store.UpsertResult(record=current, created=False, changed=False)
            else:
                rv = self._next_version(tx)
                tx.execute("UPDATE records SET spec = ?, resource_version = ?, "
                           "generation = generation + 1 WHERE kind = ? AND id = ?",
                           (spec_text, rv, kind, rec_id))
                created, changed, change_type = False, True, MODIFIED
            rec = self._select(tx, kind, rec_id)
            assert rec is not None  # written in this transaction
            self._log(tx, change_type, rec)
        return store.UpsertResult(record=rec, created=created, changed=changed)

    def upsert_many(self, items: Sequence[tuple[str, str, str, str, dict[str, Any]]]
                    ) -> builtins.list[store.UpsertResult]:
        """``upsert`` for each ``(kind, id, namespace, name, spec)``, in one transaction: the same
        results as single upserts, one commit (and fsync) for the lot. The stream writes a
        received batch this way before it acks any of it.

        Mirrors ``upsert`` step for step, with shortcuts that do not change the
        outcome: existing records are looked up with one query per kind, new rows go in with
        ``executemany``, the version counter is read and written once (each write still gets
        its own consecutive version, in order), and a new record is built from what was just
        inserted instead of being read back. An item that changes a record written earlier in
        the same batch first flushes the pending inserts, so it sees exactly what a sequence of
        single upserts would. The integration tests compare the results through the store's
        public ``get``, ``list`` and ``watch``.
        """
        entries = [_Item(*i) for i in items]
        if not entries:
            return []
        for i in entries:
            _check_kind(i.kind)
            if not i.id:
                raise errors.PermanentError(f"{i.kind}: a recommendation id is required")
        texts = [_dump(i.spec, f"{i.kind} {i.id} spec") for i in entries]
        out: builtins.list[store.UpsertResult] = []
        now = _now()
        with self._transaction() as tx:
            existing = _existing(tx, entries)
            version = int(tx.execute("SELECT value FROM counter WHERE row_key = 0").fetchone()[0])
            start = version
            pending_records: builtins.list[tuple[Any, ...]] = []
            pending_changes: builtins.list[tuple[int, str, str]] = []
            written: dict[tuple[str, str], tuple[str, store.Record]] = {}

            def flush() -> None:
                tx.executemany(f"INSERT INTO records ({_COLUMNS}) "
                               "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", pending_records)
                tx.executemany("INSERT INTO changes (resource_version, type, record) "
                               "VALUES (?, ?, ?)", pending_changes)
                pending_records.clear()
                pending_changes.clear()

            for item, spec_text in zip(entries, texts, strict=True):
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
                    pending_changes.append((version, ADDED, _snapshot(rec)))
                    created = True
                else:
                    flush()
                    tx.execute("UPDATE records SET spec = ?, resource_version = ?, "
                               "generation = generation + 1 WHERE kind = ? AND id = ?",
                               (spec_text, version, item.kind, item.id))
                    updated = self._select(tx, item.kind, item.id)
                    assert updated is not None  # written in this transaction
                    rec = updated
                    self._log(tx, MODIFIED, rec)
                    created = False
                written[key] = (spec_text, rec)
                out.append(store.UpsertResult(record=rec, created=created, changed=True))
            flush()
            if version != start:
                tx.execute("UPDATE counter SET value = ? WHERE row_key = 0", (version,))
        return out

    def update_status(self, kind: str, rec_id: str, status: dict[str, Any],
                      resource_version: str) -> store.Record:
        _check_kind(kind)
        status_text = _dump(status, f"{kind} {rec_id} status")
        with self._transaction() as tx:
            row = tx.execute("SELECT resource_version FROM records WHERE kind = ? AND id = ?",
                             (kind, rec_id)).fetchone()
            if row is None:
                raise errors.NotFoundError(f"{kind} {rec_id!r} not found")
            current = str(row[0])
            if current != resource_version:
                raise errors.ConflictError(
                    f"{kind} {rec_id!r}: resource version {resource_version!r} is stale, "
                    f"the current one is {current!r}; re-read and retry")
            rv = self._next_version(tx)
            tx.execute("UPDATE records SET status = ?, resource_version = ? "
                       "WHERE kind = ? AND id = ?", (status_text, rv, kind, rec_id))
            rec = self._select(tx, kind, rec_id)
            assert rec is not None  # updated in this transaction
            self._log(tx, MODIFIED, rec)
        return rec

    def set_finalizers(self, kind: str, rec_id: str, finalizers: Sequence[str],
                       resource_version: str) -> store.Record | None:
        """See ``store.Store.set_finalizers``: a local record is deleted by nobody else, so
        there is nothing for a finalizer to hold; the record is returned as it is."""
        rec = self.get(kind, rec_id)
        if rec is None:
            raise errors.NotFoundError(f"{kind} {rec_id!r} not found")
        return rec

    def list_record_pages(self, kind: str, page_size: int = store.PAGE_SIZE
                          ) -> Iterator[tuple[builtins.list[store.Record], str]]:
        """See ``store.Watchable.list_record_pages``: one page, the whole snapshot (a
        local file holds what one operator stored; reading it in one transaction is what
        keeps the version exact)."""
        yield self.list_records(kind)

    def list_records(self, kind: str) -> tuple[builtins.list[store.Record], str]:
        """See ``store.Store.list_records``: the records and the version, read in one
        snapshot, so a watch from that version misses nothing and repeats nothing."""
        _check_kind(kind)
        conn = self._conn()
        with translated():
            conn.execute("BEGIN")
            try:
                rows = conn.execute(f"SELECT {_COLUMNS} FROM records WHERE kind = ? "
                                    "ORDER BY seq", (kind,)).fetchall()
                version = conn.execute(
                    "SELECT value FROM counter WHERE row_key = 0").fetchone()[0]
            finally:
                conn.execute("COMMIT")
        return [_record(r) for r in rows], str(version)

    def watch_records(self, kind: str, since: str, timeout: float) -> _PollWatch:
        """See ``store.Store.watch_records``: the changes log polled every 50 ms. Nothing
        is ever compacted away, so a watch never expires; ``since`` is checked now."""
        _check_kind(kind)
        return _PollWatch(self, kind, _parse_since(since), timeout)

    def _changes_after(self, after: int) -> _ChangeRows:
        conn = self._conn()
        with translated():
            rows: _ChangeRows = conn.execute(
                "SELECT resource_version, type, record FROM changes "
                "WHERE resource_version > ? ORDER BY resource_version LIMIT ?",
                (after, _WATCH_PAGE)).fetchall()
        return rows

    def close(self) -> None:
        """Close every thread's connection; the store cannot be used afterwards."""
        with self._lock:
            self._closed = True
            conns, self._conns = self._conns, []
        for conn in conns:
            with translated():
                conn.close()


@dataclass(frozen=True)
class _Item:
    kind: str
    id: str
    namespace: str
    name: str
    spec: dict[str, Any]


_LOOKUP_CHUNK = 500  # well under SQLite's limit on bound parameters


def _existing(tx: Any, items: Sequence[_Item]) -> dict[tuple[str, str], tuple[str, store.Record]]:
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
                f"SELECT {_COLUMNS} FROM records WHERE kind = ? AND id IN "
                f"({', '.join('?' * len(chunk))})", (kind, *chunk)).fetchall()
            for row in rows:
                found[(row[0], row[1])] = (row[4], _record(row))
    return found


class _PollWatch:
    """A watch on the changes log: rows after the last version seen, one page at a time,
    no read held open across a yield (a slow consumer never blocks WAL checkpoints)."""

    def __init__(self, st: SqliteStore, kind: str, after: int, timeout: float) -> None:
        self._store, self._kind, self._after = st, kind, after
        self._deadline = time.monotonic() + max(timeout, 0.0)
        self._closed = threading.Event()

    def close(self) -> None:
        self._closed.set()

    def __iter__(self) -> Iterator[store.Event]:
        while not self._closed.is_set():
            rows = self._store._changes_after(self._after)
            mine = False
            for rv, change_type, snapshot in rows:
                self._after = rv
                rec = _from_snapshot(snapshot)
                if rec.kind == self._kind:
                    mine = True
                    yield store.Event(change_type, rec, str(rv))
            if rows and not mine:
                yield store.Event(store.BOOKMARK, None, str(self._after))
            if len(rows) == _WATCH_PAGE:
                continue
            remaining = self._deadline - time.monotonic()
            if remaining <= 0:
                return
            self._closed.wait(min(_POLL_SECONDS, remaining))
