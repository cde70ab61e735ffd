"""The operator's cache and informer (reconciler.runtime.informer) and the predicates that
turn changes into work (reconciler.runtime.operator), without I/O: an in-memory store.

Cases:
- Cache: observe keeps the newest version (an older watch event does not undo a write's
  answer), for_targets returns one target's records in creation order, a record that
  changes target moves index, delete, a fresh list (merge, then drop_unseen) reports
  added / changed / gone pairs and nothing for unchanged ones; every field comes back
  as stored, lists unpack lazily (index, slice, filter by phase, equality with a list)
  and a read's changes stay out of the cache; the target index goes from one key to
  several and back;
- Informer: lists in pages (delivered by name; the cache keeps creation order), an
  expired continue token lists again, and a record leaves the cache only after a whole
  list without it; lists, then watches from the list's version; watch events reach the handler
  with old and new; a bookmark only moves the version; DELETED drops; 410 (ExpiredError)
  lists again and reports what changed meanwhile (a record gone while the watch was
  down); a temporary error is retried; stop() ends it;
- CachedStore writes go to the store and their answers into the cache at once;
  TargetView lists only its targets;
- worth_work: new, new spec, deletion asked, rollback requested -> work; a status-only
  change -> none; needs_work by phase and condition (table).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from reconciler.adapters.store import port as store
from reconciler.domain import errors, model
from reconciler.runtime import informer, operator

W = model.WORKLOAD


def rec(rid: str, rv: int, *, target: str = "web", phase: str = "Pending", gen: int = 1,
        observed: int = 1, deleting: bool = False,
        conditions: list[dict[str, Any]] | None = None, **status: Any) -> store.Record:
    st: dict[str, Any] = {"phase": phase, "observedGeneration": observed, **status}
    if conditions:
        st["conditions"] = conditions
    return store.Record(W, rid, "default", rid, {
        "recommendationId": rid, "targetRef": {"kind": "Deployment", "name": target}},
        status=st, resource_version=str(rv), generation=gen, deleting=deleting)


TARGET = ("default", "Deployment", "web")


def test_cache_keeps_the_newest_and_indexes_by_target() -> None:
    c = informer.Cache()
    c.observe(rec("a", 5))
    old, now = c.observe(rec("a", 3, phase="Applied"))  # a late watch event
    assert now.resource_version == "5" and old is not None
    c.observe(rec("b", 6))
    c.observe(rec("z", 7, target="other"))
    assert [r.id for r in c.for_targets([TARGET])] == ["a", "b"]
    c.observe(rec("a", 8, target="other"))  # its spec now names another workload
    assert [r.id for r in c.for_targets([TARGET])] == ["b"]
    assert [r.id for r in c.for_targets([("default", "Deployment", "other")])] == ["a", "z"]
    c.delete(rec("b", 9))
    assert c.for_targets([TARGET]) == [] and len(c) == 2


def test_cache_gives_back_every_field_and_unpacks_lists_lazily() -> None:
    c = informer.Cache()
    full = store.Record(W, "f", "team-a", "any-name", {
        "recommendationId": "f", "targetRef": {"kind": "Deployment", "name": "web"}},
        status={"phase": "Applied", "observedGeneration": 2}, resource_version="11",
        generation=2, created_at="2026-12-04T10:00:00Z", finalizers=("dakr/rollback",),
        uid="u-1", deleting=True)
    later = dataclasses.replace(rec("a", 12), created_at="2026-12-04T11:00:00Z")
    c.observe(later)
    c.observe(full)
    assert c.get(W, "f") == full
    listed = c.all()  # creation order, not the order they were seen in
    assert isinstance(listed, informer.Records) and len(listed) == 2
    assert listed == [full, later] and listed[0] == full and listed[-1].id == "a"
    assert [r.id for r in listed[1:]] == ["a"] and list(c.all(phase="Applied")) == [full]
    # each read unpacks afresh: changing what was read does not change the cache
    listed[0].spec["targetRef"]["name"] = "changed"
    assert c.all()[0] == full


def test_cache_target_index_holds_one_key_or_several() -> None:
    c = informer.Cache()
    for i, rid in enumerate(["a", "b", "c"]):
        c.observe(rec(rid, i + 1))
    assert [r.id for r in c.for_targets([TARGET])] == ["a", "b", "c"]
    c.delete(rec("a", 9))
    c.delete(rec("c", 9))
    assert [r.id for r in c.for_targets([TARGET])] == ["b"]
    c.observe(rec("b", 10, target="other"))
    assert c.for_targets([TARGET]) == []
    c.observe(rec("d", 11))
    assert [r.id for r in c.for_targets([TARGET, ("default", "Deployment", "other")])] == [
        "b", "d"]  # creation order across targets


def _relist(c: informer.Cache, recs: list[store.Record]
            ) -> list[tuple[store.Record | None, store.Record | None]]:
    """A fresh list in one page, as the informer takes it in."""
    seen: set[informer.Key] = set()
    changed = c.merge(recs, seen)
    return c.drop_unseen(W, seen) + changed


def test_cache_relist_reports_the_differences() -> None:
    c = informer.Cache()
    c.observe(rec("a", 1))
    c.observe(rec("b", 2))
    changes = _relist(c, [rec("a", 1), rec("b", 4), rec("c", 5)])
    assert [(o.id if o else None, n.id if n else None) for o, n in changes] == [
        ("b", "b"), (None, "c")]
    gone = _relist(c, [rec("c", 5)])
    assert sorted((o.id if o else "", n) for o, n in gone) == [("a", None), ("b", None)]


class MemoryStore:
    """list_records / watch_records over scripted events (no I/O)."""

    def __init__(self) -> None:
        self.snapshots: list[list[store.Record]] = [[]]  # what each list answers, in turn
        self.version = 10
        self.watches: list[list[store.Event | Exception]] = []
        self.lists = 0
        self.since: list[str] = []

        self.page_size = 1000
        self.expire_pages: list[int] = []  # lists whose second page answers 410, in turn

    def list_records(self, kind: str) -> tuple[list[store.Record], str]:
        self.lists += 1
        snapshot = self.snapshots.pop(0) if len(self.snapshots) > 1 else self.snapshots[0]
        return list(snapshot), str(self.version)

    def list_record_pages(self, kind: str, page_size: int = store.PAGE_SIZE
                          ) -> Iterator[tuple[list[store.Record], str]]:
        recs, version = self.list_records(kind)
        expire = bool(self.expire_pages and self.expire_pages.pop(0))
        for i in range(0, max(len(recs), 1), self.page_size):
            if i and expire:
                raise errors.ExpiredError("the continue token expired")
            yield recs[i:i + self.page_size], version

    def watch_records(self, kind: str, since: str, timeout: float) -> Any:
        self.since.append(since)
        script = self.watches.pop(0) if self.watches else []
        done = threading.Event()

        class _W:
            def __iter__(self) -> Iterator[store.Event]:
                for ev in script:
                    if isinstance(ev, Exception):
                        raise ev
                    yield ev
                done.wait(0.05)

            def close(self) -> None:
                done.set()

        return _W()


def run_informer(src: MemoryStore, until: Any) -> tuple[informer.Informer,
                                                        list[tuple[str | None, str | None]]]:
    seen: list[tuple[str | None, str | None]] = []
    lock = threading.Lock()

    def handler(old: store.Record | None, new: store.Record | None) -> None:
        with lock:
            seen.append((old.resource_version if old else None,
                         new.resource_version if new else None))

    inf = informer.Informer(src, W, informer.Cache(), handler, backoff=0.01).start()
    deadline = threading.Event()
    for _ in range(200):
        if until(inf, seen):
            break
        deadline.wait(0.01)
    inf.stop()
    inf.join(5)
    return inf, seen


def test_informer_lists_in_pages_keeps_creation_order_and_relists_on_expiry() -> None:
    def aged(rid: str, rv: int, second: int) -> store.Record:
        r = rec(rid, rv)
        return store.Record(r.kind, r.id, r.namespace, r.name, r.spec, r.status,
                            r.resource_version, r.generation, f"2026-12-04T10:00:0{second}Z")

    src = MemoryStore()
    src.page_size = 2
    # pages come by name (as the API server lists), not by age
    first = [aged("a", 1, 5), aged("b", 2, 1), aged("c", 3, 4), aged("d", 4, 2),
             aged("gone", 5, 9)]
    src.snapshots = [first, first[:4]]
    src.expire_pages = [0, 1]  # the second list's continue token expires: list again
    src.watches = [[errors.ExpiredError("too old")]]
    inf, seen = run_informer(src, lambda i, s: i.lists >= 2)
    assert [r.id for r in inf.cache.for_targets([TARGET])] == ["b", "d", "c", "a"]
    assert src.lists == 3 and inf.lists == 2  # the expired one did not count as listed
    # "gone" left the cache only once a whole list was read without it
    assert seen.count(("5", None)) == 1 and len(inf.cache) == 4


def test_informer_lists_then_watches_from_the_version() -> None:
    src = MemoryStore()
    src.snapshots = [[rec("a", 3)]]
    src.watches = [[store.Event("MODIFIED", rec("a", 11, phase="Applied"), "11"),
                    store.Event("BOOKMARK", None, "15"),
                    store.Event("DELETED", rec("a", 16), "16")]]
    inf, seen = run_informer(src, lambda i, s: len(s) >= 3 and len(src.since) >= 2)
    assert seen[:3] == [(None, "3"), ("3", "11"), ("11", None)]
    assert src.since[:2] == ["10", "16"]  # from the list, then after the last event
    assert inf.synced.is_set() and len(inf.cache) == 0


def test_informer_lists_again_after_410() -> None:
    src = MemoryStore()
    # a went away and b changed while the watch was down
    src.snapshots = [[rec("a", 3), rec("b", 4)], [rec("b", 9)]]
    src.watches = [[errors.ExpiredError("too old")]]
    _, seen = run_informer(src, lambda i, s: src.lists >= 2 and len(s) >= 4)
    assert seen[:2] == [(None, "3"), (None, "4")]
    assert sorted(seen[2:4], key=str) == sorted([("3", None), ("4", "9")], key=str)


def test_informer_retries_a_temporary_error() -> None:
    src = MemoryStore()
    src.watches = [[errors.TemporaryError("connection reset")],
                   [store.Event("ADDED", rec("c", 12), "12")]]
    _, seen = run_informer(src, lambda i, s: len(s) >= 1)
    assert seen == [(None, "12")] and src.lists == 1


class Inner(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.statuses = 0

    def update_status(self, kind: str, rec_id: str, status: dict[str, Any],
                      resource_version: str) -> store.Record:
        self.statuses += 1
        return rec(rec_id, int(resource_version) + 1, **{k: v for k, v in status.items()
                                                         if k != "observedGeneration"})


def test_cached_store_writes_through_and_views_one_target() -> None:
    inner = Inner()
    c = informer.Cache()
    c.observe(rec("a", 1))
    c.observe(rec("z", 2, target="other"))
    cached = informer.CachedStore(inner, c)  # type: ignore[arg-type]
    new = cached.update_status(W, "a", {"phase": "Applied"}, "1")
    assert inner.statuses == 1 and c.get(W, "a") == new and new.phase == "Applied"
    view = informer.TargetView(cached, [TARGET])
    assert [r.id for r in view.list()] == ["a"] and [r.id for r in cached.list()] == ["a", "z"]
    assert view.list(phase="Applied") == [new] and view.get(W, "z") is not None


REQUESTED = [{"type": "RollbackRequested", "status": "True", "message": "m"}]


@pytest.mark.parametrize(("old", "new", "work"), [
    (None, rec("a", 1), True),                                  # new
    (rec("a", 1), rec("a", 2, gen=2), True),                    # new spec
    (rec("a", 1), rec("a", 2, deleting=True), True),            # deletion asked
    (rec("a", 1), rec("a", 2, conditions=REQUESTED), True),     # rollback requested
    (rec("a", 1), rec("a", 2, phase="Applied"), False),         # a status write
    (rec("a", 1, conditions=REQUESTED), rec("a", 2, conditions=REQUESTED,
                                            phase="Applied"), False),
    (rec("a", 1), None, False),                                 # gone
])
def test_worth_work(old: store.Record | None, new: store.Record | None, work: bool) -> None:
    assert operator.worth_work(old, new) is work


NOT_CONFIGURED = [{"type": "Applied", "status": "False", "reason": "WriterNotConfigured"}]


@pytest.mark.parametrize(("record", "writers", "work"), [
    (rec("a", 1), {"direct"}, True),                                       # Pending
    (rec("a", 1, phase="Applied", gen=2, observed=1), {"direct"}, True),   # new spec
    (rec("a", 1, phase="Applied"), {"direct"}, False),
    (rec("a", 1, phase="Rejected"), {"direct"}, False),
    (rec("a", 1, phase="Applying"), {"direct"}, True),          # an interrupted direct change
    (rec("a", 1, phase="Applying", pullRequest={"number": 3}), {"gitops"}, False),  # a PR
    (rec("a", 1, phase="Failed", conditions=NOT_CONFIGURED, decision={"mode": "gitops"}),
     {"direct"}, False),
    (rec("a", 1, phase="Failed", conditions=NOT_CONFIGURED, decision={"mode": "gitops"}),
     {"direct", "gitops"}, True),                                # its writer is here now
    (rec("a", 1, deleting=True), {"direct"}, False),             # deletions go elsewhere
])
def test_needs_work(record: store.Record, writers: set[str], work: bool) -> None:
    assert operator.needs_work(record, frozenset(writers)) is work
