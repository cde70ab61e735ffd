"""What the stream client must remember across restarts: its cursor and its outbox.

The cursor is the highest downstream sequence handled (stored, or refused with a Nack). It is
written only after the store write it covers has committed, so after a crash it can only lag
behind the store, never run ahead of it: a lag means a redelivery, which the idempotent store
turns into a no-op, while running ahead would lose recommendations.

The outbox holds upstream messages (status changes, decisions, audit events) until the
platform confirms them, so a message produced while disconnected, or sent into a connection
that then broke, goes out after the next reconnect, in order.

Both live in their own SQLite file (by default next to the store's file): the store's schema
belongs to the store, and this file can sit beside any backend, a cluster included.
"""

from __future__ import annotations

import contextlib
import logging
import pathlib
import sqlite3
import threading

from reconciler.adapters.store import sqlite as sqlite_store
from reconciler.domain import errors

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cursor (
    stream   TEXT PRIMARY KEY,
    sequence INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    upstream_sequence INTEGER PRIMARY KEY AUTOINCREMENT,
    body_kind         TEXT NOT NULL,
    body              BLOB NOT NULL
);
"""


def _translated(path: pathlib.Path) -> contextlib.AbstractContextManager[None]:
    return sqlite_store.translated(f"stream state {path}")


class StreamState:
    """Cursor and bounded outbox in one SQLite file; safe to share between threads.

    ``outbox_limit`` bounds the outbox: when the platform stays away long enough for it to
    fill, the oldest entries are dropped (and counted in ``dropped``), because an operator
    that runs out of disk is worse than a platform that misses old audit lines.
    """

    def __init__(self, path: str | pathlib.Path, stream: str = "default",
                 outbox_limit: int = 10_000) -> None:
        self.path = pathlib.Path(path)
        self.stream = stream
        self.outbox_limit = outbox_limit
        self.dropped = 0
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise errors.PermanentError(f"stream state: cannot create {self.path.parent}: {e}"
                                        ) from e
        with _translated(self.path):
            self._db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None,
                                       check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self._db.execute(statement)

    def cursor(self) -> int:
        with self._lock, _translated(self.path):
            row = self._db.execute("SELECT sequence FROM cursor WHERE stream = ?",
                                   (self.stream,)).fetchone()
        return int(row[0]) if row else 0

    def advance(self, sequence: int) -> None:
        """Move the cursor forward to ``sequence``; never backwards (a late duplicate)."""
        with self._lock, _translated(self.path):
            self._db.execute(
                "INSERT INTO cursor (stream, sequence) VALUES (?, ?) "
                "ON CONFLICT (stream) DO UPDATE SET sequence = MAX(sequence, excluded.sequence)",
                (self.stream, sequence))

    def append(self, body_kind: str, body: bytes) -> int:
        """Queue one upstream message; returns its upstream sequence (its order)."""
        with self._lock, _translated(self.path):
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cur = self._db.execute("INSERT INTO outbox (body_kind, body) VALUES (?, ?)",
                                       (body_kind, body))
                useq = int(cur.lastrowid or 0)
                count = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
                excess = int(count) - self.outbox_limit
                if excess > 0:
                    self._db.execute(
                        "DELETE FROM outbox WHERE upstream_sequence IN (SELECT upstream_sequence "
                        "FROM outbox ORDER BY upstream_sequence LIMIT ?)", (excess,))
                    self.dropped += excess
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        if excess > 0:
            log.warning("stream outbox full (%d): dropped the %d oldest upstream message(s)",
                        self.outbox_limit, excess)
        return useq

    def pending(self, after: int, limit: int = 100) -> list[tuple[int, str, bytes]]:
        """Unconfirmed upstream messages after ``after``, oldest first."""
        with self._lock, _translated(self.path):
            rows = self._db.execute(
                "SELECT upstream_sequence, body_kind, body FROM outbox "
                "WHERE upstream_sequence > ? ORDER BY upstream_sequence LIMIT ?",
                (after, limit)).fetchall()
        return [(int(r[0]), str(r[1]), bytes(r[2])) for r in rows]

    def confirm(self, upto: int) -> None:
        """The platform has everything up to ``upto``: forget it."""
        with self._lock, _translated(self.path):
            self._db.execute("DELETE FROM outbox WHERE upstream_sequence <= ?", (upto,))

    def outbox_size(self) -> int:
        with self._lock, _translated(self.path):
            return int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def close(self) -> None:
        with self._lock, _translated(self.path):
            self._db.close()


DEFAULT_PATH = "state/stream.db"


def default_path(store_uri: str, explicit: str | None = None,
                 state_dir: pathlib.Path | None = None) -> pathlib.Path:
    """Where the stream keeps its cursor and outbox: next to a SQLite store by default, else
    in the state directory (the CR store lives in the cluster, the cursor on local disk)."""
    if explicit:
        return pathlib.Path(explicit)
    if store_uri.startswith("sqlite:"):
        return pathlib.Path(store_uri[len("sqlite:"):] + ".stream")
    return state_dir / "stream.db" if state_dir is not None else pathlib.Path(DEFAULT_PATH)
