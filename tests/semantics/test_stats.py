"""POST /feedback/stats: one test per rule, with exact expected values."""

from __future__ import annotations

import functools
import operator
from datetime import datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from refengine import Engine, InvalidRequest, ManualClock
from refengine.semantics.exact import interpolate, percentile_level
from refengine.semantics.stats import percentile_name
from refengine.semantics.stats_time import auto_granularity, resolve_granularity

P = "acme/bot"
NOW = "2024-03-10T12:00:00Z"
MON = "weave:///acme/bot/object/mon_1:v1"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def make_engine(*rows: tuple[str, Any], project: str = P, **fields: Any) -> Engine:
    """An engine holding one ``custom`` row per (instant, payload)."""
    engine = Engine(clock=ManualClock(NOW))
    add(engine, *rows, project=project, **fields)
    return engine


def add(engine: Engine, *rows: tuple[str, Any], project: str = P, **fields: Any) -> None:
    clock = engine.clock
    assert isinstance(clock, ManualClock)
    before = clock()
    for moment, payload in rows:
        clock.set(moment)
        engine.feedback_create(
            {
                "project_id": project,
                "weave_ref": "weave:///acme/bot/call/c1",
                "feedback_type": "custom",
                "payload": payload,
                **fields,
            }
        )
    clock.set(before)


def score(value: Any) -> dict[str, Any]:
    return {"output": {"score": value}}


def stats(engine: Engine, **req: Any) -> Any:
    return engine.feedback_stats({"project_id": P, **req})


# --- percentiles ----------------------------------------------------------------------


def test_p90_of_the_worked_example_is_37() -> None:
    assert interpolate([10.0, 20.0, 30.0, 40.0], percentile_level(90)) == 37.0
    engine = make_engine(
        *[(f"2024-03-10T10:0{i}:00Z", score(v)) for i, v in enumerate([40, 10, 30, 20])]
    )
    res = stats(
        engine,
        start="2024-03-10T10:00:00Z",
        end="2024-03-10T11:00:00Z",
        granularity=3600,
        metrics=[{"json_path": "output.score", "aggregations": ["count"], "percentiles": [90]}],
    )
    assert res.buckets == [
        {
            "timestamp": "2024-03-10T10:00:00+00:00",
            "count_output_score": 4,
            "p90_output_score": 37.0,
            "count": 4,
        }
    ]
    assert res.window_stats == {"output_score": {"count": 4.0, "p90": 37.0}}


@pytest.mark.parametrize(
    ("p", "expected"),
    [
        (0, 10.0),
        (100, 40.0),
        (50, 25.0),
        (25, 17.5),
        (5, 11.5),
        (99.9, 39.97),
        (33.3333333, 19.99999),
    ],
)
def test_percentile_interpolation(p: float, expected: float) -> None:
    assert interpolate([10.0, 20.0, 30.0, 40.0], percentile_level(p)) == pytest.approx(
        expected, abs=1e-9
    )


def test_percentile_level_is_rounded_to_six_decimals() -> None:
    assert percentile_level(33.3333333) == 0.333333
    assert percentile_level(12.34567891) == 0.123457
    assert percentile_level(95) == 0.95
    # the rounded level decides the answer: 0.333333 · 3 = 0.999999 → 10 + 9.99999
    assert interpolate([10.0, 20.0, 30.0, 40.0], percentile_level(33.3333333)) == pytest.approx(
        19.99999
    )


def test_percentile_of_one_value_and_of_equal_values() -> None:
    assert interpolate([7.0], 0.5) == 7.0
    assert interpolate([0.1, 0.1, 0.1], 0.7) == 0.1


def test_percentile_never_overflows() -> None:
    big = 1.7e308
    assert interpolate([-big, big], 0.5) == 0.0
    assert interpolate([-big, big], 1.0) == big


@pytest.mark.parametrize(
    ("p", "name"),
    [(95.0, "p95"), (5.0, "p5"), (0.0, "p0"), (100.0, "p100"), (99.9, "p99.9"), (12.5, "p12.5")],
)
def test_percentile_key_names(p: float, name: str) -> None:
    assert percentile_name(p) == name


# --- extraction through the endpoint ---------------------------------------------------


