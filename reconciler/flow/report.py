"""Status writes: the report stage every writer ends with.

A status is written only when it says something new (a rerun that reaches the same state
writes nothing), and always guarded by the version read, so a concurrent writer's update
is never lost: a conflict re-reads and writes again.
"""

from __future__ import annotations

from typing import Protocol

from reconciler.adapters.store import port as store
from reconciler.domain import model, retry, status


class Keyed(Protocol):
    """Anything with a recommendation's kind and id (a recommendation or a stored record)."""

    @property
    def kind(self) -> str: ...

    @property
    def id(self) -> str: ...


def save_status(st: store.Store, rec: Keyed, new_status: model.Status) -> None:
    """Write the status unless it already says exactly this (a vanished record: nothing)."""
    def write(_: int) -> None:
        cur = st.get(rec.kind, rec.id)
        if cur is None:
            return
        new = new_status.to_dict()
        new.setdefault("observedGeneration", cur.generation)
        if status.same(cur.status, new):
            return
        st.update_status(rec.kind, rec.id, new, cur.resource_version)

    retry.on_conflict(write, f"status of {rec.id}")
