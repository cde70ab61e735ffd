"""One bounded map for everything kept across batches (loaded charts, renders, parsed
output, discovered values paths): the least recently used entry goes first, so memory stays
bounded however long the operator runs, and the entries in use stay.

Thread-safe, because the writer verifies several charts at once on threads; no I/O, so it
lives with the pure core and every layer above can use it.
"""

from __future__ import annotations

import collections
import threading
from typing import Generic, TypeVar

_K = TypeVar("_K")
_V = TypeVar("_V")


class Lru(Generic[_K, _V]):
    """A map of at most ``size`` entries; ``get`` and ``put`` make an entry the most
    recently used, and ``put`` beyond ``size`` drops the least recently used."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"an LRU holds at least one entry, not {size}")
        self.size = size
        self._items: collections.OrderedDict[_K, _V] = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: _K) -> _V | None:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
            return found

    def put(self, key: _K, value: _V) -> _V:
        """Keep ``value`` under ``key``; returns ``value`` (so a computed value can be kept
        and used in one expression)."""
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)
