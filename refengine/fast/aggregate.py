"""The fast fold of ``POST /feedback/aggregate`` over the columnar index.

The rules are :mod:`refengine.semantics.aggregate`'s (spec/SEMANTICS.md,
"Aggregate"); this module answers the same :class:`AggregatePlan` from an
:class:`AggregateSnapshot` instead of a list of rows, and must give the same answer
(property tests and the case catalogue run both).

The snapshot: the store keeps an index (:mod:`refengine.fast.aggregate_index`) with
the rows as columns — time, a code for the row's string dimensions (its
*profile*), a code for its tags and rating keys (its *signature*), and per rating
key the values — split into one partition per group_by value. The engine takes a
copy of each partition's window (:class:`refengine.fast.columns.Columns`).

1. **Filters** are compiled once per request (:func:`compile_filters`). The string
   filters are decided once per distinct profile (with the reference's own
   predicates) and the tags filter once per distinct signature; a row then costs
   one set lookup in a ``map``. The rating bounds are a signature lookup (does the
   row have ``_rating_``?) and two comparisons per row in ``map``. A partition whose
   rows all pass is not copied again.
2. **Buckets**: rows are in time order, so bucket edges are found by bisection on
   the time column — no per-row arithmetic.
3. **Cells**: each (bucket, group) cell is a contiguous slice of one partition.
   Its counts come from one ``Counter`` over the slice's signature codes, spread
   over the few distinct signatures (tags and rating keys included); each rating
   key's sum is one left-to-right sum over the slice of its value column, in store
   order.

Runtime complexity, for ``k`` window rows in ``g`` groups making ``c`` cells, with
``s`` distinct signatures per cell and ``r`` rating keys: ``O(k r + c s + c log c)``
once the index is current (see :mod:`refengine.fast.aggregate_index` for keeping it
so). Measured figures: ``benchmarks/bench_aggregate.py``.
"""

from __future__ import annotations

import sys
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial, reduce
from itertools import repeat
from operator import add, and_, ge, itemgetter, le
from typing import Any, NamedTuple

from ..models import FeedbackAggregateBucket, FeedbackAggregateRes
from ..rows import STATUS_ORDER
from ..semantics.aggregate import RATING_KEY, AggregatePlan, id_matches, type_matches
from .columns import PROFILE_FIELDS, Codebook, Columns, Signature

if sys.version_info < (3, 12):
    _sequential_sum: Callable[[Iterable[float]], float] = sum
else:  # from 3.12 ``sum`` compensates float rounding; keep plain left-to-right addition

    def _sequential_sum(values: Iterable[float]) -> float:
        return float(reduce(add, values, 0.0))


# --- filters -------------------------------------------------------------------------


def _id_test(wanted: tuple[str, ...], value: str) -> bool:
    return id_matches(value, wanted)


def _type_test(wanted: tuple[str, ...], value: str) -> bool:
    return type_matches(value, wanted)


@dataclass(frozen=True)
class Filters:
    """A request's filters, compiled. ``profile`` tests a row's profile tuple
    (:data:`refengine.fast.columns.PROFILE_FIELDS`), ``tags`` is the any-of tag set,
    ``rating`` the inclusive ``_rating_`` bounds; ``None`` is no filter."""

    profile: Callable[[tuple[str, ...]], bool] | None
    tags: frozenset[str] | None
    rating: tuple[float, float] | None

    @property
    def active(self) -> bool:
        """True when any filter is set."""
        return self.profile is not None or self.tags is not None or self.rating is not None


def compile_filters(req: AggregatePlan) -> Filters:
    """The plan's filters, compiled once: the string filters as one test of a
    profile tuple made of the reference's predicates
    (:func:`refengine.semantics.aggregate.passes_filters` states the rules)."""
    tests: list[tuple[int, Callable[[str], bool]]] = []

    def on(field: str, match: Callable[[str], bool]) -> None:
        tests.append((PROFILE_FIELDS.index(field), match))

    if req.span_agent_names:
        on("span_agent_name", frozenset(req.span_agent_names).__contains__)
    if req.span_types:
        on("span_type", frozenset(req.span_types).__contains__)
    if req.scorer_ids:
        on("scorer_id", partial(_id_test, req.scorer_ids))
    if req.monitor_ids:
        on("monitor_id", partial(_id_test, req.monitor_ids))
    if req.feedback_types:
        on("feedback_type", partial(_type_test, req.feedback_types))

    profile: Callable[[tuple[str, ...]], bool] | None = None
    if tests:

        def profile(values: tuple[str, ...]) -> bool:
            return all(match(values[at]) for at, match in tests)

    rating = None
    if req.rating_min is not None or req.rating_max is not None:
        low = float("-inf") if req.rating_min is None else req.rating_min
        high = float("inf") if req.rating_max is None else req.rating_max
        rating = (low, high)
    return Filters(profile, frozenset(req.tags) if req.tags else None, rating)


