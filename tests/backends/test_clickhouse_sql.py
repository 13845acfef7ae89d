"""The ClickHouse backend's statements, read without a database: every request value
is a bound parameter, never text in the SQL; production's shapes are there."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from refengine.backends import clickhouse_sql as sql
from refengine.models import FeedbackAggregateReq, FeedbackStatsReq
from refengine.semantics import aggregate, stats

NASTY = "x' OR 1=1 --\\\n{evil:String}"


def test_aggregate_binds_every_filter_value() -> None:
    plan = aggregate.plan(
        FeedbackAggregateReq(
            project_id=NASTY,
            after_ms=0,
            before_ms=3_600_000,
            time_bucket_seconds=60,
            group_by=["scorer_id", "span_status_code"],
            feedback_types=[NASTY + "*"],
            scorer_ids=[NASTY, NASTY + "**"],
            monitor_ids=[NASTY],
            span_agent_names=[NASTY],
            tags=[NASTY],
            rating_min=0.25,
        )
    )
    text, params = sql.aggregate_sql("db.feedback", plan)
    assert "OR 1=1" not in text and "evil" not in text
    assert params["project_id"] == NASTY
    assert params["feedback_types"] == [NASTY]  # trailing stars stripped, as the rule says
    assert params["scorer_ids_exact"] == [NASTY]
    assert params["scorer_ids_prefix"] == [NASTY]
    assert params["rating_min"] == 0.25
    for function in ("sumMap(", "countIf(", "toStartOfInterval(", "mapContains("):
        assert function in text
    assert "GROUP BY bucket, scorer_id, span_status_code" in text


def test_a_bare_total_has_no_group_by() -> None:
    plan = aggregate.plan(FeedbackAggregateReq(project_id="p", after_ms=0, before_ms=1))
    text, _ = sql.aggregate_sql("t", plan)
    assert "GROUP BY" not in text  # one row even when nothing matches


def _stats_plan(**fields: object) -> stats.StatsPlan:
    now = datetime(2024, 5, 2, tzinfo=timezone.utc)
    req = FeedbackStatsReq.model_validate(
        {
            "project_id": "p",
            "start": "2024-05-01T00:00:00Z",
            "end": "2024-05-01T06:00:00Z",
            "metrics": [
                {"json_path": "output.score", "percentiles": [50]},
                {"json_path": "output.passed", "value_type": "boolean"},
            ],
            **fields,
        }
    )
    return stats.plan(req, now)


def test_stats_binds_paths_filters_and_levels() -> None:
    plan = _stats_plan(trigger_ref=NASTY + ":*", feedback_type=NASTY, timezone="Asia/Kolkata")
    text, params, columns = sql.stats_buckets_sql("t", plan)
    assert "OR 1=1" not in text and "output" not in text.replace("_output_", "")
    assert params["trigger_prefix"] == NASTY and params["feedback_type"] == NASTY
    assert params["path_0_0"] == "output" and params["path_0_1"] == "score"
    assert params["level_0_0"] == 0.5 and params["tz"] == "Asia/Kolkata"
    assert [alias for _, alias in columns] == [
        "avg_output_score",
        "min_output_score",
        "max_output_score",
        "p50_output_score",
        "count_true_output_passed",
        "count_false_output_passed",
    ]
    for piece in (
        "all_buckets",
        "LEFT JOIN",
        "JSONExtractRaw(",
        "toFloat64OrNull(",
        "quantileOrNull(",
    ):
        assert piece in text


def test_window_statement_has_no_group_by() -> None:
    text, _, columns = sql.stats_window_sql("t", _stats_plan())
    assert "GROUP BY" not in text and len(columns) == 6


@pytest.mark.parametrize(
    ("alias", "expected"),
    [
        ("count_true_x", ("x", "count_true")),  # production's mis-split of `true.x`
        ("count_output", ("output", "count")),
        ("sum_a_b", ("a_b", "sum")),
        ("p99_s", ("s", "p99")),
    ],
)
def test_window_aliases_split_as_production_does(alias: str, expected: tuple[str, str]) -> None:
    assert sql.split_window_alias(alias) == expected


def test_sum_map_reads_both_renderings() -> None:
    assert sql.sum_map([["a", "b"], [1, 2]]) == {"a": 1, "b": 2}
    assert sql.sum_map((["a"], [0.5])) == {"a": 0.5}
    assert sql.sum_map({"a": 3}) == {"a": 3}


def test_the_table_has_every_stored_column() -> None:
    from refengine.rows import STORED_COLUMNS

    names = [name for name, _ in sql.TABLE_COLUMNS]
    expected = ["payload_dump" if c == "payload" else c for c in STORED_COLUMNS]
    expected = ["created_at" if c == "created_at_us" else c for c in expected]
    assert [n for n in names if n != "created_at_us"] == expected
    assert "ENGINE = MergeTree" in sql.create_table_sql("t")


def test_both_inserts_are_one_block_whatever_their_size() -> None:
    # ClickHouse splits an INSERT into parts at 1,048,449 rows or 256 MiB by default;
    # a part written before a failing one stays. Rows and bytes thresholds are lifted.
    from refengine.rows import make_row

    row = make_row(id="i", project_id="p", weave_ref="w", wb_user_id="u", creator=None,
                   created_at_us=1_714_521_600_123_999, feedback_type="t", payload={})  # fmt: skip
    statement, params = sql.insert_sql("t", [row, row, row])
    bulk = sql.bulk_insert_sql("t", 3)
    for text in (statement, bulk):
        assert "min_insert_block_size_rows = 3" in text and "max_insert_block_size = 3" in text
        assert "min_insert_block_size_bytes = 0" in text
    assert set(params) == {"structure", "rows"} and "{path:String}" in bulk
