"""Append-only, per-project row storage sorted by ``(created_at_ms, insertion order)``.

Built on ``sortedcontainers.SortedKeyList`` keyed by ``created_at_ms``. Its ``add``
places a row after every row with an equal key, so rows with the same millisecond
stay in insertion order without storing a tie-break in the key; each row also
carries nothing extra for this — the position *is* the sequence.

Not thread-safe on its own: :class:`refengine.engine.Engine` holds one lock around
every write and around taking a window snapshot.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from operator import attrgetter

from sortedcontainers import SortedKeyList

from .rows import FeedbackRow

_created_at_ms = attrgetter("created_at_ms")


class ProjectStore:
    """The rows of one project, in ``(created_at_ms, insertion order)`` order."""

    __slots__ = ("_rows", "project_id")

    def __init__(self, project_id: str) -> None:
        self.project_id = project_id
        self._rows: SortedKeyList = SortedKeyList(key=_created_at_ms)

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Iterator[FeedbackRow]:
        return iter(self._rows)

    def add(self, row: FeedbackRow) -> None:
        """Insert ``row`` after every row with the same millisecond. O(log n) amortised."""
        self._rows.add(row)

    def update(self, rows: Iterable[FeedbackRow]) -> None:
        """Insert many rows, in order. O(m log(n + m)) for m rows."""
        for row in rows:
            self._rows.add(row)

    def window(self, after_ms: int | None, before_ms: int | None) -> list[FeedbackRow]:
        """The rows with ``after_ms <= created_at_ms < before_ms``, in store order.

        ``None`` leaves a side open. Two bisections then one slice copy:
        ``O(log n + k)`` for ``k`` rows in the window. The returned list is a
        snapshot the caller owns.
        """
        rows = self._rows
        lo = 0 if after_ms is None else rows.bisect_key_left(after_ms)
        hi = len(rows) if before_ms is None else rows.bisect_key_left(before_ms)
        if hi <= lo:
            return []
        result: list[FeedbackRow] = rows[lo:hi]
        return result

    def check_invariants(self) -> None:
        """Raise ``AssertionError`` unless the store is internally consistent. O(n).

        Checks the sorted container's own invariants, that every row belongs to
        this project, and that ``created_at_ms`` never decreases along the store.
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
