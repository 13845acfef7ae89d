"""The statements of the rest of the family, read without a database: every request
value is a bound parameter, never text in the SQL; production's shapes are there."""

from __future__ import annotations

from typing import Any

from refengine.backends import clickhouse_query_sql as sql
from refengine.models import FeedbackQueryReq
from refengine.semantics.payload_schema import SchemaPlan

NASTY = "x' OR 1=1 --\\\n{evil:String}"


def _request(**fields: Any) -> FeedbackQueryReq:
    return FeedbackQueryReq.model_validate({"project_id": NASTY, **fields})


def _values(params: dict[str, Any]) -> list[Any]:
    return list(params.values())


def test_every_value_of_a_query_is_bound() -> None:
    get = {"$getField": f"payload.{NASTY}"}
    expr = {
        "$and": [
            {"$eq": [get, {"$literal": NASTY}]},
            {"$in": [{"$getField": f"scorer_tag_reasons.{NASTY}"}, [{"$literal": NASTY}]]},
            {"$contains": {"input": {"$getField": "id"}, "substr": {"$literal": NASTY}}},
        ]
    }
    statements = sql.query_statements(
        "db.feedback",
        _request(
            query={"$expr": expr},
            fields=["id", f"scorer_ratings.{NASTY}"],
            sort_by=[{"field": f"payload.{NASTY}", "direction": "desc"}],
            limit=3,
            offset=2,
        ),
    )
    assert statements.rows_sql is not None
    for text in (statements.rows_sql, statements.count_sql):
        assert "OR 1=1" not in text and "evil" not in text
    values = _values(statements.params)
    assert NASTY in values  # project, literals, map keys
    assert f'$."{NASTY}"' in values  # the JSON path, as production quotes its keys
    assert 3 in values and 2 in values  # limit and offset


def test_the_shapes_are_productions() -> None:
    expr = {
        "$or": [
            {"$eq": [{"$getField": "payload.flag"}, {"$literal": True}]},
            {"$gt": [{"$getField": "payload.score"}, {"$literal": 1}]},
            {"$gte": [{"$getField": "payload.score"}, {"$literal": 0.5}]},
            {"$eq": [{"$getField": "scorer_ratings._rating_"}, {"$literal": 1.0}]},
            {"$contains": {"input": {"$getField": "scorer_tags"}, "substr": {"$literal": "a"}}},
            {
                "$contains": {
                    "input": {"$getField": "payload.note"},
                    "substr": {"$literal": "a"},
                    "case_insensitive": True,
                }
            },
        ]
    }
    statements = sql.query_statements(
        "db.feedback",
        _request(query={"$expr": expr}, sort_by=[{"field": "payload.score", "direction": "asc"}]),
    )
    text = statements.rows_sql or ""
    for shape in (
        "multiIf(JSON_VALUE(payload_dump, ",
        "toInt64OrNull(JSON_VALUE(",
        "toFloat64OrNull(JSON_VALUE(",
        "if(mapContains(scorer_ratings, ",
        "has(scorer_tags, ",
        "positionCaseInsensitive(toString(JSON_VALUE(",
        "JSON_EXISTS(payload_dump, ",
        "function_json_value_return_type_allow_complex = 1",
    ):
        assert shape in text, shape
    assert "Bool}" in text and "Int64}" in text and "Float64}" in text  # literals typed


def test_count_star_and_limit_zero_read_no_rows() -> None:
    for request in (_request(fields=["count(*)"]), _request(limit=0)):
        statements = sql.query_statements("db.feedback", request)
        assert statements.rows_sql is None
        assert statements.count_sql.startswith("SELECT count() FROM (SELECT 1 FROM db.feedback")


def test_rows_come_in_store_order_after_the_sort_terms() -> None:
    statements = sql.query_statements(
        "db.feedback", _request(sort_by=[{"field": "created_at", "direction": "desc"}])
    )
    text = statements.rows_sql or ""
    assert text.index("s0 DESC NULLS LAST") < text.index("o0 ASC") < text.index("o2 ASC")
    for key in sql.STORE_ORDER:
        assert key in text


def test_json_path_quotes_keys_and_indexes_digits() -> None:
    assert sql.json_path("a.0.b") == '$."a"[0]."b"'
    assert sql.json_path(r"x\.y") == '$."x.y"'


def test_purge_and_read_back_bind_ids() -> None:
    for build in (sql.delete_sql, sql.rows_by_id_sql):
        text, params = build("db.feedback", NASTY, [NASTY, "b"])
        assert "OR 1=1" not in text
        assert params == {"project_id": NASTY, "ids": sorted([NASTY, "b"])}
    text, _ = sql.delete_sql("db.feedback", "p", ["a"])
    assert text.startswith("DELETE FROM db.feedback") and "lightweight_deletes_sync = 2" in text


def test_payload_sampling_binds_its_filters() -> None:
    plan = SchemaPlan(0, 1000, NASTY, NASTY + ":*", 7)
    text, params = sql.payload_sample_sql("db.feedback", NASTY, plan)
    assert "OR 1=1" not in text
    assert params["trigger_prefix"] == NASTY and params["feedback_type"] == NASTY
    assert params["sample_limit"] == 7 and "GROUP BY trigger_ref" in text
    exact = SchemaPlan(0, 1000, None, NASTY, 7)
    text, params = sql.payload_sample_sql("db.feedback", "p", exact)
    assert params["trigger_ref"] == NASTY and "feedback_type" not in params
