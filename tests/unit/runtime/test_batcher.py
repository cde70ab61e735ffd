"""The GitOps window (reconciler.runtime.batcher).

Cases:
- due_in, with an injected clock: nothing waiting -> None; a burst waits until it has
  been quiet for ``window``; a burst that never stops is flushed after ``max_wait``; the
  size cap flushes at once; a key added twice keeps its latest work;
- the thread: a burst added in quick succession is flushed once, whole; a single item goes
  out after the window; a flush that raises does not stop the thread; take() and stop()
  hand back what still waits.
"""

from __future__ import annotations

import threading
import time

from reconciler.runtime import batcher


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_due_in_follows_the_window() -> None:
    clock = Clock()
    b: batcher.Batcher[str, int] = batcher.Batcher(
        lambda _: None, batcher.Window(window=2.0, max_wait=10.0, max_size=3), clock=clock)
    assert b.due_in() is None
    b.add("a", 1)
    assert b.due_in() == 2.0
    for _ in range(6):  # a burst that keeps coming: due 2 s after the last, ...
        clock.now += 1.5
        b.add("a", 2)
    assert b.due_in() == 1.0  # ... but no later than 10 s after the first
    assert b.take() == {"a": 2}  # the same key kept its latest work
    b.add("x", 1)
    b.add("y", 1)
    assert b.due_in() == 2.0
    b.add("z", 1)
    assert b.due_in() == 0.0  # the size cap


def test_a_burst_is_flushed_once_and_whole() -> None:
    flushed: list[dict[int, int]] = []
    done = threading.Event()

    def flush(work: dict[int, int]) -> None:
        flushed.append(work)
        done.set()

    b: batcher.Batcher[int, int] = batcher.Batcher(
        flush, batcher.Window(window=0.3, max_wait=5.0, max_size=1000)).start()
    try:
        for i in range(200):
            b.add(i, i)
        assert done.wait(5)
        time.sleep(0.5)
        assert len(flushed) == 1 and sorted(flushed[0]) == list(range(200))
        done.clear()
        t0 = time.monotonic()
        b.add(7, 7)  # a single change goes out after the window, in well under a second
        assert done.wait(5)
        assert 0.25 < time.monotonic() - t0 < 3 and flushed[1] == {7: 7}
    finally:
        assert b.stop(5) == {}
    assert b.idle()


def test_a_failing_flush_does_not_stop_the_thread() -> None:
    calls: list[dict[str, int]] = []
    again = threading.Event()

    def flush(work: dict[str, int]) -> None:
        calls.append(work)
        if len(calls) == 1:
            raise RuntimeError("boom")
        again.set()

    b: batcher.Batcher[str, int] = batcher.Batcher(
        flush, batcher.Window(window=0.05, max_wait=1.0, max_size=10)).start()
    try:
        b.add("a", 1)
        time.sleep(0.3)
        b.add("b", 2)
        assert again.wait(5)
        assert calls == [{"a": 1}, {"b": 2}]
    finally:
        b.stop(5)


def test_stop_hands_back_what_waits() -> None:
    b: batcher.Batcher[str, int] = batcher.Batcher(
        lambda _: None, batcher.Window(window=60.0, max_wait=60.0, max_size=10)).start()
    b.add("a", 1)
    assert not b.idle()
    assert b.stop(5) == {"a": 1}
