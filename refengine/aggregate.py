"""``POST /feedback/aggregate``: counts and rating sums per (time bucket, group).

Semantics (spec/SEMANTICS.md, "Aggregate"; production facts in SEMANTICS-NOTES §3):

* **Rows.** The caller passes the project's rows with
  ``after_ms <= created_at_ms < before_ms`` in store order (``created_at``, then
  insertion) — :meth:`refengine.engine.Engine.window` finds them by bisection.
* **Filters** (all ANDed; an empty list or a null bound is no filter):
  ``feedback_types`` any-of prefix match after stripping trailing ``*``\\ s (``""``
  or ``"*"`` matches everything); ``monitor_ids`` / ``scorer_ids`` on the derived
  object names, exact, or prefix match of the rest when the value ends in ``*``
  (so ``[""]`` keeps only rows without a ref and ``["*"]`` keeps every row);
  ``span_agent_names`` exact; ``span_types`` on the derived span type; ``tags``
  any-of exact on ``scorer_tags``; ``rating_min`` / ``rating_max`` inclusive, on
  the ``_rating_`` key only — when either is set, rows without ``_rating_`` drop
  out (``rating_min > rating_max`` matches nothing).
* **Buckets.** With ``time_bucket_seconds = n`` a row falls in the bucket starting
  at ``floor(created_at_ms / (1000 n)) * 1000 n`` ms — epoch aligned, so the first
  bucket may start before ``after_ms``.
* **Groups.** The ``group_by`` dimensions in request order, values as strings.
* **Accumulators** per (bucket, group): ``total_count`` rows; ``scored_count`` rows
  with a tag or a rating key; ``tag_counts`` +1 per tag element (a tag repeated in
  a row counts twice); ``rating_counts`` rows carrying each key; ``rating_sums``
  the IEEE-754 double sum of each key's values, added one by one in store order
  starting from ``0.0``; like ClickHouse ``sumMap`` a key whose sum is exactly
  zero (``0.0`` or ``-0.0``) is left out of ``rating_sums`` but kept in
  ``rating_counts``. Every map has its keys in ascending code-point order (which
  is UTF-8 byte order, ClickHouse's order for ``String`` keys).
* **Shape.** Only non-empty (bucket, group) rows, except that with neither a bucket
  nor a group_by there is always exactly one row (zero counts, empty maps when
  nothing matched). Rows are ordered by bucket start, then by group values, where
  ``span_status_code`` sorts by enum value (UNSET < OK < ERROR) and strings by
  code point. The response echoes ``after_ms``, ``before_ms`` and
  ``time_bucket_seconds``.

How it runs (single pass in the sense that every row is read a constant number of
times, always by C code — no per-row Python bytecode on the common paths):

1. The filters are compiled once per request into a short list of whole-window
   passes (:func:`compile_filters`), cheapest first. String filters are decided
   once per *distinct* value of the column, then applied with
   ``itertools.compress`` over ``map(set.__contains__, column)``; the tags filter is
   ``map(frozenset.isdisjoint, tags)``; the rating bounds are two ``float``
   comparisons mapped over ``dict.get(row_ratings, "_rating_", nan)``. No filter
   means no pass at all.
2. The surviving rows are still in time order, so bucket edges are found by
   bisection on ``created_at_ms`` — no per-row bucket arithmetic.
3. With group_by, each bucket is stably sorted by group key (an ``itemgetter`` on
   the row tuple), so every group is contiguous and still in store order; group
   edges are found by bisection. The needed fields are read into plain pointer
   lists (no per-row objects are allocated) and each group takes a slice of them.
4. Each (bucket, group) run is folded with ``len``, ``sum`` over the ``is_scored``
   column, ``Counter`` over the tag tuples, and per rating key one
   ``dict.__contains__`` and one ``dict.get`` pass.

Complexity: ``O(k log k)`` for ``k`` window rows with group_by (the sort),
``O(k)`` without, plus ``O(c log c)`` to order the ``c`` output rows; the window
itself costs ``O(log n + k)`` to find (bisection in the store). Measured figures:
``benchmarks/bench_aggregate.py``.
"""