def test_only_json_numbers_count_for_a_numeric_metric() -> None:
    engine = make_engine(
        ("2024-03-10T10:00:00Z", score(0.25)),
        ("2024-03-10T10:00:01Z", score("0.5")),  # a string: no value
        ("2024-03-10T10:00:02Z", score(True)),  # a boolean: no value
        ("2024-03-10T10:00:03Z", {"output": [{"score": 9}]}),  # inside an array: no value
        ("2024-03-10T10:00:04Z", score(3)),
        ("2024-03-10T10:00:05Z", score(None)),
        ("2024-03-10T10:00:06Z", {"other": 1}),
    )
    res = stats(
        engine,
        start="2024-03-10T10:00:00Z",
        end="2024-03-10T10:05:00Z",
        metrics=[{"json_path": "output.score", "aggregations": ["count", "sum", "min", "max"]}],
    )
    (bucket,) = res.buckets
    assert bucket["count_output_score"] == 2
    assert bucket["sum_output_score"] == 3.25
    assert (bucket["min_output_score"], bucket["max_output_score"]) == (0.25, 3.0)
    assert bucket["count"] == 7


def test_an_all_digit_path_part_is_a_key() -> None:
    engine = make_engine(
        ("2024-03-10T10:00:00Z", {"output": {"0": 5}}),
        ("2024-03-10T10:00:01Z", {"output": [6, 7]}),
    )
    res = stats(
        engine,
        start="2024-03-10T10:00:00Z",
        end="2024-03-10T10:05:00Z",
        metrics=[{"json_path": "output.0", "aggregations": ["sum", "count"]}],
    )
    assert res.buckets[0]["sum_output_0"] == 5.0
    assert res.buckets[0]["count_output_0"] == 1


def test_categorical_counts_every_filtered_row() -> None:
    engine = make_engine(
        ("2024-03-10T10:00:00Z", {"output": {"label": "cat"}}),
        ("2024-03-10T10:00:01Z", {"output": {"label": None}}),
        ("2024-03-10T10:00:02Z", {"output": {"label": 3}}),
        ("2024-03-10T10:00:03Z", {}),
    )
    res = stats(
        engine,
        start="2024-03-10T10:00:00Z",
        end="2024-03-10T10:05:00Z",
        metrics=[{"json_path": "output.label", "value_type": "categorical"}],
    )
    assert res.buckets == [
        {"timestamp": "2024-03-10T10:00:00+00:00", "count_output_label": 4, "count": 4}
    ]
    assert res.window_stats == {"output_label": {"count": 4.0}}


def test_boolean_metric_gets_every_aggregation_over_zero_and_one() -> None:
    engine = make_engine(
        ("2024-03-10T10:00:00Z", {"ok": True}),
        ("2024-03-10T10:00:01Z", {"ok": False}),
        ("2024-03-10T10:00:02Z", {"ok": True}),
        ("2024-03-10T10:00:03Z", {"ok": "true"}),  # not a boolean
        ("2024-03-10T10:00:04Z", {"ok": 1}),  # not a boolean
    )
    aggs = ["count_true", "count_false", "sum", "avg", "min", "max", "count"]
    res = stats(
        engine,
        start="2024-03-10T10:00:00Z",
        end="2024-03-10T10:05:00Z",
        metrics=[
            {"json_path": "ok", "value_type": "boolean", "aggregations": aggs, "percentiles": [50]}
        ],
    )
    assert res.buckets == [
        {
            "timestamp": "2024-03-10T10:00:00+00:00",
            "count_true_ok": 2,
            "count_false_ok": 1,
            "sum_ok": 2.0,
            "avg_ok": 2 / 3,
            "min_ok": 0.0,
            "max_ok": 1.0,
            "count_ok": 3,
            "p50_ok": 1.0,
            "count": 5,
        }
    ]
    assert res.window_stats == {
        "ok": {
            "count_true": 2.0,
            "count_false": 1.0,
            "sum": 2.0,
            "avg": 2 / 3,
            "min": 0.0,
            "max": 1.0,
            "count": 3.0,
            "p50": 1.0,
        }
    }


def test_boolean_defaults_and_numeric_count_true() -> None:
    engine = make_engine(
        ("2024-03-10T10:00:00Z", {"x": True, "n": 1}),
        ("2024-03-10T10:00:01Z", {"x": False, "n": 0.0}),
        ("2024-03-10T10:00:02Z", {"x": False, "n": 0.5}),
    )
    res = stats(
        engine,
        start="2024-03-10T10:00:00Z",
        end="2024-03-10T10:05:00Z",
        metrics=[
            {"json_path": "x", "value_type": "boolean"},
            {"json_path": "n", "aggregations": ["count_true", "count_false"]},
        ],
    )
    assert res.buckets[0] == {
        "timestamp": "2024-03-10T10:00:00+00:00",
        "count_true_x": 1,
        "count_false_x": 2,
        "count_true_n": 1,
        "count_false_n": 1,
        "count": 3,
    }


# --- empty buckets and no values --------------------------------------------------------

ALL_NUMERIC = ["sum", "avg", "min", "max", "count", "count_true", "count_false"]


