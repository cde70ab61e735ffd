"""GitOps changes gathered into one commit and one pull request per window.

A reviewer wants one pull request for a burst of recommendations, not a thousand; a single
recommendation must still go out in seconds. So approved GitOps work waits until the
burst is over (nothing new for ``window`` seconds), but never longer than ``max_wait``,
and never more than ``max_size`` targets at once; then it is flushed as one batch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


@dataclass(frozen=True)
class Window:
    window: float = 2.0      # flush once nothing new arrived for this long
    max_wait: float = 30.0   # ... or once the oldest waits this long
    max_size: int = 1000     # ... or once this many targets wait


class Batcher(Generic[K, T]):
    """Collects ``(key, work)`` and calls ``flush`` with a batch on its own thread; a key
    added twice before a flush keeps its latest work."""

    def __init__(self, flush: Callable[[dict[K, T]], None], window: Window | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._flush = flush
        self.window = window or Window()
        self._clock = clock
        self._cond = threading.Condition()
        self._pending: dict[K, T] = {}
        self._first = self._last = 0.0
        self._flushing = False
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True, name="gitops-batcher")

    def start(self) -> Batcher[K, T]:
        self._thread.start()
        return self

    def add(self, key: K, work: T) -> None:
        with self._cond:
            now = self._clock()
            if not self._pending:
                self._first = now
            self._pending[key] = work
            self._last = now
            self._cond.notify_all()

    def due_in(self) -> float | None:
        """Seconds until the pending batch is due (0: now), None when nothing waits."""
        with self._cond:
            return self._due_in()

    def _due_in(self) -> float | None:
        if not self._pending:
            return None
        if len(self._pending) >= self.window.max_size:
            return 0.0
        now = self._clock()
        return max(0.0, min(self._last + self.window.window, self._first + self.window.max_wait)
                   - now)

    def idle(self) -> bool:
        with self._cond:
            return not self._pending and not self._flushing

    def take(self) -> dict[K, T]:
        """What waits, now (the caller flushes it: a shutdown, a one-shot run)."""
        with self._cond:
            out, self._pending = self._pending, {}
            return out

    def stop(self, timeout: float | None = None) -> dict[K, T]:
        """Stop the thread (after a flush in progress); returns what was still waiting."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout)
        return self.take()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stop:
                    due = self._due_in()
                    if due == 0.0:
                        break
                    self._cond.wait(due)
                if self._stop:
                    return
                batch, self._pending = self._pending, {}
                self._flushing = True
            try:
                self._flush(batch)
            except Exception:  # the thread must outlive one bad batch
                log.exception("a batch of %d failed", len(batch))
            finally:
                with self._cond:
                    self._flushing = False
                    self._cond.notify_all()
