"""The bookkeeping the store's query indexes share.

An index keeps a few derived views (aggregate partitionings, stats metric columns)
in a plain ``dict`` whose insertion order is the order of use: least recently used
first (:func:`use`). Each index also remembers, as a :class:`StaleMark`, the
earliest millisecond at which a row was inserted before the end since it last
caught up.
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


class StaleMark:
    """The earliest ``created_at_ms`` of a row inserted before the end, not yet
    re-read (``_stale_from``; ``None`` when there is none)."""

    __slots__ = ("_stale_from",)

    def __init__(self) -> None:
        self._stale_from: int | None = None

    def invalidate_from(self, from_ms: int) -> None:
        """Note that a row was inserted before the end, at ``from_ms``. ``O(1)``."""
        if self._stale_from is None or from_ms < self._stale_from:
            self._stale_from = from_ms


__all__ = ["StaleMark", "use"]
