"""The per-project index of rows by ``id`` and by ``weave_ref`` that the fast
executor's ``POST /feedback/query`` reads for the official client's common reads.

The client reads a call's feedback with ``$eq`` on ``weave_ref`` and one row with
``$eq`` on ``id`` (optionally inside an ``$and``, optionally with ``sort_by
created_at``). Every row such a query can match has that column equal to that
string, so the rows under that key, in store order, answer it exactly as the whole
project does (:func:`refengine.semantics.feedback_query.fold` runs over them
unchanged). :func:`lookup_key` finds such a key in a query.

The index is built by the first query that can use it and then kept current like
the other indexes of :mod:`refengine.fast`: rows appended at the end of the store
are added (``O(m)`` for ``m`` new rows); a row inserted before the end, or a
removal, marks it stale from that millisecond, and the next query takes out the
rows it indexed from there on and adds the store's rows from there on —
``O(rows after that point)``. Memory: 8 bytes per row for the indexed prefix, plus
one dict entry per distinct value per column (the row itself while a value has one
row, a list once it repeats).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from typing import Any

from sortedcontainers import SortedKeyList

from ..models import AndOperation, EqOperation, GetFieldOperator, LiteralOperation, Query
from ..rows import FeedbackRow
from .staleness import still_valid

KEY_COLUMNS = ("id", "weave_ref")
"""The columns the index keeps, by their API names."""

Bucket = FeedbackRow | list[FeedbackRow]


def _created_at_ms(row: FeedbackRow) -> int:
    return row.created_at_ms


def lookup_key(query: Query | None) -> tuple[str, str] | None:
    """``(column, value)`` when every row ``query`` matches has ``column == value``
    (a ``$eq`` of a key column and a string literal, either way round, alone or
    among the operands of an ``$and``, nested ``$and`` included); else ``None``.
    ``O(size of the expression)``.

    >>> lookup_key(Query.model_validate({"$expr": {"$eq": [
    ...     {"$getField": "weave_ref"}, {"$literal": "weave:///e/p/call/c"}]}}))
    ('weave_ref', 'weave:///e/p/call/c')
    """
    if query is None:
        return None
    return _key_of(query.expr_)


def _key_of(node: Any) -> tuple[str, str] | None:
    if isinstance(node, AndOperation):
        for operand in node.and_:
            found = _key_of(operand)
            if found is not None:
                return found
        return None
    if isinstance(node, EqOperation):
        left, right = node.eq_
        if isinstance(right, GetFieldOperator):
            left, right = right, left
        if (
            isinstance(left, GetFieldOperator)
            and left.get_field_ in KEY_COLUMNS
            and isinstance(right, LiteralOperation)
            and isinstance(right.literal_, str)
        ):
            return left.get_field_, right.literal_
    return None


class KeyIndex:
    """Rows by ``id`` and by ``weave_ref``, each key's rows in store order."""

    __slots__ = ("_by", "indexed", "stale_from")

    def __init__(self) -> None:
        self.indexed: list[FeedbackRow] = []
        """The store rows indexed so far: a prefix of the store, in store order."""
        self._by: dict[str, dict[str, Bucket]] = {column: {} for column in KEY_COLUMNS}
        # The earliest created_at_ms from which the store's rows changed since the
        # last catch-up (None: none).
        self.stale_from: int | None = None

    def invalidate_from(self, from_ms: int) -> None:
        """Note that the store's rows from ``from_ms`` on changed (an insert before
        the end, or a removal). ``O(1)``."""
        if self.stale_from is None or from_ms < self.stale_from:
            self.stale_from = from_ms

    def pending(self, rows: SortedKeyList) -> tuple[int | None, list[FeedbackRow]]:
        """The stale millisecond (now forgotten here) and a copy of the store rows
        the index lacks. Call it under the lock that guards ``rows``. Runtime
        complexity: ``O(log n + m)`` for the ``m`` rows copied (pointers)."""
        from_ms, self.stale_from = self.stale_from, None
        new_rows: list[FeedbackRow] = rows[still_valid(rows, len(self.indexed), from_ms) :]
        return from_ms, new_rows

    def catch_up(self, from_ms: int | None, new_rows: Sequence[FeedbackRow]) -> None:
        """Apply what :meth:`pending` returned: take out the indexed rows at or after
        ``from_ms``, then add ``new_rows``. Reads no store row, so it runs outside
        the store's lock. Runtime complexity: ``O(dropped + m)``."""
        indexed = self.indexed
        if from_ms is not None:
            cut = bisect_left(indexed, from_ms, key=_created_at_ms)
            for row in indexed[cut:]:
                for column, by in self._by.items():
                    self._take_out(by, getattr(row, column), from_ms)
            del indexed[cut:]
        for row in new_rows:
            for column, by in self._by.items():
                value: str = getattr(row, column)
                bucket = by.get(value)
                if bucket is None:
                    by[value] = row
                elif isinstance(bucket, list):
                    bucket.append(row)
                else:
                    by[value] = [bucket, row]
        indexed.extend(new_rows)

    @staticmethod
    def _take_out(by: dict[str, Bucket], value: str, from_ms: int) -> None:
        # A key's rows are in store order: those at or after from_ms are its tail.
        bucket = by.get(value)
        if bucket is None:
            return
        if not isinstance(bucket, list):
            if bucket.created_at_ms >= from_ms:
                del by[value]
            return
        while bucket and bucket[-1].created_at_ms >= from_ms:
            bucket.pop()
        if not bucket:
            del by[value]
        elif len(bucket) == 1:
            by[value] = bucket[0]

    def rows_with(self, column: str, value: str) -> list[FeedbackRow]:
        """A copy of the indexed rows whose ``column`` is ``value``, in store order.
        Runtime complexity: ``O(k)`` for ``k`` such rows."""
        bucket = self._by[column].get(value)
        if bucket is None:
            return []
        return list(bucket) if isinstance(bucket, list) else [bucket]

    def check(self, rows: SortedKeyList) -> None:
        """Raise ``AssertionError`` unless the index agrees with ``rows`` (the store)
        wherever it is current. ``O(n)``. Does not bring the index up to date."""
        if len(self.indexed) > len(rows) and self.stale_from is None:
            raise AssertionError("the key index holds more rows than the store")
        covered = still_valid(rows, len(self.indexed), self.stale_from)
        if self.indexed[:covered] != list(rows.islice(0, covered)):
            raise AssertionError("the key index is not a prefix of the store")
        if self.stale_from is not None:
            return
        expected = KeyIndex()
        expected.catch_up(None, self.indexed)
        for column in KEY_COLUMNS:
            mine = {key: self.rows_with(column, key) for key in self._by[column]}
            theirs = {key: expected.rows_with(column, key) for key in expected._by[column]}
            if mine != theirs:
                raise AssertionError(f"the key index by {column} differs from the store")


__all__ = ["KEY_COLUMNS", "KeyIndex", "lookup_key"]
