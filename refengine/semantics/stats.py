"""``POST /feedback/stats``: payload metrics per epoch-aligned time bucket.

Rules (spec/SEMANTICS.md, "Stats"): checks after the model, the no-metrics short
cut, granularity (explicit or auto, then the 10,000-bucket cap), buckets aligned to
multiples of the granularity since the Unix epoch whatever the zone, every bucket
emitted, timestamps rendered in the zone's offset at that instant, filters, metric
extraction (:mod:`refengine.paths`), aggregations and the response shape.

How it runs: one bisect-bounded window of the project's rows (already in
``created_at`` order) with, per numeric or boolean metric, the matching slice of
the project's column of that metric's values (:mod:`refengine.fast.metric_index`: each
stored payload is parsed once per metric, not once per query); filtered, then cut
into buckets by bisection on ``created_at_ms`` — no per-row division. Each
bucket's values are one slice of each column, its no-value entries dropped at C
speed; the window statistics are folded from the buckets' values. Sums
are correctly rounded (:func:`math.fsum`, exact rationals if an intermediate
overflows), so the oracle's answer is the exact one. Sorting happens only when
percentiles were asked for.
"""

from __future__ import annotations

import math
import re
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from fractions import Fraction
from functools import lru_cache
from itertools import chain, compress
from operator import and_, attrgetter
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo, available_timezones

from .. import errors
from ..errors import InvalidRequest, format_message
from ..models import FeedbackMetricSpec, FeedbackStatsReq, FeedbackStatsRes
from ..paths import PathReader, compile_path, found
from ..rows import FeedbackRow, datetime_to_us

StatsWindowFn = Callable[
    [str, int, int, Sequence[PathReader]], "tuple[list[FeedbackRow], list[array[float]]]"
]
"""``(project_id, after_ms, before_ms, readers)`` → the rows in that window, and per
reader the column of its values for them (see ``ProjectStore.stats_window``)."""

NO_METRICS_GRANULARITY = 3600
MAX_BUCKETS = 10_000
AUTO_GRANULARITY: tuple[tuple[timedelta, int], ...] = (
    (timedelta(hours=2), 300),
    (timedelta(hours=12), 3600),
    (timedelta(days=3), 21600),
    (timedelta(days=14), 43200),
)
AUTO_GRANULARITY_MAX = 86400
FIRST_RENDERABLE_S = -62_135_596_800  # 0001-01-01T00:00:00Z
JSON_PATH_RE = re.compile(r"[a-zA-Z0-9_. ]+")

_created_at_ms = attrgetter("created_at_ms")


class MetricPlan(NamedTuple):
    """One requested metric, checked and compiled."""

    spec: FeedbackMetricSpec
    slug: str
    reader: PathReader
    aggregations: tuple[str, ...]
    percentiles: tuple[tuple[str, float], ...]  # (name such as 'p95', level)


# --- small pure rules ------------------------------------------------------------------


def slug_of(json_path: str) -> str:
    """``'output.score'`` → ``'output_score'``; spaces become ``_`` too."""
    return json_path.replace(".", "_").replace(" ", "_")


def percentile_name(p: float) -> str:
    """``95.0`` → ``'p95'``; ``99.9`` → ``'p99.9'`` (refengine; production fails)."""
    return f"p{int(p)}" if float(p).is_integer() else f"p{p}"


def percentile_level(p: float) -> float:
    """The quantile level production sends: ``p / 100`` rounded to 6 decimals."""
    return round(p / 100, 6)


def auto_granularity(span: timedelta) -> int:
    """Bucket width for a range (exact, untruncated); boundaries are inclusive."""
    for limit, seconds in AUTO_GRANULARITY:
        if span <= limit:
            return seconds
    return AUTO_GRANULARITY_MAX


def resolve_granularity(requested: int | None, span: timedelta) -> int:
    """``requested`` (null or 0: auto), then widened so at most ~10,000 buckets."""
    g = requested or auto_granularity(span)
    total = span.total_seconds()
    if total / g > MAX_BUCKETS:
        g = max(g, int(total / MAX_BUCKETS) + 1)
    return g


def bucket_starts(start_s: int, end_s: int, g: int) -> range:
    """Epoch seconds ``A + i·g`` for every i with ``A + i·g < end_s``, A = floor(start_s/g)·g."""
    first = start_s // g * g
    return range(first, max(end_s, first), g)


