"""fast.staleness: how much of an index survives a stale millisecond."""

from __future__ import annotations

from sortedcontainers import SortedKeyList

from refengine.fast.staleness import still_valid


def test_still_valid_keeps_the_held_rows_before_the_stale_millisecond() -> None:
    rows = SortedKeyList([10, 20, 20, 30], key=lambda ms: ms)
    assert still_valid(rows, 4, None) == 4  # nothing stale: every held row stands
    assert still_valid(rows, 2, None) == 2
    assert still_valid(rows, 4, 20) == 1  # the first row of millisecond 20 on is redone
    assert still_valid(rows, 4, 25) == 3
    assert still_valid(rows, 2, 30) == 2  # never more than the index holds
    assert still_valid(rows, 4, 5) == 0
