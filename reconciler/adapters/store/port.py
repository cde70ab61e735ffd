"""The recommendation store interface, shared by the SQLite and the Kubernetes CR backends.

Records are kept in their custom-resource form (``spec`` and ``status`` dicts) so that the
same record can be a row in SQLite or a ``WorkloadRecommendation`` object in a cluster.
The key is ``(kind, recommendationId)``: the id is the source's idempotency key.

Concurrency follows the Kubernetes API: every write bumps ``resource_version``; a status
update carries the version it read and fails with ``errors.ConflictError`` when another
writer got there first, instead of silently losing that writer's update.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from reconciler.domain import model

# ``upsert(current=...)``: the caller has not read the record (the store reads it).
UNREAD: Any = object()


# Records per LIST page when an informer lists: client-go's pager uses 500 too.
PAGE_SIZE = 500

@dataclass(frozen=True)
class Record:
    """One stored recommendation, as the store last saw it."""

    kind: str
    id: str
    namespace: str  # "" for cluster-scoped kinds
    name: str
    spec: dict[str, Any]
    status: dict[str, Any] = field(default_factory=dict)
    resource_version: str = ""
    generation: int = 1
    created_at: str = ""  # RFC 3339, UTC
    # Kubernetes metadata direct mode's rollback relies on (a SQLite record has none):
    finalizers: tuple[str, ...] = ()
    uid: str = ""
    deleting: bool = False  # deletion was asked for (deletionTimestamp); finalizers hold it

    @property
    def phase(self) -> str:
        return str(self.status.get("phase", "Pending"))

    @property
    def observed(self) -> bool:
        """Whether the status speaks of the current spec (as observedGeneration does for
        Kubernetes controllers): a changed spec has to be looked at again."""
        return int(self.status.get("observedGeneration", 0) or 0) >= self.generation

    def to_document(self) -> dict[str, Any]:
        """The recommendation in its custom-resource form (what files and the stream carry)."""
        meta: dict[str, Any] = {"name": self.name}
        if self.namespace:
            meta["namespace"] = self.namespace
        return {"apiVersion": model.API_VERSION, "kind": self.kind,
                "metadata": meta, "spec": self.spec}


@dataclass(frozen=True)
class UpsertResult:
    record: Record
    created: bool  # no record with this (kind, id) existed
    changed: bool  # the spec differed from the stored one (False: an idempotent replay)


ADDED, MODIFIED, DELETED, BOOKMARK = "ADDED", "MODIFIED", "DELETED", "BOOKMARK"


@dataclass(frozen=True)
class Event:
    """One change seen by a watch, as in a Kubernetes watch: ADDED, MODIFIED, DELETED (the
    record as it was last), or BOOKMARK (no record: the history up to ``resource_version``
    holds nothing more for this watch)."""

    type: str
    record: Record | None
    resource_version: str


class Watch(Protocol):
    """An open watch: iterate its events; ``close`` ends it early from any thread."""

    def __iter__(self) -> Iterator[Event]: ...

    def close(self) -> None: ...


class Store(Protocol):
    def get(self, kind: str, rec_id: str) -> Record | None:
        """The record, or None when the id is unknown."""
        ...

    def list(self, kind: str | None = None, phase: str | None = None) -> Sequence[Record]:
        """Records ordered by creation, optionally filtered by kind and status phase.

        A sequence, not necessarily a list: the operator's cache hands out one that
        unpacks each record as it is read, so a scan of every recommendation never holds
        them all unpacked at once."""
        ...

    def upsert(self, kind: str, rec_id: str, namespace: str, name: str,
               spec: dict[str, Any], *, finalizers: Sequence[str] = (),
               current: Any = UNREAD) -> UpsertResult:
        """Store the spec under ``(kind, rec_id)``.

        The same spec again changes nothing (no version bump): the id is an idempotency key.
        A different spec replaces the stored one, bumps ``generation`` and keeps the status.
        ``finalizers``: set on a record this call creates (direct mode's rollback finalizer,
        so applying it later costs no second write). ``current``: the record as the caller
        last read it (None: known absent), which a remote store may use to save a read; a
        wrong guess costs a conflict and a re-read, never a lost write.
        """
        ...

    def update_status(self, kind: str, rec_id: str, status: dict[str, Any],
                      resource_version: str) -> Record:
        """Replace the status if ``resource_version`` is still current.

        Raises ``errors.ConflictError`` when it is stale and ``errors.NotFoundError`` when
        the record does not exist.
        """
        ...

    def set_finalizers(self, kind: str, rec_id: str, finalizers: Sequence[str],
                       resource_version: str) -> Record | None:
        """Replace the record's finalizers if ``resource_version`` is still current
        (``errors.ConflictError`` when it is not). None when that released a record whose
        deletion was asked for: it is gone. A store whose records nobody else can delete
        (a local SQLite file) keeps none and returns the record as it is."""
        ...

    def close(self) -> None:
        ...


class Watchable(Store, Protocol):
    """A store that can be listed and watched, as an informer needs (the SQLite file and
    the custom resources; the views one batch works through are plain ``Store``s)."""

    def list_records(self, kind: str) -> tuple[list[Record], str]:
        """Every record of ``kind`` in creation order, and the version to watch it from."""
        ...

    def list_record_pages(self, kind: str, page_size: int = PAGE_SIZE
                          ) -> Iterator[tuple[list[Record], str]]:
        """``list_records`` a page at a time (each page in creation order, each with the
        version to watch from), so an informer's first list holds one page in memory, not
        the cluster's every recommendation. Raises ``errors.ExpiredError`` when the list
        can no longer be continued: list again."""
        ...

    def watch_records(self, kind: str, since: str, timeout: float) -> Watch:
        """The changes of ``kind`` after ``since`` (a version ``list_records`` or an event
        gave), in order, until ``timeout`` seconds have passed or the watch is closed.
        Raises ``errors.ExpiredError`` (on opening or while iterating) when the history
        after ``since`` is gone: list again."""
        ...
