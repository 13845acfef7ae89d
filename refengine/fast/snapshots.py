"""The fast executor's snapshots of a project store, from indexes kept with it.

Each project store keeps, once a fast query asked for them, an
:class:`refengine.fast.aggregate_index.AggregateIndex`, a
:class:`refengine.fast.metric_index.MetricIndex` and a
:class:`refengine.fast.key_index.KeyIndex`, each with a lock of its own (see
:meth:`refengine.store.ProjectStore.derived`). Taking a snapshot holds that lock
and takes the store's lock (the engine lock) only to copy the rows the index
lacks; the index is then brought up to date, and the snapshot copied out of it,
outside the engine lock, so a long build never holds up a write. Lock order:
an index lock, then the engine lock.
"""

from __future__ import annotations

import threading
from array import array
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from operator import attrgetter
from typing import Generic, Protocol, TypeVar

from sortedcontainers import SortedKeyList

from ..paths import PathReader
from ..rows import FeedbackRow
from ..semantics.stats import StatsPlan
from ..store import ProjectStore
from .aggregate import AggregateSnapshot, Span
from .aggregate_index import AggregateIndex, TooWide
from .key_index import KeyIndex
from .metric_index import MetricIndex
from .stats import (
    StatsSnapshot,
    column_readers,
    column_sorts,
    filtered_snapshot,
    has_row_filter,
)
from .summaries import Piece

_created_at_ms = attrgetter("created_at_ms")


class _Index(Protocol):
    def invalidate_from(self, from_ms: int) -> None: ...

    def check(self, rows: SortedKeyList) -> None: ...


IndexT = TypeVar("IndexT", bound=_Index)


class Guarded(Generic[IndexT]):
    """An index kept with a store, and the lock that guards it."""

    __slots__ = ("index", "lock")

    def __init__(self, index: IndexT) -> None:
        self.index = index
        self.lock = threading.Lock()

    def invalidate_from(self, from_ms: int) -> None:
        """The store's rows from ``from_ms`` on changed (an insert before the end or a
        removal; the store calls it under its lock). ``O(1)``."""
        self.index.invalidate_from(from_ms)

    def check(self, store: ProjectStore) -> None:
        """Raise ``AssertionError`` unless the index agrees with the store's rows."""
        with self.lock, store.lock:
            self.index.check(store.rows)


def _catch_up(index: AggregateIndex | KeyIndex, store: ProjectStore) -> None:
    """Bring ``index`` up to the store's rows (the caller holds the index's lock):
    only copying the rows it lacks holds the store's lock, the work runs outside."""
    with store.lock:
        from_ms, new_rows = index.pending(store.rows)
    index.catch_up(from_ms, new_rows)


def guarded_aggregate_index(store: ProjectStore) -> Guarded[AggregateIndex]:
    """The store's aggregate index with its lock (made empty the first time)."""
    return store.derived("aggregate_index", lambda: Guarded(AggregateIndex()))


def guarded_metric_index(store: ProjectStore) -> Guarded[MetricIndex]:
    """The store's metric columns with their lock (made empty the first time)."""
    return store.derived("metric_index", lambda: Guarded(MetricIndex()))


def guarded_key_index(store: ProjectStore) -> Guarded[KeyIndex]:
    """The store's index of rows by id and weave_ref with its lock (made empty the
    first time)."""
    return store.derived("key_index", lambda: Guarded(KeyIndex()))


def key_rows(store: ProjectStore, column: str, value: str) -> list[FeedbackRow]:
    """The rows whose ``column`` (``id`` or ``weave_ref``) is ``value``, in store
    order, from the store's key index.

    Runtime complexity: ``O(k)`` for ``k`` such rows, plus bringing the index up to
    date (:mod:`refengine.fast.key_index`), of which only the ``O(m)`` copy of the
    ``m`` rows it lacks holds the engine lock.
    """
    guarded = guarded_key_index(store)
    with guarded.lock:
        _catch_up(guarded.index, store)
        return guarded.index.rows_with(column, value)


@contextmanager
def aggregate_view(
    store: ProjectStore, dims: tuple[str, ...], after_ms: int, before_ms: int
) -> Iterator[AggregateSnapshot]:
    """Per group of ``dims`` (a ``group_by`` set in ``PROFILE_FIELDS`` order), the
    span of the index partition's rows with ``after_ms <= created_at_ms <
    before_ms``, in store order; groups without such rows are left out. The spans
    are the index's own columns: read them only inside the ``with`` block, which
    holds the index lock (not the engine lock: writes go on meanwhile).

    Not copying the window keeps the fold's garbage collections from traversing
    lists of every window row. Runtime complexity: ``O(g log n)`` for ``g`` groups,
    plus bringing the index up to date (:mod:`refengine.fast.aggregate_index`), of
    which only the ``O(m)`` copy of the ``m`` rows it lacks holds the engine lock.
    Raises :class:`refengine.fast.aggregate_index.TooWide` for a project too wide
    to index (its queries read the rows instead).
    """
    guarded = guarded_aggregate_index(store)
    index = guarded.index
    with guarded.lock:
        _catch_up(index, store)
        views = []
        lo, hi = index.master.span(after_ms, before_ms)
        for key, part in index.partitions(dims, lo, hi).items():
            lo, hi = part.span(after_ms, before_ms)
            if lo < hi:
                views.append((key, Span(part, lo, hi)))
        yield AggregateSnapshot(views, index.profiles, index.signatures)


KEEP_CURRENT_ROWS = 4096
"""Rows a project's aggregate index may lag behind its store after a write before
the write brings it up to date (:func:`keep_current`)."""


