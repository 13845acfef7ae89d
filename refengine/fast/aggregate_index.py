"""The per-project index that ``POST /feedback/aggregate`` scans.

It keeps the project's rows as :class:`refengine.fast.columns.Columns` twice over:

* the **master** columns mirror the store row for row (same positions), and
* a **partitioning** per ``group_by`` set splits them by the group values — one
  :class:`Columns` per distinct value tuple, each still in store order.

A (time bucket, group) cell of an answer is then a contiguous slice of one
partition, so its rating sums are single left-to-right sums over contiguous values
that add in store order, exactly as spec/SEMANTICS.md requires; and its counts come from
its slice of signature codes (:mod:`refengine.fast.aggregate`).

The index is brought up to date under the project's own index lock, by the
writes as rows arrive (:func:`refengine.fast.snapshots.keep_current`: a write that
leaves it a chunk of rows behind does the catch-up, after releasing the engine
lock) and by any query that finds it behind; only the copy of the store rows it
lacks (:meth:`AggregateIndex.pending`) happens under the engine lock, the columns
are built outside it, in steps of :data:`BUILD_CHUNK` rows:

* rows appended at the end of the store (the usual case: the clock moves forward)
  are added to the master columns and then to each partitioning whose range
  reaches the master's end — ``O(m)`` for ``m`` new rows;
* a row inserted before the end (an older ``created_at``: a manual clock set back,
  or a bulk load), or a removal (purge, replace) from the earliest removed row's
  millisecond, marks the index stale from that millisecond; the next catch-up drops
  every indexed row at or after it and re-adds them — ``O(rows after that point)``.

A partitioning holds a contiguous range of master rows, not necessarily all of
them (:class:`Partitioning`): the first query of a ``group_by`` set partitions only
its window's rows, so a first query costs its window, not the project; a later
query reaching past the range grows it, at least doubling it.

The index is kept only for a *narrow* project: at most :data:`MAX_RATING_KEYS`
distinct rating keys and :data:`MAX_PROFILES` distinct profiles. The columns are
dense (one entry per row per rating key) and a partitioning step costs a gather
per group and rating key, so a project past either bound (a row with thousands of
rating keys, or a new key or scorer on every row) would make them quadratic in
memory and time. Such a project drops its index for good (rows are never removed,
so it never narrows again): :meth:`AggregateIndex.catch_up` raises
:class:`TooWide`, and the fast executor answers it with the reference fold, linear
in the window.

At most :data:`MAX_PARTITIONINGS` ``group_by`` sets are kept (least recently used
are dropped and rebuilt on demand). Memory: 18 bytes per row plus 8 per row per
rating key for the master columns (:mod:`refengine.fast.columns`), and about as
much again per row of its range for each partitioning kept.
"""

from __future__ import annotations

import gc
from collections import Counter
from operator import attrgetter, itemgetter
from typing import Any

from sortedcontainers import SortedKeyList

from ..frozenmap import distinct_keys
from ..rows import FeedbackRow
from . import lru
from .columns import PROFILE_FIELDS, Codebook, Columns, Signature, new_signatures
from .staleness import still_valid

MAX_PARTITIONINGS = 4
"""How many ``group_by`` sets keep their partitions between queries."""

BUILD_CHUNK = 8192
"""Rows indexed per step when the index catches up. Each step is a few C-level
passes that hold Python's global interpreter lock throughout; in steps this size
a thread creating rows meanwhile waits about a millisecond, not the whole build."""

MAX_RATING_KEYS = 256
"""Distinct rating keys a project may have and keep its index (8 bytes per row each)."""

MAX_PROFILES = 1024
"""Distinct profiles a project may have and keep its index."""

GroupKey = tuple[str, ...]

_ratings_of = attrgetter("scorer_ratings")


class TooWide(Exception):
    """The project has outgrown the index (see the module docstring); answer its
    queries from the rows."""