def test_bucket_with_rows_but_no_values() -> None:
    engine = make_engine(("2024-03-10T10:00:00Z", score("0.5")), ("2024-03-10T10:01:00Z", {}))
    res = stats(
        engine,
        start="2024-03-10T10:00:00Z",
        end="2024-03-10T10:05:00Z",
        metrics=[{"json_path": "output.score", "aggregations": ALL_NUMERIC, "percentiles": [50]}],
    )
    assert res.buckets == [
        {
            "timestamp": "2024-03-10T10:00:00+00:00",
            "sum_output_score": 0.0,
            "avg_output_score": 0.0,
            "min_output_score": None,
            "max_output_score": None,
            "count_output_score": 0,
            "count_true_output_score": 0,
            "count_false_output_score": 0,
            "p50_output_score": None,
            "count": 2,
        }
    ]
    assert res.window_stats == {
        "output_score": {
            "sum": None,
            "avg": None,
            "min": None,
            "max": None,
            "count": None,
            "count_true": 0.0,
            "count_false": 0.0,
            "p50": None,
        }
    }


def test_every_bucket_is_emitted_empty_ones_too() -> None:
    engine = make_engine(("2024-03-10T10:20:00Z", score(1)), ("2024-03-10T12:40:00Z", score(3)))
    res = stats(
        engine,
        start="2024-03-10T10:20:00Z",
        end="2024-03-10T13:00:00Z",
        granularity=3600,
        metrics=[{"json_path": "output.score", "aggregations": ["avg", "min", "sum", "count"]}],
    )
    # the first bucket starts before `start`, at the epoch-aligned hour
    assert [b["timestamp"] for b in res.buckets] == [
        "2024-03-10T10:00:00+00:00",
        "2024-03-10T11:00:00+00:00",
        "2024-03-10T12:00:00+00:00",
    ]
    assert res.buckets[1] == {
        "timestamp": "2024-03-10T11:00:00+00:00",
        "avg_output_score": 0.0,
        "min_output_score": None,
        "sum_output_score": 0.0,
        "count_output_score": 0,
        "count": 0,
    }
    assert [b["count"] for b in res.buckets] == [1, 0, 1]
    assert res.window_stats == {"output_score": {"avg": 2.0, "min": 1.0, "sum": 4.0, "count": 2.0}}


def test_value_types_counts_int_in_buckets_floats_in_window() -> None:
    engine = make_engine(("2024-03-10T10:00:00Z", score(2)))
    res = stats(
        engine,
        start="2024-03-10T10:00:00Z",
        end="2024-03-10T10:05:00Z",
        metrics=[{"json_path": "output.score", "aggregations": ALL_NUMERIC, "percentiles": [50]}],
    )
    bucket = res.buckets[0]
    for agg in ("count", "count_true", "count_false"):
        assert type(bucket[f"{agg}_output_score"]) is int
    for agg in ("sum", "avg", "min", "max", "p50"):
        assert type(bucket[f"{agg}_output_score"]) is float
    assert type(bucket["count"]) is int
    assert res.window_stats is not None
    assert all(type(v) is float for v in res.window_stats["output_score"].values())


def test_sums_are_correctly_rounded() -> None:
    engine = make_engine(*[(f"2024-03-10T10:00:{i:02d}Z", score(0.1)) for i in range(10)])
    res = stats(
        engine,
        start="2024-03-10T10:00:00Z",
        end="2024-03-10T10:05:00Z",
        metrics=[{"json_path": "output.score", "aggregations": ["sum", "avg"]}],
    )
    # A left-to-right float sum would be off (built-in sum() compensates since 3.12).
    assert functools.reduce(operator.add, [0.1] * 10, 0.0) != 1.0
    assert res.buckets[0]["sum_output_score"] == 1.0
    assert res.buckets[0]["avg_output_score"] == 0.1
    assert res.window_stats == {"output_score": {"sum": 1.0, "avg": 0.1}}


def test_sums_survive_intermediate_overflow() -> None:
    big = 1.7e308
    engine = make_engine(
        ("2024-03-10T10:00:00Z", score(big)),
        ("2024-03-10T10:00:01Z", score(big)),
        ("2024-03-10T10:10:00Z", score(-big)),
    )
    res = stats(
        engine,
        start="2024-03-10T10:00:00Z",
        end="2024-03-10T10:15:00Z",
        granularity=300,
        metrics=[{"json_path": "output.score", "aggregations": ["sum", "avg"]}],
    )
    first = res.buckets[0]
    assert first["sum_output_score"] == float("inf")  # the exact sum is out of range
    assert first["avg_output_score"] == big  # the exact mean is not
    assert res.window_stats == {"output_score": {"sum": big, "avg": big / 3}}


