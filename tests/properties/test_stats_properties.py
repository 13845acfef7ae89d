"""Properties of ``POST /feedback/stats`` (Hypothesis) against the reference fold."""

from __future__ import annotations

import json
import math
from contextlib import ExitStack
from datetime import datetime, timedelta
from typing import Any
from unittest.mock import patch

from hypothesis import given
from hypothesis import strategies as st

from refengine import Engine, ManualClock
from refengine.fast import stats as fast_stats
from refengine.fast.stats import RankSelector, percentiles
from refengine.models import FeedbackStatsRes
from refengine.rows import FeedbackRow
from refengine.semantics.exact import interpolate
from refengine.synthetic import synthetic_rows
from reference import reference_stats
from strategies import (
    BASE,
    PROJECT,
    STATS_ZONES,
    datasets,
    populate,
    quantile_levels,
    sorted_float_lists,
    stats_requests,
    stats_value_requests,
    stats_value_rows,
)

Dataset = list[tuple[datetime, dict[str, Any]]]


def _same(a: Any, b: Any) -> bool:
    """Equal, with NaN equal to NaN, the int/float kind of numbers compared too, and
    floats bit for bit (``-0.0`` is not ``0.0``)."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or repr(a) == repr(b)
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _answer(engine: Engine, req: dict[str, Any]) -> FeedbackStatsRes:
    return engine.feedback_stats(req)


@given(datasets(), stats_requests())
def test_agrees_with_the_reference_fold(dataset: Dataset, req: dict[str, Any]) -> None:
    engine = populate(dataset)
    res = _answer(engine, req)
    expected = reference_stats(engine, req)
    assert res.start == expected["start"]
    assert res.end == expected["end"]
    assert res.granularity == expected["granularity"]
    assert res.timezone == expected["timezone"]
    assert len(res.buckets) == len(expected["buckets"])
    for got, want in zip(res.buckets, expected["buckets"], strict=True):
        assert _same(got, want), (got, want)
    assert _same(res.window_stats, expected["window_stats"])


def _window_rows(engine: Engine, req: dict[str, Any]) -> int:
    start = datetime.fromisoformat(req["start"]).timestamp()
    end = datetime.fromisoformat(req["end"]).timestamp()
    start_ms, end_ms = math.floor(start) * 1000, math.floor(end) * 1000
    n = 0
    for row in engine.rows(req["project_id"]):
        if not start_ms <= row.created_at_ms < end_ms:
            continue
        if req.get("feedback_type") not in (None, row.feedback_type):
            continue
        trigger = req.get("trigger_ref")
        if trigger is not None and not (
            row.trigger_ref is not None
            and (
                row.trigger_ref.startswith(trigger[:-2])
                if trigger.endswith(":*")
                else row.trigger_ref == trigger
            )
        ):
            continue
        n += 1
    return n


@given(datasets(), stats_requests())
def test_bucket_counts_add_up_to_the_window(dataset: Dataset, req: dict[str, Any]) -> None:
    engine = populate(dataset)
    res = _answer(engine, req)
    if not req["metrics"]:
        assert res.buckets == []
        return
    assert sum(bucket["count"] for bucket in res.buckets) == _window_rows(engine, req)


@given(datasets(), stats_requests())
def test_window_count_is_the_sum_of_bucket_counts(dataset: Dataset, req: dict[str, Any]) -> None:
    for metric in req["metrics"]:
        aggs = metric.get("aggregations") or []
        if metric["value_type"] != "categorical" and "count" not in aggs:
            metric["aggregations"] = [*aggs, "count"]
    engine = populate(dataset)
    res = _answer(engine, req)
    if not req["metrics"]:
        assert res.window_stats is None
        return
    assert res.window_stats is not None
    for metric in req["metrics"]:
        slug = metric["json_path"].replace(".", "_").replace(" ", "_")
        if "count" not in (metric.get("aggregations") or ["count"]):
            continue
        total = sum(bucket[f"count_{slug}"] for bucket in res.buckets)
        window = res.window_stats[slug]["count"]
        assert window == (float(total) if total else None)


@given(datasets(), stats_requests())
def test_percentiles_lie_between_min_and_max(dataset: Dataset, req: dict[str, Any]) -> None:
    for metric in req["metrics"]:
        if metric["value_type"] != "categorical":
            metric["aggregations"] = ["min", "max"]
            metric.setdefault("percentiles", [])
    engine = populate(dataset)
    res = _answer(engine, req)
    for metric in req["metrics"]:
        if metric["value_type"] == "categorical":
            continue
        slug = metric["json_path"].replace(".", "_").replace(" ", "_")
        names = [f"p{int(p)}" if p == int(p) else f"p{p}" for p in metric["percentiles"]]
        assert res.window_stats is not None
        scopes = [
            (b[f"min_{slug}"], b[f"max_{slug}"], [b[f"{n}_{slug}"] for n in names])
            for b in res.buckets
        ]
        ws = res.window_stats[slug]
        scopes.append((ws["min"], ws["max"], [ws[n] for n in names]))
        for low, high, values in scopes:
            if low is None:
                assert high is None
                assert all(v is None for v in values)
                continue
            assert low <= high
            for v in values:
                assert v is not None
                assert low <= v <= high


@given(datasets(), stats_requests(), st.sampled_from(STATS_ZONES))
def test_time_zone_changes_only_the_rendering(
    dataset: Dataset, req: dict[str, Any], other_zone: str
) -> None:
    engine = populate(dataset)
    res = _answer(engine, req)
    moved = _answer(engine, {**req, "timezone": other_zone})
    assert moved.timezone == other_zone
    assert moved.granularity == res.granularity
    assert _same(moved.window_stats, res.window_stats)
    assert len(moved.buckets) == len(res.buckets)
    for a, b in zip(res.buckets, moved.buckets, strict=True):
        assert datetime.fromisoformat(a["timestamp"]) == datetime.fromisoformat(b["timestamp"])
        assert _same(
            {k: v for k, v in a.items() if k != "timestamp"},
            {k: v for k, v in b.items() if k != "timestamp"},
        )


# --- window percentiles without a merge ------------------------------------------------


def _bits(values: list[float | None]) -> list[str]:
    return [repr(v) for v in values]


def _always_selecting() -> Any:
    """Percentiles selected for two lists or more, down to one candidate a rank."""
    stack = ExitStack()
    stack.enter_context(patch.object(fast_stats, "SORT_RATIO", 0))
    stack.enter_context(patch.object(fast_stats, "GATHER_MIN", 1))
    stack.enter_context(patch.object(fast_stats, "GATHER_PER_PIECE", 0))
    return stack


@given(sorted_float_lists, st.data(), st.booleans())
def test_a_selected_rank_is_the_stable_sorted_union(
    lists: list[list[float]], data: st.DataObject, narrow: bool
) -> None:
    union = sorted(v for values in lists for v in values)  # stable: lists in order
    if not union:
        return
    lists = [values for values in lists if values]
    with _always_selecting() if narrow else ExitStack():
        selector = RankSelector([*lists], len(union))
    ranks = data.draw(st.lists(st.integers(0, len(union) - 1), min_size=1, max_size=4))
    # the same bits: of equal zeros, the one at that rank in store order
    assert _bits([selector(rank) for rank in ranks]) == _bits([union[rank] for rank in ranks])


@given(sorted_float_lists, quantile_levels, st.booleans())
def test_percentiles_agree_with_a_full_sort(
    lists: list[list[float]], levels: list[float], select: bool
) -> None:
    union = sorted(v for values in lists for v in values)
    expected = [interpolate(union, level) if union else None for level in levels]
    with _always_selecting() if select else ExitStack():
        got = percentiles([*lists], len(union), levels)
    assert _bits(got) == _bits(expected)


def _agrees_bit_for_bit(engine: Engine, req: dict[str, Any]) -> None:
    got = engine.feedback_stats(req)
    expected = reference_stats(engine, req)
    assert json.dumps(got.buckets) == json.dumps(expected["buckets"])
    assert json.dumps(got.window_stats) == json.dumps(expected["window_stats"])


@given(
    stats_value_rows(),
    stats_value_rows(max_size=20),
    st.lists(stats_value_requests(), min_size=1, max_size=3),
    st.booleans(),
)
def test_kept_hours_and_runs_agree_with_the_reference_through_writes(
    first: list[FeedbackRow], later: list[FeedbackRow], reqs: list[dict[str, Any]], purge: bool
) -> None:
    # blocks and runs made by the first queries, then rows added anywhere in the
    # five hours (before the end too) and, maybe, one id's rows removed
    engine = Engine(clock=ManualClock("1970-01-02T00:00:00Z"))
    engine.insert_rows(first)
    for req in reqs:
        _agrees_bit_for_bit(engine, req)
    engine.insert_rows(later)
    if purge and first:
        expr = {"$eq": [{"$getField": "id"}, {"$literal": first[len(first) // 2].id}]}
        engine.feedback_purge({"project_id": "e/p", "query": {"$expr": expr}})
    engine.check_invariants()
    for req in reversed(reqs):
        _agrees_bit_for_bit(engine, req)
    engine.check_invariants()


@given(stats_value_rows(), stats_value_requests())
def test_selected_percentiles_agree_with_the_reference(
    rows: list[FeedbackRow], req: dict[str, Any]
) -> None:
    engine = Engine(clock=ManualClock("1970-01-02T00:00:00Z"))
    engine.insert_rows(rows)
    with _always_selecting():
        _agrees_bit_for_bit(engine, req)
        _agrees_bit_for_bit(engine, req)  # from the kept runs


def test_many_rows_in_few_buckets_agree_with_the_reference_fold() -> None:
    # two large buckets: the window percentiles of output.passed (2 levels) are
    # selected (2² · 2 · 667 = 5,336 <= its ~7,000 values), those of output.score
    # (6 levels: 16,008) merged by a sort
    rows = synthetic_rows(PROJECT, 8000, BASE, timedelta(hours=2), seed=3)
    engine = Engine(clock=ManualClock(BASE))
    engine.insert_rows(rows)
    req = {
        "project_id": PROJECT,
        "start": BASE.isoformat(),
        "end": (BASE + timedelta(hours=2)).isoformat(),
        "granularity": 3600,
        "metrics": [
            {"json_path": "output.score", "percentiles": [0, 1, 50, 95, 99.9, 100]},
            {"json_path": "output.passed", "value_type": "boolean", "percentiles": [10, 90]},
        ],
    }
    res = engine.feedback_stats(req)
    expected = reference_stats(engine, req)
    assert res.buckets == expected["buckets"]
    assert res.window_stats == expected["window_stats"]
