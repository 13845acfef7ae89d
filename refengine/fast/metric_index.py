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

The index also keeps every stored row's created_at second (an ``array`` of 4-byte
offsets from the first row's, 8-byte seconds if the rows span more than 68 years;
kept current and cut like the columns), so a query finds its buckets' and hours'
rows by bisection without copying the window's rows (every bound a stats query
has is a whole second).

Per column, each epoch-aligned hour (:data:`BLOCK_MS`) a query found whole inside
one of its buckets is kept as a **block**: its rows' store positions and their
summary (:class:`refengine.fast.summaries.Piece`: count, ``1.0``/``0.0`` counts,
extremes, exact sum). For a metric with percentiles, the whole hours of each
bucket are kept instead as one **run**: the same, with the values sorted. A block
or run is kept until a row lands in or before it (its positions then differ, or
the columns went stale there), so a later query's bucket made of whole hours costs
one summary merge per hour, or one look-up (:meth:`MetricIndex.pieces`).

At most :data:`MAX_METRIC_COLUMNS` columns are kept (the least recently used are
dropped with their blocks and rebuilt on demand). Memory: 4 bytes per row for the
times, 8 per row per column kept, about 600 bytes per kept hour block (measured by
tracemalloc: about 5 bytes a row at 140 rows an hour), and, for a column whose
percentiles were asked for, at most 8 more per row in its sorted runs.
"""

from __future__ import annotations

import json
from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from itertools import repeat
from operator import attrgetter, itemgetter
from typing import Any, NamedTuple

from sortedcontainers import SortedKeyList

from ..paths import PathReader, ValueType, compile_path, found
from ..rows import FeedbackRow
from . import lru
from .summaries import Piece, merge, piece, summarize

MAX_METRIC_COLUMNS = 8
"""How many metric columns a project keeps between queries."""

PARSE_CHUNK = 64
"""Rows parsed at a time when a column catches up."""

BLOCK_MS = 3_600_000
"""The span of a kept block: one epoch-aligned hour (see :meth:`MetricIndex.pieces`)."""
_HOUR_S = BLOCK_MS // 1000
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1

MetricKey = tuple[tuple[str, ...], ValueType]
"""A column's name: the ``json_path`` split into keys, and the value type."""

ColumnReader = Callable[[Sequence[dict[str, Any]]], "array[float]"]

_payload_dump = attrgetter("payload_dump")
_scan = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
_first = itemgetter(0)
_created_at_ms = attrgetter("created_at_ms")


def _new_column() -> array[float]:
    return array("d")


def _parse_all(texts: Iterable[str]) -> list[dict[str, Any]]:
    # A stored text is exactly json.dumps output (no surrounding space), so the
    # decoder's scanner alone reads it: half the cost of json.loads per text.
    return list(map(_first, map(_scan, texts, repeat(0))))


class _Block(NamedTuple):
    """A kept hour of one column: the store positions ``[lo, hi)`` of its rows and
    their piece."""

    lo: int
    hi: int
    piece: Piece


class _Runs:
    """The sorted runs kept for one column, least recently used first, and how many
    values they hold."""

    __slots__ = ("spans", "values")

    def __init__(self) -> None:
        self.spans: dict[tuple[int, int], _Block] = {}
        self.values = 0

    def drop(self, hours: tuple[int, int]) -> None:
        self.values -= _run_size(self.spans.pop(hours))