from __future__ import annotations

import sys
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import reduce
from itertools import compress, repeat
from operator import add, and_, itemgetter, methodcaller, not_
from typing import Any

from .models import FeedbackAggregateBucket, FeedbackAggregateReq, FeedbackAggregateRes
from .rows import STATUS_ORDER, FeedbackRow

RATING_KEY = "_rating_"
"""The only rating key that ``rating_min`` / ``rating_max`` consult."""


def column(name: str) -> Callable[[FeedbackRow], Any]:
    """A C-level getter for one row field, by tuple index (``itemgetter`` on the
    NamedTuple is about twice as fast as ``attrgetter``)."""
    return itemgetter(FeedbackRow._fields.index(name))


_created_at_ms = column("created_at_ms")
_is_scored = column("is_scored")
_scorer_tags = column("scorer_tags")
_scorer_ratings = column("scorer_ratings")

if sys.version_info < (3, 12):
    _sequential_sum: Callable[[Iterable[float]], float] = sum
else:  # from 3.12 ``sum`` compensates float rounding; keep plain left-to-right addition

    def _sequential_sum(values: Iterable[float]) -> float:
        return float(reduce(add, values, 0.0))


Rows = list[FeedbackRow]
RowFilter = Callable[[Rows], Rows]


# --- filters -------------------------------------------------------------------------


def _prefix_or_exact(values: Iterable[str]) -> Callable[[str], bool]:
    """``scorer_ids`` / ``monitor_ids`` matcher: ``"x*"`` is a prefix of ``x``, else exact."""
    exact = frozenset(v for v in values if not v.endswith("*"))
    prefixes = tuple(v[:-1] for v in values if v.endswith("*"))

    def match(value: str) -> bool:
        return value in exact or value.startswith(prefixes)

    return match


def _type_prefixes(values: Iterable[str]) -> Callable[[str], bool]:
    """``feedback_types`` matcher: any-of prefix after stripping trailing ``*``\\ s."""
    prefixes = tuple(v.rstrip("*") for v in values)
    return methodcaller("startswith", prefixes)


def _column_filter(name: str, match: Callable[[str], bool]) -> RowFilter:
    """Keep rows whose string field ``name`` satisfies ``match``.

    ``match`` runs once per distinct value in the window (columns such as scorer id
    or feedback type take few values); each row costs one C-level set lookup.
    """
    getter = column(name)

    def apply(rows: Rows) -> Rows:
        values = list(map(getter, rows))
        accepted = {v for v in set(values) if match(v)}
        return list(compress(rows, map(accepted.__contains__, values)))

    return apply


def _tags_filter(tags: Iterable[str]) -> RowFilter:
    """Keep rows whose ``scorer_tags`` contain any of ``tags`` (exact)."""
    wanted = frozenset(tags)

    def apply(rows: Rows) -> Rows:
        return list(compress(rows, map(not_, map(wanted.isdisjoint, map(_scorer_tags, rows)))))

    return apply


def _rating_filter(low: float | None, high: float | None) -> RowFilter:
    """Keep rows with ``low <= _rating_ <= high`` (a null bound is open); rows
    without ``_rating_`` drop out."""
    lo = float("-inf") if low is None else low
    hi = float("inf") if high is None else high
    nan = float("nan")  # compares false with both bounds: a missing _rating_ drops out
    at_least_low = lo.__le__
    at_most_high = hi.__ge__

    def apply(rows: Rows) -> Rows:
        values = list(map(dict.get, map(_scorer_ratings, rows), repeat(RATING_KEY), repeat(nan)))
        keep = map(and_, map(at_least_low, values), map(at_most_high, values))
        return list(compress(rows, keep))

    return apply


