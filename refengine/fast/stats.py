"""The fast fold of ``POST /feedback/stats``, from summaries of runs of values.

The rules are :mod:`refengine.semantics.stats`'s; this module answers the same
:class:`StatsPlan` from a :class:`StatsSnapshot` and must agree with the reference
fold. A snapshot holds each bucket's row count and, per numeric or boolean metric,
the bucket's values as **pieces** (:class:`~refengine.fast.summaries.Piece`):
consecutive runs of rows in store order, each with its summary
(:class:`~refengine.fast.summaries.Summary`: count, ``1.0``/``0.0`` counts,
extremes, exact sum) and, for a metric with percentiles, its values sorted.
Without a row filter the pieces are what the metric index keeps — the bucket's
whole hours as hour blocks, or as one sorted run for a metric with percentiles —
and the few rows around them
(:meth:`refengine.fast.metric_index.MetricIndex.pieces`); with one, each bucket is
one piece of the filtered rows (:func:`filtered_snapshot`).

How: a bucket's aggregations come from the merge of its pieces' summaries
(:func:`refengine.fast.summaries.merge`), the window's from the merge of the
buckets' — no value is read twice, sums stay exact integers until the one
rounding. A bucket's percentiles are read off its one sorted piece, or selected
from its few; the window's are selected from every bucket's pieces without
merging them (:class:`RankSelector`), or sorted where that is cheaper
(:func:`percentiles`). The empty values and number types come from the
reference's table (:data:`refengine.semantics.stats.AGGREGATIONS`).

Runtime complexity, for ``b`` buckets and ``s`` pieces per metric in the window:
``O(b + s)`` per metric for the aggregations, plus per percentile level of a bucket
or of the window over ``q`` pieces ``O(1)`` for one piece, else
``O(q · (h + 1) · log v + g log g)`` (:class:`RankSelector`) or the sort's
``O(v log q)`` for ``v`` values, where that is cheaper. The snapshot's own cost is
in :func:`refengine.fast.snapshots.stats_snapshot`.
"""

from __future__ import annotations

import struct
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from fractions import Fraction
from functools import lru_cache
from itertools import chain, compress
from operator import and_, attrgetter
from typing import Any, NamedTuple

from ..models import FeedbackStatsRes
from ..paths import found
from ..rows import FeedbackRow
from ..semantics.exact import interpolate_ranks, mean
from ..semantics.stats import AGGREGATIONS, MetricPlan, StatsPlan, no_metrics_response, response
from ..semantics.stats_time import render_timestamp
from .summaries import Piece, Summary, exact_total, merge, piece

_created_at_ms = attrgetter("created_at_ms")


class StatsSnapshot(NamedTuple):
    """What the fold reads of a window: the rows of each bucket (in plan order;
    ``[]`` for none at all) and, per numeric or boolean metric of the plan (in plan
    order), per bucket, its pieces in store order (only pieces with values)."""

    counts: list[int]
    pieces: list[list[list[Piece]]]


def column_readers(p: StatsPlan) -> list[Any]:
    """The path readers whose columns a :class:`StatsSnapshot` of ``p`` holds."""
    return [metric.reader for metric in p.metrics if metric.reader.column is not None]


def column_sorts(p: StatsPlan) -> list[bool]:
    """For each of :func:`column_readers`, whether the fold needs its values sorted
    (the metric asks for percentiles)."""
    return [bool(m.percentiles) for m in p.metrics if m.reader.column is not None]


def has_row_filter(p: StatsPlan) -> bool:
    """Whether ``p`` keeps only some of the window's rows (``feedback_type``,
    ``trigger_ref``): its snapshot is then made from the rows themselves."""
    return p.feedback_type is not None or p.trigger_ref is not None


