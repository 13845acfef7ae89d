"""Exact, mergeable summaries of runs of metric values, for the fast stats fold.

A :class:`Summary` holds what every aggregation of ``POST /feedback/stats`` needs of
a run of values (spec/SEMANTICS.md, "Stats / Aggregations"): how many, how many are
``1.0`` and ``0.0``, the smallest and largest, and the **exact** sum. Summaries of
consecutive runs merge (:func:`merge`) into the summary of their concatenation,
so a bucket made of kept hour blocks costs one merge per block, not one step per
value, and the window's sum comes from the buckets' without a second pass.

The exact sum of a kept run (:func:`summarize` with ``exact``) is a
:class:`ScaledSum`, an integer at a binary scale: every finite double is an
integer multiple of its own ``2**(e - 53)`` (``e`` its :func:`math.frexp`
exponent), so ``x * 2**shift`` is an integer for every ``x`` of a run when ``shift
= 53 - e`` for the run's smallest non-zero magnitude. Integers add exactly;
CPython's ``int / int`` is correctly rounded, the same answer as :func:`math.fsum`,
which the reference fold uses (:func:`refengine.semantics.exact.exact_sum`); where
that division overflows the float range, the exact sum is kept as a ``Fraction``,
as the reference keeps it. A run summarised for one query only keeps its values
instead (scaling costs several times a sum): merged with others of its kind they
are summed by :func:`refengine.semantics.exact.exact_sum` itself, merged with a
scaled sum they are scaled then. Extremes follow ``min()`` and ``max()`` over the
run in order: of equal values (``-0.0`` and ``0.0``) the first one seen is kept.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from fractions import Fraction
from itertools import chain, repeat
from typing import NamedTuple

from ..semantics.exact import exact_sum, fraction_to_float

_ZERO_SUM = math.fsum([0.0, -0.0])
"""What :func:`math.fsum` gives for values whose exact sum is zero and not all
``-0.0`` (``0.0``)."""
_NEGATIVE_ZERO_SUM = math.fsum([-0.0, -0.0])
"""What :func:`math.fsum` gives for values that are all ``-0.0`` (``0.0`` on the
CPython versions supported; measured, not assumed)."""


class ScaledSum(NamedTuple):
    """The exact sum ``total * 2**-shift`` of a run; ``negative_zeros``: every value
    of the run is ``-0.0``."""

    total: int
    shift: int
    negative_zeros: bool


class Summary(NamedTuple):
    """A non-empty run of values, in store order: its count, how many equal ``1.0``
    and ``0.0`` (``-0.0`` counts as ``0.0``, as ``list.count`` does), its first
    smallest and first largest value, and its exact sum: a :class:`ScaledSum`, or
    the run's values themselves (not to be changed)."""

    n: int
    ones: int
    zeros: int
    low: float
    high: float
    sum: ScaledSum | list[float]


def summarize(values: list[float], exact: bool = False) -> Summary | None:
    """The :class:`Summary` of ``values`` (finite floats, in store order), ``None``
    for none; with ``exact``, its sum scaled (:func:`scaled_sum`), else the list
    itself. Runtime complexity: ``O(n)`` — a few C-level passes.

    >>> s = summarize([0.5, 1.0, -0.0, 0.0, 0.25], exact=True)
    >>> s.n, s.ones, s.zeros, s.low, s.high, exact_total(s)
    (5, 1, 2, -0.0, 1.0, (1.75, None))
    """
    if not values:
        return None
    low, high = min(values), max(values)
    total = scaled_sum(values, low, high) if exact else values
    return Summary(len(values), values.count(1.0), values.count(0.0), low, high, total)


def scaled_sum(values: list[float], low: float, high: float) -> ScaledSum:
    """The exact sum of ``values`` (non-empty, finite; ``low`` and ``high`` their
    extremes) as an integer at a binary scale. ``O(n)``.

    >>> s = scaled_sum([0.5, 0.25], 0.25, 0.5)  # 0.25 = 0.5 * 2**-1: scaled by 2**54
    >>> s.total == 3 * 2**52, s.shift
    (True, 54)
    """
    magnitude = max(-low, high)
    if magnitude == 0:
        return ScaledSum(0, 0, all(math.copysign(1.0, v) < 0 for v in values))
    tiny = min(filter(None, map(abs, values)))  # the smallest non-zero magnitude
    low_exponent = math.frexp(tiny)[1]
    shift = 53 - low_exponent
    if math.frexp(magnitude)[1] + shift <= 1023:
        # every x * 2**shift is an integer-valued float below 2**1023: exact
        total = sum(map(int, map(math.ldexp, values, repeat(shift))))
    else:  # magnitudes too far apart for one float scale: per value, exactly
        total = sum(
            int(math.ldexp(m, 53)) << (e - low_exponent)
            for m, e in map(math.frexp, filter(None, values))
        )
    return ScaledSum(total, shift, False)


