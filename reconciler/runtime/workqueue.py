"""The work queue every controller in the Kubernetes ecosystem uses (client-go's
``workqueue``), for the operator's keys.

Its three promises are what make a controller safe to run with several workers:

- one key is never processed by two workers at once: a key added while it is being
  processed is remembered (dirty) and handed out again only after ``done``;
- repeated adds collapse: a key waiting in the queue is there once, however many events
  named it;
- retries back off per key (exponential, milliseconds to minutes), and every retry also
  passes an overall token bucket, so a thousand failing keys cannot hammer the API server.

The clock is injected, so the behaviour is tested without sleeping.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class Backoff:
    """Per-key exponential backoff (client-go's ItemExponentialFailureRateLimiter) and an
    overall bucket (BucketRateLimiter); a retry waits for the longer of the two."""

    base: float = 0.005        # first retry after 5 ms
    maximum: float = 300.0     # never more than 5 minutes between tries
    qps: float = 10.0          # retries admitted per second overall ...
    burst: int = 100           # ... beyond a burst of this many


class RateLimiter(Generic[K]):
    def __init__(self, backoff: Backoff, clock: Callable[[], float]) -> None:
        self.backoff = backoff
        self._clock = clock
        self._failures: dict[K, int] = {}
        self._tokens = float(backoff.burst)
        self._last = clock()

    def when(self, key: K) -> float:
        """The delay before ``key``'s next try, counting this failure."""
        n = self._failures.get(key, 0)
        self._failures[key] = n + 1
        per_key = min(self.backoff.base * float(2 ** min(n, 62)), self.backoff.maximum)
        return max(per_key, self._bucket())

    def _bucket(self) -> float:
        now = self._clock()
        self._tokens = min(float(self.backoff.burst),
                           self._tokens + (now - self._last) * self.backoff.qps)
        self._last = now
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self.backoff.qps

    def forget(self, key: K) -> None:
        self._failures.pop(key, None)

    def failures(self, key: K) -> int:
        return self._failures.get(key, 0)


class WorkQueue(Generic[K]):
    """A rate-limited, de-duplicating FIFO of keys with delayed adds."""

    def __init__(self, backoff: Backoff | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._cond = threading.Condition()
        self._queue: list[K] = []         # FIFO of keys ready to hand out
        self._dirty: set[K] = set()       # keys waiting (in _queue, or to re-add after done)
        self._processing: set[K] = set()  # keys a worker holds
        self._waiting: list[tuple[float, int, K]] = []  # delayed adds: (ready at, n, key)
        self._ready_at: dict[K, float] = {}             # earliest delayed add per key
        self._seq = itertools.count()
        self._limiter: RateLimiter[K] = RateLimiter(backoff or Backoff(), clock)
        self._shutting_down = False
        self._drain = False

    # ------------------------------------------------------------------ adding

    def add(self, key: K) -> None:
        """Queue ``key`` now (a no-op when it is already waiting)."""
        with self._cond:
            self._add(key)

    def _add(self, key: K) -> None:
        if self._shutting_down or key in self._dirty:
            return
        self._dirty.add(key)
        if key in self._processing:
            return  # handed out again after done()
        self._queue.append(key)
        self._cond.notify()

    def add_after(self, key: K, delay: float) -> None:
        """Queue ``key`` once ``delay`` seconds have passed (the earliest of several wins)."""
        with self._cond:
            if self._shutting_down:
                return
            if delay <= 0:
                self._add(key)
                return
            at = self._clock() + delay
            if key in self._ready_at and self._ready_at[key] <= at:
                return
            self._ready_at[key] = at
            heapq.heappush(self._waiting, (at, next(self._seq), key))
            self._cond.notify()

    def add_rate_limited(self, key: K) -> float:
        """Queue ``key`` again after its backoff; returns the delay chosen."""
        with self._cond:
            delay = self._limiter.when(key)
        self.add_after(key, delay)
        return delay

    def forget(self, key: K) -> None:
        """The key succeeded: its next failure starts the backoff from the beginning."""
        with self._cond:
            self._limiter.forget(key)

    def failures(self, key: K) -> int:
        with self._cond:
            return self._limiter.failures(key)

    # ------------------------------------------------------------------ taking

    def get(self, timeout: float | None = None) -> K | None:
        """The next key (the caller must call ``done`` with it), or None after ``timeout``
        seconds or once the queue shuts down with nothing left to hand out."""
        deadline = None if timeout is None else self._clock() + timeout
        with self._cond:
            while True:
                self._promote()
                if self._queue:
                    key = self._queue.pop(0)
                    self._processing.add(key)
                    self._dirty.discard(key)
                    return key
                if self._shutting_down:
                    return None
                now = self._clock()
                wait = None if deadline is None else deadline - now
                if wait is not None and wait <= 0:
                    return None
                if self._waiting:
                    until_ready = self._waiting[0][0] - now
                    wait = until_ready if wait is None else min(wait, until_ready)
                self._cond.wait(None if wait is None else max(wait, 0.0))

    def _promote(self) -> None:
        """Move delayed keys whose time has come into the queue."""
        now = self._clock()
        while self._waiting and self._waiting[0][0] <= now:
            at, _, key = heapq.heappop(self._waiting)
            if self._ready_at.get(key) == at:
                del self._ready_at[key]
                self._add(key)

    def done(self, key: K) -> None:
        """The worker finished ``key``; if it was added meanwhile, it is queued again."""
        with self._cond:
            self._processing.discard(key)
            if key in self._dirty and not (self._shutting_down and not self._drain):
                self._queue.append(key)
                self._cond.notify()

    # ------------------------------------------------------------------ state

    def __len__(self) -> int:
        """Keys ready to hand out (what a depth metric shows)."""
        with self._cond:
            self._promote()
            return len(self._queue)

    def waiting(self) -> int:
        """Keys scheduled for later (retries in backoff)."""
        with self._cond:
            return len(self._ready_at)

    def processing(self) -> int:
        with self._cond:
            return len(self._processing)

    def idle(self) -> bool:
        """Nothing queued, nothing being processed, nothing due later."""
        with self._cond:
            self._promote()
            return not self._queue and not self._processing and not self._ready_at

    def shut_down(self, *, drain: bool = False) -> None:
        """Take no more keys. ``get`` returns None at once, so workers stop after the key
        they hold; with ``drain``, only once what is queued has been handed out. Keys
        dropped (queued, or waiting out a backoff) are in the store: the next leader, or
        the next start, finds them."""
        with self._cond:
            self._shutting_down = True
            self._drain = drain
            self._waiting.clear()
            self._ready_at.clear()
            if not drain:
                self._dirty.difference_update(self._queue)
                self._queue.clear()
            self._cond.notify_all()

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down