def fold(p: StatsPlan, snapshot: StatsSnapshot) -> FeedbackStatsRes:
    """The answer to ``p`` from ``snapshot``: the same as
    :func:`refengine.semantics.stats.fold` over the window's rows."""
    if not p.metrics or p.zone is None:
        return no_metrics_response(p)
    n_buckets = len(p.starts)
    counts = snapshot.counts or [0] * n_buckets
    columns = iter(snapshot.pieces)
    # per metric: per bucket, its pieces (None: a categorical metric)
    per_metric: list[list[list[Piece]] | None] = [
        None if m.reader.column is None else next(columns, None) or [[] for _ in p.starts]
        for m in p.metrics
    ]
    summaries: list[list[Summary | None]] = [[] for _ in p.metrics]
    buckets: list[dict[str, Any]] = []
    for i, bucket_start in enumerate(p.starts):
        bucket: dict[str, Any] = {"timestamp": render_timestamp(bucket_start, p.zone)}
        n_rows = counts[i]
        for plan, per_bucket, seen in zip(p.metrics, per_metric, summaries, strict=True):
            if per_bucket is None:
                for agg in plan.aggregations:  # only 'count' passes the checks
                    bucket[bucket_key(agg, plan.slug)] = n_rows
                continue
            pieces = per_bucket[i]
            summary = merge([s.summary for s in pieces])
            seen.append(summary)
            _bucket_aggregates(bucket, plan, summary, pieces)
        bucket["count"] = n_rows
        buckets.append(bucket)
    n_window = sum(counts)
    window_stats = {
        plan.slug: _window_aggregates(plan, per_bucket, seen, n_window)
        for plan, per_bucket, seen in zip(p.metrics, per_metric, summaries, strict=True)
    }
    return response(p, buckets, window_stats)


@lru_cache(maxsize=4096)
def bucket_key(name: str, slug: str) -> str:
    """``{name}_{slug}``, one string object per key however many buckets hold it:
    with up to a million values in an answer and slugs of up to 256 characters, a
    fresh string per bucket would be most of the answer's memory."""
    return f"{name}_{slug}"


def _bucket_aggregates(
    out: dict[str, Any], plan: MetricPlan, s: Summary | None, pieces: list[Piece]
) -> None:
    slug = plan.slug
    n = s.n if s is not None else 0
    sums: tuple[float, Fraction | None] | None = None
    for agg in plan.aggregations:
        key = bucket_key(agg, slug)
        if agg == "count":
            out[key] = n
        elif agg == "count_true":
            out[key] = s.ones if s is not None else 0
        elif agg == "count_false":
            out[key] = s.zeros if s is not None else 0
        elif s is None:
            out[key] = AGGREGATIONS[agg].empty_bucket
        elif agg in ("sum", "avg"):
            if sums is None:
                sums = exact_total(s)
            out[key] = sums[0] if agg == "sum" else mean(*sums, n)
        elif agg == "min":
            out[key] = s.low
        else:  # max
            out[key] = s.high
    if plan.percentiles:
        levels = [level for _, level in plan.percentiles]
        values = percentiles(_ordered(pieces), n, levels)
        for (name, _), value in zip(plan.percentiles, values, strict=True):
            out[bucket_key(name, slug)] = value


def _window_aggregates(
    plan: MetricPlan,
    per_bucket: list[list[Piece]] | None,
    summaries: list[Summary | None],
    n_rows: int,
) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    if per_bucket is None:  # categorical: every row has a value
        for agg in plan.aggregations:
            out[agg] = float(n_rows) if n_rows else None
        return out
    s = merge(summaries)
    n = s.n if s is not None else 0
    sums: tuple[float, Fraction | None] | None = None
    for agg in plan.aggregations:
        if agg == "count_true":
            out[agg] = float(s.ones) if s is not None else 0.0
        elif agg == "count_false":
            out[agg] = float(s.zeros) if s is not None else 0.0
        elif s is None:
            out[agg] = AGGREGATIONS[agg].empty_window
        elif agg == "count":
            out[agg] = float(n)
        elif agg in ("sum", "avg"):
            if sums is None:
                sums = exact_total(s)
            out[agg] = sums[0] if agg == "sum" else mean(*sums, n)
        elif agg == "min":
            out[agg] = s.low
        else:  # max
            out[agg] = s.high
    if plan.percentiles:
        levels = [level for _, level in plan.percentiles]
        lists = _ordered(chain.from_iterable(per_bucket))
        for (name, _), value in zip(plan.percentiles, percentiles(lists, n, levels), strict=True):
            out[name] = value
    return out


def _ordered(pieces: Any) -> list[Sequence[float]]:
    lists: list[Sequence[float]] = []
    for run in pieces:
        if run.ordered is None:
            raise ValueError("a piece of a metric with percentiles is not sorted")
        lists.append(run.ordered)
    return lists