class Piece(NamedTuple):
    """A run of consecutive rows' values of one metric, in store order: their
    summary (``None``: no row of the run has a value) and, when a fold needs them
    (the metric asks for percentiles), the values sorted stably (equal values in
    store order), else ``None``."""

    summary: Summary | None
    ordered: Sequence[float] | None


def piece(values: list[float], ordered: bool) -> Piece:
    """The :class:`Piece` of ``values`` (found values, in store order; kept, not
    copied), sorted if ``ordered``, for one query. ``O(v)``; ``O(v log v)``
    sorted."""
    return Piece(summarize(values), sorted(values) if ordered else None)


def merge(summaries: Iterable[Summary | None]) -> Summary | None:
    """The summary of the concatenation of the runs ``summaries`` summarise, in
    that order (``None`` entries are empty runs): the sum kept as values if every
    run's is, else scaled. Runtime complexity: ``O(s)`` for ``s`` summaries, plus
    the integer additions, plus concatenating or scaling the values kept.

    >>> both = merge([summarize([0.1, 2.0]), None, summarize([-0.5, 2.0], exact=True)])
    >>> both.n, both.low, both.high, exact_total(both)[0] == math.fsum([0.1, 2, -0.5, 2])
    (4, -0.5, 2.0, True)
    """
    parts = [s for s in summaries if s is not None]
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    # min() and max() keep the first of equal extremes, as over the values
    low = min(s.low for s in parts)
    high = max(s.high for s in parts)
    total: ScaledSum | list[float]
    if all(isinstance(s.sum, list) for s in parts):
        total = list(chain.from_iterable(s.sum for s in parts))
    else:
        scaled = [_scaled(s) for s in parts]
        shift = max(s.shift for s in scaled)
        total = ScaledSum(
            sum(s.total << (shift - s.shift) for s in scaled),
            shift,
            all(s.negative_zeros for s in scaled),
        )
    return Summary(
        sum(s.n for s in parts), sum(s.ones for s in parts), sum(s.zeros for s in parts),
        low, high, total,
    )  # fmt: skip


def _scaled(s: Summary) -> ScaledSum:
    return s.sum if isinstance(s.sum, ScaledSum) else scaled_sum(s.sum, s.low, s.high)


def exact_total(s: Summary) -> tuple[float, Fraction | None]:
    """The run's sum correctly rounded, and the exact sum when it overflows the
    float range (``None`` otherwise): what
    :func:`refengine.semantics.exact.exact_sum` gives for the same values (it
    computes it for values kept), with an infinity of the sum's sign past the
    range. ``O(1)`` integer operations of the sum's size for a scaled sum.

    >>> exact_total(summarize([1e308, 1e308, -1e308], exact=True))
    (1e+308, None)
    >>> exact_total(summarize([1e308, 1e308], exact=True))[0]
    inf
    """
    if isinstance(s.sum, list):
        total, exact = exact_sum([s.sum])
        return total, exact if math.isinf(total) else None
    scaled = s.sum
    if scaled.total == 0:
        return (_NEGATIVE_ZERO_SUM if scaled.negative_zeros else _ZERO_SUM), None
    try:
        if scaled.shift >= 0:
            return scaled.total / (1 << scaled.shift), None
        return float(scaled.total << -scaled.shift), None
    except OverflowError:
        if scaled.shift >= 0:
            exact = Fraction(scaled.total, 1 << scaled.shift)
        else:
            exact = Fraction(scaled.total << -scaled.shift)
        return fraction_to_float(exact), exact


__all__ = [
    "Piece",
    "ScaledSum",
    "Summary",
    "exact_total",
    "merge",
    "piece",
    "scaled_sum",
    "summarize",
]
