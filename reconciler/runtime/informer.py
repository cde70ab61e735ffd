"""What the operator knows of its recommendations: a cache kept current by informers, and
the store views its work goes through.

An informer is client-go's reflector: list a kind, then watch it from the list's version;
when the watch ends (its timeout, a dropped connection, a read that stalls past the
timeout) watch again from the last version seen (bookmarks keep that version current on a
quiet kind); when the server says the version is too old (410 Gone), list again and tell
the handler what changed in between. Every change reaches the handler with the record as
it was and as it is, so the handler decides what is worth work (a new spec, a deletion)
and what is not (a status the operator itself just wrote).

Reads then come from memory, indexed by target: a batch for one workload reads only that
workload's recommendations, whatever the cluster holds.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from reconciler.adapters.store import port as store
from reconciler.domain import errors, model

log = logging.getLogger(__name__)

Key = tuple[str, str]            # (kind, recommendation id)
Target = tuple[str, str, str]    # (namespace, kind, name): what one work-queue key covers
Handler = Callable[[store.Record | None, store.Record | None], None]
_Results = list[store.UpsertResult]  # an alias: inside CachedStore ``list`` is a method


def target_of(rec: store.Record) -> Target:
    return model.target_key_of(rec.kind, rec.namespace, rec.spec)


@dataclass(frozen=True, slots=True)
class _Entry:
    """A record as the cache keeps it: the fields the index and the version checks need,
    and spec and status packed as compact JSON. A cluster's recommendations then cost
    about a kilobyte each in the operator's memory instead of several (Python dicts of
    strings are large), and a batch unpacks only the few it works on."""

    kind: str
    id: str
    namespace: str
    name: str
    resource_version: str
    generation: int
    created_at: str
    finalizers: tuple[str, ...]
    uid: str
    deleting: bool
    target: Target
    phase: str
    packed: bytes

    @classmethod
    def of(cls, rec: store.Record) -> _Entry:
        return cls(rec.kind, rec.id, rec.namespace, rec.name, rec.resource_version,
                   rec.generation, rec.created_at, rec.finalizers, rec.uid, rec.deleting,
                   target_of(rec), rec.phase,
                   json.dumps([rec.spec, rec.status], separators=(",", ":")).encode())

    def record(self) -> store.Record:
        spec, status = json.loads(self.packed)
        return store.Record(self.kind, self.id, self.namespace, self.name, spec, status,
                            self.resource_version, self.generation, self.created_at,
                            self.finalizers, self.uid, self.deleting)


def _newer_version(new: str, old: str) -> bool:
    """Whether version ``new`` is at least as recent as ``old`` (versions compare as
    integers where they are, as etcd revisions and the SQLite counter do)."""
    try:
        return int(new) >= int(old)
    except ValueError:
        return True


class Cache:
    """Every recommendation the informers have seen, by key and by target, thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._recs: dict[Key, _Entry] = {}
        self._seq: dict[Key, int] = {}           # first seen: creation order
        self._by_target: dict[Target, set[Key]] = {}
        self._next = 0

    def _put(self, rec: store.Record, *, force: bool = False) -> store.Record | None:
        """Keep ``rec`` (unless a newer one is known and not ``force``); the previous one."""
        key = (rec.kind, rec.id)
        old = self._recs.get(key)
        if old is not None and not force and not _newer_version(rec.resource_version,
                                                                 old.resource_version):
            return old.record()
        entry = _Entry.of(rec)
        if old is not None and old.target != entry.target:
            self._by_target.get(old.target, set()).discard(key)
        self._recs[key] = entry
        if key not in self._seq:
            self._seq[key] = self._next
            self._next += 1
        self._by_target.setdefault(entry.target, set()).add(key)
        return old.record() if old is not None else None

    def _drop(self, key: Key) -> store.Record | None:
        old = self._recs.pop(key, None)
        self._seq.pop(key, None)
        if old is None:
            return None
        keys = self._by_target.get(old.target)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_target[old.target]
        return old.record()

    def observe(self, rec: store.Record) -> tuple[store.Record | None, store.Record]:
        """A record read or written: kept unless an even newer one is already known.
        Returns (what was known before, what is known now)."""
        with self._lock:
            old = self._put(rec)
            now = self._recs[(rec.kind, rec.id)]
            return old, rec if now.resource_version == rec.resource_version else now.record()

    def delete(self, rec: store.Record) -> store.Record | None:
        with self._lock:
            return self._drop((rec.kind, rec.id))

    def replace(self, kind: str, recs: Sequence[store.Record]
                ) -> list[tuple[store.Record | None, store.Record | None]]:
        """A fresh list of one kind, which is the truth: what changed since the cache last
        knew it, as (old, new) pairs (a record that is gone comes as (old, None))."""
        out: list[tuple[store.Record | None, store.Record | None]] = []
        with self._lock:
            seen = {(r.kind, r.id) for r in recs}
            for key in [k for k in self._recs if k[0] == kind and k not in seen]:
                out.append((self._drop(key), None))
            for r in recs:
                old = self._recs.get((r.kind, r.id))
                if old is not None and old.resource_version == r.resource_version:
                    continue
                out.append((self._put(r, force=True), r))
        return out

    def get(self, kind: str, rec_id: str) -> store.Record | None:
        with self._lock:
            entry = self._recs.get((kind, rec_id))
        return entry.record() if entry is not None else None

    def for_targets(self, targets: Iterable[Target]) -> list[store.Record]:
        """The recommendations for these targets, in creation order."""
        with self._lock:
            keys = [k for t in targets for k in self._by_target.get(t, ())]
            entries = [self._recs[k] for k in sorted(keys, key=lambda k: self._seq[k])]
        return [e.record() for e in entries]

    def all(self, kind: str | None = None, phase: str | None = None) -> list[store.Record]:
        """Every record (of ``kind``, in ``phase``), in creation order; only those are
        unpacked."""
        with self._lock:
            entries = [self._recs[k] for k in sorted(self._recs, key=lambda k: self._seq[k])]
        return [e.record() for e in entries if (kind is None or e.kind == kind)
                and (phase is None or e.phase == phase)]

    def __len__(self) -> int:
        with self._lock:
            return len(self._recs)


