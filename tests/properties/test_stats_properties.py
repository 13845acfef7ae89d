"""Properties of ``POST /feedback/stats`` (Hypothesis) against the reference fold."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from refengine import Engine, ManualClock
from refengine.fast.stats import _window_percentiles, select_rank, selected_percentiles
from refengine.models import FeedbackStatsRes
from refengine.semantics.exact import interpolate
from refengine.synthetic import synthetic_rows
from reference import reference_stats
from strategies import BASE, PROJECT, STATS_ZONES, datasets, populate, stats_requests

Dataset = list[tuple[datetime, dict[str, Any]]]


def _same(a: Any, b: Any) -> bool:
    """Equal, with NaN equal to NaN and the int/float kind of numbers compared too."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
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

sorted_lists = st.lists(
    st.lists(
        st.one_of(
            st.sampled_from([0.0, -0.0, 1.0, 0.5, -2.0]),
            st.floats(allow_nan=False, allow_infinity=False),
        ),
        max_size=12,
    ).map(sorted),
    min_size=1,
    max_size=6,
)


@given(sorted_lists, st.data())
def test_select_rank_is_the_sorted_union(lists: list[list[float]], data: st.DataObject) -> None:
    union = sorted(v for values in lists for v in values)
    if not union:
        return
    rank = data.draw(st.integers(0, len(union) - 1))
    assert select_rank(lists, rank) == union[rank]


@given(sorted_lists, st.lists(st.sampled_from([0.0, 0.05, 0.5, 0.9, 0.999, 1.0]), max_size=4))
def test_selected_percentiles_agree_with_a_full_sort(
    lists: list[list[float]], levels: list[float]
) -> None:
    union = sorted(v for values in lists for v in values)
    if not union:
        return
    assert selected_percentiles(lists, len(union), levels) == [
        interpolate(union, level) for level in levels
    ]


@given(sorted_lists, st.lists(st.sampled_from([0.0, 0.05, 0.5, 0.9, 0.999, 1.0]), max_size=4))
def test_window_percentiles_agree_with_a_full_sort(
    lists: list[list[float]], levels: list[float]
) -> None:
    union = sorted(v for values in lists for v in values)
    expected = [interpolate(union, level) if union else None for level in levels]
    got = _window_percentiles(lists, len(union), levels)
    assert got == expected


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