def interpolate(ordered: list[float], level: float) -> float:
    """Linear interpolation at index ``level·(n−1)`` of sorted values (numpy 'linear').

    Bit for bit numpy's ``_lerp`` whenever the neighbours' difference is finite; if
    it overflows, the weighted mean of the neighbours, kept between them.
    """
    return interpolate_ranks(ordered.__getitem__, len(ordered), level)


def interpolate_ranks(value_at: Callable[[int], float], n: int, level: float) -> float:
    """:func:`interpolate` over ``n`` values given by ``value_at(rank)`` (0-based)."""
    index = level * (n - 1)
    lo = math.floor(index)
    if lo >= n - 1:
        return value_at(n - 1)
    t = index - lo
    a = value_at(lo)
    if t == 0:
        return a
    b = value_at(lo + 1)
    if a == b:
        return a
    diff = b - a
    if math.isinf(diff):
        return min(max(a * (1 - t) + b * t, a), b)
    if t >= 0.5:
        return b - diff * (1 - t)
    return a + diff * t


def select_rank(lists: list[list[float]], rank: int) -> float:
    """The value at 0-based ``rank`` in the sorted union of the sorted ``lists``.

    No merge: for each list in turn, binary-search it for an element x with
    #(values < x) <= rank < #(values <= x), counting by bisection in every list.
    The wanted value is in some list, and that list's search finds it.
    O(m² log n) for m lists — cheaper than sorting n values when m is small.
    """
    for candidates in lists:
        lo, hi = 0, len(candidates) - 1
        while lo <= hi:
            mid = (lo + hi) // 2
            x = candidates[mid]
            if sum([bisect_left(values, x) for values in lists]) > rank:
                hi = mid - 1
            elif sum([bisect_right(values, x) for values in lists]) <= rank:
                lo = mid + 1
            else:
                return x
    raise IndexError(f"rank {rank} is out of range")


def _window_percentiles(
    lists: list[list[float]], n: int, levels: list[float]
) -> list[float | None]:
    """Percentiles over every value of the sorted ``lists`` (n values in all)."""
    if n == 0:
        return [None for _ in levels]
    m = len(lists)
    # selection costs ~m² log n per rank (two ranks per level); a merge ~n log m
    if m * m * 4 * len(levels) * max(n.bit_length(), 1) < n * max(m.bit_length(), 1):
        ranks: dict[int, float] = {}

        def value_at(rank: int) -> float:
            if rank not in ranks:
                ranks[rank] = select_rank(lists, rank)
            return ranks[rank]

        return [interpolate_ranks(value_at, n, level) for level in levels]
    # each bucket's list is sorted already: Timsort merges the runs
    ordered = sorted(chain.from_iterable(lists))
    return [interpolate(ordered, level) for level in levels]


def exact_sum(lists: list[list[float]]) -> tuple[float, Fraction | None]:
    """The correctly rounded sum of every value in ``lists``, and the exact sum when
    an intermediate overflowed the float range (``None`` otherwise)."""
    try:
        return math.fsum(chain.from_iterable(lists)), None
    except OverflowError:
        exact = sum(map(Fraction, chain.from_iterable(lists)), Fraction(0))
        return fraction_to_float(exact), exact


def fraction_to_float(value: Fraction) -> float:
    """Correctly rounded; beyond the float range, an infinity of the right sign."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def mean(total: float, exact: Fraction | None, count: int) -> float:
    """``total / count``; if the sum overflowed, the correctly rounded exact mean."""
    if exact is not None and math.isinf(total):
        return fraction_to_float(exact / count)
    return total / count


@lru_cache(maxsize=1)
def _known_zones() -> frozenset[str]:
    return frozenset(available_timezones())


def zone_of(name: str) -> ZoneInfo:
    """The IANA zone ``name`` ('' means UTC); unknown names raise InvalidRequest."""
    if name == "":
        name = "UTC"
    if name not in _known_zones():
        raise InvalidRequest(format_message(errors.UNKNOWN_TIMEZONE, tz=name))
    return ZoneInfo(name)


def render_timestamp(epoch_s: int, zone: ZoneInfo) -> str:
    """ISO 8601 in ``zone``'s offset at that instant: ``'2024-03-08T19:00:00-05:00'``."""
    return datetime.fromtimestamp(epoch_s, zone).isoformat()


# --- checks ------------------------------------------------------------------------------