class CachedStore:
    """``store.Store`` for the operator: reads from the cache, writes to the real store and
    the answer into the cache at once (the watch event that follows changes nothing)."""

    def __init__(self, inner: store.Watchable, cache: Cache,
                 finalizers: Sequence[str] = ()) -> None:
        self.inner, self.cache = inner, cache
        # Set on every record this store creates (direct mode's rollback finalizer).
        self.finalizers = tuple(finalizers)

    def get(self, kind: str, rec_id: str) -> store.Record | None:
        return self.cache.get(kind, rec_id)

    def list(self, kind: str | None = None, phase: str | None = None) -> list[store.Record]:
        return self.cache.all(kind, phase)

    def upsert(self, kind: str, rec_id: str, namespace: str, name: str,
               spec: dict[str, Any], *, finalizers: Sequence[str] = (),
               current: Any = store.UNREAD) -> store.UpsertResult:
        res = self.inner.upsert(kind, rec_id, namespace, name, spec,
                                finalizers=tuple(finalizers) or self.finalizers,
                                current=self.cache.get(kind, rec_id))
        self.cache.observe(res.record)
        return res

    def upsert_many(self, items: Sequence[tuple[str, str, str, str, dict[str, Any]]]
                    ) -> _Results:
        """The stream's batches: the store's own bulk write when it has one."""
        native = getattr(self.inner, "upsert_many", None)
        if callable(native):
            results: _Results = native(items)
        else:
            results = [self.upsert(*item) for item in items]
        for r in results:
            self.cache.observe(r.record)
        return results

    def update_status(self, kind: str, rec_id: str, status: dict[str, Any],
                      resource_version: str) -> store.Record:
        rec = self.inner.update_status(kind, rec_id, status, resource_version)
        self.cache.observe(rec)
        return rec

    def set_finalizers(self, kind: str, rec_id: str, finalizers: Sequence[str],
                       resource_version: str) -> store.Record | None:
        rec = self.inner.set_finalizers(kind, rec_id, finalizers, resource_version)
        if rec is None:
            cur = self.cache.get(kind, rec_id)
            if cur is not None:
                self.cache.delete(cur)
        else:
            self.cache.observe(rec)
        return rec

    def close(self) -> None:
        """The real store belongs to whoever opened it."""