# --- percentiles ---------------------------------------------------------------------

GATHER_PER_PIECE = 16
"""A rank's selection narrows its candidates down to this many per piece (or
:data:`GATHER_MIN`), then sorts them."""
GATHER_MIN = 128
"""The fewest candidates a selection stops narrowing at."""
SORT_RATIO = 4
"""Percentiles sort the pieces' values instead of selecting ranks when the values
number at most this many times a selection's candidates
(``levels · SORT_RATIO · max(GATHER_MIN, GATHER_PER_PIECE · q)`` for ``q``
pieces)."""


def percentiles(lists: list[Sequence[float]], n: int, levels: list[float]) -> list[float | None]:
    """Stats / Percentiles at each of ``levels`` over the stable sorted union of the
    sorted ``lists`` (``n`` values in all, lists in store order): ``None`` for each
    without values.

    One list is read as it is. Few values for their lists are merged by one sort,
    which finds each list as a sorted run (``O(n log q)`` for ``q`` lists); else the
    ranks are selected without a merge (:class:`RankSelector`).
    """
    if n == 0:
        return [None for _ in levels]
    lists = [values for values in lists if len(values)]
    value_at: Callable[[int], float]
    if len(lists) == 1:
        value_at = lists[0].__getitem__
    elif n <= len(levels) * SORT_RATIO * max(GATHER_MIN, GATHER_PER_PIECE * len(lists)):
        value_at = sorted(chain.from_iterable(lists)).__getitem__
    else:
        value_at = RankSelector(lists, n)
    return [interpolate_ranks(value_at, n, level) for level in levels]


_DOUBLE = struct.Struct("<d")
_SIGNED = struct.Struct("<q")
_UNSIGNED = struct.Struct("<Q")
_SIGN = 1 << 63


def ordered_key(x: float) -> int:
    """An integer for each float, in the floats' order, ``-0.0`` just before
    ``0.0``; consecutive floats have consecutive keys.

    >>> [ordered_key(x) for x in (-5e-324, -0.0, 0.0, 5e-324)]
    [-2, -1, 0, 1]
    """
    bits: int = _SIGNED.unpack(_DOUBLE.pack(x))[0]
    return bits if bits >= 0 else -(bits & (_SIGN - 1)) - 1


def from_ordered_key(key: int) -> float:
    """The float of an :func:`ordered_key`.

    >>> [from_ordered_key(k) for k in (-2, -1, 0, 1)]
    [-5e-324, -0.0, 0.0, 5e-324]
    """
    bits = key if key >= 0 else (-key - 1) | _SIGN
    value: float = _DOUBLE.unpack(_UNSIGNED.pack(bits))[0]
    return value


