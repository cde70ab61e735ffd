"""The behaviour every recommendation store backend must have, as a reusable test class.

A backend's test module subclasses ``StoreContract`` and provides two fixtures:

- ``store``: a fresh, empty store (closed by the fixture at teardown);
- ``reopen``: a zero-argument callable returning a NEW store instance over the same data,
  which proves that records survive a restart. It must be picklable (a module-level
  function or a ``functools.partial``): the multi-process test calls it in child processes.

Cases covered:
- get of an unknown id returns None;
- upsert creates (generation 1, a resource version, empty status, RFC 3339 UTC created_at);
- upsert of the same spec is an idempotent replay (no write, no version bump, key order
  does not matter);
- upsert of a changed spec replaces it, bumps generation and the version, keeps the status;
- update_status succeeds with the current version, raises ConflictError (naming kind, id
  and both versions) with a stale one, and NotFoundError for a missing record;
- list is ordered by creation and filters by kind and phase (no phase means Pending);
- list_records gives a kind's records and the version to watch from;
- watch_records reports every write of its kind in order (several writes to one record
  included), resumes after ``since``, returns empty after its timeout when nothing
  happens, waits for a change that arrives during its timeout, and ends when closed from
  another thread;
- records and statuses survive a restart, and a watch from before it sees what follows;
- two threads racing update_status from the same read: exactly one wins, one conflicts;
- two OS processes each doing 50 read-modify-write increments with retry-on-conflict end
  with exactly 100 increments and no value written twice (no lost update);
- non-ASCII text round-trips in spec and status;
- an unknown kind is rejected with a PermanentError naming it.
"""

from __future__ import annotations

import datetime
import multiprocessing
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from reconciler.adapters.store import port as store_api
from reconciler.domain import errors, model

Opener = Callable[[], store_api.Watchable]
W = model.WORKLOAD
N = model.NODE_GROUP


def _spec(rec_id: str, cpu: str = "250m") -> dict[str, Any]:
    return {
        "recommendationId": rec_id,
        "target": {"kind": "Deployment", "name": "web", "namespace": "default"},
        "containers": [{"name": "app", "requests": {"cpu": cpu, "memory": "256Mi"}}],
    }


def _changes(s: store_api.Watchable, kind: str, since: str, timeout: float = 1.0,
             first: bool = False) -> list[store_api.Event]:
    """The watch's events (bookmarks left out) until its timeout, or the ``first`` one."""
    out: list[store_api.Event] = []
    w = s.watch_records(kind, since, timeout)
    try:
        for ev in w:
            if ev.type != store_api.BOOKMARK:
                out.append(ev)
                if first:
                    break
    finally:
        w.close()
    return out


def _increment_worker(open_store: Opener, rec_id: str, n: int, start: Any, out: Any) -> None:
    """Child-process body: ``n`` read-modify-write increments of status.count.

    Reports every value it wrote and how many conflicts it retried, so the parent can check
    that no increment was lost or written twice.
    """
    s = open_store()
    written: list[int] = []
    conflicts = 0
    try:
        start.wait(60)  # a barrier shared by all workers: they start writing together
        while len(written) < n:
            rec = s.get(W, rec_id)
            assert rec is not None
            value = int(rec.status.get("count", 0)) + 1
            time.sleep(0.001)  # "deciding" takes a moment: widens the race window
            try:
                s.update_status(W, rec_id, {"phase": "Applying", "count": value},
                                rec.resource_version)
            except errors.TemporaryError:  # ConflictError included: re-read and retry
                conflicts += 1
                continue
            written.append(value)
    finally:
        s.close()
    out.put((written, conflicts))


