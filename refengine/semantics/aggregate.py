"""``POST /feedback/aggregate``: the plan, and the reference fold, rule by rule.

Every function below implements one rule of spec/SEMANTICS.md, "Aggregate", and
names its heading; grep a heading to find its code. :func:`fold` is deliberately
plain: one row at a time, in store order, with no index and no cache. The fast
fold (:mod:`refengine.fast.aggregate`) must give the same answer for every plan;
the property tests and the case catalogue check that it does.

The request checks ("The request and its limits") are all the request model's
(:class:`refengine.models.FeedbackAggregateReq`, pydantic ``ValidationError``),
so :func:`plan` only gathers what the folds read. Aggregate / Deviations from
production (aggregate): the folds order a bucket's rows by group values, add each
key's values left to right in store order, and take prefix filters literally.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..models import FeedbackAggregateBucket, FeedbackAggregateReq, FeedbackAggregateRes
from ..rows import STATUS_ORDER, FeedbackRow

RATING_KEY = "_rating_"
"""The only rating key that ``rating_min`` / ``rating_max`` consult."""


@dataclass(frozen=True)
class AggregatePlan:
    """A validated aggregate request, as the folds read it.

    ``width_ms`` is the bucket width in milliseconds (``None``: no buckets);
    ``group_by`` keeps the request's order; the filter lists are empty for no
    filter and the rating bounds ``None`` for no bound.
    """

    project_id: str
    after_ms: int
    before_ms: int
    time_bucket_seconds: int | None
    width_ms: int | None
    group_by: tuple[str, ...]
    feedback_types: tuple[str, ...]
    scorer_ids: tuple[str, ...]
    monitor_ids: tuple[str, ...]
    span_agent_names: tuple[str, ...]
    span_types: tuple[str, ...]
    tags: tuple[str, ...]
    rating_min: float | None
    rating_max: float | None


def plan(req: FeedbackAggregateReq) -> AggregatePlan:
    """The plan of a request the model accepted (Aggregate / The request and its
    limits: every check is the model's). ``O(size of the request)``."""
    seconds = req.time_bucket_seconds
    return AggregatePlan(
        project_id=req.project_id,
        after_ms=req.after_ms,
        before_ms=req.before_ms,
        time_bucket_seconds=seconds,
        width_ms=None if seconds is None else seconds * 1000,
        group_by=tuple(req.group_by),
        feedback_types=tuple(req.feedback_types),
        scorer_ids=tuple(req.scorer_ids),
        monitor_ids=tuple(req.monitor_ids),
        span_agent_names=tuple(req.span_agent_names),
        span_types=tuple(req.span_types),
        tags=tuple(req.tags),
        rating_min=req.rating_min,
        rating_max=req.rating_max,
    )


# --- filters ---------------------------------------------------------------------------


def in_project_window(p: AggregatePlan, row: FeedbackRow) -> bool:
    """Aggregate / Projects are isolated, and the window: the row belongs to the
    plan's project and ``after_ms <= created_at_ms < before_ms``."""
    return row.project_id == p.project_id and p.after_ms <= row.created_at_ms < p.before_ms


def type_matches(value: str, wanted: Iterable[str]) -> bool:
    """Aggregate / Filters, ``feedback_types``: any-of prefix match after stripping
    every trailing ``*`` of the wanted value (``""`` and ``"*"`` match everything)."""
    return any(value.startswith(w.rstrip("*")) for w in wanted)


def id_matches(value: str, wanted: Iterable[str]) -> bool:
    """Aggregate / Filters, ``scorer_ids`` / ``monitor_ids``: a wanted value ending
    in ``*`` is a prefix match of the value with every trailing ``*`` removed
    (``"x**"`` is the prefix ``x``, as production's ``rstrip("*")``); any other is
    exact."""
    for w in wanted:
        if w.endswith("*"):
            if value.startswith(w.rstrip("*")):
                return True
        elif value == w:
            return True
    return False


def tags_match(tags: Iterable[str], wanted: Iterable[str]) -> bool:
    """Aggregate / Filters, ``tags``: the row carries any of the wanted tags (exact)."""
    wanted_set = set(wanted)
    return any(tag in wanted_set for tag in tags)


def rating_matches(p: AggregatePlan, ratings: dict[str, float] | Any) -> bool:
    """Aggregate / Filters, ``rating_min`` / ``rating_max``: inclusive bounds on the
    ``_rating_`` key only; with either set, a row without ``_rating_`` drops out."""
    if p.rating_min is None and p.rating_max is None:
        return True
    if RATING_KEY not in ratings:
        return False
    rating = ratings[RATING_KEY]
    if p.rating_min is not None and rating < p.rating_min:
        return False
    return p.rating_max is None or rating <= p.rating_max


def passes_filters(p: AggregatePlan, row: FeedbackRow) -> bool:
    """Aggregate / Filters: every filter ANDed; an empty list is no filter."""
    if p.feedback_types and not type_matches(row.feedback_type, p.feedback_types):
        return False
    if p.monitor_ids and not id_matches(row.monitor_id, p.monitor_ids):
        return False
    if p.scorer_ids and not id_matches(row.scorer_id, p.scorer_ids):
        return False
    if p.span_agent_names and row.span_agent_name not in p.span_agent_names:
        return False
    if p.span_types and row.span_type not in p.span_types:
        return False
    if p.tags and not tags_match(row.scorer_tags, p.tags):
        return False
    return rating_matches(p, row.scorer_ratings)


# --- cells -----------------------------------------------------------------------------


def bucket_start(p: AggregatePlan, row: FeedbackRow) -> int | None:
    """Aggregate / Time buckets are aligned to the epoch: the row's bucket starts at
    ``floor(created_at_ms / width) * width`` ms; ``None`` without buckets."""
    if p.width_ms is None:
        return None
    return row.created_at_ms // p.width_ms * p.width_ms


def group_of(p: AggregatePlan, row: FeedbackRow) -> dict[str, str]:
    """Aggregate / Groups: the ``group_by`` dimensions in request order, as strings."""
    return {dim: str(getattr(row, dim)) for dim in p.group_by}


@dataclass
class Cell:
    """The accumulators of one (bucket, group) row of the answer."""

    start: int | None
    group: dict[str, str]
    total_count: int = 0
    scored_count: int = 0
    tag_counts: dict[str, int] = field(default_factory=dict)
    rating_counts: dict[str, int] = field(default_factory=dict)
    rating_sums: dict[str, float] = field(default_factory=dict)


def accumulate(cell: Cell, row: FeedbackRow) -> None:
    """Aggregate / Accumulators: count the row, its tag elements and rating keys, and
    add each rating value to its key's IEEE double sum (store order, from ``0.0``)."""
    cell.total_count += 1
    if row.scorer_tags or row.scorer_ratings:
        cell.scored_count += 1
    for tag in row.scorer_tags:
        cell.tag_counts[tag] = cell.tag_counts.get(tag, 0) + 1
    for key, value in row.scorer_ratings.items():
        cell.rating_counts[key] = cell.rating_counts.get(key, 0) + 1
        cell.rating_sums[key] = cell.rating_sums.get(key, 0.0) + value


def drop_zero_sums(sums: dict[str, float]) -> dict[str, float]:
    """Aggregate / Zero sums are dropped, as ClickHouse ``sumMap`` does: a key whose
    sum is exactly zero (``0.0`` or ``-0.0``) leaves ``rating_sums``."""
    return {key: total for key, total in sums.items() if total != 0.0}


def sorted_map(mapping: dict[str, Any]) -> dict[str, Any]:
    """Aggregate / Map keys are sorted: ascending code-point (UTF-8 byte) order."""
    return dict(sorted(mapping.items()))


def bare_total_cells(p: AggregatePlan, cells: list[Cell]) -> list[Cell]:
    """Aggregate / One row for a bare total, otherwise sparse: with neither buckets
    nor ``group_by`` there is exactly one row, empty when nothing matched."""
    if not cells and p.width_ms is None and not p.group_by:
        return [Cell(start=None, group={})]
    return cells


def row_order(p: AggregatePlan, cell: Cell) -> tuple[Any, ...]:
    """Aggregate / Order of the rows: by bucket start, then the group values in
    ``group_by`` order, ``span_status_code`` by enum value (UNSET < OK < ERROR)."""
    key: list[Any] = [cell.start or 0]
    for dim in p.group_by:
        value = cell.group[dim]
        key.append((STATUS_ORDER[value], value) if dim == "span_status_code" else value)
    return tuple(key)


def fold(p: AggregatePlan, rows: Sequence[FeedbackRow]) -> FeedbackAggregateRes:
    """The answer to ``p`` over ``rows`` (any rows in store order: the ones outside the
    project or window are skipped), one row at a time.

    Runtime complexity: ``O(n (t + r) + c log c)`` for ``n`` rows with ``t`` tags and
    ``r`` rating keys each, making ``c`` cells.
    """
    cells: dict[tuple[Any, ...], Cell] = {}
    for row in rows:
        if not in_project_window(p, row) or not passes_filters(p, row):
            continue
        start, group = bucket_start(p, row), group_of(p, row)
        key = (start, *group.values())
        cell = cells.get(key)
        if cell is None:
            cell = cells[key] = Cell(start=start, group=group)
        accumulate(cell, row)
    ordered = sorted(bare_total_cells(p, list(cells.values())), key=lambda c: row_order(p, c))
    return FeedbackAggregateRes(
        time_bucket_seconds=p.time_bucket_seconds,
        after_ms=p.after_ms,
        before_ms=p.before_ms,
        buckets=[
            FeedbackAggregateBucket(
                time_bucket_start_ms=cell.start,
                group=cell.group,
                total_count=cell.total_count,
                scored_count=cell.scored_count,
                tag_counts=sorted_map(cell.tag_counts),
                rating_counts=sorted_map(cell.rating_counts),
                rating_sums=sorted_map(drop_zero_sums(cell.rating_sums)),
            )
            for cell in ordered
        ],
    )


__all__ = [
    "RATING_KEY",
    "AggregatePlan",
    "Cell",
    "fold",
    "id_matches",
    "passes_filters",
    "plan",
    "type_matches",
]
