"""POST /feedback/query (refengine/semantics/feedback_query.py): projection, order,
paging, total_count and the request checks."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from refengine import Engine, InvalidRequest, ManualClock
from refengine.semantics.feedback_query import DEFAULT_FIELDS

P = "acme/bot"


@pytest.fixture
def engine() -> Engine:
    engine = Engine(clock=ManualClock("2024-05-01T12:00:00Z"))
    rows: list[tuple[str, dict[str, Any], str]] = [
        ("a", {"v": 2}, "OK"),
        ("b", {"v": "10"}, "ERROR"),
        ("c", {}, "UNSET"),
        ("d", {"v": 10.5}, "OK"),
        ("e", {"v": None}, "UNSET"),
    ]
    for ident, payload, status in rows:
        engine.feedback_create(
            {
                "project_id": P,
                "weave_ref": "weave:///acme/bot/call/c1",
                "feedback_type": "custom",
                "payload": payload,
                "id": ident,
                "span_status_code": status,
            }
        )
    engine.feedback_create(
        {
            "project_id": "other/p",
            "weave_ref": "weave:///other/p/call/c1",
            "feedback_type": "custom",
            "payload": {},
            "id": "x",
        }
    )
    return engine


def run(engine: Engine, **req: Any) -> Any:
    return engine.feedback_query({"project_id": P, **req})


def order(engine: Engine, *sort: tuple[str, str]) -> list[str]:
    sort_by = [{"field": f, "direction": d} for f, d in sort]
    return [r["id"] for r in run(engine, fields=["id"], sort_by=sort_by).result]


def test_default_rows_have_every_stored_column(engine: Engine) -> None:
    res = run(engine)
    assert res.total_count == 5
    first = res.result[0]
    assert tuple(first) == DEFAULT_FIELDS
    assert first["payload"] == {"v": 2}
    assert first["created_at"] == datetime(2024, 5, 1, 12, tzinfo=timezone.utc)
    assert [r["id"] for r in res.result] == ["a", "b", "c", "d", "e"]  # store order


def test_fields_are_flat_keys(engine: Engine) -> None:
    res = run(engine, fields=["payload.v", "payload_dump", "scorer_ratings._rating_"], limit=1)
    assert res.result == [{"payload.v": "2", "payload": {"v": 2}, "scorer_ratings._rating_": None}]


def test_count_star(engine: Engine) -> None:
    res = run(engine, fields=["count(*)"])
    assert res.result == [{"count(*)": 5}]
    with pytest.raises(InvalidRequest, match=r"count\(\*\)"):
        run(engine, fields=["count(*)", "id"])


def test_unknown_fields_in_projection_and_sort(engine: Engine) -> None:
    with pytest.raises(InvalidRequest, match="Unknown field: nope"):
        run(engine, fields=["nope"])
    with pytest.raises(InvalidRequest, match="Unknown field: nope"):
        order(engine, ("nope", "asc"))


def test_payload_sort_has_three_terms(engine: Engine) -> None:
    # Rows with the path first (e's JSON null exists); then as floats, NULLs last;
    # then by the string value ("" for c, "null" for e).
    assert order(engine, ("payload.v", "asc")) == ["a", "b", "d", "e", "c"]
    assert order(engine, ("payload.v", "desc")) == ["d", "b", "a", "e", "c"]


def test_status_sorts_by_enum_value(engine: Engine) -> None:
    assert order(engine, ("span_status_code", "asc"), ("id", "desc")) == ["e", "c", "d", "a", "b"]


def test_nulls_last_in_both_directions(engine: Engine) -> None:
    assert order(engine, ("creator", "asc")) == ["a", "b", "c", "d", "e"]
    assert order(engine, ("scorer_ratings._rating_", "desc")) == ["a", "b", "c", "d", "e"]


def test_limit_offset_and_total_count(engine: Engine) -> None:
    res = run(engine, fields=["id"], limit=2, offset=1)
    assert [r["id"] for r in res.result] == ["b", "c"]
    assert res.total_count == 5
    assert run(engine, limit=0).result == []
    assert run(engine, limit=0).total_count == 5
    assert [r["id"] for r in run(engine, fields=["id"], offset=4).result] == ["e"]


def test_negative_limit_and_offset(engine: Engine) -> None:
    with pytest.raises(InvalidRequest, match=r"^Limit must be non-negative$"):
        run(engine, limit=-1)
    with pytest.raises(InvalidRequest, match=r"^Offset must be non-negative$"):
        run(engine, offset=-1)


def test_direction_is_lower_case_only(engine: Engine) -> None:
    with pytest.raises(ValidationError):
        run(engine, sort_by=[{"field": "id", "direction": "ASC"}])


def test_projects_are_isolated(engine: Engine) -> None:
    res = engine.feedback_query({"project_id": "other/p", "fields": ["id"]})
    assert res.result == [{"id": "x"}]
    assert engine.feedback_query({"project_id": "none/here"}).total_count == 0


def test_a_rejected_query_reads_nothing(engine: Engine) -> None:
    with pytest.raises(InvalidRequest):
        run(engine, query={"$expr": {"$and": []}})
    assert len(engine) == 6