def compile_filters(req: FeedbackAggregateReq) -> list[RowFilter]:
    """The request's filters as a list of whole-window passes (empty: no filters).

    Cheap, selective tests come first so later passes see fewer rows.
    """
    plan: list[RowFilter] = []
    if req.span_agent_names:
        plan.append(_column_filter("span_agent_name", frozenset(req.span_agent_names).__contains__))
    if req.span_types:
        plan.append(_column_filter("span_type", frozenset(req.span_types).__contains__))
    if req.scorer_ids:
        plan.append(_column_filter("scorer_id", _prefix_or_exact(req.scorer_ids)))
    if req.monitor_ids:
        plan.append(_column_filter("monitor_id", _prefix_or_exact(req.monitor_ids)))
    if req.feedback_types:
        plan.append(_column_filter("feedback_type", _type_prefixes(req.feedback_types)))
    if req.tags:
        plan.append(_tags_filter(req.tags))
    if req.rating_min is not None or req.rating_max is not None:
        plan.append(_rating_filter(req.rating_min, req.rating_max))
    return plan


# --- folding -------------------------------------------------------------------------


MANY_RATING_KEYS = 6
"""Above this many distinct rating keys in a run, fold ratings row by row instead
of one C-level pass per key."""


def _tag_counts(tags: Sequence[tuple[str, ...]]) -> dict[str, int]:
    """+1 per tag element, keys sorted. Counts each distinct tag *tuple* first (one
    hash per row), then spreads those counts over the tags: ``O(len(tags))``."""
    counts: dict[str, int] = {}
    for combo, times in Counter(tags).items():
        for tag in combo:
            counts[tag] = counts.get(tag, 0) + times
    return dict(sorted(counts.items()))


def _rating_maps(
    ratings: Sequence[Mapping[str, float]],
) -> tuple[dict[str, int], dict[str, float]]:
    """``rating_counts`` and ``rating_sums`` (zero sums dropped), keys sorted.

    Each key's values are added one by one in store order from ``+0.0`` (plain IEEE
    double addition). A few keys: two C-level passes per key (``dict.__contains__``
    then ``dict.get`` with a ``0.0`` default — adding ``+0.0`` never changes a running
    sum that starts at ``+0.0``). Many keys: one Python pass over the items.
    """
    keys = sorted(set().union(*ratings))
    counts: dict[str, int] = {}
    sums: dict[str, float] = {}
    if len(keys) <= MANY_RATING_KEYS:
        whole = len(ratings)
        for key in keys:
            count = sum(map(dict.__contains__, ratings, repeat(key)))
            values: Iterable[float]
            if count == whole:
                values = map(itemgetter(key), ratings)
            else:
                values = map(dict.get, ratings, repeat(key), repeat(0.0))  # type: ignore[arg-type]
            counts[key] = count
            sums[key] = _sequential_sum(values)
    else:
        counts = dict.fromkeys(keys, 0)
        sums = dict.fromkeys(keys, 0.0)
        for mapping in ratings:
            for key, value in mapping.items():
                counts[key] += 1
                sums[key] += value
    # ClickHouse sumMap drops a key whose sum is exactly zero (-0.0 == 0.0 as well).
    return counts, {key: float(total) for key, total in sums.items() if total != 0.0}


def _fold(
    columns: Sequence[Sequence[Any]], bucket_ms: int | None, group: dict[str, str]
) -> FeedbackAggregateBucket:
    """The accumulators of one (bucket, group) run, given as the columns
    ``(scorer_ratings, scorer_tags, is_scored)`` in store order.
    ``O(len(run) * (1 + rating keys))``; every pass is C-level."""
    ratings, tags, scored = columns
    rating_counts, rating_sums = _rating_maps(ratings)
    return FeedbackAggregateBucket.model_construct(
        time_bucket_start_ms=bucket_ms,
        group=group,
        total_count=len(scored),
        scored_count=sum(scored),
        tag_counts=_tag_counts(tags),
        rating_counts=rating_counts,
        rating_sums=rating_sums,
    )


def _bucket_runs(rows: Rows, width_ms: int) -> Iterable[tuple[int, Rows]]:
    """Split time-ordered ``rows`` into ``(bucket start ms, rows)`` runs, skipping
    empty buckets. Two bisections per non-empty bucket, no per-row work:
    ``O(b log k)`` plus the slice copies."""
    lo, end = 0, len(rows)
    while lo < end:
        start = rows[lo].created_at_ms // width_ms * width_ms
        hi = bisect_left(rows, start + width_ms, lo, end, key=_created_at_ms)
        yield start, rows[lo:hi]
        lo = hi