def keep_current(store: ProjectStore) -> None:
    """After a write to ``store`` (called with no lock held): once its aggregate
    index lags :data:`KEEP_CURRENT_ROWS` rows or more behind the store, bring the
    master columns and every partitioning kept up to date, as a query would.

    So the work of indexing rows is done by the writes, a chunk at a time, and a
    first aggregate finds the index current (the index is made by the first write
    of a project). A write that finds the index lock taken leaves the work to the
    query holding it, so a write never waits for a query. Runtime complexity:
    ``O(1)`` for a write that finds the lag short (the check reads two lengths,
    without the engine lock: a stale read only moves the work to the next write);
    otherwise the catch-up's own cost (:mod:`refengine.fast.aggregate_index`),
    ``O(m (1 + r) (1 + p))`` for the ``m`` rows lagging, ``r`` rating keys and
    ``p`` partitionings kept (each partitioning gathers every column of its rows;
    its sort is over chunks of a constant size): amortised, ``O((1 + r) (1 + p))``
    per row written.
    """
    guarded = guarded_aggregate_index(store)
    index = guarded.index
    if index.wide or len(store.rows) - len(index.master) < KEEP_CURRENT_ROWS:
        return
    if not guarded.lock.acquire(blocking=False):
        return
    try:
        _catch_up(index, store)
    except TooWide:
        pass  # the index is dropped for good: the project's queries read the rows
    finally:
        guarded.lock.release()


def aggregate_snapshot(
    store: ProjectStore, dims: tuple[str, ...], after_ms: int, before_ms: int
) -> AggregateSnapshot:
    """:func:`aggregate_view`'s spans as copies, the caller's to keep: ``O(k)`` more
    for ``k`` window rows."""
    with aggregate_view(store, dims, after_ms, before_ms) as view:
        views = [
            (key, Span(span.columns.take(span.lo, span.hi), 0, span.hi - span.lo))
            for key, span in view.views
        ]
        return AggregateSnapshot(views, view.profiles, view.signatures)


def stats_columns(
    store: ProjectStore, after_ms: int, before_ms: int, readers: Sequence[PathReader]
) -> tuple[list[FeedbackRow], list[array[float]]]:
    """The rows with ``after_ms <= created_at_ms < before_ms`` and, for each reader (a
    numeric or boolean metric), the column of its values for those rows, one entry
    per row, NaN for no value. The lists and arrays are the caller's to keep.

    Runtime complexity: ``O(log n + k)`` for ``k`` window rows under the engine lock
    (with the copy of the rows the columns lack), plus parsing those rows outside it
    (:mod:`refengine.fast.metric_index`).
    """
    guarded = guarded_metric_index(store)
    metrics = guarded.index
    with guarded.lock:
        with store.lock:
            rows = store.rows
            columns, new_rows = metrics.pending(rows, readers)
            size = len(rows)
            lo = rows.bisect_key_left(after_ms)
            hi = max(lo, rows.bisect_key_left(before_ms))
            window: list[FeedbackRow] = rows[lo:hi]
        metrics.catch_up(columns, readers, new_rows, size)
        return window, [column[lo:hi] for column in columns]


def stats_snapshot(store: ProjectStore, p: StatsPlan) -> StatsSnapshot:
    """What the fast fold of ``p`` reads (:class:`refengine.fast.stats.StatsSnapshot`):
    each bucket's row count and, per numeric or boolean metric, the bucket's pieces,
    the caller's to keep.

    Without a row filter the window's rows are not copied: buckets are found by
    bisection in the metric index's times and read as what it keeps of their whole
    hours and the rows around them
    (:meth:`refengine.fast.metric_index.MetricIndex.pieces`). With one, the window's
    rows and values are copied (:func:`stats_columns`) and filtered
    (:func:`refengine.fast.stats.filtered_snapshot`).

    Runtime complexity without a filter: ``O(log n)`` under the engine lock (with
    the copy of the rows the columns lack), then parsing those rows, plus ``O(b +
    c log n)`` for ``b`` buckets, ``c`` of them holding rows, and the pieces' own
    cost per metric.
    """
    readers = column_readers(p)
    if has_row_filter(p):
        rows, columns = stats_columns(store, p.after_ms, p.before_ms, readers)
        return filtered_snapshot(p, rows, columns)
    sorts = column_sorts(p)
    guarded = guarded_metric_index(store)
    metrics = guarded.index
    starts = p.starts
    with guarded.lock:
        with store.lock:
            columns, new_rows = metrics.pending(store.rows, readers)
            size = len(store.rows)
        metrics.catch_up(columns, readers, new_rows, size)
        after_s, before_s = p.after_ms // 1000, p.before_ms // 1000  # whole seconds
        lo, hi = metrics.span(after_s, before_s)
        counts = [0] * len(starts)
        pieces: list[list[list[Piece]]] = [[[] for _ in starts] for _ in columns]
        first, g = starts.start, starts.step
        while lo < hi:
            index = (metrics.second_at(lo) - first) // g
            start_s = max(first + index * g, after_s)
            end_s = min(first + (index + 1) * g, before_s)
            end = metrics.position_of(end_s, lo, hi)
            counts[index] = end - lo
            for reader, column, ordered, per_bucket in zip(
                readers, columns, sorts, pieces, strict=True
            ):
                per_bucket[index] = metrics.pieces(
                    reader, column, lo, end, start_s=start_s, end_s=end_s, ordered=ordered
                )
            lo = end
        return StatsSnapshot(counts, pieces)


__all__ = [
    "Guarded",
    "aggregate_snapshot",
    "aggregate_view",
    "guarded_aggregate_index",
    "guarded_key_index",
    "guarded_metric_index",
    "keep_current",
    "key_rows",
    "stats_columns",
    "stats_snapshot",
]
