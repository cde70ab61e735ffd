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
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, overload

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
    """A record as the cache keeps it: what the index, the version checks and the phase
    filter need, and the rest packed as one compact JSON bytes object.

    Few objects per record on purpose: ten thousand records held as Python dicts cost
    several kilobytes each, and small objects that live for the whole run, allocated in
    between a burst's short-lived ones, keep the allocator's arenas from ever being given
    back. Kind, phase and the target's namespace and kind are interned (a handful of
    distinct values shared by every record)."""

    kind: str
    id: str
    resource_version: str
    target: Target
    phase: str
    created_at: str
    seq: int          # first seen: breaks ties between records created in one second
    packed: bytes     # [namespace, name, generation, finalizers, uid, deleting, spec,
                      #  status]

    @classmethod
    def of(cls, rec: store.Record, seq: int) -> _Entry:
        ns, kind, name = target_of(rec)
        packed = json.dumps([rec.namespace, rec.name, rec.generation, rec.finalizers,
                             rec.uid, rec.deleting, rec.spec, rec.status],
                            separators=(",", ":")).encode()
        return cls(sys.intern(rec.kind), rec.id, rec.resource_version,
                   (sys.intern(ns), sys.intern(kind), name), sys.intern(rec.phase),
                   rec.created_at, seq, packed)

    def record(self) -> store.Record:
        ns, name, generation, finalizers, uid, deleting, spec, status = json.loads(self.packed)
        return store.Record(self.kind, self.id, ns, name, spec, status,
                            self.resource_version, generation, self.created_at,
                            tuple(finalizers), uid, deleting)


def _by_age(e: _Entry) -> tuple[str, int]:
    """Creation order: a paged list delivers records by name, not by age."""
    return (e.created_at, e.seq)


class Records(Sequence[store.Record]):
    """Cached records, unpacked when read (and not kept): what ``Cache.all`` answers."""

    __slots__ = ("_entries",)

    def __init__(self, entries: list[_Entry]) -> None:
        self._entries = entries

    def __len__(self) -> int:
        return len(self._entries)

    @overload
    def __getitem__(self, i: int) -> store.Record: ...
    @overload
    def __getitem__(self, i: slice) -> Records: ...

    def __getitem__(self, i: int | slice) -> store.Record | Records:
        if isinstance(i, slice):
            return Records(self._entries[i])
        return self._entries[i].record()

    def __iter__(self) -> Iterator[store.Record]:
        return (e.record() for e in self._entries)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, (str, bytes)):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Records({len(self._entries)})"


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
        # target -> its key, or a set of keys when it has several (most have one: a set
        # per target would be the cache's biggest object per record)
        self._by_target: dict[Target, Key | set[Key]] = {}
        self._next = 0

    def _index(self, target: Target, key: Key) -> None:
        have = self._by_target.get(target)
        if have is None:
            self._by_target[target] = key
        elif isinstance(have, set):
            have.add(key)
        elif have != key:
            self._by_target[target] = {have, key}

    def _unindex(self, target: Target, key: Key) -> None:
        have = self._by_target.get(target)
        if isinstance(have, set):
            have.discard(key)
            if len(have) == 1:
                self._by_target[target] = next(iter(have))
            elif not have:
                del self._by_target[target]
        elif have == key:
            del self._by_target[target]

    def _keys_of(self, target: Target) -> Iterable[Key]:
        have = self._by_target.get(target)
        if have is None:
            return ()
        return have if isinstance(have, set) else (have,)

    def _put(self, rec: store.Record, *, force: bool = False) -> store.Record | None:
        """Keep ``rec`` (unless a newer one is known and not ``force``); the previous one."""
        key = (rec.kind, rec.id)
        old = self._recs.get(key)
        if old is not None and not force and not _newer_version(rec.resource_version,
                                                                 old.resource_version):
            return old.record()
        if old is None:
            seq, self._next = self._next, self._next + 1
        else:
            seq = old.seq
        entry = _Entry.of(rec, seq)
        if old is not None and old.target != entry.target:
            self._unindex(old.target, key)
        self._recs[key] = entry
        self._index(entry.target, key)
        return old.record() if old is not None else None

    def _drop(self, key: Key) -> store.Record | None:
        old = self._recs.pop(key, None)
        if old is None:
            return None
        self._unindex(old.target, key)
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

    def merge(self, page: Iterable[store.Record], seen: set[Key]
              ) -> list[tuple[store.Record | None, store.Record | None]]:
        """One page of a fresh list, which is the truth: kept, its keys added to ``seen``;
        the (old, new) pairs of what changed since the cache last knew it."""
        out: list[tuple[store.Record | None, store.Record | None]] = []
        with self._lock:
            for r in page:
                key = (r.kind, r.id)
                seen.add(key)
                old = self._recs.get(key)
                if old is not None and old.resource_version == r.resource_version:
                    continue
                out.append((self._put(r, force=True), r))
        return out

    def drop_unseen(self, kind: str, seen: set[Key]
                    ) -> list[tuple[store.Record | None, store.Record | None]]:
        """After the last page: what the list no longer holds is gone, as (old, None)."""
        with self._lock:
            gone = [k for k in self._recs if k[0] == kind and k not in seen]
            return [(self._drop(k), None) for k in gone]

    def get(self, kind: str, rec_id: str) -> store.Record | None:
        with self._lock:
            entry = self._recs.get((kind, rec_id))
        return entry.record() if entry is not None else None

    def for_targets(self, targets: Iterable[Target]) -> list[store.Record]:
        """The recommendations for these targets, in creation order."""
        with self._lock:
            entries = sorted((self._recs[k] for t in targets for k in self._keys_of(t)),
                             key=_by_age)
        return [e.record() for e in entries]

    def all(self, kind: str | None = None, phase: str | None = None) -> Records:
        """Every record (of ``kind``, in ``phase``), in creation order, each unpacked only
        as it is read: a resync over ten thousand recommendations holds one at a time, not
        ten thousand (which once set the operator's peak memory)."""
        with self._lock:
            entries = sorted(self._recs.values(), key=_by_age)
        return Records([e for e in entries if (kind is None or e.kind == kind)
                        and (phase is None or e.phase == phase)])

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

    def list(self, kind: str | None = None, phase: str | None = None
             ) -> Sequence[store.Record]:
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

    def list(self, kind: str | None = None, phase: str | None = None
             ) -> Sequence[store.Record]:
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

    def _list(self) -> str:
        """List the kind page by page into the cache (a page's changes reach the handler
        before the next page is read), then drop what the list no longer holds; the
        version to watch from."""
        seen: set[Key] = set()
        version = ""
        for page, page_version in self.source.list_record_pages(self.kind):
            version = page_version
            self.last_contact = time.monotonic()
            for old, new in self.cache.merge(page, seen):
                self._emit(old, new)
        for old, new in self.cache.drop_unseen(self.kind, seen):
            self._emit(old, new)
        self.lists += 1
        self._on_list(self.kind)
        self.synced.set()
        return version

    def _run(self) -> None:
        version = ""
        delay = self._backoff
        while not self._stop.is_set():
            try:
                if not version:
                    version = self._list()
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