def test_huge_integers_are_no_value() -> None:
    engine = make_engine(
        ("2024-03-10T10:00:00Z", score(2**64 - 1)),
        ("2024-03-10T10:00:01Z", score(2**64)),
        ("2024-03-10T10:00:02Z", score(-(2**63))),
        ("2024-03-10T10:00:03Z", score(-(2**63) - 1)),
    )
    res = stats(
        engine,
        start="2024-03-10T10:00:00Z",
        end="2024-03-10T10:05:00Z",
        metrics=[{"json_path": "output.score", "aggregations": ["count", "min", "max"]}],
    )
    assert res.buckets[0]["count_output_score"] == 2
    assert res.buckets[0]["min_output_score"] == -(2.0**63)
    assert res.buckets[0]["max_output_score"] == 2.0**64


# --- windows, truncation, start == end --------------------------------------------------


def test_start_and_end_are_truncated_to_whole_seconds() -> None:
    engine = make_engine(
        ("2024-03-10T09:59:59.999Z", score(1)),  # before S
        ("2024-03-10T10:00:00.200Z", score(2)),  # before start, but S <= created_at
        ("2024-03-10T10:04:59.999Z", score(4)),
        ("2024-03-10T10:05:00.500Z", score(8)),  # before end, but not before E
    )
    res = stats(
        engine,
        start="2024-03-10T10:00:00.700Z",
        end="2024-03-10T10:05:00.900Z",
        granularity=300,
        metrics=[{"json_path": "output.score", "aggregations": ["sum"]}],
    )
    assert res.buckets == [
        {"timestamp": "2024-03-10T10:00:00+00:00", "sum_output_score": 6.0, "count": 2}
    ]
    # the response keeps the resolved values, microseconds and all, in UTC
    assert res.start == at("2024-03-10T10:00:00.700+00:00")
    assert res.end == at("2024-03-10T10:05:00.900+00:00")


def test_response_start_end_are_utc() -> None:
    engine = make_engine()
    res = stats(
        engine,
        start="2024-03-10T12:00:00.123456+02:00",
        end="2024-03-10T12:30:00",  # naive: UTC
        metrics=[{"json_path": "x"}],
    )
    assert res.start.isoformat() == "2024-03-10T10:00:00.123456+00:00"
    assert res.end.isoformat() == "2024-03-10T12:30:00+00:00"


def test_start_equal_end_aligned_gives_no_bucket() -> None:
    engine = make_engine(("2024-03-10T10:00:00Z", score(1)))
    res = stats(
        engine,
        start="2024-03-10T10:00:00Z",
        end="2024-03-10T10:00:00Z",
        metrics=[{"json_path": "output.score"}],
    )
    assert res.granularity == 300
    assert res.buckets == []
    assert res.window_stats == {"output_score": {"avg": None, "min": None, "max": None}}


def test_start_equal_end_unaligned_gives_one_empty_bucket() -> None:
    engine = make_engine(("2024-03-10T10:01:00Z", score(1)))
    res = stats(
        engine,
        start="2024-03-10T10:01:00Z",
        end="2024-03-10T10:01:00Z",
        metrics=[{"json_path": "output.score"}],
    )
    assert res.buckets == [
        {
            "timestamp": "2024-03-10T10:00:00+00:00",
            "avg_output_score": 0.0,
            "min_output_score": None,
            "max_output_score": None,
            "count": 0,
        }
    ]


def test_end_defaults_to_the_engine_clock() -> None:
    engine = make_engine(("2024-03-10T11:59:59.999Z", score(1)), ("2024-03-10T11:00:00Z", score(3)))
    res = stats(engine, start="2024-03-10T11:00:00Z", metrics=[{"json_path": "output.score"}])
    assert res.end == at(NOW)
    assert res.granularity == 300
    assert len(res.buckets) == 12
    assert sum(b["count"] for b in res.buckets) == 2
    # a clock more than 31 days after start is the model's range error
    with pytest.raises(ValidationError, match="Feedback request date range cannot exceed 31 days"):
        stats(engine, start="2024-01-01T00:00:00Z", metrics=[{"json_path": "x"}])


# --- time zones ---------------------------------------------------------------------------


def test_half_hour_zone_renders_offset_but_buckets_stay_on_the_epoch_grid() -> None:
    engine = make_engine(("2024-03-10T10:15:00Z", score(1)), ("2024-03-10T10:45:00Z", score(2)))
    res = stats(
        engine,
        start="2024-03-10T10:00:00Z",
        end="2024-03-10T12:00:00Z",
        granularity=3600,
        timezone="Asia/Kolkata",
        metrics=[{"json_path": "output.score", "aggregations": ["sum"]}],
    )
    assert res.timezone == "Asia/Kolkata"
    assert res.buckets == [
        {"timestamp": "2024-03-10T15:30:00+05:30", "sum_output_score": 3.0, "count": 2},
        {"timestamp": "2024-03-10T16:30:00+05:30", "sum_output_score": 0.0, "count": 0},
    ]


