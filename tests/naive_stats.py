"""A deliberately simple model of ``POST /feedback/stats`` for the property tests.

Written straight from spec/SEMANTICS.md ("Stats"), sharing no code with
``refengine.semantics.stats`` or ``refengine.paths``: a full scan of every row of the project,
one row at a time, exact rational sums, a fresh sort per bucket. It assumes the
request passed every check (the strategies only draw valid requests) and answers
with plain dicts: ``{"start", "end", "granularity", "timezone", "buckets",
"window_stats"}``.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

from refengine import Engine

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
NO_VALUE = object()


def _seconds_floor(moment: datetime) -> int:
    delta = moment - EPOCH
    return delta.days * 86400 + delta.seconds  # microseconds dropped: floor


def _granularity(requested: int | None, span: timedelta) -> int:
    if requested:
        g = requested
    elif span <= timedelta(hours=2):
        g = 300
    elif span <= timedelta(hours=12):
        g = 3600
    elif span <= timedelta(days=3):
        g = 21600
    elif span <= timedelta(days=14):
        g = 43200
    else:
        g = 86400
    total = span.total_seconds()
    if total / g > 10000:
        g = max(g, int(total / 10000) + 1)
    return g


def _walk(payload: Any, path: str) -> Any:
    node = payload
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            return NO_VALUE
        node = node[key]
    return node


def _read(payload: Any, path: str, value_type: str) -> Any:
    """A float, or NO_VALUE; categorical metrics always read as a value."""
    leaf = _walk(payload, path)
    if value_type == "categorical":
        return "present"
    if value_type == "boolean":
        if leaf is True:
            return 1.0
        if leaf is False:
            return 0.0
        return NO_VALUE
    if isinstance(leaf, bool):
        return NO_VALUE
    if isinstance(leaf, float):
        return leaf
    if isinstance(leaf, int) and -(2**63) <= leaf <= 2**64 - 1:
        return float(leaf)
    return NO_VALUE


def _to_float(value: Fraction) -> float:
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    level = round(p / 100, 6)
    position = level * (len(ordered) - 1)
    below = int(position // 1)
    if below >= len(ordered) - 1:
        return ordered[-1]
    weight = position - below
    a, b = ordered[below], ordered[below + 1]
    if weight == 0 or a == b:
        return a
    if math.isinf(b - a):
        return min(max(a * (1 - weight) + b * weight, a), b)
    # numpy's _lerp: from the nearer neighbour
    if weight >= 0.5:
        return b - (b - a) * (1 - weight)
    return a + (b - a) * weight


def _aggregate(agg: str, values: list[float], in_window: bool) -> Any:
    n = len(values)
    if agg == "count_true":
        result: Any = sum(1 for v in values if v == 1)
    elif agg == "count_false":
        result = sum(1 for v in values if v == 0)
    elif n == 0:
        if in_window:
            return None
        return 0 if agg == "count" else (0.0 if agg in ("sum", "avg") else None)
    elif agg == "count":
        result = n
    elif agg in ("sum", "avg"):
        exact = sum((Fraction(v) for v in values), Fraction(0))
        total = _to_float(exact)
        if agg == "sum":
            result = total
        elif math.isinf(total):
            result = _to_float(exact / n)
        else:
            result = total / n
    elif agg == "min":
        result = min(values)
    else:
        result = max(values)
    return float(result) if in_window else result


def _pname(p: float) -> str:
    return f"p{int(p)}" if p == int(p) else f"p{p}"


def naive_stats(engine: Engine, req: dict[str, Any]) -> dict[str, Any]:
    """The stats answer for a valid request dict with an explicit ``end``."""
    start = datetime.fromisoformat(req["start"]).astimezone(timezone.utc)
    end = datetime.fromisoformat(req["end"]).astimezone(timezone.utc)
    tz_name = req.get("timezone", "UTC")
    metrics = req.get("metrics", [])
    if not metrics:
        return {
            "start": start,
            "end": end,
            "granularity": 3600,
            "timezone": tz_name,
            "buckets": [],
            "window_stats": None,
        }
    zone = ZoneInfo(tz_name or "UTC")
    g = _granularity(req.get("granularity"), end - start)
    s, e = _seconds_floor(start), _seconds_floor(end)
    first = (s // g) * g
    bucket_starts = []
    b = first
    while b < e:
        bucket_starts.append(b)
        b += g

    # every row of the project, filtered one at a time
    rows_in: dict[int, list[Any]] = {b: [] for b in bucket_starts}
    for row in engine.rows(req["project_id"]):
        created_s = row.created_at_ms // 1000
        if not (s <= created_s < e):
            continue
        if req.get("feedback_type") is not None and row.feedback_type != req["feedback_type"]:
            continue
        trigger = req.get("trigger_ref")
        if trigger is not None:
            if row.trigger_ref is None:
                continue
            if trigger.endswith(":*"):
                if not row.trigger_ref.startswith(trigger[: len(trigger) - 2]):
                    continue
            elif row.trigger_ref != trigger:
                continue
        bucket = created_s - (created_s - first) % g
        rows_in[bucket].append(row)

    def specs() -> list[tuple[str, str, str, list[str], list[float]]]:
        out = []
        for m in metrics:
            value_type = m.get("value_type", "numeric")
            aggs = (
                m.get("aggregations")
                or {
                    "numeric": ["avg", "min", "max"],
                    "boolean": ["count_true", "count_false"],
                    "categorical": ["count"],
                }[value_type]
            )
            slug = m["json_path"].replace(".", "_").replace(" ", "_")
            out.append((m["json_path"], slug, value_type, aggs, m.get("percentiles", [])))
        return out

    buckets = []
    window_values: dict[str, list[Any]] = {}
    for b in bucket_starts:
        moment = (EPOCH + timedelta(seconds=b)).astimezone(zone)
        out: dict[str, Any] = {"timestamp": moment.isoformat()}
        for path, slug, value_type, aggs, percentiles in specs():
            values = []
            for row in rows_in[b]:
                v = _read(row.payload, path, value_type)
                if v is not NO_VALUE:
                    values.append(v)
            window_values.setdefault(slug, []).extend(values)
            if value_type == "categorical":
                for agg in aggs:
                    out[f"{agg}_{slug}"] = len(values)
                continue
            for agg in aggs:
                out[f"{agg}_{slug}"] = _aggregate(agg, values, in_window=False)
            for p in percentiles:
                out[f"{_pname(p)}_{slug}"] = _percentile(values, p) if values else None
        out["count"] = len(rows_in[b])
        buckets.append(out)

    window_stats: dict[str, dict[str, Any]] = {}
    for _path, slug, value_type, aggs, percentiles in specs():
        values = window_values.get(slug, [])
        stats: dict[str, Any] = {}
        for agg in aggs:
            if value_type == "categorical":
                stats[agg] = float(len(values)) if values else None
            else:
                stats[agg] = _aggregate(agg, values, in_window=True)
        for p in percentiles:
            stats[_pname(p)] = _percentile(values, p) if values else None
        window_stats[slug] = stats
    return {
        "start": start,
        "end": end,
        "granularity": g,
        "timezone": tz_name,
        "buckets": buckets,
        "window_stats": window_stats,
    }
