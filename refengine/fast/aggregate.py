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

How it runs: the store keeps an index (:mod:`refengine.fast.aggregate_index`) with
the rows as columns — time, a code for the row's string dimensions (its
*profile*), a code for its tags and rating keys (its *signature*), and per rating
key the values — split into one partition per group_by value. The engine hands
this module a copy of each partition's window (:class:`refengine.fast.columns.Columns`).

1. **Filters** are compiled once per request (:func:`compile_filters`). The string
   filters are decided once per distinct profile and the tags filter once per
   distinct signature; a row then costs one C-level set lookup. The rating bounds
   are a signature lookup (does the row have ``_rating_``?) and two C-level
   comparisons per row. A partition whose rows all pass is not copied again.
2. **Buckets**: rows are in time order, so bucket edges are found by bisection on
   the time column — no per-row arithmetic.
3. **Cells**: each (bucket, group) cell is a contiguous slice of one partition.
   Its counts come from one ``Counter`` over the slice's signature codes, spread
   over the few distinct signatures (tags and rating keys included); each rating
   key's sum is one ``sum`` over the slice of its value column, in store order.

Complexity, for ``k`` window rows in ``g`` groups making ``c`` cells, with ``s``
distinct signatures per cell and ``r`` rating keys: ``O(k r + c s + c log c)``
once the index is current (see :mod:`refengine.fast.aggregate_index` for
keeping it so). Measured figures: ``benchmarks/bench_aggregate.py``.
"""

from __future__ import annotations

import sys
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import reduce
from itertools import repeat
from operator import add, and_, ge, itemgetter, le, methodcaller
from typing import Any

from ..models import FeedbackAggregateBucket, FeedbackAggregateReq, FeedbackAggregateRes
from ..rows import STATUS_ORDER
from .columns import PROFILE_FIELDS, Codebook, Columns, Signature

RATING_KEY = "_rating_"
"""The only rating key that ``rating_min`` / ``rating_max`` consult."""

if sys.version_info < (3, 12):
    _sequential_sum: Callable[[Iterable[float]], float] = sum
else:  # from 3.12 ``sum`` compensates float rounding; keep plain left-to-right addition

    def _sequential_sum(values: Iterable[float]) -> float:
        return float(reduce(add, values, 0.0))


# --- filters -------------------------------------------------------------------------


def _prefix_or_exact(values: Iterable[str]) -> Callable[[str], bool]:
    """``scorer_ids`` / ``monitor_ids`` matcher: ``"x*"`` is a prefix of ``x``, else exact."""
    values = list(values)
    exact = frozenset(v for v in values if not v.endswith("*"))
    prefixes = tuple(v[:-1] for v in values if v.endswith("*"))

    def match(value: str) -> bool:
        return value in exact or value.startswith(prefixes)

    return match


def _type_prefixes(values: Iterable[str]) -> Callable[[str], bool]:
    """``feedback_types`` matcher: any-of prefix after stripping trailing ``*``\\ s."""
    prefixes = tuple(v.rstrip("*") for v in values)
    return methodcaller("startswith", prefixes)


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


def compile_filters(req: FeedbackAggregateReq) -> Filters:
    """The request's filters, compiled once (see the module docstring for the rules)."""
    tests: list[tuple[int, Callable[[str], bool]]] = []

    def on(field: str, match: Callable[[str], bool]) -> None:
        tests.append((PROFILE_FIELDS.index(field), match))

    if req.span_agent_names:
        on("span_agent_name", frozenset(req.span_agent_names).__contains__)
    if req.span_types:
        on("span_type", frozenset(req.span_types).__contains__)
    if req.scorer_ids:
        on("scorer_id", _prefix_or_exact(req.scorer_ids))
    if req.monitor_ids:
        on("monitor_id", _prefix_or_exact(req.monitor_ids))
    if req.feedback_types:
        on("feedback_type", _type_prefixes(req.feedback_types))

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


def partition_dims(req: FeedbackAggregateReq) -> tuple[str, ...]:
    """The request's ``group_by`` set in :data:`PROFILE_FIELDS` order — the
    partitioning the engine must hand to :func:`feedback_aggregate`."""
    return tuple(d for d in PROFILE_FIELDS if d in req.group_by)


def feedback_aggregate(
    req: FeedbackAggregateReq,
    views: Sequence[tuple[tuple[str, ...], Columns]],
    profiles: Codebook[tuple[str, ...]],
    signatures: Codebook[Signature],
) -> FeedbackAggregateRes:
    """Fold the project's window into the answer.

    ``views`` are the partitions for :func:`partition_dims` of ``req``, each
    ``(group values in that order, the rows with after_ms <= created_at_ms <
    before_ms as Columns)`` — what
    :meth:`refengine.store.ProjectStore.aggregate_views` returns — decoded with
    ``profiles`` and ``signatures``. See the module docstring for the rules and the
    cost.
    """
    filters = compile_filters(req)
    run = _FilterRun(filters, profiles, signatures) if filters.active else None
    dims = list(req.group_by)
    canonical = partition_dims(req)
    to_request_order = [canonical.index(d) for d in dims]
    order = _group_order(dims)
    width = None if req.time_bucket_seconds is None else req.time_bucket_seconds * 1000
    cells: list[tuple[int, tuple[Any, ...], FeedbackAggregateBucket]] = []
    for key, window in views:
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
        time_bucket_seconds=req.time_bucket_seconds,
        after_ms=req.after_ms,
        before_ms=req.before_ms,
        buckets=[cell[2] for cell in cells],
    )


__all__ = ["RATING_KEY", "Filters", "compile_filters", "feedback_aggregate", "partition_dims"]