def check_request(req: FeedbackStatsReq) -> tuple[ZoneInfo, list[MetricPlan]]:
    """The checks after the model, in order; the first failure raises InvalidRequest.

    Production's own per metric (path empty, path characters, percentile range),
    then refengine's: time zone, negative granularity, duplicate slug,
    categorical aggregations, clashing bucket keys.
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
    plans = [_plan(metric) for metric in req.metrics]
    owner: dict[str, str] = {}
    for plan in plans:
        for key in bucket_keys(plan):
            if key in owner and owner[key] != plan.spec.json_path:
                raise InvalidRequest(
                    format_message(
                        errors.KEY_CLASH, first=owner[key], second=plan.spec.json_path, key=key
                    )
                )
            owner[key] = plan.spec.json_path
    return zone, plans


def _plan(metric: FeedbackMetricSpec) -> MetricPlan:
    return MetricPlan(
        spec=metric,
        slug=slug_of(metric.json_path),
        reader=compile_path(metric.json_path, metric.value_type),
        aggregations=tuple(metric.aggregations),
        percentiles=tuple((percentile_name(p), percentile_level(p)) for p in metric.percentiles),
    )


def bucket_keys(plan: MetricPlan) -> list[str]:
    """The metric's bucket keys in response order (aggregations, then percentiles)."""
    keys = [f"{agg}_{plan.slug}" for agg in plan.aggregations]
    keys += [f"{name}_{plan.slug}" for name, _ in plan.percentiles]
    return keys


# --- the query ---------------------------------------------------------------------------


def feedback_stats(req: FeedbackStatsReq, window: StatsWindowFn) -> FeedbackStatsRes:
    """Answer ``req`` (``end`` already resolved) from ``window`` (see :data:`StatsWindowFn`)."""
    if req.end is None:
        raise ValueError("feedback_stats needs a resolved end (Engine.feedback_stats does it)")
    start, end = req.start, req.end
    if not req.metrics:
        return FeedbackStatsRes(
            start=start,
            end=end,
            granularity=NO_METRICS_GRANULARITY,
            timezone=req.timezone,
            buckets=[],
            window_stats=None,
        )
    zone, plans = check_request(req)
    g = resolve_granularity(req.granularity, end - start)
    start_s = datetime_to_us(start) // 1_000_000
    end_s = datetime_to_us(end) // 1_000_000
    starts = bucket_starts(start_s, end_s, g)
    if starts.start < FIRST_RENDERABLE_S:
        raise InvalidRequest(format_message(errors.GRANULARITY_TOO_LARGE, g=g))

    readers = [plan.reader for plan in plans if plan.reader.column is not None]
    rows, columns = _filtered(req, *window(req.project_id, start_s * 1000, end_s * 1000, readers))
    counts, values = _fold(rows, columns, starts, plans)

    # per metric, the min and max of each non-empty bucket (the window's come from them)
    extremes: list[tuple[list[float], list[float]]] = [([], []) for _ in plans]
    buckets: list[dict[str, Any]] = []
    for i, bucket_start in enumerate(starts):
        bucket: dict[str, Any] = {"timestamp": render_timestamp(bucket_start, zone)}
        n_rows = counts[i]
        for plan, per_bucket, seen in zip(plans, values, extremes, strict=True):
            found = per_bucket[i] if per_bucket is not None else None
            _bucket_aggregates(bucket, plan, found, n_rows, seen)
        bucket["count"] = n_rows
        buckets.append(bucket)

    window_stats = {
        plan.slug: _window_aggregates(plan, per_bucket, len(rows), seen)
        for plan, per_bucket, seen in zip(plans, values, extremes, strict=True)
    }
    return FeedbackStatsRes(
        start=start,
        end=end,
        granularity=g,
        timezone=req.timezone,
        buckets=buckets,
        window_stats=window_stats,
    )


def _filtered(
    req: FeedbackStatsReq, rows: list[FeedbackRow], columns: list[array[float]]
) -> tuple[list[FeedbackRow], list[array[float]]]:
    keep: list[bool] | None = None
    feedback_type = req.feedback_type
    if feedback_type is not None:
        keep = [r.feedback_type == feedback_type for r in rows]
    trigger_ref = req.trigger_ref
    if trigger_ref is not None:
        if trigger_ref.endswith(":*"):
            prefix = trigger_ref[:-2]
            matches = [r.trigger_ref is not None and r.trigger_ref.startswith(prefix) for r in rows]
        else:
            matches = [r.trigger_ref == trigger_ref for r in rows]
        keep = matches if keep is None else list(map(and_, keep, matches))
    if keep is None:
        return rows, columns
    return list(compress(rows, keep)), [array("d", compress(c, keep)) for c in columns]