class StoreContract:
    """Subclass with ``store`` and ``reopen`` fixtures to run these against a backend."""

    # -- get / upsert ---------------------------------------------------------------------

    def test_get_unknown_is_none(self, store: store_api.Watchable) -> None:
        assert store.get(W, "no-such-id") is None
        assert store.list() == []

    def test_upsert_creates(self, store: store_api.Watchable) -> None:
        res = store.upsert(W, "rec-1", "default", "rec-1", _spec("rec-1"))
        assert (res.created, res.changed) == (True, True)
        rec = res.record
        assert (rec.kind, rec.id, rec.namespace, rec.name) == (W, "rec-1", "default", "rec-1")
        assert rec.spec == _spec("rec-1")
        assert rec.status == {}
        assert rec.phase == "Pending"
        assert rec.generation == 1
        assert rec.resource_version != ""
        created = datetime.datetime.strptime(rec.created_at, "%Y-%m-%dT%H:%M:%SZ")
        now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
        assert abs((now - created).total_seconds()) < 120
        assert store.get(W, "rec-1") == rec

    def test_upsert_same_spec_is_a_replay(self, store: store_api.Watchable) -> None:
        first = store.upsert(W, "rec-1", "default", "rec-1", _spec("rec-1")).record
        reordered = dict(reversed(list(_spec("rec-1").items())))
        again = store.upsert(W, "rec-1", "default", "rec-1", reordered)
        assert (again.created, again.changed) == (False, False)
        assert again.record == first
        assert store.get(W, "rec-1") == first
        # A replay is not a write: a watch from the creation sees nothing after it.
        assert _changes(store, W, first.resource_version, timeout=0.3) == []

    def test_upsert_changed_spec(self, store: store_api.Watchable) -> None:
        first = store.upsert(W, "rec-1", "default", "rec-1", _spec("rec-1")).record
        with_status = store.update_status(W, "rec-1", {"phase": "Denied", "reason": "x"},
                                          first.resource_version)
        res = store.upsert(W, "rec-1", "default", "rec-1", _spec("rec-1", cpu="500m"))
        assert (res.created, res.changed) == (False, True)
        rec = res.record
        assert rec.spec == _spec("rec-1", cpu="500m")
        assert rec.generation == 2
        assert rec.resource_version not in (first.resource_version,
                                            with_status.resource_version)
        assert rec.status == {"phase": "Denied", "reason": "x"}
        assert rec.created_at == first.created_at
        assert store.get(W, "rec-1") == rec

    # -- update_status ----------------------------------------------------------------------

    def test_update_status_with_current_version(self, store: store_api.Watchable) -> None:
        first = store.upsert(N, "ng-1", "", "ng-1", {"nodeGroup": "pool-a"}).record
        rec = store.update_status(N, "ng-1", {"phase": "Approved"}, first.resource_version)
        assert rec.status == {"phase": "Approved"}
        assert rec.phase == "Approved"
        assert rec.generation == 1  # a status write is not a spec change
        assert rec.resource_version != first.resource_version
        assert rec.spec == first.spec
        assert store.get(N, "ng-1") == rec

    def test_update_status_stale_version_conflicts(self, store: store_api.Watchable) -> None:
        first = store.upsert(W, "rec-1", "default", "rec-1", _spec("rec-1")).record
        second = store.update_status(W, "rec-1", {"phase": "Approved"},
                                     first.resource_version)
        with pytest.raises(errors.ConflictError) as info:
            store.update_status(W, "rec-1", {"phase": "Failed"}, first.resource_version)
        message = str(info.value)
        for part in (W, "rec-1", first.resource_version, second.resource_version):
            assert part in message
        assert store.get(W, "rec-1") == second  # the loser changed nothing

    def test_update_status_missing_record(self, store: store_api.Watchable) -> None:
        with pytest.raises(errors.NotFoundError, match="rec-x"):
            store.update_status(W, "rec-x", {"phase": "Approved"}, "1")

    # -- list -------------------------------------------------------------------------------

    def test_list_order_and_filters(self, store: store_api.Watchable) -> None:
        a = store.upsert(W, "a", "default", "a", _spec("a")).record
        store.upsert(N, "b", "", "b", {"nodeGroup": "pool-b"})
        store.upsert(W, "c", "default", "c", _spec("c"))
        d = store.upsert(W, "d", "default", "d", _spec("d")).record
        # Later writes to "a" must not move it: the order is creation order.
        a2 = store.update_status(W, "a", {"phase": "Applied"}, a.resource_version)
        store.upsert(W, "a", "default", "a", _spec("a", cpu="1"))
        store.update_status(W, "d", {"phase": "Pending", "note": "explicit"},
                            d.resource_version)
        assert a2.phase == "Applied"

        def ids(records: list[store_api.Record]) -> list[str]:
            return [r.id for r in records]

        assert ids(store.list()) == ["a", "b", "c", "d"]
        assert ids(store.list(kind=W)) == ["a", "c", "d"]
        assert ids(store.list(kind=N)) == ["b"]
        assert ids(store.list(phase="Pending")) == ["b", "c", "d"]
        assert ids(store.list(kind=W, phase="Applied")) == ["a"]
        assert ids(store.list(kind=N, phase="Applied")) == []

    # -- watch ------------------------------------------------------------------------------

    def test_list_records_gives_the_version_to_watch_from(self, store: store_api.Watchable
                                                          ) -> None:
        empty, v0 = store.list_records(W)
        assert empty == [] and v0 != ""
        a = store.upsert(W, "a", "default", "a", _spec("a")).record
        store.upsert(N, "b", "", "b", {"nodeGroup": "pool-b"})
        recs, v1 = store.list_records(W)
        assert recs == [a] and v1 != v0
        assert [r.id for r in store.list_records(N)[0]] == ["b"]
        assert _changes(store, W, v1, timeout=0.3) == []  # nothing after the list

    def test_watch_reports_every_write_in_order(self, store: store_api.Watchable) -> None:
        _, since = store.list_records(W)
        a = store.upsert(W, "a", "default", "a", _spec("a")).record
        store.upsert(N, "b", "", "b", {"nodeGroup": "pool-b"})
        a2 = store.update_status(W, "a", {"phase": "Approved"}, a.resource_version)
        store.update_status(W, "a", {"phase": "Applying"}, a2.resource_version)
        store.upsert(W, "a", "default", "a", _spec("a", cpu="1"))
        store.upsert(W, "a", "default", "a", _spec("a", cpu="1"))  # replay: no change

        seen = _changes(store, W, since)
        assert [(c.type, c.record.id, c.record.phase, c.record.generation)
                for c in seen if c.record is not None] == [
            ("ADDED", "a", "Pending", 1),
            ("MODIFIED", "a", "Approved", 1),
            ("MODIFIED", "a", "Applying", 1),
            ("MODIFIED", "a", "Applying", 2),
        ]
        assert seen[-1].record == store.get(W, "a")
        assert [e.resource_version for e in seen] == [
            e.record.resource_version for e in seen if e.record is not None]
        assert len({c.resource_version for c in seen}) == len(seen)
        # The other kind's watch sees only its own.
        assert [(e.type, e.record.id) for e in _changes(store, N, since)
                if e.record is not None] == [("ADDED", "b")]

        # Resuming after the second change yields exactly the later ones.
        rest = _changes(store, W, seen[1].resource_version)
        assert rest == seen[2:]
        assert _changes(store, W, seen[-1].resource_version, timeout=0.3) == []

    def test_watch_timeout_with_nothing_new(self, store: store_api.Watchable) -> None:
        _, since = store.list_records(W)
        t0 = time.monotonic()
        assert _changes(store, W, since, timeout=0.2) == []
        rec = store.upsert(W, "a", "default", "a", _spec("a")).record
        t1 = time.monotonic()
        assert _changes(store, W, rec.resource_version, timeout=0.3) == []
        t2 = time.monotonic()
        assert 0.2 <= t1 - t0 < 5
        assert 0.3 <= t2 - t1 < 5

    def test_watch_waits_for_a_change(self, store: store_api.Watchable, reopen: Opener
                                      ) -> None:
        rec = store.upsert(W, "a", "default", "a", _spec("a")).record

        def write_later() -> None:
            time.sleep(0.2)
            other = reopen()  # another instance, as another replica or process would be
            try:
                other.update_status(W, "a", {"phase": "Approved"}, rec.resource_version)
            finally:
                other.close()

        writer = threading.Thread(target=write_later)
        t0 = time.monotonic()
        writer.start()
        try:
            seen = _changes(store, W, rec.resource_version, timeout=10, first=True)
        finally:
            writer.join()
        assert time.monotonic() - t0 < 8  # returned on the change, not on the timeout
        assert [(c.type, c.record.id, c.record.phase)
                for c in seen if c.record is not None] == [("MODIFIED", "a", "Approved")]

    def test_watch_closed_from_another_thread_ends(self, store: store_api.Watchable) -> None:
        _, since = store.list_records(W)
        w = store.watch_records(W, since, 30)
        threading.Timer(0.3, w.close).start()
        t0 = time.monotonic()
        assert [e for e in w if e.type != store_api.BOOKMARK] == []
        assert time.monotonic() - t0 < 10

    # -- durability -------------------------------------------------------------------------

    def test_survives_restart(self, store: store_api.Watchable, reopen: Opener) -> None:
        a = store.upsert(W, "a", "default", "a", _spec("a")).record
        store.update_status(W, "a", {"phase": "Approved"}, a.resource_version)
        store.upsert(N, "b", "", "b", {"nodeGroup": "pool-b"})
        before_list = store.list()
        _, version = store.list_records(W)
        store.close()

        again = reopen()
        try:
            assert again.list() == before_list
            # The new instance carries on where the old one stopped.
            cur = again.get(W, "a")
            assert cur is not None and cur.phase == "Approved"
            upd = again.update_status(W, "a", {"phase": "Applied"}, cur.resource_version)
            assert upd.resource_version not in {r.resource_version for r in before_list}
            # A watch from the version read before the restart sees the new write.
            assert [(e.type, e.record.phase) for e in _changes(again, W, version, first=True)
                    if e.record is not None] == [("MODIFIED", "Applied")]
            assert again.upsert(N, "b", "", "b", {"nodeGroup": "pool-b"}).changed is False
        finally:
            again.close()

    # -- concurrency ------------------------------------------------------------------------

    def test_threads_racing_on_one_read(self, store: store_api.Watchable) -> None:
        rec = store.upsert(W, "a", "default", "a", _spec("a")).record
        barrier = threading.Barrier(2)
        results: queue.Queue[tuple[str, object]] = queue.Queue()

        def race(phase: str) -> None:
            barrier.wait(10)
            try:
                won = store.update_status(W, "a", {"phase": phase}, rec.resource_version)
            except errors.ConflictError as e:
                results.put(("conflict", e))
            except BaseException as e:  # reported to the main thread, which fails the test
                results.put(("error", e))
            else:
                results.put(("won", won))

        threads = [threading.Thread(target=race, args=(p,)) for p in ("Approved", "Denied")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        outcomes = [results.get_nowait() for _ in threads]
        assert sorted(kind for kind, _ in outcomes) == ["conflict", "won"], outcomes
        winner = next(value for kind, value in outcomes if kind == "won")
        assert isinstance(winner, store_api.Record)
        assert store.get(W, "a") == winner

    def test_processes_lose_no_update(self, store: store_api.Watchable, reopen: Opener) -> None:
        created = store.upsert(W, "counter", "default", "counter", _spec("counter")).record
        ctx = multiprocessing.get_context("spawn")
        start = ctx.Barrier(2)
        out = ctx.Queue()
        procs = [ctx.Process(target=_increment_worker, args=(reopen, "counter", 50, start, out))
                 for _ in range(2)]
        for p in procs:
            p.start()
        reports = [out.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(30)
            assert p.exitcode == 0
        out.close()
        out.join_thread()

        written = sorted(v for values, _ in reports for v in values)
        assert written == list(range(1, 101))  # every increment landed exactly once
        final = store.get(W, "counter")
        assert final is not None and final.status["count"] == 100
        conflicts = sum(c for _, c in reports)
        status_writes = [c for c in _changes(store, W, created.resource_version)
                         if c.record is not None and c.record.id == "counter"]
        assert len(status_writes) == 100, f"{conflicts} conflicts retried"

    # -- data -------------------------------------------------------------------------------

    def test_unicode_round_trip(self, store: store_api.Watchable, reopen: Opener) -> None:
        spec = _spec("rec-ü")
        spec["reason"] = "Ünïcødé ✓ 日本語 🚀 \u00e9\u0301"
        rec = store.upsert(W, "rec-ü", "défaut", "rec-ü", spec).record
        status = {"phase": "Denied", "reasons": ["politique: trop élevé — 超過 ❌"]}
        store.update_status(W, "rec-ü", status, rec.resource_version)
        store.close()
        again = reopen()
        try:
            got = again.get(W, "rec-ü")
            assert got is not None
            assert (got.spec, got.status, got.namespace) == (spec, status, "défaut")
            assert again.upsert(W, "rec-ü", "défaut", "rec-ü", spec).changed is False
        finally:
            again.close()

    def test_unknown_kind_rejected(self, store: store_api.Watchable) -> None:
        with pytest.raises(errors.PermanentError, match="Pod"):
            store.upsert("Pod", "x", "default", "x", {"a": 1})
        with pytest.raises(errors.PermanentError, match="Pod"):
            store.get("Pod", "x")
        with pytest.raises(errors.PermanentError, match="Pod"):
            store.list(kind="Pod")
        assert store.list() == []