class Partitioning:
    """The master rows ``[start, end)`` split by the values of ``dims``: one
    :class:`Columns` per group, each in store order.

    The range is the rows queries have asked for, not necessarily every row: a
    first query builds only its window's rows, and the range grows, at least
    doubling each time, when a later query reaches past it
    (:meth:`cover`). A range that reaches the master's end follows it as rows are
    appended (:meth:`AggregateIndex.catch_up`)."""

    __slots__ = ("_key_of_code", "dims", "end", "key_of", "parts", "start")

    def __init__(self, dims: tuple[str, ...]) -> None:
        self.dims = dims
        self.start = 0
        self.end = 0
        self.parts: dict[GroupKey, Columns] = {}
        at = [PROFILE_FIELDS.index(d) for d in dims]
        pick = itemgetter(*at)
        self.key_of = (lambda profile: (pick(profile),)) if len(at) == 1 else pick
        self._key_of_code: dict[int, GroupKey] = {}  # profile code -> its group

    def __len__(self) -> int:
        return self.end - self.start

    def cover(self, master: Columns, profiles: Codebook[tuple[str, ...]], lo: int, hi: int) -> None:
        """Grow the range to include master rows ``[lo, hi)`` (nothing to do when
        they are in it already, or ``lo >= hi``).

        A range that grows grows to at least twice its size (within the master),
        so over any sequence of queries each master row is partitioned ``O(1)``
        times amortised. Runtime complexity: ``O(m (log c + r) + (m / c) g r)`` for
        the ``m`` rows added in ``g`` groups with ``r`` rating keys, in chunks of
        ``c =`` :data:`BUILD_CHUNK` rows (see :meth:`extend_to`), plus ``O(size)`` to
        put rows before the range in front of it."""
        if lo >= hi:
            return
        if self.start >= self.end:  # empty: start where asked
            self.start = self.end = lo
        size = self.end - self.start
        if lo < self.start:
            first = max(0, min(lo, self.start - size))
            before = Partitioning(self.dims)
            before.start = before.end = first
            before._key_of_code = self._key_of_code
            before.extend_to(master, profiles, self.start)
            for key, part in self.parts.items():
                earlier = before.parts.setdefault(key, Columns())
                earlier.extend(part)
            self.parts, self.start = before.parts, first
        if hi > self.end:
            self.extend_to(master, profiles, min(len(master), max(hi, self.end + size)))

    def extend_to(self, master: Columns, profiles: Codebook[tuple[str, ...]], end: int) -> None:
        """Add master rows ``[self.end, end)`` to their partitions.

        One Python step per distinct profile among the new rows; the rows themselves
        move with C-level passes: per chunk of ``m <=`` :data:`BUILD_CHUNK` rows in
        ``g`` groups, the chunk's row positions sorted by group (``O(m log m)``
        comparisons at worst) and each of the ``3 + r`` columns gathered once per
        group (``O(m (1 + r))`` element copies, ``O(g r)`` calls)."""
        for lo in range(self.end, end, BUILD_CHUNK):
            self._add(master, profiles, lo, min(lo + BUILD_CHUNK, end))

    def _add(self, master: Columns, profiles: Codebook[tuple[str, ...]], lo: int, hi: int) -> None:
        chunk = master.take(lo, hi)  # one slice per column, shared by the groups
        key_of_code = self._key_of_code
        slot: dict[GroupKey, int] = {}  # the chunk's groups, numbered
        slot_of_code: dict[int, int] = {}  # profile code -> its group's number
        for code in set(chunk.profile):
            key = key_of_code.get(code)
            if key is None:
                key = key_of_code[code] = self.key_of(profiles.values[code])
            slot_of_code[code] = slot.setdefault(key, len(slot))
        parts = self.parts
        new_parts = slot.keys() - parts.keys()
        for key in new_parts:
            parts[key] = Columns()
        if len(slot) == 1:
            (key,) = slot
            parts[key].extend(chunk)
        else:
            # One stable sort of the positions by group, instead of a keep-mask and
            # a compress per column for every group: each group's positions come
            # out contiguous and ascending (store order).
            group = list(map(slot_of_code.__getitem__, chunk.profile))
            order = sorted(range(hi - lo), key=group.__getitem__)
            sizes = Counter(group)
            at = 0
            for key, number in slot.items():  # numbered in this order
                size = sizes[number]
                parts[key].extend_at(chunk, order[at : at + size])
                at += size
        self.end = hi
        if new_parts:
            # New partitions' lists, still small, go to the oldest generation now:
            # left young, they grow to the window's size while every young
            # collection traverses them (measured: a third of a 1M-row cold query).
            # The collection costs the young objects alive, a chunk's worth here.
            gc.collect(1)

    def truncate(self, from_ms: int, master_size: int) -> None:
        """Drop rows at or after ``from_ms``; ``master_size`` is the master's size
        after it dropped the same rows."""
        for key, part in list(self.parts.items()):
            part.truncate(from_ms)
            if not part:
                del self.parts[key]
        self.end = min(self.end, master_size)
        self.start = min(self.start, self.end)


