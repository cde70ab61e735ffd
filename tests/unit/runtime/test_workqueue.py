"""The operator's work queue (reconciler.runtime.workqueue), with an injected clock.

Cases:
- keys come out in the order they were added; repeated adds of a waiting key collapse;
- a key being processed is never handed out twice: added meanwhile, it comes back only
  after done();
- add_after holds a key until its time, the earliest of several delays wins;
- per-key backoff doubles from the base up to the maximum, and forget() resets it;
- the overall bucket delays retries once the burst is spent, refilling at qps;
- add_rate_limited returns the delay it chose and the key comes out after it;
- idle() and the depth counts; get(timeout) returns None when nothing is ready;
- shut_down: no new keys, get() returns None at once (queued keys dropped), or with
  drain once the queued ones are handed out; keys in backoff are dropped;
- threads: many workers on many keys never hold one key twice at once.
"""

from __future__ import annotations

import threading
import time

import pytest

from reconciler.runtime import workqueue


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def q(**kw: float) -> tuple[workqueue.WorkQueue[str], Clock]:
    clock = Clock()
    backoff = workqueue.Backoff(**kw) if kw else workqueue.Backoff()
    return workqueue.WorkQueue(backoff, clock=clock), clock


def test_fifo_and_collapse() -> None:
    wq, _ = q()
    for k in ("a", "b", "a", "c", "b"):
        wq.add(k)
    assert len(wq) == 3
    assert [wq.get(0), wq.get(0), wq.get(0)] == ["a", "b", "c"]
    assert wq.get(0) is None


def test_key_in_processing_is_not_handed_out_twice() -> None:
    wq, _ = q()
    wq.add("a")
    assert wq.get(0) == "a"
    wq.add("a")  # an event arrives while a worker holds it
    assert wq.get(0) is None
    wq.done("a")
    assert wq.get(0) == "a"
    wq.done("a")
    assert wq.idle()


def test_add_after_waits_and_earliest_wins() -> None:
    wq, clock = q()
    wq.add_after("a", 10)
    wq.add_after("a", 3)
    wq.add_after("a", 20)
    assert wq.get(0) is None and wq.waiting() == 1
    clock.now += 2.9
    assert wq.get(0) is None
    clock.now += 0.2
    assert wq.get(0) == "a"
    wq.done("a")
    clock.now += 30
    assert wq.get(0) is None  # the later delays were the same key: already served


@pytest.mark.parametrize(("failures", "delay"), [
    (0, 0.005), (1, 0.01), (2, 0.02), (10, 5.12), (20, 300.0), (80, 300.0),
])
def test_per_key_backoff_doubles_to_the_cap(failures: int, delay: float) -> None:
    wq, _ = q(base=0.005, maximum=300.0, qps=1e9, burst=10**9)
    for _ in range(failures):
        wq.add_rate_limited("a")
    assert wq.add_rate_limited("a") == pytest.approx(delay)
    assert wq.failures("a") == failures + 1


def test_forget_resets_the_backoff() -> None:
    wq, _ = q(base=1.0, maximum=60.0, qps=1e9, burst=10**9)
    for _ in range(4):
        wq.add_rate_limited("a")
    wq.forget("a")
    assert wq.add_rate_limited("a") == 1.0


def test_overall_bucket_limits_retries_once_the_burst_is_spent() -> None:
    wq, clock = q(base=0.001, maximum=1.0, qps=10.0, burst=3)
    delays = [wq.add_rate_limited(f"k{i}") for i in range(5)]
    assert delays[:3] == [0.001] * 3
    assert delays[3] == pytest.approx(0.1) and delays[4] == pytest.approx(0.2)
    clock.now += 10  # refilled
    assert wq.add_rate_limited("k9") == 0.001


def test_rate_limited_key_comes_out_after_its_delay() -> None:
    wq, clock = q(base=2.0, maximum=10.0, qps=1e9, burst=10**9)
    assert wq.add_rate_limited("a") == 2.0
    assert wq.get(0) is None and not wq.idle()
    clock.now += 2.0
    assert wq.get(0) == "a"


def test_shut_down_with_drain_hands_out_what_is_queued_then_none() -> None:
    wq, _ = q()
    wq.add("a")
    wq.add_after("later", 5)
    wq.shut_down(drain=True)
    wq.add("b")
    assert wq.get(0) == "a"
    assert wq.get() is None  # does not block: nothing left, later was dropped
    assert wq.waiting() == 0


def test_shut_down_stops_handing_out_keys() -> None:
    wq, _ = q()
    wq.add("a")
    wq.add("b")
    assert wq.get(0) == "a"  # a worker holds it
    wq.add("a")  # and an event names it again
    wq.shut_down()
    assert wq.get() is None  # b is dropped: the store still has it for the next start
    wq.done("a")  # not handed out again either
    assert wq.get(0) is None and len(wq) == 0


def test_workers_never_hold_one_key_twice() -> None:
    wq: workqueue.WorkQueue[int] = workqueue.WorkQueue()
    held: set[int] = set()
    lock = threading.Lock()
    overlaps: list[int] = []
    done = [0]

    def worker() -> None:
        while True:
            key = wq.get(timeout=2)
            if key is None:
                return
            with lock:
                if key in held:
                    overlaps.append(key)
                held.add(key)
            time.sleep(0.0005)
            with lock:
                held.discard(key)
                done[0] += 1
            wq.done(key)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for i in range(2000):
        wq.add(i % 7)
    deadline = time.monotonic() + 10
    while not wq.idle() and time.monotonic() < deadline:
        time.sleep(0.01)
    wq.shut_down()
    for t in threads:
        t.join(5)
    assert overlaps == []
    assert wq.idle() and done[0] >= 7
