"""Exact arithmetic of ``POST /feedback/stats``: correctly rounded sums and means,
and percentiles interpolated as numpy's "linear" method does.

spec/SEMANTICS.md, "Stats / Aggregations" and "Stats / Percentiles". Both
executors use these functions, so the fast path can never round differently.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from fractions import Fraction
from itertools import chain


def exact_sum(lists: Sequence[Iterable[float]]) -> tuple[float, Fraction | None]:
    """Stats / Aggregations, ``sum``: the correctly rounded sum of every value in
    ``lists``, and the exact sum when an intermediate overflowed the float range
    (``None`` otherwise). Runtime complexity: ``O(n)``.

    >>> exact_sum([[0.1] * 10])
    (1.0, None)
    """
    try:
        return math.fsum(chain.from_iterable(lists)), None
    except OverflowError:
        exact = sum(map(Fraction, chain.from_iterable(lists)), Fraction(0))
        return fraction_to_float(exact), exact


def fraction_to_float(value: Fraction) -> float:
    """Correctly rounded; beyond the float range, an infinity of the right sign."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def mean(total: float, exact: Fraction | None, count: int) -> float:
    """Stats / Aggregations, ``avg``: ``total / count``; if the sum overflowed, the
    correctly rounded exact mean."""
    if exact is not None and math.isinf(total):
        return fraction_to_float(exact / count)
    return total / count


def percentile_level(p: float) -> float:
    """Stats / Percentiles: the quantile level production sends, ``p / 100`` rounded
    to 6 decimals."""
    return round(p / 100, 6)


def interpolate(ordered: list[float], level: float) -> float:
    """Stats / Percentiles: linear interpolation at index ``level·(n−1)`` of sorted
    values (numpy 'linear', R-7).

    Bit for bit numpy's ``_lerp`` whenever the neighbours' difference is finite; if
    it overflows, the weighted mean of the neighbours, kept between them.

    >>> interpolate([10.0, 20.0, 30.0, 40.0], 0.9)
    37.0
    """
    return interpolate_ranks(ordered.__getitem__, len(ordered), level)


def interpolate_ranks(value_at: Callable[[int], float], n: int, level: float) -> float:
    """:func:`interpolate` over ``n`` values given by ``value_at(rank)`` (0-based)."""
    index = level * (n - 1)
    lo = math.floor(index)
    if lo >= n - 1:
        return value_at(n - 1)
    t = index - lo
    a = value_at(lo)
    if t == 0:
        return a
    b = value_at(lo + 1)
    if a == b:
        return a
    diff = b - a
    if math.isinf(diff):
        return min(max(a * (1 - t) + b * t, a), b)
    if t >= 0.5:
        return b - diff * (1 - t)
    return a + diff * t


__all__ = [
    "exact_sum",
    "fraction_to_float",
    "interpolate",
    "interpolate_ranks",
    "mean",
    "percentile_level",
]
