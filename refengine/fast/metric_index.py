"""The per-project cache of the metric values ``POST /feedback/stats`` reads.

A stored row keeps its payload as production does, as JSON text
(``payload_dump``). Parsing every row's text on every stats query would cost
several times the query itself, so for each numeric or boolean metric asked for
(a ``json_path`` and a value type) the project keeps a **column**: an
``array('d')`` holding every stored row's reading of it, in store order, NaN
where the row has none (:mod:`refengine.paths`).

Kept current like the aggregate index, lazily, when a query needs it, under the
project's own metrics lock; only dropping stale entries and copying the store rows
the columns lack (:meth:`MetricIndex.pending`) happen under the engine lock, the
parsing outside it:

* rows appended at the end of the store since the last query are parsed once
  for all the columns that query reads — ``O(m)`` for ``m`` new rows;
* a row inserted before the end (an older ``created_at``), or a removal from the
  earliest removed row's millisecond on, marks the columns stale from that
  millisecond; the next query drops every entry at or after the first
  row of that millisecond and parses those rows again;
* a metric asked for the first time parses every stored row — ``O(n)``.

At most :data:`MAX_METRIC_COLUMNS` columns are kept (the least recently used are
dropped and rebuilt on demand). Memory: 8 bytes per row per column kept, and 8
more per value for a column whose percentiles were asked for (its sorted hours).
"""

from __future__ import annotations

import json
from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from itertools import repeat
from operator import attrgetter, itemgetter
from typing import Any

from sortedcontainers import SortedKeyList

from ..paths import PathReader, ValueType, compile_path, found
from ..rows import FeedbackRow
from . import lru

MAX_METRIC_COLUMNS = 8
"""How many metric columns a project keeps between queries."""

PARSE_CHUNK = 64
"""Rows parsed at a time when a column catches up."""

BLOCK_MS = 3_600_000
"""Percentile queries keep each metric's values of every whole epoch-aligned hour
sorted (see :meth:`MetricIndex.sorted_blocks`): a bucket made of whole hours then
merges a few sorted runs instead of sorting all its values."""

MetricKey = tuple[tuple[str, ...], ValueType]
"""A column's name: the ``json_path`` split into keys, and the value type."""

ColumnReader = Callable[[Sequence[dict[str, Any]]], "array[float]"]

_payload_dump = attrgetter("payload_dump")
_scan = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
_first = itemgetter(0)


def _new_column() -> array[float]:
    return array("d")


def _parse_all(texts: Iterable[str]) -> list[dict[str, Any]]:
    # A stored text is exactly json.dumps output (no surrounding space), so the
    # decoder's scanner alone reads it: half the cost of json.loads per text.
    return list(map(_first, map(_scan, texts, repeat(0))))


