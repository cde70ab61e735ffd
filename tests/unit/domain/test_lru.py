"""The one bounded map kept across batches (``domain.lru``): loaded charts, renders,
parsed output and discovered values paths all use it.

Cases: a missing key gives None; put returns the value kept; beyond its size the least
recently used entry goes, where a get counts as a use; putting a key again replaces it
without growing; clear empties it; a size below one is refused; threads putting at once
never leave more than ``size`` entries.
"""

from __future__ import annotations

import threading

import pytest

from reconciler.domain import lru


def test_get_put_and_missing() -> None:
    cache: lru.Lru[str, int] = lru.Lru(2)
    assert cache.get("a") is None
    assert cache.put("a", 1) == 1
    assert cache.get("a") == 1


@pytest.mark.parametrize(("ops", "kept", "gone"), [
    # (operations in order, keys kept, keys dropped)
    ([("put", "a"), ("put", "b"), ("put", "c")], {"b", "c"}, {"a"}),
    ([("put", "a"), ("put", "b"), ("get", "a"), ("put", "c")], {"a", "c"}, {"b"}),
    ([("put", "a"), ("put", "b"), ("put", "a"), ("put", "c")], {"a", "c"}, {"b"}),
    ([("put", "a"), ("put", "a"), ("put", "a")], {"a"}, set()),
])
def test_least_recently_used_goes_first(ops: list[tuple[str, str]], kept: set[str],
                                        gone: set[str]) -> None:
    cache: lru.Lru[str, str] = lru.Lru(2)
    for op, key in ops:
        if op == "put":
            cache.put(key, key.upper())
        else:
            cache.get(key)
    assert {k for k in "abc" if cache.get(k) is not None} == kept
    assert not any(cache.get(k) for k in gone)
    assert len(cache) == len(kept)


def test_clear() -> None:
    cache: lru.Lru[str, int] = lru.Lru(3)
    cache.put("a", 1)
    cache.clear()
    assert cache.get("a") is None and len(cache) == 0


def test_size_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        lru.Lru(0)


def test_threads_never_overfill() -> None:
    cache: lru.Lru[int, int] = lru.Lru(50)

    def fill(start: int) -> None:
        for n in range(start, start + 2000):
            cache.put(n, n)
            cache.get(n - 7)

    threads = [threading.Thread(target=fill, args=(k * 10_000,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(cache) == 50
