"""The bookkeeping the store's query indexes share.

An index keeps a few derived views (aggregate partitionings, stats metric columns)
in a plain ``dict`` whose insertion order is the order of use: least recently used
first (:func:`use`).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


def use(cache: dict[K, V], key: K, make: Callable[[], V], limit: int) -> V:
    """``cache[key]``, made by ``make()`` if missing, now the most recently used.

    Making an entry first drops the least recently used ones, so that with it the
    cache holds at most ``limit``. The caller keeps the returned value for as long
    as it needs it: a later ``use`` may drop it from the cache. ``O(1)`` amortised.

    >>> cache: dict[str, int] = {}
    >>> [use(cache, k, lambda: len(k), 2) for k in ("a", "bb", "a", "ccc")], list(cache)
    ([1, 2, 1, 3], ['a', 'ccc'])
    """
    value = cache.pop(key, None)
    if value is None:
        value = make()
        while len(cache) >= limit:
            del cache[next(iter(cache))]
    cache[key] = value
    return value


__all__ = ["use"]