class RankSelector:
    """``selector(rank)``: the value at 0-based ``rank`` of the stable sorted union
    of sorted ``lists`` (non-empty, in store order: among equal values, the list
    earlier in the sequence first), without merging them.

    A rank's candidates start between the smallest and largest of the lists'
    elements at the rank's proportional position (``rank · len / n`` in each list:
    at most ``rank`` values lie below the smallest, more than ``rank`` up to the
    largest), counted by bisection in each list; while more than
    :data:`GATHER_PER_PIECE` per list remain, the range is halved in the order of
    the floats' bit patterns (:func:`ordered_key`, at most 64 halvings); the
    candidates left are sorted — slices in list order, so equal values keep store
    order — and read at the rank. A range of one value is that value; a zero's sign
    is then found by counting the lists' zeros in order. Ranks already among a
    sorted candidate range are read from it.

    Runtime complexity: ``O(q · (h + 1) · log v + g log g)`` per rank for ``q``
    lists of at most ``v`` values, ``h <= 64`` halvings and ``g`` candidates sorted.
    """

    __slots__ = ("_gathered", "_limit", "_lists", "_n")

    def __init__(self, lists: list[Sequence[float]], n: int) -> None:
        self._lists = lists
        self._n = n
        self._limit = max(GATHER_MIN, GATHER_PER_PIECE * len(lists))
        self._gathered: list[tuple[int, list[float]]] = []

    def __call__(self, rank: int) -> float:
        for below, values in self._gathered:
            if below <= rank < below + len(values):
                return values[rank - below]
        lists, n = self._lists, self._n
        probes = [values[rank * len(values) // n] for values in lists]
        low, high = min(probes), max(probes)
        if low == high:
            return self._equal(low, rank)
        starts = [bisect_left(values, low) for values in lists]
        ends = [bisect_right(values, high) for values in lists]
        below = sum(starts)
        size = sum(ends) - below
        low_key, high_key = ordered_key(low), ordered_key(high)
        while size > self._limit:
            if low == high:
                return self._equal(low, rank)
            middle = (low_key + high_key + 1) // 2
            pivot = from_ordered_key(middle)
            cuts = [
                bisect_left(values, pivot, lo, hi)
                for values, lo, hi in zip(lists, starts, ends, strict=True)
            ]
            under = sum(cuts) - below  # candidates below the pivot
            if below + under > rank:
                ends, size = cuts, under
                high_key = middle - 1
                high = from_ordered_key(high_key)
            else:
                starts, below, size = cuts, below + under, size - under
                low_key, low = middle, pivot
        gathered = sorted(
            chain.from_iterable(
                values[lo:hi] for values, lo, hi in zip(lists, starts, ends, strict=True)
            )
        )
        self._gathered.append((below, gathered))
        return gathered[rank - below]

    def _equal(self, value: float, rank: int) -> float:
        """The value at ``rank``, known to equal ``value``: a zero may be ``-0.0``
        or ``0.0``, told apart by the zeros' store order."""
        if value != 0:
            return value
        j = rank - sum(bisect_left(values, 0.0) for values in self._lists)
        for values in self._lists:
            first = bisect_left(values, 0.0)
            zeros = bisect_right(values, 0.0, first) - first
            if j < zeros:
                return values[first + j]
            j -= zeros
        raise IndexError(f"rank {rank} is out of range")


# --- snapshots of filtered rows ------------------------------------------------------------


def filtered_snapshot(
    p: StatsPlan, rows: list[FeedbackRow], columns: list[array[float]]
) -> StatsSnapshot:
    """The snapshot of ``p`` from the window's rows (store order) and, per metric of
    :func:`column_readers`, their values (NaN: no value): the rows ``p``'s filters
    keep, each bucket one piece. Runtime complexity: ``O(k + b log k)`` for ``k``
    window rows in ``b`` buckets, plus ``O(k log k)`` sorting for percentiles."""
    rows, columns = _filtered(p, rows, columns)
    sorts = column_sorts(p)
    starts = p.starts
    counts = [0] * len(starts)
    pieces: list[list[list[Piece]]] = [[[] for _ in starts] for _ in columns]
    first, g = starts.start, starts.step
    lo, n = 0, len(rows)
    while lo < n:
        index = (rows[lo].created_at_ms // 1000 - first) // g
        hi = bisect_left(rows, (first + (index + 1) * g) * 1000, lo, n, key=_created_at_ms)
        counts[index] = hi - lo
        for column, ordered, per_bucket in zip(columns, sorts, pieces, strict=True):
            values = found(column[lo:hi])
            if values:
                per_bucket[index] = [piece(values, ordered)]
        lo = hi
    return StatsSnapshot(counts, pieces)


def _filtered(
    req: StatsPlan, rows: list[FeedbackRow], columns: list[array[float]]
) -> tuple[list[FeedbackRow], list[array[float]]]:
    keep: list[bool] | None = None
    feedback_type = req.feedback_type
    if feedback_type is not None:
        keep = [r.feedback_type == feedback_type for r in rows]
    trigger_ref = req.trigger_ref
    if trigger_ref is not None:
        if trigger_ref.endswith(":*"):
            prefix = trigger_ref[:-2]
            matches = [r.trigger_ref is not None and r.trigger_ref.startswith(prefix) for r in rows]
        else:
            matches = [r.trigger_ref == trigger_ref for r in rows]
        keep = matches if keep is None else list(map(and_, keep, matches))
    if keep is None:
        return rows, columns
    return list(compress(rows, keep)), [array("d", compress(c, keep)) for c in columns]


__all__ = [
    "GATHER_MIN",
    "GATHER_PER_PIECE",
    "SORT_RATIO",
    "RankSelector",
    "StatsSnapshot",
    "column_readers",
    "column_sorts",
    "filtered_snapshot",
    "fold",
    "from_ordered_key",
    "has_row_filter",
    "ordered_key",
    "percentiles",
]
