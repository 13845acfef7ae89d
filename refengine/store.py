"""Append and remove: per-project row storage sorted by ``(created_at_ms, insertion order)``.

Built on ``sortedcontainers.SortedKeyList`` keyed by ``created_at_ms``. Its ``add``
places a row after every row with an equal key, so rows with the same millisecond
stay in insertion order without storing a tie-break in the key; each row also
carries nothing extra for this — the position *is* the sequence.

Each store also owns the :class:`refengine.aggregate_index.AggregateIndex` that
aggregate queries scan and the :class:`refengine.metric_index.MetricIndex` of
payload metrics that stats queries read; an insert only tells them when a row
lands before the end, and a removal (purge, replace) from the earliest removed row's
millisecond on.

Not thread-safe on its own: :class:`refengine.engine.Engine` holds one lock around
every write and around taking a window snapshot.
"""

from __future__ import annotations

from array import array
from collections.abc import Collection, Iterable, Iterator, Sequence
from operator import attrgetter

from sortedcontainers import SortedKeyList

from .aggregate_index import AggregateIndex, GroupKey
from .columns import Columns
from .metric_index import MetricIndex
from .paths import PathReader
from .rows import FeedbackRow

_created_at_ms = attrgetter("created_at_ms")


class ProjectStore:
    """The rows of one project, in ``(created_at_ms, insertion order)`` order."""

    __slots__ = ("_index", "_last_ms", "_metrics", "_rows", "project_id")

    def __init__(self, project_id: str) -> None:
        self.project_id = project_id
        self._rows: SortedKeyList = SortedKeyList(key=_created_at_ms)
        self._index = AggregateIndex()
        self._metrics = MetricIndex()
        self._last_ms: int | None = None  # the largest created_at_ms stored

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Iterator[FeedbackRow]:
        return iter(self._rows)

    def add(self, row: FeedbackRow) -> None:
        """Insert ``row`` after every row with the same millisecond. O(log n) amortised."""
        ms = row.created_at_ms
        if self._last_ms is not None and ms < self._last_ms:
            self._index.invalidate_from(ms)
            self._metrics.invalidate_from(ms)
        else:
            self._last_ms = ms
        self._rows.add(row)

    def update(self, rows: Iterable[FeedbackRow]) -> None:
        """Insert many rows, in order. O(m log(n + m)) for m rows."""
        for row in rows:
            self.add(row)

    def remove_ids(self, ids: Collection[str]) -> int:
        """Remove every row whose ``id`` is in ``ids`` (all copies of a repeated id);
        returns how many went. Unknown ids are ignored.

        The kept rows keep their order. The aggregate index and the metric columns
        are told to re-read from the earliest removed row's millisecond (the rows
        before it are where they were). ``O(n)`` for the scan and the rebuild when
        a row goes; ``O(n)`` for the scan alone when none does.
        """
        if not ids:
            return 0
        kept = []
        earliest: int | None = None
        for row in self._rows:
            if row.id in ids:
                if earliest is None:
                    earliest = row.created_at_ms
            else:
                kept.append(row)
        if earliest is None:
            return 0
        removed = len(self._rows) - len(kept)
        # Already in store order: building the list from it keeps ties in insertion order.
        rows: SortedKeyList = SortedKeyList(key=_created_at_ms)
        rows.update(kept)
        self._rows = rows
        self._last_ms = kept[-1].created_at_ms if kept else None
        self._index.invalidate_from(earliest)
        self._metrics.invalidate_from(earliest)
        # Cut the metric columns now: a column longer than the store is inconsistent.
        self._metrics.columns(self._rows, ())
        return removed

    def window(self, after_ms: int | None, before_ms: int | None) -> list[FeedbackRow]:
        """The rows with ``after_ms <= created_at_ms < before_ms``, in store order.

        ``None`` leaves a side open. Two bisections then one slice copy:
        ``O(log n + k)`` for ``k`` rows in the window. The returned list is a
        snapshot the caller owns.
        """
        lo, hi = self._span(after_ms, before_ms)
        result: list[FeedbackRow] = self._rows[lo:hi]
        return result

    def _span(self, after_ms: int | None, before_ms: int | None) -> tuple[int, int]:
        rows = self._rows
        lo = 0 if after_ms is None else rows.bisect_key_left(after_ms)
        hi = len(rows) if before_ms is None else rows.bisect_key_left(before_ms)
        return lo, max(lo, hi)

    def stats_window(
        self, after_ms: int, before_ms: int, readers: Sequence[PathReader]
    ) -> tuple[list[FeedbackRow], list[array[float]]]:
        """:meth:`window`, and for each reader (a numeric or boolean metric) the
        column of its values for those rows: one entry per row, NaN for no value.

        Brings the metric columns up to date first (see
        :mod:`refengine.metric_index` for the cost), then ``O(log n + k)`` for the
        ``k`` rows in the window. The lists and arrays are the caller's to keep.
        """
        columns = self._metrics.columns(self._rows, readers)
        lo, hi = self._span(after_ms, before_ms)
        return self._rows[lo:hi], [column[lo:hi] for column in columns]

    def aggregate_views(
        self, dims: tuple[str, ...], after_ms: int, before_ms: int
    ) -> list[tuple[GroupKey, Columns]]:
        """Per group of ``dims`` (a ``group_by`` set in ``PROFILE_FIELDS`` order), a
        :class:`Columns` copy of its rows with ``after_ms <= created_at_ms <
        before_ms``, in store order; groups without such rows are left out.

        Brings the aggregate index up to date first (see its module for the cost),
        then two bisections per group and one copy: ``O(g log n + k)`` for ``g``
        groups and ``k`` rows in the window.
        """
        views = []
        for key, part in self._index.partitions(self._rows, dims).items():
            lo, hi = part.span(after_ms, before_ms)
            if lo < hi:
                views.append((key, part.take(lo, hi)))
        return views

    def check_invariants(self) -> None:
        """Raise ``AssertionError`` unless the store is internally consistent. O(n).

        Checks the sorted container's own invariants, that every row belongs to
        this project, and that ``created_at_ms`` never decreases along the store;
        then that the aggregate index and the metric columns agree with the rows
        wherever they are current — after appends and removals alike.
        """
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
        self._index.check(self._rows)
        self._metrics.check(self._rows)

    @property
    def aggregate_index(self) -> AggregateIndex:
        """The aggregate index (for inspection and tests; call under the engine lock)."""
        return self._index

    @property
    def metric_index(self) -> MetricIndex:
        """The stats metric columns (for inspection and tests; call under the engine
        lock)."""
        return self._metrics