class TargetView(CachedStore):
    """The cached store as one batch for some targets sees it: its lists hold only their
    recommendations (history, supersede and priming then cost what the targets hold, not
    what the cluster holds)."""

    def __init__(self, base: CachedStore, targets: Iterable[Target]) -> None:
        super().__init__(base.inner, base.cache, base.finalizers)
        self.targets = frozenset(targets)

    def list(self, kind: str | None = None, phase: str | None = None) -> list[store.Record]:
        return [r for r in self.cache.for_targets(self.targets)
                if (kind is None or r.kind == kind) and (phase is None or r.phase == phase)]


class Informer:
    """List and watch one kind into the cache, calling ``handler(old, new)`` per change."""

    def __init__(self, source: store.Watchable, kind: str, cache: Cache, handler: Handler, *,
                 watch_timeout: float = 300.0, backoff: float = 1.0,
                 backoff_max: float = 30.0,
                 on_list: Callable[[str], None] = lambda _: None) -> None:
        self.source, self.kind, self.cache, self.handler = source, kind, cache, handler
        self._on_list = on_list
        self.watch_timeout = watch_timeout
        self._backoff, self._backoff_max = backoff, backoff_max
        self.synced = threading.Event()     # the first list is in the cache
        self.lists = 0                      # how often it listed (re-lists after 410)
        self.last_contact = 0.0             # monotonic time of the last answer
        self._stop = threading.Event()
        self._watch: store.Watch | None = None
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"informer-{kind}")

    def start(self) -> Informer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        w = self._watch
        if w is not None:
            w.close()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def healthy(self, stale_after: float) -> bool:
        """Synced, and heard from the store recently (a watch answers at least once per
        ``watch_timeout``; bookmarks more often)."""
        return self.synced.is_set() and time.monotonic() - self.last_contact < stale_after

    def _emit(self, old: store.Record | None, new: store.Record | None) -> None:
        try:
            self.handler(old, new)
        except Exception:  # one bad record must not stop the informer
            log.exception("informer %s: handling a change failed", self.kind)

    def _run(self) -> None:
        version = ""
        delay = self._backoff
        while not self._stop.is_set():
            try:
                if not version:
                    recs, version = self.source.list_records(self.kind)
                    self.lists += 1
                    self._on_list(self.kind)
                    self.last_contact = time.monotonic()
                    for old, new in self.cache.replace(self.kind, recs):
                        self._emit(old, new)
                    self.synced.set()
                self._watch = self.source.watch_records(self.kind, version,
                                                        self.watch_timeout)
                if self._stop.is_set():
                    self._watch.close()
                for ev in self._watch:
                    self.last_contact = time.monotonic()
                    version = ev.resource_version or version
                    if ev.record is None:
                        continue  # a bookmark: only the version moves
                    if ev.type == store.DELETED:
                        self._emit(self.cache.delete(ev.record), None)
                        continue
                    old, now = self.cache.observe(ev.record)
                    if now is ev.record:
                        self._emit(old, now)
                self.last_contact = time.monotonic()
                delay = self._backoff
            except errors.ExpiredError as e:
                log.info("informer %s: %s; listing again", self.kind, e)
                version = ""
            except errors.ReconcilerError as e:
                log.warning("informer %s: %s; trying again in %.1fs", self.kind, e, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, self._backoff_max)
            except Exception:
                log.exception("informer %s failed; trying again in %.1fs", self.kind, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, self._backoff_max)
            finally:
                self._watch = None