def _fold(
    rows: list[FeedbackRow], columns: list[array[float]], starts: range, plans: list[MetricPlan]
) -> tuple[list[int], list[list[list[float] | None] | None]]:
    """Rows per bucket, and per metric the values found in each bucket.

    ``columns`` hold the values of the numeric and boolean metrics, in plan order,
    one entry per row. Categorical metrics keep no values (every row has one: the
    count is the rows). Rows are in ``created_at`` order, so each bucket is one
    slice, found by bisection.
    """
    n_buckets = len(starts)
    counts = [0] * n_buckets
    values: list[list[list[float] | None] | None] = [
        None if plan.reader.column is None else [None] * n_buckets for plan in plans
    ]
    readers = [
        (per_bucket, bool(plan.percentiles))
        for plan, per_bucket in zip(plans, values, strict=True)
        if per_bucket is not None
    ]
    first, g = starts.start, starts.step
    lo, n = 0, len(rows)
    while lo < n:
        index = (rows[lo].created_at_ms // 1000 - first) // g
        hi = bisect_left(rows, (first + (index + 1) * g) * 1000, lo, n, key=_created_at_ms)
        counts[index] = hi - lo
        for (per_bucket, keep_sorted), column in zip(readers, columns, strict=True):
            in_bucket = found(column[lo:hi])
            if keep_sorted:
                in_bucket.sort()
            per_bucket[index] = in_bucket
        lo = hi
    return counts, values


def _bucket_aggregates(
    out: dict[str, Any],
    plan: MetricPlan,
    found: list[float] | None,
    n_rows: int,
    seen: tuple[list[float], list[float]],
) -> None:
    slug = plan.slug
    if plan.spec.value_type == "categorical":
        for agg in plan.aggregations:  # only 'count' passes the checks
            out[f"{agg}_{slug}"] = n_rows
        return
    vals = found or []
    n = len(vals)
    total: float | None = None
    exact: Fraction | None = None
    for agg in plan.aggregations:
        key = f"{agg}_{slug}"
        if agg == "count":
            out[key] = n
        elif agg == "count_true":
            out[key] = vals.count(1.0)
        elif agg == "count_false":
            out[key] = vals.count(0.0)
        elif n == 0:
            out[key] = 0.0 if agg in ("sum", "avg") else None
        elif agg in ("sum", "avg"):
            if total is None:
                total, exact = exact_sum([vals])
            out[key] = total if agg == "sum" else mean(total, exact, n)
        elif agg == "min":
            out[key] = low = vals[0] if plan.percentiles else min(vals)
            seen[0].append(low)
        else:  # max
            out[key] = high = vals[-1] if plan.percentiles else max(vals)
            seen[1].append(high)
    for name, level in plan.percentiles:
        out[f"{name}_{slug}"] = interpolate(vals, level) if n else None


def _window_aggregates(
    plan: MetricPlan,
    per_bucket: list[list[float] | None] | None,
    n_rows: int,
    seen: tuple[list[float], list[float]],
) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    if per_bucket is None:  # categorical: every row has a value
        for agg in plan.aggregations:
            out[agg] = float(n_rows) if n_rows else None
        return out
    lists = [vals for vals in per_bucket if vals]
    n = sum(map(len, lists))
    total: float | None = None
    exact: Fraction | None = None
    for agg in plan.aggregations:
        if agg == "count_true":
            out[agg] = float(sum(vals.count(1.0) for vals in lists))
        elif agg == "count_false":
            out[agg] = float(sum(vals.count(0.0) for vals in lists))
        elif n == 0:
            out[agg] = None
        elif agg == "count":
            out[agg] = float(n)
        elif agg in ("sum", "avg"):
            if total is None:
                total, exact = exact_sum(lists)
            out[agg] = total if agg == "sum" else mean(total, exact, n)
        elif agg == "min":  # every non-empty bucket recorded its min
            out[agg] = min(seen[0])
        else:  # max
            out[agg] = max(seen[1])
    levels = [level for _, level in plan.percentiles]
    for (name, _), value in zip(
        plan.percentiles, _window_percentiles(lists, n, levels), strict=True
    ):
        out[name] = value
    return out


__all__ = [
    "MetricPlan",
    "auto_granularity",
    "bucket_starts",
    "check_request",
    "feedback_stats",
    "interpolate",
    "percentile_level",
    "percentile_name",
    "render_timestamp",
    "resolve_granularity",
    "slug_of",
]
