"""What an index kept beside a project's store must redo after writes and removals.

An index holds the first ``held`` rows of the store (in store order) and a *stale
millisecond*: a removal or a row stored out of order at ``from_ms`` makes every
held row at or after it suspect. :func:`still_valid` says how many held rows stand
as they are; the index drops the rest and takes ``rows[still_valid(...):]`` anew.
"""

from __future__ import annotations

from sortedcontainers import SortedKeyList


def still_valid(rows: SortedKeyList, held: int, from_ms: int | None) -> int:
    """How many of the ``held`` first rows of the store ``rows`` an index may keep:
    all of them, or those before ``from_ms`` when it is set (they are where the
    index saw them). Call it under the lock that guards ``rows``. Runtime
    complexity: ``O(log n)``."""
    if from_ms is None:
        return held
    first_stale: int = rows.bisect_key_left(from_ms)
    return min(held, first_stale)
