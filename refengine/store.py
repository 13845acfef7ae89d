"""Append-only, per-project row storage sorted by ``(created_at_ms, insertion order)``.

Built on ``sortedcontainers.SortedKeyList`` keyed by ``created_at_ms``. Its ``add``
places a row after every row with an equal key, so rows with the same millisecond
stay in insertion order without storing a tie-break in the key; each row also
carries nothing extra for this — the position *is* the sequence (spec/SEMANTICS.md,
"The stored row / Ordering and ties").

Each store also owns the fast executor's indexes: the
:class:`refengine.fast.aggregate_index.AggregateIndex` that aggregate queries scan
and the :class:`refengine.fast.metric_index.MetricIndex` of payload metrics that
stats queries read; an insert only tells them when a row lands before the end.

Locks: ``lock`` (the engine's, shared by every store) guards the rows: writes hold
it, and every read of the rows takes it only to copy what it needs. Each store's
own index lock and metrics lock guard its indexes; bringing an index up to date
holds that lock and takes ``lock`` only to copy the rows it lacks, so a long index
build never holds up a write (always taken in that order: index lock, then
``lock``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from operator import attrgetter
from typing import Any

from sortedcontainers import SortedKeyList

from .fast.aggregate import AggregateSnapshot
from .fast.aggregate_index import AggregateIndex
from .fast.metric_index import MetricIndex
from .fast.stats import StatsSnapshot
from .paths import PathReader
from .rows import FeedbackRow

_created_at_ms = attrgetter("created_at_ms")


class ProjectStore:
    """The rows of one project, in ``(created_at_ms, insertion order)`` order.

    ``lock`` guards the rows (default: a lock of its own); see the module docstring.
    """

    __slots__ = (
        "_index",
        "_index_lock",
        "_last_ms",
        "_lock",
        "_metrics",
        "_metrics_lock",
        "_rows",
        "project_id",
    )

    def __init__(self, project_id: str, lock: Any = None) -> None:
        self.project_id = project_id
        self._lock = lock if lock is not None else threading.RLock()
        self._rows: SortedKeyList = SortedKeyList(key=_created_at_ms)
        self._index = AggregateIndex()
        self._index_lock = threading.Lock()
        self._metrics = MetricIndex()
        self._metrics_lock = threading.Lock()
        self._last_ms: int | None = None  # the largest created_at_ms stored

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Iterator[FeedbackRow]:
        """The rows in store order (the caller holds ``lock`` while iterating)."""
        return iter(self._rows)

    def add(self, row: FeedbackRow) -> None:
        """Insert ``row`` after every row with the same millisecond (the caller holds
        ``lock``). Runtime complexity: ``O(log n)`` amortised."""
        ms = row.created_at_ms
        if self._last_ms is not None and ms < self._last_ms:
            self._index.invalidate_from(ms)
            self._metrics.invalidate_from(ms)
        else:
            self._last_ms = ms
        self._rows.add(row)

    def update(self, rows: Iterable[FeedbackRow]) -> None:
        """Insert many rows, in order (the caller holds ``lock``). Runtime complexity:
        ``O(m log(n + m))`` for ``m`` rows."""
        for row in rows:
            self.add(row)

    def window(self, after_ms: int | None, before_ms: int | None) -> list[FeedbackRow]:
        """A copy of the rows with ``after_ms <= created_at_ms < before_ms``, in store
        order; ``None`` leaves a side open. Two bisections then one slice copy under
        ``lock``. Runtime complexity: ``O(log n + k)`` for ``k`` rows in the window."""
        with self._lock:
            lo, hi = self._span(after_ms, before_ms)
            result: list[FeedbackRow] = self._rows[lo:hi]
        return result

    def _span(self, after_ms: int | None, before_ms: int | None) -> tuple[int, int]:
        rows = self._rows
        lo = 0 if after_ms is None else rows.bisect_key_left(after_ms)
        hi = len(rows) if before_ms is None else rows.bisect_key_left(before_ms)
        return lo, max(lo, hi)

    def stats_snapshot(
        self, after_ms: int, before_ms: int, readers: Sequence[PathReader]
    ) -> StatsSnapshot:
        """The fast stats executor's snapshot: :meth:`window`, and for each reader (a
        numeric or boolean metric) the column of its values for those rows, one entry
        per row, NaN for no value.

        Under the metrics lock; ``lock`` only while dropping stale entries and
        copying rows. Runtime complexity: ``O(log n + k)`` for ``k`` window rows,
        plus parsing the rows the columns lack (:mod:`refengine.fast.metric_index`).
        The lists and arrays are the caller's to keep.
        """
        with self._metrics_lock:
            with self._lock:
                columns, new_rows = self._metrics.pending(self._rows, readers)
                size = len(self._rows)
                lo, hi = self._span(after_ms, before_ms)
                rows: list[FeedbackRow] = self._rows[lo:hi]
            self._metrics.catch_up(columns, readers, new_rows, size)
            return StatsSnapshot(rows, [column[lo:hi] for column in columns])

    def aggregate_snapshot(
        self, dims: tuple[str, ...], after_ms: int, before_ms: int
    ) -> AggregateSnapshot:
        """The fast aggregate executor's snapshot: per group of ``dims`` (a
        ``group_by`` set in ``PROFILE_FIELDS`` order), a Columns copy of its rows with
        ``after_ms <= created_at_ms < before_ms``, in store order; groups without such
        rows are left out.

        Under the index lock; ``lock`` only while copying the rows the index lacks.
        Runtime complexity: ``O(g log n + k)`` for ``g`` groups and ``k`` window rows,
        plus bringing the index up to date (:mod:`refengine.fast.aggregate_index`).
        """
        index = self._index
        with self._index_lock:
            with self._lock:
                from_ms, new_rows = index.pending(self._rows)
            index.catch_up(from_ms, new_rows)
            views = []
            for key, part in index.partitions(dims).items():
                lo, hi = part.span(after_ms, before_ms)
                if lo < hi:
                    views.append((key, part.take(lo, hi)))
            return AggregateSnapshot(views, index.profiles, index.signatures)

    def check_invariants(self) -> None:
        """Raise ``AssertionError`` unless the store is internally consistent. O(n).

        Checks the sorted container's own invariants, that every row belongs to
        this project, that ``created_at_ms`` never decreases along the store, and
        every index against the rows. Takes the index locks, then ``lock``.
        """
        with self._index_lock, self._metrics_lock, self._lock:
            self._check_rows()
            self._index.check(self._rows)
            self._metrics.check(self._rows)

    def _check_rows(self) -> None:
        self._rows._check()
        previous = None
        for row in self._rows:
            if row.project_id != self.project_id:
                raise AssertionError(f"row {row.id} of {row.project_id} in {self.project_id}")
            if row.created_at_ms != row.created_at_us // 1000:
                raise AssertionError(f"row {row.id}: created_at_ms does not match created_at_us")
            if previous is not None and row.created_at_ms < previous:
                raise AssertionError(f"row {row.id} is out of created_at order")
            previous = row.created_at_ms
        if previous is not None and previous != self._last_ms:
            raise AssertionError("the largest created_at_ms is not tracked")

    @property
    def aggregate_index(self) -> AggregateIndex:
        """The aggregate index, as the last aggregate snapshot left it (read it under
        no concurrent query)."""
        return self._index

    @property
    def metric_index(self) -> MetricIndex:
        """The stats metric columns, as the last stats snapshot left them (read them
        under no concurrent query)."""
        return self._metrics
