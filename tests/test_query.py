"""The Query language (refengine/semantics/query.py): fields, casts, logic, errors."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from refengine import Engine, InvalidRequest, ManualClock
from refengine.models import Query
from refengine.semantics import query as q

P = "acme/bot"


def lit(value: Any) -> dict[str, Any]:
    return {"$literal": value}


def get(field: str) -> dict[str, Any]:
    return {"$getField": field}


@pytest.fixture
def engine() -> Engine:
    engine = Engine(clock=ManualClock("2024-05-01T12:00:00.123Z"))
    payloads: list[dict[str, Any]] = [
        {"score": 5.0, "flag": True, "note": "Hello", "n": 7, "output": 1},
        {"score": 0.9, "flag": False, "nested": {"x": [1, "é"]}, "s": "007"},
        {"score": "high", "big": 100000.0, "none": None},
    ]
    for i, payload in enumerate(payloads):
        extra: dict[str, Any] = {}
        if i == 0:
            extra = {
                "feedback_type": "wandb.runnable.s",
                "runnable_ref": "weave:///acme/bot/object/s:v1",
                "scorer_tags": ["Nsfw", "ok"],
                "scorer_ratings": {"_rating_": 0.5},
                "scorer_tag_reasons": {"ok": "fine"},
                "span_status_code": "OK",
            }
        engine.feedback_create(
            {
                "project_id": P,
                "weave_ref": f"weave:///acme/bot/call/c{i}",
                "feedback_type": "custom",
                "payload": payload,
                "id": f"r{i}",
                **extra,
            }
        )
        engine.clock.advance(seconds=1)  # type: ignore[attr-defined]
    return engine


def ids(engine: Engine, expr: dict[str, Any]) -> list[str]:
    res = engine.feedback_query({"project_id": P, "query": {"$expr": expr}, "fields": ["id"]})
    return [row["id"] for row in res.result]


def reason(engine: Engine, expr: dict[str, Any]) -> str:
    with pytest.raises(InvalidRequest) as info:
        ids(engine, expr)
    return info.value.reason


# --- the model -------------------------------------------------------------------------


def test_query_forbids_extra_keys_and_bare_operands() -> None:
    with pytest.raises(ValidationError):
        Query.model_validate({"$expr": {"$eq": [lit(1), lit(1)]}, "x": 1})
    with pytest.raises(ValidationError):
        Query.model_validate({"$expr": lit(True)})
    with pytest.raises(ValidationError):
        Query.model_validate({"$expr": {"$eq": [lit(1), {"$literal": 1, "x": 2}]}})
    with pytest.raises(ValidationError):
        Query.model_validate({"$expr": {"$not": [lit(1), lit(2)]}})


def test_negative_array_index_is_a_model_error() -> None:
    with pytest.raises(ValidationError, match="Negative array index '-1'"):
        Query.model_validate({"$expr": {"$eq": [get("payload.a.-1"), lit(1)]}})


# --- payload values as strings ---------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (5.0, "5"),
        (1e3, "1000"),
        (100000.0, "1e+05"),
        (1e6, "1e+06"),
        (0.0001, "1e-04"),
        (-0.0, "-0"),
        (123456789012345.0, "123456789012345"),
        (0.5, "0.5"),
        (1.5e-7, "1.5e-07"),
        (7, "7"),
        (True, "true"),
        (None, "null"),
        ({"a": [1, "é"]}, '{"a":[1,"é"]}'),
    ],
)
def test_json_values_render_as_clickhouse_does(value: Any, text: str) -> None:
    assert q.render_json_scalar(value) == text


def test_payload_path_reads_strings(engine: Engine) -> None:
    res = engine.feedback_query(
        {"project_id": P, "fields": ["payload.score", "payload.nested.x.1", "payload.none"]}
    )
    assert [r["payload.score"] for r in res.result] == ["5", "0.9", "high"]
    assert [r["payload.nested.x.1"] for r in res.result] == ["", "é", ""]
    assert [r["payload.none"] for r in res.result] == ["", "", "null"]
    assert ids(engine, {"$eq": [get("payload.missing"), lit("")]}) == ["r0", "r1", "r2"]
    assert ids(engine, {"$eq": [get("payload.big"), lit("1e+05")]}) == ["r2"]


def test_escaped_dot_is_part_of_a_key() -> None:
    assert q.split_payload_path(r"a\.b.c") == ("a.b", "c")


# --- casts inferred from the literal ---------------------------------------------------


def test_int_literal_casts_with_to_int64_or_null(engine: Engine) -> None:
    assert ids(engine, {"$eq": [get("payload.score"), lit(5)]}) == ["r0"]
    # toInt64OrNull("0.9") is NULL: never greater than an int.
    assert ids(engine, {"$gte": [get("payload.score"), lit(0)]}) == ["r0"]
    assert ids(engine, {"$eq": [get("payload.s"), lit(7)]}) == ["r1"]  # "007" → 7


def test_float_literal_casts_with_to_float64_or_null(engine: Engine) -> None:
    assert ids(engine, {"$gt": [get("payload.score"), lit(0.5)]}) == ["r0", "r1"]
    assert ids(engine, {"$lt": [lit(0.5), get("payload.score")]}) == ["r0", "r1"]


def test_bool_literal_matches_json_booleans(engine: Engine) -> None:
    assert ids(engine, {"$eq": [get("payload.flag"), lit(True)]}) == ["r0"]
    assert ids(engine, {"$eq": [get("payload.flag"), lit(False)]}) == ["r1"]


def test_string_literal_compares_text(engine: Engine) -> None:
    assert ids(engine, {"$eq": [get("payload.score"), lit("5")]}) == ["r0"]
    assert ids(engine, {"$eq": [get("payload.score"), lit("5.0")]}) == []
    assert ids(engine, {"$gt": [get("payload.score"), lit("a")]}) == ["r2"]


def test_convert_does_not_infer(engine: Engine) -> None:
    as_bool = {"$convert": {"input": get("payload.flag"), "to": "bool"}}
    assert ids(engine, {"$eq": [as_bool, lit(1)]}) == []  # toUInt8OrNull("true") is NULL
    as_double = {"$convert": {"input": get("payload.score"), "to": "double"}}
    assert ids(engine, {"$gt": [as_double, lit(1)]}) == ["r0"]
    exists = {"$convert": {"input": get("payload.missing"), "to": "exists"}}
    assert ids(engine, {"$eq": [exists, lit(True)]}) == ["r0", "r1", "r2"]


def test_convert_of_a_float_map_value_is_illegal(engine: Engine) -> None:
    conv = {"$convert": {"input": get("scorer_ratings._rating_"), "to": "double"}}
    assert reason(engine, {"$eq": [conv, lit(1)]}).startswith("Illegal type of argument in query.")


def test_in_infers_one_cast(engine: Engine) -> None:
    assert ids(engine, {"$in": [get("payload.score"), [lit(5), lit(0.9)]]}) == ["r0", "r1"]
    assert ids(engine, {"$in": [get("payload.n"), [lit(7), lit("two")]]}) == ["r0"]
    assert ids(engine, {"$in": [get("payload.score"), []]}) == []


def test_empty_in_under_not_excludes_null_left_side(engine: Engine) -> None:
    expr = {"$not": [{"$in": [get("scorer_ratings._rating_"), []]}]}
    assert ids(engine, expr) == ["r0"]


# --- plain columns, maps, enum, created_at ---------------------------------------------


def test_plain_string_column_with_a_number_has_no_common_type(engine: Engine) -> None:
    message = reason(engine, {"$eq": [get("feedback_type"), lit(5)]})
    assert message.startswith("No common type between data types in query.")


def test_unknown_fields(engine: Engine) -> None:
    assert reason(engine, {"$eq": [get("inputs.message_id"), lit("x")]}) == (
        "Unknown field: inputs.message_id"
    )
    assert reason(engine, {"$eq": [get("id.x"), lit("x")]}) == "Unknown field: id.x"


def test_payload_dump_is_the_payload_text(engine: Engine) -> None:
    assert ids(engine, {"$contains": {"input": get("payload_dump"), "substr": lit('"s": "007"')}})
    assert ids(engine, {"$contains": {"input": get("payload"), "substr": lit("high")}}) == ["r2"]


def test_map_key_is_null_when_absent(engine: Engine) -> None:
    assert ids(engine, {"$gte": [get("scorer_ratings._rating_"), lit(0)]}) == ["r0"]
    assert ids(engine, {"$not": [{"$gte": [get("scorer_ratings._rating_"), lit(0)]}]}) == []
    assert ids(engine, {"$eq": [get("scorer_ratings._rating_"), lit("0.5")]}) == ["r0"]
    assert ids(engine, {"$eq": [get("scorer_tag_reasons.ok"), lit("fine")]}) == ["r0"]
    assert reason(engine, {"$eq": [get("scorer_ratings._rating_"), lit("high")]}) == (
        "Cannot compare a number with 'high': the string is not a number"
    )


def test_status_code_compares_as_its_enum(engine: Engine) -> None:
    assert ids(engine, {"$eq": [get("span_status_code"), lit("OK")]}) == ["r0"]
    assert ids(engine, {"$eq": [get("span_status_code"), lit(1)]}) == ["r0"]
    assert ids(engine, {"$eq": [get("span_status_code"), lit("BOGUS")]}) == []
    assert ids(engine, {"$not": [{"$eq": [get("span_status_code"), lit("BOGUS")]}]}) == [
        "r0",
        "r1",
        "r2",
    ]


def test_created_at_literals(engine: Engine) -> None:
    assert ids(engine, {"$eq": [get("created_at"), lit("2024-05-01T12:00:01.123999Z")]}) == ["r1"]
    assert ids(engine, {"$gte": [get("created_at"), lit("2024-05-01T12:00:01.123")]}) == [
        "r1",
        "r2",
    ]
    assert ids(engine, {"$lt": [get("created_at"), lit(1714564801)]}) == ["r0"]
    assert ids(engine, {"$gt": [get("created_at"), lit("2024-05-01")]}) == ["r0", "r1", "r2"]
    assert ids(engine, {"$eq": [get("created_at"), lit(True)]}) == []
    assert reason(engine, {"$eq": [get("created_at"), lit("yesterday")]}).startswith(
        "Cannot compare created_at"
    )
    in_iso = {"$in": [get("created_at"), [lit("2024-05-01T12:00:00.123Z")]]}
    assert reason(engine, in_iso).startswith("No common type")


# --- $contains and $size ---------------------------------------------------------------


def test_contains_on_tags_is_membership(engine: Engine) -> None:
    tags = get("scorer_tags")
    assert ids(engine, {"$contains": {"input": tags, "substr": lit("ok")}}) == ["r0"]
    assert ids(engine, {"$contains": {"input": tags, "substr": lit("o")}}) == []
    assert ids(engine, {"$contains": {"input": tags, "substr": lit("nsfw")}}) == []
    folded = {"input": tags, "substr": lit("NSFW"), "case_insensitive": True}
    assert ids(engine, {"$contains": folded}) == ["r0"]
    assert reason(engine, {"$contains": {"input": tags, "substr": lit(1)}}).startswith(
        "No common type"
    )
    folded_number = {"input": tags, "substr": lit(1), "case_insensitive": True}
    assert reason(engine, {"$contains": folded_number}).startswith("Illegal type")


def test_contains_elsewhere_is_a_substring(engine: Engine) -> None:
    note = get("payload.note")
    assert ids(engine, {"$contains": {"input": note, "substr": lit("ell")}}) == ["r0"]
    assert ids(engine, {"$contains": {"input": note, "substr": lit("")}}) == ["r0", "r1", "r2"]
    folded = {"input": note, "substr": lit("HELLO"), "case_insensitive": True}
    assert ids(engine, {"$contains": folded}) == ["r0"]
    accent = {"input": get("payload.nested"), "substr": lit("É"), "case_insensitive": True}
    assert ids(engine, {"$contains": accent}) == []  # ASCII folding only
    assert reason(engine, {"$contains": {"input": note, "substr": lit(5)}}).startswith(
        "Illegal type"
    )


def test_size_counts_array_and_map_elements(engine: Engine) -> None:
    assert ids(engine, {"$eq": [{"$size": get("scorer_tags")}, lit(2)]}) == ["r0"]
    assert ids(engine, {"$eq": [{"$size": get("scorer_ratings")}, lit(0)]}) == ["r1", "r2"]
    assert reason(engine, {"$eq": [{"$size": get("id")}, lit(0)]}).startswith("Illegal type")


# --- logic -----------------------------------------------------------------------------


def test_three_valued_logic(engine: Engine) -> None:
    null = {"$gt": [get("scorer_ratings._rating_"), lit(0)]}  # NULL on r1, r2
    false = {"$eq": [lit(1), lit(2)]}
    true = {"$eq": [lit(1), lit(1)]}
    assert ids(engine, {"$and": [null, false]}) == []
    assert ids(engine, {"$not": [{"$and": [null, false]}]}) == ["r0", "r1", "r2"]
    assert ids(engine, {"$or": [null, true]}) == ["r0", "r1", "r2"]
    assert ids(engine, {"$not": [null]}) == []
    assert ids(engine, {"$and": [true]}) == ["r0", "r1", "r2"]


def test_empty_and_or(engine: Engine) -> None:
    assert reason(engine, {"$and": []}) == "Empty AND operation"
    assert reason(engine, {"$or": []}) == "Empty OR operation"


def test_dict_literal_is_an_unknown_value_type(engine: Engine) -> None:
    assert reason(engine, {"$eq": [get("id"), lit({"a": 1})]}).startswith("Unknown value type")


def test_contains_token_is_refused(engine: Engine) -> None:
    spec = {"input": get("id"), "substr": lit("r")}
    assert "$containsToken" in reason(engine, {"$containsToken": spec})


# --- the OrNull parses and bounded work ------------------------------------------------


def test_or_null_parses() -> None:
    assert [q.to_int64_or_null(s) for s in ("007", "+5", " 2", "5.0", str(2**63))] == [
        7,
        5,
        None,
        None,
        None,
    ]
    assert [q.to_float64_or_null(s) for s in ("inf", "nan", "1e3", ".5")] == [
        None,
        None,
        1000.0,
        0.5,
    ]
    assert [q.json_bool(s) for s in ("true", "false", "2", "300", "x")] == [1, 0, 2, None, None]


def test_query_size_is_bounded(engine: Engine) -> None:
    items = [lit(i) for i in range(q.MAX_QUERY_NODES)]
    message = reason(engine, {"$in": [get("payload.n"), items]})
    assert message.startswith("Query expression too large")


def test_query_depth_is_bounded() -> None:
    node: Any = Query.model_validate({"$expr": {"$eq": [lit(1), lit(1)]}}).expr_
    from refengine.models import NotOperation

    for _ in range(q.MAX_QUERY_DEPTH + 1):
        node = NotOperation.model_validate({"$not": [node]})
    with pytest.raises(InvalidRequest, match="too deeply nested"):
        q.compile_query(Query.model_validate({"$expr": node}))