def test_dst_day_renders_the_offset_at_each_instant() -> None:
    # New York springs forward at 2024-03-10 07:00 UTC (02:00 EST → 03:00 EDT)
    engine = make_engine(("2024-03-10T06:30:00Z", score(1)), ("2024-03-10T07:30:00Z", score(2)))
    res = stats(
        engine,
        start="2024-03-10T05:00:00Z",
        end="2024-03-10T09:00:00Z",
        granularity=3600,
        timezone="America/New_York",
        metrics=[{"json_path": "output.score", "aggregations": ["sum"]}],
    )
    assert [(b["timestamp"], b["sum_output_score"]) for b in res.buckets] == [
        ("2024-03-10T00:00:00-05:00", 0.0),
        ("2024-03-10T01:00:00-05:00", 1.0),
        ("2024-03-10T03:00:00-04:00", 2.0),
        ("2024-03-10T04:00:00-04:00", 0.0),
    ]


def test_day_buckets_stay_utc_aligned_in_any_zone() -> None:
    engine = make_engine(("2024-03-08T23:30:00Z", score(1)))
    res = stats(
        engine,
        start="2024-03-08T12:00:00Z",
        end="2024-03-09T12:00:00Z",
        granularity=86400,
        timezone="America/New_York",
        metrics=[{"json_path": "output.score", "aggregations": ["count"]}],
    )
    assert [b["timestamp"] for b in res.buckets] == [
        "2024-03-07T19:00:00-05:00",
        "2024-03-08T19:00:00-05:00",
    ]
    assert [b["count"] for b in res.buckets] == [1, 0]


def test_empty_timezone_means_utc_and_is_echoed() -> None:
    engine = make_engine()
    res = stats(
        engine,
        start="2024-03-10T10:00:00Z",
        end="2024-03-10T10:05:00Z",
        timezone="",
        metrics=[{"json_path": "x"}],
    )
    assert res.timezone == ""
    assert [b["timestamp"] for b in res.buckets] == ["2024-03-10T10:00:00+00:00"]


# --- granularity --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("span", "expected"),
    [
        (timedelta(0), 300),
        (timedelta(hours=2), 300),
        (timedelta(hours=2, microseconds=1), 3600),
        (timedelta(seconds=7200.5), 3600),
        (timedelta(hours=12), 3600),
        (timedelta(hours=12, seconds=1), 21600),
        (timedelta(days=3), 21600),
        (timedelta(days=3, seconds=1), 43200),
        (timedelta(days=14), 43200),
        (timedelta(days=14, seconds=1), 86400),
        (timedelta(days=31), 86400),
    ],
)
def test_auto_granularity(span: timedelta, expected: int) -> None:
    assert auto_granularity(span) == expected
    assert resolve_granularity(None, span) == expected
    assert resolve_granularity(0, span) == expected


def test_the_ten_thousand_bucket_cap() -> None:
    month = timedelta(days=31)
    assert resolve_granularity(1, month) == 268  # int(2_678_400 / 10_000) + 1
    assert resolve_granularity(268, month) == 268
    assert resolve_granularity(300, month) == 300
    assert resolve_granularity(1, timedelta(seconds=10_000)) == 1  # exactly 10,000: no cap
    assert resolve_granularity(1, timedelta(seconds=10_001)) == 2
    engine = make_engine(("2024-02-01T00:00:00Z", score(1)))
    res = stats(
        engine,
        start="2024-02-01T00:00:00Z",
        end="2024-03-03T00:00:00Z",
        granularity=1,
        metrics=[{"json_path": "output.score", "aggregations": ["count"]}],
    )
    assert res.granularity == 268
    assert len(res.buckets) == 9995  # A = floor(S/268)·268, up to E
    assert sum(b["count"] for b in res.buckets) == 1


def test_explicit_granularity_is_used() -> None:
    engine = make_engine(("2024-03-10T10:00:07Z", score(1)))
    res = stats(
        engine,
        start="2024-03-10T10:00:00Z",
        end="2024-03-10T10:00:30Z",
        granularity=7,
        metrics=[{"json_path": "output.score", "aggregations": ["count"]}],
    )
    # epoch-aligned: 10:00:00 (1710064800) is 3 s past a multiple of 7
    assert res.granularity == 7
    assert [b["timestamp"][14:19] for b in res.buckets] == [
        "59:57",
        "00:04",
        "00:11",
        "00:18",
        "00:25",
    ]
    assert [b["count"] for b in res.buckets] == [0, 1, 0, 0, 0]


