"""``POST /feedback/query``: the plan (checks) and the plain reference fold.

spec/SEMANTICS.md, "Query". :func:`plan` checks the request and compiles the
filter, the sort keys and the projection, before any row is read; :func:`fold`
filters a snapshot of the project's rows (in store order: ``created_at``, then
insertion), sorts, applies offset and limit and projects.

Runtime complexity: :func:`plan` is ``O(size of the request)``; :func:`fold` is
``O(n · e + m log m · s + k · f)`` for ``n`` rows, an expression of size ``e``,
``m`` matches, ``s`` sort keys, ``k`` returned rows of ``f`` fields.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .. import errors
from ..errors import InvalidRequest, format_message
from ..models import FeedbackQueryReq, FeedbackQueryRes, Query
from ..rows import STORED_COLUMNS, FeedbackRow
from .query import (
    MAP_COLUMNS,
    PAYLOAD_NAMES,
    Predicate,
    compile_field,
    compile_query,
    json_exists,
    json_value,
    payload_keys,
    to_float64_or_null,
)

MAX_FIELDS = 1_000
"""Bounded work: entries of ``fields``."""

MAX_SORT_KEYS = 100
"""Bounded work: entries of ``sort_by``."""

COUNT_STAR = "count(*)"

Extractor = Callable[[FeedbackRow], Any]
SortKey = tuple[Callable[[FeedbackRow], Any], bool, bool]
"""(key, descending, nulls last): one stable sort pass."""


@dataclass(frozen=True)
class QueryPlan:
    """Everything :func:`fold` needs, checked."""

    match: Predicate
    sort_passes: tuple[SortKey, ...]
    """Applied last to first, so the first ``sort_by`` entry decides first."""
    offset: int
    limit: int | None
    projection: tuple[tuple[str, Extractor], ...] | None
    """``None``: ``count(*)``."""
    query: Query | None = None
    """The request's expression, as sent (a fast executor may read it to find the
    rows it can match without a scan; the fold reads ``match``)."""


def plan(request: FeedbackQueryReq) -> QueryPlan:
    """Check a query request (SEMANTICS "Query / Request and limits").

    ``limit`` and ``offset`` must be non-negative; fields and sort keys must be
    known; ``count(*)`` stands alone (Decision). Raises ``InvalidRequest``.
    """
    if request.limit is not None and request.limit < 0:
        raise InvalidRequest(errors.NEGATIVE_LIMIT)
    if request.offset is not None and request.offset < 0:
        raise InvalidRequest(errors.NEGATIVE_OFFSET)
    fields = request.fields or []
    if len(fields) > MAX_FIELDS:
        raise InvalidRequest(
            format_message(errors.TOO_MANY_FIELDS, limit=MAX_FIELDS, count=len(fields))
        )
    sort_by = request.sort_by or []
    if len(sort_by) > MAX_SORT_KEYS:
        raise InvalidRequest(
            format_message(errors.TOO_MANY_SORT_KEYS, limit=MAX_SORT_KEYS, count=len(sort_by))
        )
    match = compile_query(request.query)
    passes: list[SortKey] = []
    for entry in sort_by:
        passes.extend(sort_passes(entry.field, entry.direction == "desc"))
    return QueryPlan(
        match=match,
        sort_passes=tuple(reversed(passes)),
        offset=request.offset or 0,
        limit=request.limit,
        projection=projection(fields),
        query=request.query,
    )


def sort_passes(field: str, descending: bool) -> list[SortKey]:
    """The sort terms of one ``sort_by`` entry (SEMANTICS "Query / Order").

    NULLs go last in both directions. A payload path sorts by three terms: rows
    that have the path first, then its value read as a float (non-numbers NULL),
    then its string value. ``span_status_code`` sorts by enum value.
    """
    head, dot, rest = field.partition(".")
    if dot and head == "payload":
        keys = payload_keys(field, rest)
        return [
            (lambda row: json_exists(row.payload_dump, keys), True, False),
            (lambda row: to_float64_or_null(json_value(row.payload_dump, keys)), descending, True),
            (lambda row: json_value(row.payload_dump, keys), descending, False),
        ]
    compiled = compile_field(field)  # Unknown field: ... for the rest
    if compiled.kind == "array":
        return [(compiled.get, descending, False)]
    if compiled.kind == "map":
        get = compiled.get
        return [(lambda row: tuple(get(row).items()), descending, False)]
    return [(compiled.get, descending, True)]


def projection(fields: Sequence[str]) -> tuple[tuple[str, Extractor], ...] | None:
    """The output keys and their extractors (SEMANTICS "Query / Projection").

    No fields: every stored column in the stored-row order, ``payload`` parsed.
    ``["count(*)"]`` → ``None`` (one row with the count).
    """
    if not fields:
        return tuple((name, extractor(name)) for name in DEFAULT_FIELDS)
    if COUNT_STAR in fields:
        if len(fields) == 1:
            return None
        raise InvalidRequest(errors.COUNT_WITH_FIELDS)
    out: list[tuple[str, Extractor]] = []
    for name in fields:
        out.append(("payload" if name == "payload_dump" else name, extractor(name)))
    return tuple(out)


DEFAULT_FIELDS: tuple[str, ...] = tuple(
    "created_at" if name == "created_at_us" else name for name in STORED_COLUMNS
)
"""Every column a row stores, in the order of SEMANTICS "The stored row"."""


def extractor(name: str) -> Extractor:
    """How one requested field is rendered in a result row."""
    if name in PAYLOAD_NAMES:
        return lambda row: row.payload
    if name == "created_at":
        return lambda row: row.created_at
    if name in MAP_COLUMNS:
        return lambda row: dict(getattr(row, name))
    if name == "scorer_tags":
        return lambda row: list(row.scorer_tags)
    # Payload paths, map keys and plain columns read as the filter reads them.
    compiled = compile_field(name)  # Unknown field: ... for anything else
    if name == "span_status_code":
        return lambda row: row.span_status_code
    return compiled.get


def fold(query_plan: QueryPlan, rows: Sequence[FeedbackRow]) -> FeedbackQueryRes:
    """The reference fold: filter, sort (stable, ties in store order), offset,
    limit, project. ``rows`` is the project's snapshot in store order."""
    matched = [row for row in rows if query_plan.match(row)]
    total = len(matched)
    if query_plan.projection is None:
        return FeedbackQueryRes(result=[{COUNT_STAR: total}], total_count=total)
    passes = query_plan.sort_passes
    if passes:
        # Every sort term of a row is computed in one go: the row's payload is then
        # parsed once for all of them (see query._parsed), not once per pass.
        keys = [tuple(key(row) for key, _, _ in passes) for row in matched]
        order = list(range(len(matched)))
        for i, (_, descending, nulls_last) in enumerate(passes):
            order = _sorted(order, _term(keys, i), descending, nulls_last)
        matched = [matched[j] for j in order]
    start = query_plan.offset
    stop = None if query_plan.limit is None else start + query_plan.limit
    page = matched[start:stop]
    fields = query_plan.projection
    result = [{name: get(row) for name, get in fields} for row in page]
    return FeedbackQueryRes(result=result, total_count=total)


def _term(keys: list[tuple[Any, ...]], i: int) -> Callable[[int], Any]:
    return lambda j: keys[j][i]


def _sorted(
    items: list[int], key: Callable[[int], Any], descending: bool, nulls_last: bool
) -> list[int]:
    # Python's sort stays stable with reverse=True, so earlier passes decide ties.
    if not nulls_last:
        return sorted(items, key=key, reverse=descending)
    present: list[int] = []
    absent: list[int] = []
    for item in items:
        (absent if key(item) is None else present).append(item)
    return sorted(present, key=key, reverse=descending) + absent
