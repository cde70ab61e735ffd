"""The recommendation records one direct-mode batch works on, and the rollback finalizer.

A batch reads every record once (one LIST per kind) instead of once per recommendation,
then serves reads from memory. Writes go to the real store and their answers refresh the
view, so it never hands out a resourceVersion older than one this process wrote; a write
from a stale read still fails with ``ConflictError`` on the server, and that record is read
again on next use.

The finalizer ``dakr.devzero.io/rollback`` keeps a deleted recommendation until its change
has been rolled back; records are created with it, so applying one costs no extra write.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from reconciler.adapters.store import port as store
from reconciler.domain import errors, model, retry

FINALIZER = "dakr.devzero.io/rollback"


class BatchStore:
    """A ``store.Store`` view for one batch: one LIST per kind up front, then memory."""

    def __init__(self, inner: store.Store) -> None:
        self.inner = inner
        self._recs: dict[tuple[str, str], store.Record] = {}
        self._reread: set[tuple[str, str]] = set()
        self.unstored: dict[tuple[str, str], str] = {}  # why the store refused a record
        self._primed = False

    def prime(self) -> None:
        for kind in model.KINDS:
            for r in self.inner.list(kind):
                self.remember(r)
        self._primed = True

    def remember(self, rec: store.Record) -> store.Record:
        key = (rec.kind, rec.id)
        self._recs[key] = rec
        self._reread.discard(key)
        return rec

    def forget(self, kind: str, rec_id: str) -> None:
        self._recs.pop((kind, rec_id), None)
        self._reread.add((kind, rec_id))

    def get(self, kind: str, rec_id: str) -> store.Record | None:
        key = (kind, rec_id)
        cached = self._recs.get(key)
        if cached is not None:
            return cached
        if self._primed and kind in model.KINDS and key not in self._reread:
            return None
        rec = self.inner.get(kind, rec_id)
        return None if rec is None else self.remember(rec)

    def list(self, kind: str | None = None, phase: str | None = None
             ) -> Sequence[store.Record]:
        if not self._primed or self._reread:
            return self.inner.list(kind, phase)
        recs = sorted(self._recs.values(), key=lambda r: r.created_at)
        return [r for r in recs if (kind is None or r.kind == kind)
                and (phase is None or r.phase == phase)]

    def upsert(self, kind: str, rec_id: str, namespace: str, name: str,
               spec: dict[str, Any], *, finalizers: Sequence[str] = (FINALIZER,),
               current: Any = store.UNREAD) -> store.UpsertResult:
        """Records this batch creates carry the rollback finalizer from the start: applying
        one later then costs no metadata write, and deleting one never applied is released
        by ``deletions.reconcile`` (every direct batch and operator pass)."""
        cur = self.get(kind, rec_id)
        if cur is not None and cur.spec == spec:
            return store.UpsertResult(cur, created=False, changed=False)
        try:
            res = self.inner.upsert(kind, rec_id, namespace, name, spec, finalizers=finalizers,
                                    current=cur)
        except errors.PermanentError as e:
            # E.g. its namespace does not exist: that recommendation fails, not the batch.
            self.unstored[(kind, rec_id)] = str(e)
            return store.UpsertResult(store.Record(kind, rec_id, namespace, name, spec),
                                      created=False, changed=False)
        self.remember(res.record)
        return res

    def update_status(self, kind: str, rec_id: str, status: dict[str, Any],
                      resource_version: str) -> store.Record:
        try:
            new = self.inner.update_status(kind, rec_id, status, resource_version)
        except errors.ConflictError:
            self.forget(kind, rec_id)
            raise
        return self.remember(new)

    def set_finalizers(self, kind: str, rec_id: str, finalizers: Sequence[str],
                       resource_version: str) -> store.Record | None:
        try:
            new = self.inner.set_finalizers(kind, rec_id, finalizers, resource_version)
        except errors.ConflictError:
            self.forget(kind, rec_id)
            raise
        if new is None:
            self.forget(kind, rec_id)
            return None
        return self.remember(new)

    def close(self) -> None:
        self.inner.close()


def ensure_finalizer(st: store.Store, rec: model.Recommendation) -> None:
    """Add the rollback finalizer before a change is made, guarded on the version read."""
    def add(_: int) -> None:
        cur = st.get(rec.kind, rec.id)
        if cur is None:
            raise errors.NotFoundError(f"{rec.kind} {rec.id} disappeared")
        if FINALIZER not in cur.finalizers:
            st.set_finalizers(rec.kind, rec.id, [*cur.finalizers, FINALIZER],
                              cur.resource_version)

    retry.on_conflict(add, f"the finalizers of {rec.kind} {rec.id}")


def release(st: store.Store, kind: str, rec_id: str) -> None:
    """Drop our finalizer (a deleted record then goes away)."""
    def drop(_: int) -> None:
        cur = st.get(kind, rec_id)
        if cur is None or FINALIZER not in cur.finalizers:
            return
        st.set_finalizers(kind, rec_id, [f for f in cur.finalizers if f != FINALIZER],
                          cur.resource_version)

    retry.on_conflict(drop, f"the finalizers of {kind} {rec_id}")


def object_ref(st: store.Store, kind: str, rec_id: str, namespace: str) -> dict[str, Any]:
    """The recommendation as the object an Event is about."""
    rec = st.get(kind, rec_id)
    meta: dict[str, Any] = {"name": rec.name if rec is not None else rec_id,
                            "namespace": namespace or None}
    if rec is not None and rec.uid:
        meta["uid"] = rec.uid
    if rec is not None:
        meta["resourceVersion"] = rec.resource_version
    return {"apiVersion": model.API_VERSION, "kind": kind, "metadata": meta}