# --- filters and isolation ------------------------------------------------------------------


def test_feedback_type_is_exact() -> None:
    engine = make_engine(("2024-03-10T10:00:00Z", score(1)))
    add(engine, ("2024-03-10T10:00:01Z", score(2)), feedback_type="custom.score")
    base = {"start": "2024-03-10T10:00:00Z", "end": "2024-03-10T10:05:00Z"}
    metrics = [{"json_path": "output.score", "aggregations": ["sum"]}]
    assert (
        stats(engine, **base, metrics=metrics, feedback_type="custom").buckets[0][
            "sum_output_score"
        ]
        == 1.0
    )
    assert (
        stats(engine, **base, metrics=metrics, feedback_type="custom.score").buckets[0]["count"]
        == 1
    )
    assert stats(engine, **base, metrics=metrics, feedback_type="cust").buckets[0]["count"] == 0


def test_trigger_ref_exact_and_all_versions() -> None:
    engine = Engine(clock=ManualClock(NOW))
    for i, (trigger, value) in enumerate(
        [
            ("weave:///acme/bot/object/mon_1:v1", 1),
            ("weave:///acme/bot/object/mon_1:v2", 2),
            ("weave:///acme/bot/object/mon_12:v1", 4),
            (None, 8),
        ]
    ):
        req: dict[str, Any] = {
            "project_id": P,
            "weave_ref": "weave:///acme/bot/call/c1",
            "feedback_type": "wandb.agent_monitor",
            "runnable_ref": "weave:///acme/bot/object/judge:v1",
            "call_ref": "weave:///acme/bot/call/c2",
            "trigger_ref": trigger,
            "payload": score(value),
        }
        if trigger is None:
            req = {**req, "feedback_type": "custom", "runnable_ref": None, "call_ref": None}
        assert isinstance(engine.clock, ManualClock)
        engine.clock.set(f"2024-03-10T10:00:0{i}Z")
        engine.feedback_create(req)

    def total(trigger_ref: str) -> Any:
        res = stats(
            engine,
            start="2024-03-10T10:00:00Z",
            end="2024-03-10T10:05:00Z",
            trigger_ref=trigger_ref,
            metrics=[{"json_path": "output.score", "aggregations": ["sum"]}],
        )
        return res.buckets[0]["sum_output_score"]

    assert total("weave:///acme/bot/object/mon_1:v1") == 1.0
    # a prefix of the value without ':*': mon_12 matches too
    assert total("weave:///acme/bot/object/mon_1:*") == 7.0
    assert total("weave:///acme/bot/object/mon_1:") == 0.0  # no ':*': exact
    assert total("weave:///acme/bot/object/mon_1*") == 0.0
    assert total(":*") == 7.0  # empty prefix: every row that has a trigger_ref
    assert total("") == 0.0


def test_projects_are_isolated() -> None:
    engine = make_engine(("2024-03-10T10:00:00Z", score(1)))
    add(engine, ("2024-03-10T10:00:00Z", score(100)), project="acme/other")
    res = stats(
        engine,
        start="2024-03-10T10:00:00Z",
        end="2024-03-10T10:05:00Z",
        metrics=[{"json_path": "output.score", "aggregations": ["sum"]}],
    )
    assert res.buckets[0]["sum_output_score"] == 1.0
    assert res.buckets[0]["count"] == 1
    res = stats(
        engine,
        project_id="nobody/here",
        start="2024-03-10T10:00:00Z",
        end="2024-03-10T10:05:00Z",
        metrics=[{"json_path": "output.score", "aggregations": ["sum"]}],
    )
    assert res.buckets[0]["count"] == 0


# --- response shape ---------------------------------------------------------------------------


def test_keys_and_their_order() -> None:
    engine = make_engine(("2024-03-10T10:00:00Z", {"a b": {"c": 1}, "ok": True}))
    res = stats(
        engine,
        start="2024-03-10T10:00:00Z",
        end="2024-03-10T10:05:00Z",
        metrics=[
            {"json_path": "a b.c", "aggregations": ["max", "sum"], "percentiles": [99.9, 5, 50.0]},
            {"json_path": "ok", "value_type": "boolean"},
        ],
    )
    assert list(res.buckets[0]) == [
        "timestamp",
        "max_a_b_c",
        "sum_a_b_c",
        "p99.9_a_b_c",
        "p5_a_b_c",
        "p50_a_b_c",
        "count_true_ok",
        "count_false_ok",
        "count",
    ]
    assert res.window_stats is not None
    assert list(res.window_stats) == ["a_b_c", "ok"]
    assert list(res.window_stats["a_b_c"]) == ["max", "sum", "p99.9", "p5", "p50"]
    assert list(res.window_stats["ok"]) == ["count_true", "count_false"]


