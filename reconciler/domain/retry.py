"""One read-modify-write retry for optimistic concurrency, like client-go's RetryOnConflict.

Every write the reconciler makes to a shared object (a status, a finalizer, a node's
``unschedulable``) is guarded by the version it read; losing that race raises
``errors.ConflictError``. The answer is always the same: read again, recompute, write
again, a few times, then give up with an error that says which object kept changing. One
helper with one budget keeps that answer the same everywhere.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from reconciler.domain import errors

T = TypeVar("T")

# client-go's retry.DefaultRetry: 5 steps, 10 ms apart, 10% jitter.
ATTEMPTS = 5
BACKOFF = 0.01


def on_conflict(update: Callable[[int], T], what: str, *, attempts: int = ATTEMPTS,
                backoff: float = BACKOFF,
                sleep: Callable[[float], None] = time.sleep) -> T:
    """Call ``update(attempt)`` until it returns without ``ConflictError``.

    ``update`` must re-read what it writes on every call (``attempt`` is 0 for the first,
    for callers that may skip the first read). After ``attempts`` conflicts the last one
    is raised again as a ``ConflictError`` naming ``what`` ("status of rec-1"), chained to
    the server's answer.
    """
    last: errors.ConflictError | None = None
    for attempt in range(attempts):
        if attempt:
            sleep(backoff * (1 + 0.1 * random.random()))
        try:
            return update(attempt)
        except errors.ConflictError as e:
            last = e
    raise errors.ConflictError(f"{what} keeps changing under us ({attempts} tries): {last}"
                               ) from last
