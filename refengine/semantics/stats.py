"""``POST /feedback/stats``: the checks, the plan, and the reference fold.

Every function implements one rule of spec/SEMANTICS.md, "Stats", and names its
heading; the time grid is in :mod:`refengine.semantics.stats_time` and the exact
arithmetic in :mod:`refengine.semantics.exact`. :func:`plan` runs every check and
resolves every default (a missing ``end`` is the engine clock's now); :func:`fold`
is deliberately plain: one row at a time, each payload parsed for each metric, a
fresh sort per bucket. The fast fold (:mod:`refengine.fast.stats`) answers the same
plan and must agree with it. Stats / Deviations from production: buckets are
epoch-aligned in every zone, percentiles exact, fractional percentile keys answered,
and :func:`check_request` rejects what production turns into a query error.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from .. import errors
from ..errors import InvalidRequest, format_message
from ..models import FeedbackMetricSpec, FeedbackStatsReq, FeedbackStatsRes
from ..paths import PathReader, compile_path
from ..rows import FeedbackRow, datetime_to_us
from .exact import exact_sum, interpolate, mean, percentile_level
from .stats_time import (
    NO_METRICS_GRANULARITY,
    bucket_starts,
    check_renderable,
    render_timestamp,
    resolve_granularity,
    zone_of,
)

JSON_PATH_RE = re.compile(r"[a-zA-Z0-9_. ]+")

MAX_METRICS = 100
"""Stats / Limits: metrics per request."""
MAX_JSON_PATH_CHARS = 256
"""Stats / Limits: characters per ``json_path``."""
MAX_VALUES = 1_000_000
"""Stats / Limits: values per answer, ``(buckets + 1) × keys per bucket``."""


class MetricPlan(NamedTuple):
    """One requested metric, checked and compiled."""

    spec: FeedbackMetricSpec
    slug: str
    reader: PathReader
    aggregations: tuple[str, ...]
    percentiles: tuple[tuple[str, float], ...]  # (name such as 'p95', level)


def slug_of(json_path: str) -> str:
    """Stats / Response shape: ``'output.score'`` → ``'output_score'``; spaces
    become ``_`` too."""
    return json_path.replace(".", "_").replace(" ", "_")


def percentile_name(p: float) -> str:
    """Stats / Response shape: ``95.0`` → ``'p95'``; ``99.9`` → ``'p99.9'``
    (refengine; production fails)."""
    return f"p{int(p)}" if float(p).is_integer() else f"p{p}"


# --- checks ------------------------------------------------------------------------------


def check_request(req: FeedbackStatsReq) -> tuple[ZoneInfo, list[MetricPlan]]:
    """Stats / Checks after the model, in order; the first failure raises
    InvalidRequest.

    Production's own per metric (path empty, path characters, percentile range),
    then refengine's: time zone, negative granularity, the limits
    (:func:`check_limits`), duplicate slug, categorical aggregations, clashing
    bucket keys.
    """
    for metric in req.metrics:
        path = metric.json_path
        if not path.strip():
            raise InvalidRequest(errors.JSON_PATH_EMPTY)
        if JSON_PATH_RE.fullmatch(path) is None:
            raise InvalidRequest(format_message(errors.JSON_PATH_CHARS, path=path))
        for p in metric.percentiles:
            if not 0 <= p <= 100:
                raise InvalidRequest(format_message(errors.PERCENTILE_RANGE, p=p))
    zone = zone_of(req.timezone)
    if req.granularity is not None and req.granularity < 0:
        raise InvalidRequest(format_message(errors.NEGATIVE_GRANULARITY, g=req.granularity))
    check_limits(req)
    by_slug: dict[str, str] = {}
    for metric in req.metrics:
        slug = slug_of(metric.json_path)
        if slug in by_slug:
            raise InvalidRequest(
                format_message(
                    errors.DUPLICATE_SLUG, first=by_slug[slug], second=metric.json_path, slug=slug
                )
            )
        by_slug[slug] = metric.json_path
    for metric in req.metrics:
        if metric.value_type != "categorical":
            continue
        for agg in metric.aggregations:
            if agg != "count":
                raise InvalidRequest(
                    format_message(errors.CATEGORICAL_AGG, path=metric.json_path, what=repr(agg))
                )
        if metric.percentiles:
            what = f"percentile {metric.percentiles[0]}"
            raise InvalidRequest(
                format_message(errors.CATEGORICAL_AGG, path=metric.json_path, what=what)
            )
    metrics = [metric_plan(metric) for metric in req.metrics]
    owner: dict[str, str] = {}
    for compiled in metrics:
        for key in bucket_keys(compiled):
            if key in owner and owner[key] != compiled.spec.json_path:
                raise InvalidRequest(
                    format_message(
                        errors.KEY_CLASH, first=owner[key], second=compiled.spec.json_path, key=key
                    )
                )
            owner[key] = compiled.spec.json_path
    return zone, metrics


def check_limits(req: FeedbackStatsReq) -> None:
    """Stats / Limits, in order: at most :data:`MAX_METRICS` metrics, each
    ``json_path`` at most :data:`MAX_JSON_PATH_CHARS` characters, and at most
    :data:`MAX_VALUES` values in the answer — ``(buckets + 1) × keys``, with every
    aggregation and percentile of every metric a key, repeats counted (the ``+ 1``
    is ``window_stats``). Raises InvalidRequest naming the limit.

    Bounds what a valid request can cost before anything is built for it: the
    work of a stats query grows with rows × metrics × path length and its answer
    with buckets × keys. ``req.end`` is resolved. Runtime complexity:
    ``O(metrics)``.
    """
    metrics = req.metrics
    if len(metrics) > MAX_METRICS:
        raise InvalidRequest(
            format_message(errors.TOO_MANY_METRICS, limit=MAX_METRICS, count=len(metrics))
        )
    for metric in metrics:
        path = metric.json_path
        if len(path) > MAX_JSON_PATH_CHARS:
            raise InvalidRequest(
                format_message(
                    errors.JSON_PATH_TOO_LONG,
                    limit=MAX_JSON_PATH_CHARS,
                    length=len(path),
                    start=path[:40],
                )
            )
    end = req.end
    if end is None:  # resolve_end sets it before any check runs
        raise ValueError("end is unresolved")
    g = resolve_granularity(req.granularity, end - req.start)
    n_buckets = len(
        bucket_starts(datetime_to_us(req.start) // 1_000_000, datetime_to_us(end) // 1_000_000, g)
    )
    keys = sum(len(m.aggregations) + len(m.percentiles) for m in metrics)
    count = (n_buckets + 1) * keys
    if count > MAX_VALUES:
        raise InvalidRequest(
            format_message(
                errors.TOO_MANY_STATS_VALUES,
                limit=MAX_VALUES,
                buckets=n_buckets,
                keys=keys,
                count=count,
            )
        )


def metric_plan(metric: FeedbackMetricSpec) -> MetricPlan:
    """One metric compiled: its slug, path reader, aggregations and percentiles."""
    return MetricPlan(
        spec=metric,
        slug=slug_of(metric.json_path),
        reader=compile_path(metric.json_path, metric.value_type),
        aggregations=tuple(metric.aggregations),
        percentiles=tuple((percentile_name(p), percentile_level(p)) for p in metric.percentiles),
    )


def bucket_keys(metric: MetricPlan) -> list[str]:
    """Stats / Response shape: the metric's bucket keys in response order
    (aggregations, then percentiles)."""
    keys = [f"{agg}_{metric.slug}" for agg in metric.aggregations]
    keys += [f"{name}_{metric.slug}" for name, _ in metric.percentiles]
    return keys


# --- the plan ------------------------------------------------------------------------------


@dataclass(frozen=True)
class StatsPlan:
    """A checked stats request with every default resolved.

    ``after_ms`` / ``before_ms`` bound the rows read (``S·1000`` and ``E·1000``);
    ``starts`` are the buckets' epoch seconds; ``metrics`` is empty (and ``zone``
    ``None``) for a request without metrics, which reads no row.
    """

    project_id: str
    start: datetime
    end: datetime
    timezone: str
    zone: ZoneInfo | None
    granularity: int
    starts: range
    metrics: tuple[MetricPlan, ...]
    feedback_type: str | None
    trigger_ref: str | None

    @property
    def after_ms(self) -> int:
        """``S·1000``: the first millisecond a row may have."""
        return self.start_s * 1000

    @property
    def before_ms(self) -> int:
        """``E·1000``: the first millisecond past the window."""
        return datetime_to_us(self.end) // 1_000_000 * 1000

    @property
    def start_s(self) -> int:
        """``S``: ``start`` truncated to whole epoch seconds."""
        return datetime_to_us(self.start) // 1_000_000


def resolve_end(req: FeedbackStatsReq, now: datetime) -> FeedbackStatsReq:
    """Stats / Request and model checks: a missing ``end`` is ``now``, and the request
    is validated again so the range checks apply to it as model errors."""
    if req.end is not None:
        return req
    return FeedbackStatsReq.model_validate({**req.model_dump(), "end": now})


def plan(req: FeedbackStatsReq, now: datetime) -> StatsPlan:
    """Every check and default of a stats request, in the spec's order (the first
    failure raises InvalidRequest; a missing ``end`` may raise ValidationError).

    Stats / No metrics: without metrics there is no check at all. Runtime
    complexity: ``O(metrics + buckets)``.
    """
    req = resolve_end(req, now)
    end = req.end
    if end is None:  # resolve_end always sets it; narrowing for the type checker
        raise ValueError("end is unresolved")
    if not req.metrics:
        return StatsPlan(
            req.project_id, req.start, end, req.timezone, None,
            NO_METRICS_GRANULARITY, range(0), (), req.feedback_type, req.trigger_ref,
        )  # fmt: skip
    zone, metrics = check_request(req)
    g = resolve_granularity(req.granularity, end - req.start)
    starts = bucket_starts(
        datetime_to_us(req.start) // 1_000_000, datetime_to_us(end) // 1_000_000, g
    )
    check_renderable(starts)
    return StatsPlan(
        req.project_id, req.start, end, req.timezone, zone,
        g, starts, tuple(metrics), req.feedback_type, req.trigger_ref,
    )  # fmt: skip


# --- the aggregations -----------------------------------------------------------------------


class Aggregation(NamedTuple):
    """One line of the table of Stats / Aggregations."""

    of: Callable[[list[Any]], float | int]
    """The value over a bucket's or the window's values (no-value entries skipped)."""
    empty_bucket: float | int | None
    """The value in a bucket without values."""
    empty_window: float | None
    """The value in ``window_stats`` without values."""
    integer_in_bucket: bool
    """Written as an integer in a bucket (every ``window_stats`` value is a float)."""


def _sum(values: list[float]) -> float:
    return exact_sum([values])[0]


def _avg(values: list[float]) -> float:
    total, exact = exact_sum([values])
    return mean(total, exact, len(values))


def _count_true(values: list[float]) -> int:
    return values.count(1.0)


def _count_false(values: list[float]) -> int:
    return values.count(0.0)


AGGREGATIONS: dict[str, Aggregation] = {
    #              of            empty bucket  empty window  integer in bucket
    "sum": Aggregation(_sum, 0.0, None, False),
    "avg": Aggregation(_avg, 0.0, None, False),
    "min": Aggregation(min, None, None, False),
    "max": Aggregation(max, None, None, False),
    "count": Aggregation(len, 0, None, True),
    "count_true": Aggregation(_count_true, 0, 0.0, True),
    "count_false": Aggregation(_count_false, 0, 0.0, True),
}
"""Stats / Aggregations, the seven: what each computes, and what it is without values.
Both folds read it."""


def aggregate(name: str, values: list[Any], *, in_window: bool) -> float | int | None:
    """Stats / Aggregations: aggregation ``name`` over ``values`` (no-value entries
    already skipped), in a bucket or in ``window_stats``."""
    agg = AGGREGATIONS[name]
    if not values:
        return agg.empty_window if in_window else agg.empty_bucket
    value = agg.of(values)
    return float(value) if in_window or not agg.integer_in_bucket else int(value)


def percentile(values: list[float], level: float) -> float | None:
    """Stats / Percentiles: exact, the sorted values interpolated linearly at index
    ``level·(n − 1)``; null without values."""
    return interpolate(sorted(values), level) if values else None


# --- the reference fold -----------------------------------------------------------------------


def in_window(p: StatsPlan, row: FeedbackRow) -> bool:
    """Stats / Buckets, and Projects never mix: the row is the plan's project's and
    ``S·1000 <= created_at_ms < E·1000``."""
    return row.project_id == p.project_id and p.after_ms <= row.created_at_ms < p.before_ms


def trigger_matches(value: str | None, wanted: str) -> bool:
    """Stats / Filters, ``trigger_ref``: ``':*'`` at the end is a prefix match of the
    rest, anything else exact; a row without a trigger_ref never matches."""
    if value is None:
        return False
    if wanted.endswith(":*"):
        return value.startswith(wanted[:-2])
    return value == wanted


def passes_filters(p: StatsPlan, row: FeedbackRow) -> bool:
    """Stats / Filters: ``feedback_type`` exact, and ``trigger_ref``."""
    if p.feedback_type is not None and row.feedback_type != p.feedback_type:
        return False
    return p.trigger_ref is None or trigger_matches(row.trigger_ref, p.trigger_ref)


def bucket_index(p: StatsPlan, row: FeedbackRow) -> int:
    """Stats / Buckets: which bucket of the epoch-aligned grid the row falls in."""
    return (row.created_at_ms // 1000 - p.starts.start) // p.starts.step


def metric_values(metric: MetricPlan, rows: Sequence[FeedbackRow]) -> list[Any]:
    """Stats / Extracting a metric: each row's reading of the metric, in store order,
    the rows without a value left out (:func:`refengine.paths.compile_path`)."""
    read = metric.reader.one
    return [value for value in (read(row.payload) for row in rows) if value is not None]


def metric_results(metric: MetricPlan, values: list[Any], *, in_window: bool) -> dict[str, Any]:
    """Stats / Response shape, one metric: its aggregations in request order, then its
    percentiles; bucket keys ``{agg}_{slug}``, window keys ``{agg}``."""
    out: dict[str, Any] = {}
    prefix = "" if in_window else f"_{metric.slug}"
    for name in metric.aggregations:
        out[name + prefix] = aggregate(name, values, in_window=in_window)
    for name, level in metric.percentiles:
        out[name + prefix] = percentile(values, level)
    return out


def response(
    p: StatsPlan,
    buckets: list[dict[str, Any]],
    window_stats: dict[str, dict[str, float | None]] | None,
) -> FeedbackStatsRes:
    """The answer to ``p`` from its buckets and window aggregates: the plan's
    ``start``, ``end``, ``granularity`` and ``timezone`` echoed (Stats / Response
    shape). Every executor and backend builds its answer here."""
    return FeedbackStatsRes(
        start=p.start,
        end=p.end,
        granularity=p.granularity,
        timezone=p.timezone,
        buckets=buckets,
        window_stats=window_stats,
    )


def no_metrics_response(p: StatsPlan) -> FeedbackStatsRes:
    """Stats / No metrics: no buckets, granularity 3600, ``window_stats`` null."""
    return response(p, [], None)


def fold(p: StatsPlan, rows: Sequence[FeedbackRow]) -> FeedbackStatsRes:
    """The answer to ``p`` over ``rows`` (any rows in store order: the ones outside the
    project or window are skipped), one row at a time.

    Runtime complexity: ``O(n + k (m · payload) + k log k + b)`` for ``n`` rows, ``k``
    of them kept, ``m`` metrics and ``b`` buckets.
    """
    if not p.metrics or p.zone is None:
        return no_metrics_response(p)
    in_bucket: list[list[FeedbackRow]] = [[] for _ in p.starts]
    for row in rows:
        if in_window(p, row) and passes_filters(p, row):
            in_bucket[bucket_index(p, row)].append(row)
    window: list[list[Any]] = [[] for _ in p.metrics]
    buckets: list[dict[str, Any]] = []
    for start, bucket_rows in zip(p.starts, in_bucket, strict=True):
        bucket: dict[str, Any] = {"timestamp": render_timestamp(start, p.zone)}
        for metric, seen in zip(p.metrics, window, strict=True):
            values = metric_values(metric, bucket_rows)
            seen.extend(values)
            bucket.update(metric_results(metric, values, in_window=False))
        bucket["count"] = len(bucket_rows)
        buckets.append(bucket)
    window_stats = {
        metric.slug: metric_results(metric, seen, in_window=True)
        for metric, seen in zip(p.metrics, window, strict=True)
    }
    return response(p, buckets, window_stats)


__all__ = [
    "AGGREGATIONS",
    "Aggregation",
    "MetricPlan",
    "StatsPlan",
    "aggregate",
    "bucket_keys",
    "check_limits",
    "check_request",
    "fold",
    "percentile_level",
    "percentile_name",
    "plan",
    "resolve_end",
    "resolve_granularity",
    "slug_of",
]