def test_no_metrics_short_cut_runs_no_check() -> None:
    engine = make_engine(("2024-03-10T10:00:00Z", score(1)))
    res = stats(
        engine,
        start="2024-03-10T10:00:00Z",
        end="2024-03-10T20:00:00Z",
        granularity=-5,
        timezone="Mars/Olympus",
    )
    assert res.buckets == []
    assert res.granularity == 3600
    assert res.window_stats is None
    assert res.timezone == "Mars/Olympus"


# --- checks after the model (400) --------------------------------------------------------------

OK_METRIC = {"json_path": "output.score"}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"metrics": [{"json_path": ""}]}, "json_path cannot be empty"),
        ({"metrics": [{"json_path": "   "}]}, "json_path cannot be empty"),
        (
            {"metrics": [{"json_path": "output-score"}]},
            "json_path may only contain [a-zA-Z0-9_. ], got: 'output-score'",
        ),
        (
            {"metrics": [{"json_path": "output.score\n"}]},
            "json_path may only contain [a-zA-Z0-9_. ], got: 'output.score\\n'",
        ),
        (
            {"metrics": [{"json_path": "x", "percentiles": [50, 101]}]},
            "Percentile must be between 0 and 100, got 101.0",
        ),
        (
            {"metrics": [{"json_path": "x", "percentiles": [-0.5]}]},
            "Percentile must be between 0 and 100, got -0.5",
        ),
        (
            {"timezone": "Mars/Olympus", "metrics": [OK_METRIC]},
            "Unknown timezone 'Mars/Olympus': expected an IANA time zone name",
        ),
        (
            {"timezone": "../etc/passwd", "metrics": [OK_METRIC]},
            "Unknown timezone '../etc/passwd': expected an IANA time zone name",
        ),
        (
            {"granularity": -1, "metrics": [OK_METRIC]},
            "granularity must be >= 0 (0 or null picks it from the range), got -1",
        ),
        (
            {"metrics": [{"json_path": "a.b"}, {"json_path": "a_b", "value_type": "boolean"}]},
            "metrics 'a.b' and 'a_b' share the slug 'a_b'; each metric needs its own",
        ),
        (
            {"metrics": [OK_METRIC, OK_METRIC]},
            "metrics 'output.score' and 'output.score' share the slug 'output_score'; "
            "each metric needs its own",
        ),
        (
            {
                "metrics": [
                    {
                        "json_path": "l",
                        "value_type": "categorical",
                        "aggregations": ["count", "max"],
                    }
                ]
            },
            "categorical metric 'l' supports only the 'count' aggregation, got 'max'",
        ),
        (
            {"metrics": [{"json_path": "l", "value_type": "categorical", "percentiles": [50]}]},
            "categorical metric 'l' supports only the 'count' aggregation, got percentile 50.0",
        ),
        (
            {
                "metrics": [
                    {"json_path": "x", "aggregations": ["count_true"]},
                    {"json_path": "true_x", "aggregations": ["count"]},
                ]
            },
            "metrics 'x' and 'true_x' both produce the bucket key 'count_true_x'; rename one path",
        ),
        (
            {
                "start": "1960-01-01T00:00:00Z",
                "end": "1960-01-01T01:00:00Z",
                "granularity": 10**12,
                "metrics": [OK_METRIC],
            },
            "granularity 1000000000000 is too large: "
            "the first bucket would start before 0001-01-01",
        ),
    ],
)
def test_post_model_checks(changes: dict[str, Any], message: str) -> None:
    engine = make_engine()
    req = {"start": "2024-03-10T10:00:00Z", "end": "2024-03-10T11:00:00Z", **changes}
    with pytest.raises(InvalidRequest) as info:
        stats(engine, **req)
    assert info.value.reason == message
    assert str(info.value) == message


def test_first_failing_check_wins() -> None:
    engine = make_engine()
    req = {
        "start": "2024-03-10T10:00:00Z",
        "end": "2024-03-10T11:00:00Z",
        "timezone": "Nowhere",
        "granularity": -1,
        "metrics": [OK_METRIC, {"json_path": "bad-path", "percentiles": [200]}, {"json_path": ""}],
    }
    with pytest.raises(InvalidRequest, match=r"^json_path may only contain"):
        stats(engine, **req)
    req["metrics"] = [{"json_path": "x", "percentiles": [200]}, {"json_path": "bad-path"}]
    with pytest.raises(InvalidRequest, match=r"^Percentile must be"):
        stats(engine, **req)
    req["metrics"] = [OK_METRIC]
    with pytest.raises(InvalidRequest, match=r"^Unknown timezone"):
        stats(engine, **req)