class MetricIndex:
    """Metric columns of one project (see the module docstring).

    Not thread-safe on its own: the store calls it under the project's metrics lock
    (and :meth:`pending` under the engine lock as well).
    """

    __slots__ = ("_base", "_blocks", "_columns", "_runs", "_seconds", "stale_from")

    def __init__(self) -> None:
        self._columns: dict[MetricKey, array[float]] = {}  # see refengine.fast.lru
        # Every stored row's created_at second (floor(created_at_ms / 1000): every
        # bound a query searches for is a whole second), in store order as far as
        # caught up, less _base: 4 bytes a row while the rows span less than 68
        # years either side of the first one, else 8 (absolute, _base 0).
        self._seconds: array[int] = array("i")
        self._base = 0
        # Per column: hour start (epoch seconds) -> its block (a summary).
        self._blocks: dict[MetricKey, dict[int, _Block]] = {}
        # Per column: (first hour's start, last hour's end) seconds -> its sorted
        # run, least recently used first.
        self._runs: dict[MetricKey, _Runs] = {}
        # The earliest created_at_ms of a row inserted before the end since the
        # columns were last brought up to date (None: none).
        self.stale_from: int | None = None

    def second_at(self, position: int) -> int:
        """The created_at second (``floor(created_at_ms / 1000)``) of the stored row
        at ``position``, once :meth:`catch_up` ran. ``O(1)``."""
        return self._seconds[position] + self._base

    def position_of(self, second: int, lo: int, hi: int) -> int:
        """The first store position in ``[lo, hi)`` whose row's created_at second
        is ``second`` or later (``hi`` if none), once :meth:`catch_up` ran.
        ``O(log (hi - lo))``."""
        return bisect_left(self._seconds, second - self._base, lo, hi)

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
        entries the shortest of them (or the times) lacks. Call it under the lock
        that guards ``rows``; then :meth:`catch_up` outside it. Runtime complexity:
        ``O(log n + dropped + m)`` for the ``m`` rows copied (pointers).

        The arrays are the index's own: copy what you keep.
        """
        self._drop_stale(rows)
        for kept in (self._blocks, self._runs):
            for evicted in [key for key in kept if key not in self._columns]:
                del kept[evicted]
        # The columns are held here, not looked up again: a query with more metrics
        # than are kept evicts some of its own columns from the cache as it goes.
        wanted: list[array[float]] = []
        for reader in readers:
            if reader.column is None:
                raise ValueError(f"a {reader.value_type} metric has no column")
            key = (reader.keys, reader.value_type)
            wanted.append(lru.use(self._columns, key, _new_column, MAX_METRIC_COLUMNS))
        lo = min((len(column) for column in wanted), default=len(self._seconds))
        new_rows: list[FeedbackRow] = rows[min(lo, len(self._seconds)) :]
        return wanted, new_rows

    def catch_up(
        self,
        columns: Sequence[array[float]],
        readers: Sequence[PathReader],
        new_rows: Sequence[FeedbackRow],
        size: int,
    ) -> None:
        """Bring the times and each of ``columns`` (from :meth:`pending`) to ``size``
        entries, the store having been ``size`` rows long and ``new_rows`` its last
        rows. Every row is parsed once for all the columns that lack it. Runtime
        complexity: ``O(m · payload)`` for the ``m`` new rows."""
        wanted: list[tuple[array[float], ColumnReader]] = []
        for column, reader in zip(columns, readers, strict=True):
            if reader.column is None:
                raise ValueError(f"a {reader.value_type} metric has no column")
            wanted.append((column, reader.column))
        lo = size - len(new_rows)
        self._extend_seconds(new_rows[len(self._seconds) - lo :])
        # In small chunks, so parsed payloads die before a young collection sees
        # them: kept longer, they are promoted and collected over and over (three
        # times slower at 4,096 rows a chunk than at 64).
        shortest = min((len(column) for column, _ in wanted), default=size)
        for start in range(shortest, size, PARSE_CHUNK):
            stop = min(start + PARSE_CHUNK, size)
            payloads = _parse_all(map(_payload_dump, new_rows[start - lo : stop - lo]))
            for column, read in wanted:
                if len(column) < stop:
                    column.extend(read(payloads[len(column) - start :]))

    def _extend_seconds(self, rows: Sequence[FeedbackRow]) -> None:
        seconds = [ms // 1000 for ms in map(_created_at_ms, rows)]
        if not seconds:
            return
        if not self._seconds:  # a fresh start: 4-byte entries about its first row
            self._seconds, self._base = array("i"), seconds[0]
        base = self._base
        relative = [second - base for second in seconds]
        if (
            self._seconds.typecode == "i"
            and not _INT32_MIN <= min(relative) <= max(relative) <= _INT32_MAX
        ):
            self._seconds = array("q", [second + base for second in self._seconds])
            self._base, relative = 0, seconds
        self._seconds.extend(relative)

    def _drop_stale(self, rows: SortedKeyList) -> None:
        if self.stale_from is None:
            return
        # The rows before the first one of that millisecond are where they were.
        cut = rows.bisect_key_left(self.stale_from)
        self.stale_from = None
        del self._seconds[cut:]
        for column in self._columns.values():
            del column[cut:]
        for blocks in self._blocks.values():
            for hour in [h for h, block in blocks.items() if block.hi > cut]:
                del blocks[hour]  # its rows moved, or it gained one
        for runs in self._runs.values():
            for hours in [h for h, run in runs.spans.items() if run.hi > cut]:
                runs.drop(hours)

    def span(self, after_s: int, before_s: int) -> tuple[int, int]:
        """The store positions ``[lo, hi)`` of the rows created from second
        ``after_s`` on and before second ``before_s`` (the times being current).
        ``O(log n)``."""
        lo = self.position_of(after_s, 0, len(self._seconds))
        return lo, max(lo, self.position_of(before_s, lo, len(self._seconds)))

    def pieces(
        self,
        reader: PathReader,
        column: array[float],
        lo: int,
        hi: int,
        *,
        start_s: int,
        end_s: int,
        ordered: bool,
    ) -> list[Piece]:
        """The pieces, in store order, of the values of rows ``[lo, hi)`` — the rows
        created from second ``start_s`` on and before ``end_s`` — of ``column``, the reader's
        current column (pieces without values left out). The rows of the whole
        hours inside the range are either their kept hour blocks (summaries only),
        or, if ``ordered``, one kept sorted run of them all (:meth:`_run`); the rows
        before and after those hours are pieces of their own, made here.

        Runtime complexity: ``O(log k + e)`` for ``e`` rows outside whole hours
        (``O(e log e)`` sorted), plus ``O(h log k)`` for ``h`` hours holding the
        ``k`` rows unless ``ordered``, plus ``O(v)`` for each hour block of ``v``
        rows made anew, ``O(w log w)`` for a run of ``w`` values made anew.
        """
        key = (reader.keys, reader.value_type)
        hours_from = -(-start_s // _HOUR_S) * _HOUR_S  # the first hour starting inside
        hours_to = end_s // _HOUR_S * _HOUR_S  # the end of the last whole one
        if hours_to <= hours_from:
            first = last = hi
        else:  # a range starting or ending on the hour needs no search there
            first = lo if hours_from == start_s else self.position_of(hours_from, lo, hi)
            last = hi if hours_to == end_s else self.position_of(hours_to, first, hi)
        out: list[Piece] = []
        if first > lo:
            out.append(piece(found(column[lo:first]), ordered))
        if last > first:
            if ordered:
                out.append(self._run(key, column, (hours_from, hours_to), first, last))
            else:
                out.extend(self._hours(key, column, first, last))
        if hi > last:
            out.append(piece(found(column[last:hi]), ordered))
        return [p for p in out if p.summary is not None]

    def _hours(self, key: MetricKey, column: array[float], lo: int, hi: int) -> list[Piece]:
        """The kept hour blocks of the rows ``[lo, hi)`` (whole hours), made where
        missing or out of date."""
        seconds, base = self._seconds, self._base
        blocks = self._blocks.setdefault(key, {})
        out: list[Piece] = []
        position = lo
        while position < hi:
            hour = (seconds[position] + base) // _HOUR_S * _HOUR_S
            kept = blocks.get(hour)
            # A kept block starting here is still the hour's rows unless rows were
            # appended into the hour since (a row inserted before, or a removal,
            # would have dropped it): one look at the row after it tells.
            if (
                kept is None
                or kept.lo != position
                or kept.hi > hi
                or (kept.hi < hi and seconds[kept.hi] + base < hour + _HOUR_S)
            ):
                end = self.position_of(hour + _HOUR_S, position, hi)
                values = found(column[position:end])
                kept = _Block(position, end, Piece(summarize(values, exact=True), None))
                blocks[hour] = kept
            out.append(kept.piece)
            position = kept.hi
        return out

    def _run(
        self, key: MetricKey, column: array[float], hours: tuple[int, int], lo: int, hi: int
    ) -> Piece:
        """The kept sorted run of the whole hours ``hours`` (``[from, to)`` ms: store
        rows ``[lo, hi)``), made where missing or out of date; the runs kept for a column
        hold at most one value per entry of the column (the least recently used
        are dropped first)."""
        runs = self._runs.get(key)
        if runs is None:
            runs = self._runs[key] = _Runs()
        kept = runs.spans.pop(hours, None)
        if kept is None or kept.lo != lo or kept.hi != hi:
            if kept is not None:
                runs.values -= _run_size(kept)
            values = found(column[lo:hi])
            # its summary from the hours' (kept by plain queries, or kept now)
            summary = merge(p.summary for p in self._hours(key, column, lo, hi))
            kept = _Block(lo, hi, Piece(summary, array("d", sorted(values))))
            while runs.spans and runs.values + len(values) > len(column):
                runs.drop(next(iter(runs.spans)))
            runs.values += len(values)
        runs.spans[hours] = kept
        return kept.piece

    def check(self, rows: SortedKeyList) -> None:
        """Raise ``AssertionError`` unless the times, every kept column and every
        kept block agree with ``rows`` (the store) wherever they are current.
        ``O(n)`` per column. Does not bring the columns up to date (a check must not
        change what it checks)."""
        covered = len(self._seconds)
        if self.stale_from is not None:
            # After a removal a stale column may be longer than the store.
            covered = min(covered, rows.bisect_key_left(self.stale_from))
        elif covered > len(rows):
            raise AssertionError("the metric index's times are longer than the store")
        seconds = [second + self._base for second in self._seconds[:covered]]
        if seconds != [r.created_at_ms // 1000 for r in rows.islice(0, covered)]:
            raise AssertionError("the metric index's times differ from the store")
        for (keys, value_type), column in self._columns.items():
            covered = len(column)
            if self.stale_from is not None:
                covered = min(covered, rows.bisect_key_left(self.stale_from))
            elif len(column) > len(rows):
                raise AssertionError(f"metric column {keys} is longer than the store")
            read = compile_path(".".join(keys), value_type).column
            if read is None:
                raise AssertionError(f"a {value_type} metric column is kept")
            payloads = _parse_all(map(_payload_dump, rows.islice(0, covered)))
            current = read(payloads)
            if current.tobytes() != column[:covered].tobytes():
                raise AssertionError(f"metric column {keys} differs from the store")
            for hour, block in self._blocks.get((keys, value_type), {}).items():
                if block.hi <= covered:  # else to be dropped, or checked once current
                    _check_block(hour, hour + _HOUR_S, block, rows, current)
            runs = self._runs.get((keys, value_type), _Runs())
            if runs.values != sum(map(_run_size, runs.spans.values())):
                raise AssertionError(f"the runs of metric column {keys} miscount their values")
            for (from_s, to_s), run in runs.spans.items():
                if run.hi <= covered:
                    _check_block(from_s, to_s, run, rows, current)


def _run_size(run: _Block) -> int:
    return len(run.piece.ordered or ())


def _check_block(
    from_s: int, to_s: int, block: _Block, rows: SortedKeyList, column: array[float]
) -> None:
    times = [r.created_at_ms // 1000 for r in rows.islice(block.lo, block.hi)]
    if not times or times[0] < from_s or times[-1] >= to_s:
        raise AssertionError(f"metric block {from_s} holds rows of another hour")
    # Rows appended since may follow it in its hours (a query then makes it anew:
    # its end moved), but none precede it.
    if block.lo and rows[block.lo - 1].created_at_ms // 1000 >= from_s:
        raise AssertionError(f"metric block {from_s} misses rows of its hours")
    values = found(column[block.lo : block.hi])
    ordered = None if block.piece.ordered is None else array("d", sorted(values))
    if repr(Piece(summarize(values, exact=True), ordered)) != repr(block.piece):
        raise AssertionError(f"metric block {from_s} differs from its rows")


__all__ = ["BLOCK_MS", "MAX_METRIC_COLUMNS", "MetricIndex", "MetricKey"]