def _accepted(
    column: list[int], decide: Callable[[int], bool], memo: dict[int, bool]
) -> Iterable[bool] | None:
    """A keep-mask over ``column`` (codes) from a per-code decision, or ``None`` when
    every row passes. ``decide`` runs once per distinct code per request."""
    distinct = set(column)
    for code in distinct.difference(memo):
        memo[code] = decide(code)
    accepted = {code for code in distinct if memo[code]}
    if len(accepted) == len(distinct):
        return None
    return map(accepted.__contains__, column)


class _FilterRun:
    """Applies compiled :class:`Filters` to the partitions of one request."""

    def __init__(
        self,
        filters: Filters,
        profiles: Codebook[tuple[str, ...]],
        signatures: Codebook[Signature],
    ) -> None:
        self.filters = filters
        self.profiles = profiles.values
        self.signatures = signatures.values
        self.profile_memo: dict[int, bool] = {}
        self.sig_memo: dict[int, bool] = {}

    def apply(self, view: Columns) -> Columns:
        """The rows of ``view`` that pass every filter (``view`` itself if all do).
        ``O(len(view))``, all C-level but one step per distinct code."""
        filters = self.filters
        masks: list[Iterable[Any]] = []
        if filters.profile is not None:
            profiles, test = self.profiles, filters.profile
            mask = _accepted(view.profile, lambda c: test(profiles[c]), self.profile_memo)
            if mask is not None:
                masks.append(mask)
        wanted, rating = filters.tags, filters.rating
        if rating is not None and RATING_KEY not in view.ratings:
            return Columns()  # no row in the view has _rating_: none can pass
        if wanted is not None or rating is not None:
            # One decision per signature code: a wanted tag, and a _rating_ key.
            signatures = self.signatures

            def signature_passes(code: int) -> bool:
                sig = signatures[code]
                return (wanted is None or not wanted.isdisjoint(sig.tags)) and (
                    rating is None or RATING_KEY in sig.keys
                )

            mask = _accepted(view.sig, signature_passes, self.sig_memo)
            if mask is not None:
                masks.append(mask)
        if rating is not None:
            values = view.ratings[RATING_KEY]
            masks.append(map(le, repeat(rating[0]), values))
            masks.append(map(ge, repeat(rating[1]), values))
        if not masks:
            return view
        keep = list(reduce(lambda a, b: map(and_, a, b), masks))
        return view.take(0, len(view), keep)


# --- folding -------------------------------------------------------------------------


def _bucket_edges(ms: list[int], width_ms: int | None) -> Iterator[tuple[int | None, int, int]]:
    """``(bucket start, lo, hi)`` for each non-empty time bucket of the time-ordered
    ``ms``, found by bisection; with ``width_ms`` ``None``, the one span
    ``(None, 0, len(ms))``, even when empty. ``O(b log k)`` for ``b`` buckets."""
    if width_ms is None:
        yield None, 0, len(ms)
        return
    lo, end = 0, len(ms)
    while lo < end:
        start = ms[lo] // width_ms * width_ms
        hi = bisect_left(ms, start + width_ms, lo, end)
        yield start, lo, hi
        lo = hi