def test_categorical_default_and_explicit_count_pass() -> None:
    engine = make_engine()
    for metric in (
        {"json_path": "l", "value_type": "categorical"},
        {"json_path": "l", "value_type": "categorical", "aggregations": ["count"]},
    ):
        res = stats(
            engine, start="2024-03-10T10:00:00Z", end="2024-03-10T10:05:00Z", metrics=[metric]
        )
        assert res.window_stats == {"l": {"count": None}}


# --- request-model checks (422) -------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"end": "2024-03-10T09:59:59.999999Z"}, "Feedback request end must be after start"),
        (
            {"end": "2024-04-10T10:00:00.000001Z"},
            "Feedback request date range cannot exceed 31 days",
        ),
        ({"colour": "red"}, "Extra inputs are not permitted"),
        ({"metrics": [{"json_path": "x", "value_type": "text"}]}, "Input should be 'numeric'"),
        ({"metrics": [{"json_path": "x", "aggregations": ["median"]}]}, "Input should be 'sum'"),
    ],
)
def test_model_checks_are_validation_errors(changes: dict[str, Any], message: str) -> None:
    engine = make_engine()
    with pytest.raises(ValidationError) as info:
        stats(engine, start="2024-03-10T10:00:00Z", **changes)
    assert message in str(info.value)


def test_exactly_31_days_and_equal_bounds_are_allowed() -> None:
    engine = make_engine()
    res = stats(
        engine, start="2024-03-10T10:00:00Z", end="2024-04-10T10:00:00Z", metrics=[OK_METRIC]
    )
    assert res.granularity == 86400
    assert len(res.buckets) == 32  # aligned to UTC midnight: the first bucket starts at 00:00
    res = stats(engine, start="2024-03-10T10:00:00Z", end="2024-03-10T10:00:00Z")
    assert res.buckets == []


# --- limits ------------------------------------------------------------------------------


def limit_reason(**req: Any) -> str:
    engine = make_engine(("2024-03-10T10:00:00Z", score(1)))
    with pytest.raises(InvalidRequest) as info:
        stats(engine, start="2024-03-10T10:00:00Z", **req)
    return info.value.reason


def test_at_most_100_metrics() -> None:
    engine = make_engine(("2024-03-10T10:00:00Z", score(1)))
    res = stats(
        engine, start="2024-03-10T10:00:00Z", metrics=[{"json_path": f"m{i}"} for i in range(100)]
    )
    assert len(res.window_stats) == 100
    assert limit_reason(metrics=[{"json_path": f"m{i}"} for i in range(101)]) == (
        "a stats request may ask for at most 100 metrics, got 101"
    )


def test_json_path_at_most_256_characters() -> None:
    path = ".".join(["output"] * 20_001)  # 140,006 characters
    assert limit_reason(metrics=[{"json_path": path}]) == (
        "json_path may be at most 256 characters long, got 140006 starting "
        "'output.output.output.output.output.outpu'"
    )


def test_answer_values_count_buckets_plus_one_times_every_key_repeats_included() -> None:
    # 1 hour at 36 s: 100 buckets (+ 1 for window_stats) x 9,901 keys = 1,000,001
    metric = {"json_path": "x", "aggregations": ["sum"], "percentiles": [50.0] * 9_900}
    req = {"end": "2024-03-10T11:00:00Z", "granularity": 36}
    reason = limit_reason(metrics=[metric], **req)
    assert reason.endswith(
        "this one would hold (100 + 1) * 9,901 = 1,000,001: ask for fewer "
        "aggregations or a coarser granularity"
    )
    engine = make_engine(("2024-03-10T10:00:00Z", score(1)))
    at_limit = {**metric, "percentiles": [50.0] * 9_899}  # (100 + 1) x 9,900 = 999,900
    res = stats(engine, start="2024-03-10T10:00:00Z", metrics=[at_limit], **req)
    assert len(res.buckets) == 100


def test_production_checks_come_before_the_limits_and_the_limits_before_slugs() -> None:
    many = [{"json_path": f"m{i}"} for i in range(101)]
    assert limit_reason(metrics=[*many, {"json_path": "bad-char"}]).startswith("json_path may only")
    assert limit_reason(metrics=many, granularity=-1).startswith("granularity must be >= 0")
    assert limit_reason(metrics=[*many, {"json_path": "m0"}]).startswith("a stats request may")