def _group_order(dims: Sequence[str]) -> Callable[[tuple[str, ...]], tuple[Any, ...]] | None:
    """Sort key for group values when code-point order is not enough: ``None``
    unless ``span_status_code`` is a dimension (it sorts by enum value)."""
    status_at = [i for i, d in enumerate(dims) if d == "span_status_code"]
    if not status_at:
        return None

    def order(values: tuple[str, ...]) -> tuple[Any, ...]:
        key: list[Any] = list(values)
        for i in status_at:
            key[i] = (STATUS_ORDER.get(values[i], len(STATUS_ORDER)), values[i])
        return tuple(key)

    return order


class _RunFolder:
    """Folds one bucket (or the whole window) of rows into output cells; built once
    per request from its group_by."""

    def __init__(self, dims: Sequence[str]) -> None:
        self.dims = list(dims)
        self.key: Callable[[FeedbackRow], Any] | None = (
            itemgetter(*map(FeedbackRow._fields.index, dims)) if dims else None
        )
        self.order = _group_order(dims) or tuple
        self.cells: list[tuple[int, tuple[Any, ...], FeedbackAggregateBucket]] = []

    def fold(self, rows: Rows, bucket_ms: int | None) -> None:
        """Append the cells of ``rows`` (one bucket, in store order).

        With group_by the bucket is stably sorted by group key (each group keeps
        store order; a bucket's rows sit close together in memory, so this stays
        cache friendly) and group edges are found by bisection. The needed fields
        are then read into plain pointer lists — no per-row objects are allocated —
        and each group folds its slice of them. ``O(m log m)`` with group_by,
        ``O(m)`` without.
        """
        key = self.key
        if key is not None:
            rows = sorted(rows, key=key)
        columns = (
            list(map(_scorer_ratings, rows)),
            list(map(_scorer_tags, rows)),
            list(map(_is_scored, rows)),
        )
        start = 0 if bucket_ms is None else bucket_ms
        if key is None:
            self.cells.append((start, (), _fold(columns, bucket_ms, {})))
            return
        single = len(self.dims) == 1
        lo, end = 0, len(rows)
        while lo < end:
            value = key(rows[lo])
            hi = bisect_right(rows, value, lo, end, key=key)
            values: tuple[str, ...] = (value,) if single else value
            group = dict(zip(self.dims, values, strict=True))
            picked = [column[lo:hi] for column in columns]
            self.cells.append((start, self.order(values), _fold(picked, bucket_ms, group)))
            lo = hi


def feedback_aggregate(req: FeedbackAggregateReq, rows: list[FeedbackRow]) -> FeedbackAggregateRes:
    """Fold ``rows`` (the project's window, in store order) into the answer.

    ``rows`` must be exactly the project's rows with
    ``req.after_ms <= created_at_ms < req.before_ms``, sorted by ``created_at_ms``
    (as :meth:`refengine.engine.Engine.window` returns them), built by
    :func:`refengine.rows.make_row` (their rating maps are plain dicts). ``O(k log k)`` for
    ``k`` rows with group_by, ``O(k)`` without; see the module docstring for the
    semantics.
    """
    for row_filter in compile_filters(req):
        if not rows:
            break
        rows = row_filter(rows)

    folder = _RunFolder(req.group_by)
    width = req.time_bucket_seconds
    if width is None:
        if rows or not req.group_by:  # no bucket, no group_by: always exactly one row
            folder.fold(rows, None)
    else:
        for bucket_ms, run in _bucket_runs(rows, width * 1000):
            folder.fold(run, bucket_ms)
    cells = folder.cells
    cells.sort(key=itemgetter(0, 1))  # by bucket start, then group values
    buckets = [cell[2] for cell in cells]
    return FeedbackAggregateRes.model_construct(
        time_bucket_seconds=req.time_bucket_seconds,
        after_ms=req.after_ms,
        before_ms=req.before_ms,
        buckets=buckets,
    )


__all__ = ["RATING_KEY", "compile_filters", "feedback_aggregate"]