class AggregateIndex:
    """Master columns and partitionings of one project (see the module docstring).

    Not thread-safe on its own: the store calls it under the project's index lock
    (and :meth:`pending` under the engine lock as well).
    """

    __slots__ = ("_partitionings", "master", "profiles", "signatures", "stale_from", "wide")

    def __init__(self) -> None:
        # The earliest created_at_ms of a row inserted before the end since the
        # last catch-up (None: none).
        self.stale_from: int | None = None
        self.profiles: Codebook[tuple[str, ...]] = Codebook()
        self.signatures: Codebook[Signature] = new_signatures()
        self.master = Columns()
        self._partitionings: dict[tuple[str, ...], Partitioning] = {}  # see refengine.fast.lru
        self.wide = False  # past MAX_RATING_KEYS or MAX_PROFILES: nothing is kept

    def invalidate_from(self, from_ms: int) -> None:
        """Note that the rows from ``from_ms`` on changed: a row was inserted before
        the end there, or rows were removed from there on. ``O(1)``."""
        if self.stale_from is None or from_ms < self.stale_from:
            self.stale_from = from_ms

    def pending(self, rows: SortedKeyList) -> tuple[int | None, list[FeedbackRow]]:
        """What :meth:`catch_up` needs to make the master mirror ``rows`` (the store):
        the stale millisecond (now forgotten here) and a copy of the store rows the
        master lacks. Call it under the lock that guards ``rows``: it is the only
        part of keeping the index current that reads the store. Runtime complexity:
        ``O(log n + m)`` for the ``m`` rows copied (a pointer copy)."""
        from_ms, self.stale_from = self.stale_from, None
        new_rows: list[FeedbackRow] = rows[still_valid(rows, len(self.master), from_ms) :]
        return from_ms, new_rows

    def catch_up(self, from_ms: int | None, new_rows: list[FeedbackRow]) -> None:
        """Apply what :meth:`pending` returned: drop the rows at or after ``from_ms``,
        then append ``new_rows`` to the master and to each partitioning whose range
        reached the master's end. Reads no store row, so it runs outside the store's
        lock. Runtime complexity: ``O(dropped + m (1 + r))`` for ``m`` new rows with
        ``r`` rating keys, plus, per partitioning extended, :meth:`Partitioning.cover`'s
        cost for those rows.

        Raises :class:`TooWide`, and keeps nothing from then on, once the project
        has more than :data:`MAX_RATING_KEYS` rating keys or :data:`MAX_PROFILES`
        profiles: each chunk's keys are counted (``O(entries)``) before its columns
        are built, so a wide chunk costs no more than reading it."""
        if self.wide:
            raise TooWide
        master = self.master
        if from_ms is not None:
            master.truncate(from_ms)
            for partitioning in self._partitionings.values():
                partitioning.truncate(from_ms, len(master))
        following = [p for p in self._partitionings.values() if p.end == len(master)]
        for lo in range(0, len(new_rows), BUILD_CHUNK):
            chunk = new_rows[lo : lo + BUILD_CHUNK]
            keys = distinct_keys(map(_ratings_of, chunk)).union(master.ratings)
            if len(keys) > MAX_RATING_KEYS:
                self._give_up()
            master.extend_rows(chunk, self.profiles, self.signatures)
            if len(self.profiles) > MAX_PROFILES:
                self._give_up()
        for partitioning in following:
            partitioning.extend_to(master, self.profiles, len(master))

    def _give_up(self) -> None:
        self.wide = True
        self.master = Columns()
        self.profiles = Codebook()
        self.signatures = new_signatures()
        self._partitionings.clear()
        raise TooWide

    def partitions(self, dims: tuple[str, ...], lo: int, hi: int) -> dict[GroupKey, Columns]:
        """The partitions of the master for the ``group_by`` set ``dims`` (in
        :data:`PROFILE_FIELDS` order; ``()`` is the master alone), holding at least
        every master row of ``[lo, hi)`` (:meth:`Partitioning.cover`). Runtime
        complexity: :meth:`Partitioning.cover`'s for the ``m`` master rows the
        partitioning adds (the window's rows the first time), amortised over its
        queries."""
        if not dims:
            return {(): self.master}
        partitioning = lru.use(
            self._partitionings, dims, lambda: Partitioning(dims), MAX_PARTITIONINGS
        )
        partitioning.cover(self.master, self.profiles, lo, hi)
        return partitioning.parts

    def covered(self, dims: tuple[str, ...]) -> tuple[int, int] | None:
        """The master rows ``[start, end)`` the partitioning for ``dims`` holds, or
        ``None`` when none is kept for it (``O(1)``; it is not marked as used)."""
        partitioning = self._partitionings.get(dims)
        return None if partitioning is None else (partitioning.start, partitioning.end)

    def check(self, rows: SortedKeyList) -> None:
        """Raise ``AssertionError`` unless the index agrees with ``rows``. ``O(n)``.

        Checks whatever is indexed: the master columns against the store rows they
        mirror, and every partitioning against the master rows it covers. Does not
        bring the index up to date (a check must not change what it checks). A wide
        index keeps nothing to check.
        """
        if self.wide:
            if len(self.master) or self._partitionings:
                raise AssertionError("a wide aggregate index keeps columns")
            return
        master = self.master
        master.check(self.signatures)
        mirrored = list(rows.islice(0, len(master)))
        if self.stale_from is None:
            expected = Columns()
            expected.extend_rows(mirrored, self.profiles, self.signatures)
            _assert_same_rows(master, expected, self, "master")
        for dims, partitioning in self._partitionings.items():
            if not 0 <= partitioning.start <= partitioning.end <= len(master):
                raise AssertionError(f"partitioning {dims} covers rows the master lacks")
            size = 0
            for key, part in partitioning.parts.items():
                part.check(self.signatures)
                size += len(part)
                for code in set(part.profile):
                    if partitioning.key_of(self.profiles.values[code]) != key:
                        raise AssertionError(f"partition {key} of {dims} holds another group")
            if self.stale_from is None and size != len(partitioning):
                raise AssertionError(f"partitioning {dims} holds {size} of {len(partitioning)}")


def _rows_of(columns: Columns, index: AggregateIndex) -> list[tuple[Any, ...]]:
    """Each row of ``columns`` as ``(ms, profile, signature, ratings)``, decoded."""
    signatures = index.signatures.values
    ratings = [
        {key: columns.ratings[key][i] for key in signatures[code].keys}
        for i, code in enumerate(columns.sig)
    ]
    return [
        (ms, index.profiles.values[p], index.signatures.values[s], r)
        for ms, p, s, r in zip(columns.ms, columns.profile, columns.sig, ratings, strict=True)
    ]


def _assert_same_rows(actual: Columns, expected: Columns, index: AggregateIndex, name: str) -> None:
    got, want = _rows_of(actual, index), _rows_of(expected, index)
    if got != want:
        pairs = enumerate(zip(got, want, strict=False))
        first = next((i for i, (a, b) in pairs if a != b), min(len(got), len(want)))
        raise AssertionError(f"{name} columns differ from the store at row {first}")


__all__ = [
    "MAX_PARTITIONINGS",
    "MAX_PROFILES",
    "MAX_RATING_KEYS",
    "AggregateIndex",
    "GroupKey",
    "Partitioning",
    "TooWide",
]