class MetricIndex:
    """Metric columns of one project (see the module docstring).

    Not thread-safe on its own: the store calls it under the project's metrics lock
    (and :meth:`pending` under the engine lock as well).
    """

    __slots__ = ("_blocks", "_columns", "stale_from")

    def __init__(self) -> None:
        self._columns: dict[MetricKey, array[float]] = {}  # see refengine.fast.lru
        # Per column: hour start ms -> (store position of its first row, one past
        # its last, its values sorted, no-value entries left out).
        self._blocks: dict[MetricKey, dict[int, tuple[int, int, array[float]]]] = {}
        # The earliest created_at_ms of a row inserted before the end since the
        # columns were last brought up to date (None: none).
        self.stale_from: int | None = None

    def invalidate_from(self, from_ms: int) -> None:
        """Note that the rows from ``from_ms`` on changed: a row was inserted before
        the end there, or rows were removed from there on. ``O(1)``."""
        if self.stale_from is None or from_ms < self.stale_from:
            self.stale_from = from_ms

    def pending(
        self, rows: SortedKeyList, readers: Sequence[PathReader]
    ) -> tuple[list[array[float]], list[FeedbackRow]]:
        """The column of each reader's metric (numeric or boolean), in ``readers``
        order, stale entries dropped, and a copy of the store rows ``rows[lo:]`` whose
        entries the shortest of them lacks. Call it under the lock that guards
        ``rows``; then :meth:`catch_up` outside it. Runtime complexity:
        ``O(log n + dropped + m)`` for the ``m`` rows copied (pointers).

        The arrays are the index's own: copy what you keep.
        """
        self._drop_stale(rows)
        # The columns are held here, not looked up again: a query with more metrics
        # than are kept evicts some of its own columns from the cache as it goes.
        wanted: list[array[float]] = []
        for reader in readers:
            if reader.column is None:
                raise ValueError(f"a {reader.value_type} metric has no column")
            key = (reader.keys, reader.value_type)
            wanted.append(lru.use(self._columns, key, _new_column, MAX_METRIC_COLUMNS))
        lo = min((len(column) for column in wanted), default=len(rows))
        new_rows: list[FeedbackRow] = rows[lo:]
        return wanted, new_rows

    @staticmethod
    def catch_up(
        columns: Sequence[array[float]],
        readers: Sequence[PathReader],
        new_rows: Sequence[FeedbackRow],
        size: int,
    ) -> None:
        """Bring each of ``columns`` (from :meth:`pending`) to ``size`` entries, the
        store having been ``size`` rows long and ``new_rows`` its last rows. Every row
        is parsed once for all the columns that lack it. Runtime complexity:
        ``O(m · payload)`` for the ``m`` new rows."""
        wanted: list[tuple[array[float], ColumnReader]] = []
        for column, reader in zip(columns, readers, strict=True):
            if reader.column is None:
                raise ValueError(f"a {reader.value_type} metric has no column")
            wanted.append((column, reader.column))
        lo = size - len(new_rows)
        # In small chunks, so parsed payloads die before a young collection sees
        # them: kept longer, they are promoted and collected over and over (three
        # times slower at 4,096 rows a chunk than at 64).
        for start in range(lo, size, PARSE_CHUNK):
            stop = min(start + PARSE_CHUNK, size)
            payloads = _parse_all(map(_payload_dump, new_rows[start - lo : stop - lo]))
            for column, read in wanted:
                if len(column) < stop:
                    column.extend(read(payloads[len(column) - start :]))

    def _drop_stale(self, rows: SortedKeyList) -> None:
        if self.stale_from is None:
            return
        # The rows before the first one of that millisecond are where they were.
        cut = rows.bisect_key_left(self.stale_from)
        self.stale_from = None
        for column in self._columns.values():
            del column[cut:]
        for blocks in self._blocks.values():
            for hour in [h for h, (_, hi, _) in blocks.items() if hi > cut]:
                del blocks[hour]  # its rows moved, or it gained one

    def sorted_blocks(
        self,
        reader: PathReader,
        column: array[float],
        window_lo: int,
        window_ms: list[int],
    ) -> list[tuple[int, int, array[float]]]:
        """For each whole hour (:data:`BLOCK_MS`) inside a window, ``(first, end,
        sorted values)``: the window rows ``[first, end)`` of that hour and their
        values sorted (no-value entries left out). ``column`` is the reader's
        current column, ``window_lo`` the window's first store position and
        ``window_ms`` its rows' ``created_at_ms``. A block is sorted once and kept
        until a row lands before its end (see :meth:`invalidate_from`).

        Runtime complexity: ``O(h log k)`` for ``h`` hours in a window of ``k``
        rows, plus ``O(v log v)`` for each block of ``v`` values sorted anew.
        Memory: 8 bytes per value kept.
        """
        key = (reader.keys, reader.value_type)
        for stale in [k for k in self._blocks if k not in self._columns]:
            del self._blocks[stale]  # its column was evicted
        blocks = self._blocks.setdefault(key, {})
        out: list[tuple[int, int, array[float]]] = []
        if not window_ms:
            return out
        hour = -(-window_ms[0] // BLOCK_MS) * BLOCK_MS  # the first hour starting inside
        first = bisect_left(window_ms, hour)
        end_ms = window_ms[-1]
        while hour + BLOCK_MS <= end_ms:  # a later row exists: the hour is whole
            end = bisect_left(window_ms, hour + BLOCK_MS, first)
            lo, hi = window_lo + first, window_lo + end
            kept = blocks.get(hour)
            if kept is None or kept[0] != lo or kept[1] != hi:
                kept = (lo, hi, array("d", sorted(found(column[lo:hi]))))
                blocks[hour] = kept
            if end > first:
                out.append((first, end, kept[2]))
            hour, first = hour + BLOCK_MS, end
        return out

    def check(self, rows: SortedKeyList) -> None:
        """Raise ``AssertionError`` unless every kept column agrees with ``rows`` (the
        store) wherever it is current. ``O(n)`` per column. Does not bring the
        columns up to date (a check must not change what it checks)."""
        for (keys, value_type), column in self._columns.items():
            covered = len(column)
            if self.stale_from is not None:
                # After a removal a stale column may be longer than the store.
                covered = min(covered, rows.bisect_key_left(self.stale_from))
            elif len(column) > len(rows):
                raise AssertionError(f"metric column {keys} is longer than the store")
            read = compile_path(".".join(keys), value_type).column
            if read is None:
                raise AssertionError(f"a {value_type} metric column is kept")
            payloads = _parse_all(map(_payload_dump, rows.islice(0, covered)))
            if read(payloads).tobytes() != column[:covered].tobytes():
                raise AssertionError(f"metric column {keys} differs from the store")


__all__ = ["BLOCK_MS", "MAX_METRIC_COLUMNS", "MetricIndex", "MetricKey"]