def _fold_cells(
    view: Columns, width_ms: int | None, group: dict[str, str], signatures: Sequence[Signature]
) -> Iterator[tuple[int | None, FeedbackAggregateBucket]]:
    """The cells of one group's (filtered) window: one per non-empty time bucket,
    or one for the whole view when ``width_ms`` is ``None``.

    Per cell one ``Counter`` over the signature codes, a Python step per distinct
    signature (and per tag and key it names), and per rating key one ``sum`` over a
    contiguous slice of values.
    """
    sig, ratings = view.sig, view.ratings
    for start, lo, hi in _bucket_edges(view.ms, width_ms):
        scored = 0
        tag_counts: dict[str, int] = {}
        rating_counts: dict[str, int] = {}
        for code, times in Counter(sig[lo:hi]).items():
            tags, keys, is_scored = signatures[code]
            if is_scored:
                scored += times
                for tag in tags:
                    tag_counts[tag] = tag_counts.get(tag, 0) + times
                for key in keys:
                    rating_counts[key] = rating_counts.get(key, 0) + times
        rating_sums: dict[str, float] = {}
        for key in sorted(rating_counts):
            total = float(_sequential_sum(ratings[key][lo:hi]))
            if total != 0.0:  # ClickHouse sumMap drops a key whose sum is exactly zero
                rating_sums[key] = total
        # Validated construction: pydantic-core builds it faster than model_construct,
        # and gives the bucket its own copy of every map (``group`` included).
        yield (
            start,
            FeedbackAggregateBucket(
                time_bucket_start_ms=start,
                group=group,
                total_count=hi - lo,
                scored_count=scored,
                tag_counts=dict(sorted(tag_counts.items())),
                rating_counts=dict(sorted(rating_counts.items())),
                rating_sums=rating_sums,
            ),
        )


def _group_order(dims: Sequence[str]) -> Callable[[tuple[str, ...]], tuple[Any, ...]]:
    """Sort key for group values: code-point order, except that
    ``span_status_code`` sorts by enum value."""
    status_at = [i for i, d in enumerate(dims) if d == "span_status_code"]
    if not status_at:
        return tuple

    def order(values: tuple[str, ...]) -> tuple[Any, ...]:
        key: list[Any] = list(values)
        for i in status_at:
            key[i] = (STATUS_ORDER.get(values[i], len(STATUS_ORDER)), values[i])
        return tuple(key)

    return order


def partition_dims(p: AggregatePlan) -> tuple[str, ...]:
    """The plan's ``group_by`` set in :data:`PROFILE_FIELDS` order: the partitioning
    whose views an :class:`AggregateSnapshot` holds."""
    return tuple(d for d in PROFILE_FIELDS if d in p.group_by)


class AggregateSnapshot(NamedTuple):
    """What the fast fold reads: per group of :func:`partition_dims`, ``(group
    values in that order, a Columns copy of its window rows)``, groups without
    window rows left out; and the codebooks that decode the columns (only ever
    appended to, so codes read from a copy stay valid)."""

    views: Sequence[tuple[tuple[str, ...], Columns]]
    profiles: Codebook[tuple[str, ...]]
    signatures: Codebook[Signature]


def fold(p: AggregatePlan, snapshot: AggregateSnapshot) -> FeedbackAggregateRes:
    """The answer to ``p`` from ``snapshot``: the same as
    :func:`refengine.semantics.aggregate.fold` over the window's rows. Aggregate /
    Cost: see the module docstring for how, and for the runtime complexity."""
    filters = compile_filters(p)
    signatures = snapshot.signatures
    run = _FilterRun(filters, snapshot.profiles, signatures) if filters.active else None
    dims = list(p.group_by)
    canonical = partition_dims(p)
    to_request_order = [canonical.index(d) for d in dims]
    order = _group_order(dims)
    width = p.width_ms
    cells: list[tuple[int, tuple[Any, ...], FeedbackAggregateBucket]] = []
    for key, window in snapshot.views:
        view = window if run is None else run.apply(window)
        if not view:
            continue
        values = tuple(key[i] for i in to_request_order)
        group: dict[str, str] = dict(zip(dims, values, strict=True))
        sort_key = order(values)
        for start, bucket in _fold_cells(view, width, group, signatures.values):
            cells.append((0 if start is None else start, sort_key, bucket))
    if not cells and width is None and not dims:  # no bucket, no group_by: one row always
        empty = Columns()
        cells = [(0, (), bucket) for _, bucket in _fold_cells(empty, None, {}, signatures.values)]
    cells.sort(key=itemgetter(0, 1))  # by bucket start, then group values
    return FeedbackAggregateRes.model_construct(
        time_bucket_seconds=p.time_bucket_seconds,
        after_ms=p.after_ms,
        before_ms=p.before_ms,
        buckets=[cell[2] for cell in cells],
    )


__all__ = ["AggregateSnapshot", "Filters", "compile_filters", "fold", "partition_dims"]
