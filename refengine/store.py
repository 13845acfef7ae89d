"""Append and remove: per-project row storage sorted by ``(created_at_ms, insertion order)``.

Built on ``sortedcontainers.SortedKeyList`` keyed by ``created_at_ms``. Its ``add``
places a row after every row with an equal key, so rows with the same millisecond
stay in insertion order without storing a tie-break in the key; each row also
carries nothing extra for this — the position *is* the sequence (spec/SEMANTICS.md,
"The stored row / Ordering and ties").

A store also keeps the views derived from its rows that an executor asks it to
keep (:meth:`ProjectStore.derived`: the fast executor's indexes,
:mod:`refengine.fast.snapshots`); an insert only tells them when a row lands
before the end, and a removal (purge, replace) from the earliest removed row's
millisecond on.

Locks: ``lock`` (the engine's, shared by every store) guards the rows: writes hold
it, and every read of the rows takes it only to copy what it needs. A derived view
guards itself with a lock of its own, taken before ``lock``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Iterable, Iterator
from operator import attrgetter
from typing import Any, Protocol, TypeVar, cast

from sortedcontainers import SortedKeyList

from .rows import FeedbackRow

_created_at_ms = attrgetter("created_at_ms")


class Derived(Protocol):
    """A view a store keeps of its rows (see :meth:`ProjectStore.derived`)."""

    def invalidate_from(self, from_ms: int) -> None:
        """The rows from ``from_ms`` on changed: a row landed before the end there, or
        rows were removed from there on (called under ``lock``)."""

    def check(self, store: ProjectStore) -> None:
        """Raise ``AssertionError`` unless the view agrees with ``store`` (called
        under no lock: it takes its own, then ``lock``)."""


DerivedT = TypeVar("DerivedT", bound=Derived)


class ProjectStore:
    """The rows of one project, in ``(created_at_ms, insertion order)`` order.

    ``lock`` guards the rows (default: a lock of its own); see the module docstring.
    """

    __slots__ = ("_derived", "_last_ms", "lock", "project_id", "rows")

    def __init__(self, project_id: str, lock: Any = None) -> None:
        self.project_id = project_id
        self.lock = lock if lock is not None else threading.RLock()
        self.rows: SortedKeyList = SortedKeyList(key=_created_at_ms)
        """The rows, in store order: read them only under ``lock``."""
        self._derived: dict[str, Derived] = {}
        # The largest created_at_ms ever stored (a removal does not lower it): a row
        # below it may land before rows a derived view has seen, so views are told.
        self._last_ms: int | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[FeedbackRow]:
        """The rows in store order (the caller holds ``lock`` while iterating)."""
        return iter(self.rows)

    def add(self, row: FeedbackRow) -> None:
        """Insert ``row`` after every row with the same millisecond (the caller holds
        ``lock``). Runtime complexity: ``O(log n)`` amortised."""
        ms = row.created_at_ms
        if self._last_ms is not None and ms < self._last_ms:
            for view in self._derived.values():
                view.invalidate_from(ms)
        else:
            self._last_ms = ms
        self.rows.add(row)

    def update(self, rows: Iterable[FeedbackRow]) -> None:
        """Insert many rows, in order (the caller holds ``lock``). Runtime complexity:
        ``O(m log(n + m))`` for ``m`` rows."""
        for row in rows:
            self.add(row)

    def remove_ids(self, ids: Collection[str]) -> int:
        """Purge / Removal: remove every row whose ``id`` is in ``ids`` (all copies of
        a repeated id; the caller holds ``lock``); returns how many went. Unknown ids
        are ignored.

        The kept rows keep their order. Every derived view is told that the rows from
        the earliest removed row's millisecond on changed, as for an insert before
        the end (the rows before it are where they were). Runtime complexity:
        ``O(n)`` for the scan, and ``O(n)`` more to rebuild the list when a row goes.
        """
        if not ids:
            return 0
        kept = []
        earliest: int | None = None
        for row in self.rows:
            if row.id in ids:
                if earliest is None:
                    earliest = row.created_at_ms
            else:
                kept.append(row)
        if earliest is None:
            return 0
        removed = len(self.rows) - len(kept)
        # Already in store order, and the sort is stable: ties keep insertion order.
        rows: SortedKeyList = SortedKeyList(key=_created_at_ms)
        rows.update(kept)
        self.rows = rows
        # _last_ms stays: the views may hold removed rows up to it until they catch
        # up, so a later row below it must still mark them stale.
        for view in self._derived.values():
            view.invalidate_from(earliest)
        return removed

    def window(self, after_ms: int | None, before_ms: int | None) -> list[FeedbackRow]:
        """A copy of the rows with ``after_ms <= created_at_ms < before_ms``, in store
        order; ``None`` leaves a side open. Two bisections then one slice copy under
        ``lock``. Runtime complexity: ``O(log n + k)`` for ``k`` rows in the window."""
        with self.lock:
            lo, hi = self._span(after_ms, before_ms)
            result: list[FeedbackRow] = self.rows[lo:hi]
        return result

    def _span(self, after_ms: int | None, before_ms: int | None) -> tuple[int, int]:
        rows = self.rows
        lo = 0 if after_ms is None else rows.bisect_key_left(after_ms)
        hi = len(rows) if before_ms is None else rows.bisect_key_left(before_ms)
        return lo, max(lo, hi)

    def derived(self, name: str, make: Callable[[], DerivedT]) -> DerivedT:
        """The view called ``name`` kept with this store, made by ``make()`` the first
        time; from then on it is told of every row inserted before the end, and
        checked by :meth:`check_invariants`. ``O(1)``."""
        view = self._derived.get(name)  # views are never removed: no lock to find one
        if view is None:
            with self.lock:
                view = self._derived.get(name)
                if view is None:
                    view = self._derived[name] = make()
        return cast(DerivedT, view)

    def check_invariants(self) -> None:
        """Raise ``AssertionError`` unless the store is internally consistent. O(n).

        Checks the sorted container's own invariants, that every row belongs to
        this project, that ``created_at_ms`` never decreases along the store, and
        every derived view against the rows wherever it is current, after appends
        and removals alike (each view takes its own lock, then ``lock``).
        """
        with self.lock:
            self._check_rows()
            views = list(self._derived.values())
        for view in views:
            view.check(self)

    def _check_rows(self) -> None:
        self.rows._check()
        previous = None
        for row in self.rows:
            if row.project_id != self.project_id:
                raise AssertionError(f"row {row.id} of {row.project_id} in {self.project_id}")
            if row.created_at_ms != row.created_at_us // 1000:
                raise AssertionError(f"row {row.id}: created_at_ms does not match created_at_us")
            if previous is not None and row.created_at_ms < previous:
                raise AssertionError(f"row {row.id} is out of created_at order")
            previous = row.created_at_ms
        if previous is not None and (self._last_ms is None or previous > self._last_ms):
            raise AssertionError("the largest created_at_ms is not tracked")
