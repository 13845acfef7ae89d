"""POST /feedback/purge (refengine/semantics/purge.py): accepted shapes, removal."""

from __future__ import annotations

from typing import Any

import pytest

from refengine import Engine, InvalidRequest, ManualClock
from refengine.semantics.purge import MAX_PURGE_IDS

P = "acme/bot"


def eq_id(value: Any) -> dict[str, Any]:
    return {"$eq": [{"$getField": "id"}, {"$literal": value}]}


def make(ids: list[str], project: str = P) -> Engine:
    engine = Engine(clock=ManualClock("2024-05-01T12:00:00Z"))
    for i, ident in enumerate(ids):
        engine.clock.advance(seconds=i % 2)  # type: ignore[attr-defined]
        engine.feedback_create(
            {
                "project_id": project,
                "weave_ref": f"weave:///{project}/call/c",
                "feedback_type": "custom",
                "payload": {"score": i},
                "id": ident,
            }
        )
    return engine


def purge(engine: Engine, expr: dict[str, Any], project: str = P) -> None:
    engine.feedback_purge({"project_id": project, "query": {"$expr": expr}})


def left(engine: Engine, project: str = P) -> list[str]:
    return [row.id for row in engine.rows(project)]


def test_purge_one_id_removes_every_copy() -> None:
    engine = make(["a", "b", "a", "c"])
    purge(engine, eq_id("a"))
    assert left(engine) == ["b", "c"]
    engine.check_invariants()


def test_purge_an_or_of_ids_and_ignore_unknown_ones() -> None:
    engine = make(["a", "b", "c"])
    purge(engine, {"$or": [eq_id("a"), eq_id("zzz"), eq_id("c")]})
    assert left(engine) == ["b"]


def test_other_projects_are_untouched() -> None:
    engine = make(["a"])
    engine.insert_rows(make(["a"], project="other/p").rows("other/p"))
    purge(engine, eq_id("a"))
    assert left(engine) == []
    assert left(engine, "other/p") == ["a"]


@pytest.mark.parametrize(
    "expr",
    [
        {"$in": [{"$getField": "id"}, [{"$literal": "a"}]]},
        {"$and": [eq_id("a")]},
        {"$eq": [{"$getField": "weave_ref"}, {"$literal": "a"}]},
        eq_id(1),
        {"$eq": [{"$literal": "a"}, {"$getField": "id"}]},
    ],
)
def test_other_shapes_are_refused_and_change_nothing(expr: dict[str, Any]) -> None:
    engine = make(["a", "b"])
    with pytest.raises(InvalidRequest) as info:
        purge(engine, expr)
    assert info.value.reason == "Can only purge feedback by specifying one or more feedback ids"
    assert left(engine) == ["a", "b"]


def test_messages_inside_an_or() -> None:
    engine = make(["a"])
    with pytest.raises(InvalidRequest, match=r"^Expected key eq_, got in_$"):
        purge(engine, {"$or": [eq_id("a"), {"$in": [{"$getField": "id"}, []]}]})
    with pytest.raises(InvalidRequest, match=r"^Can only purge by specifying one or more ids$"):
        purge(engine, {"$or": [eq_id("a"), eq_id(5)]})
    with pytest.raises(InvalidRequest, match=r"^Empty OR operation$"):
        purge(engine, {"$or": []})
    assert left(engine) == ["a"]


def test_purge_size_is_bounded() -> None:
    engine = make(["a"])
    with pytest.raises(InvalidRequest, match="At most 10000 feedback ids"):
        purge(engine, {"$or": [eq_id(str(i)) for i in range(MAX_PURGE_IDS + 1)]})
    assert left(engine) == ["a"]


def test_purged_rows_are_gone_for_aggregate_stats_and_query() -> None:
    engine = make(["a", "b", "c", "d"])
    stats_req = {
        "project_id": P,
        "start": "2024-05-01T00:00:00Z",
        "end": "2024-05-02T00:00:00Z",
        "metrics": [{"json_path": "score", "aggregations": ["sum", "count"]}],
    }
    agg_req = {"project_id": P, "after_ms": 0, "before_ms": 2_000_000_000_000}
    # Warm the indexes first, so the purge has to invalidate them.
    assert engine.feedback_stats(stats_req).window_stats == {"score": {"sum": 6.0, "count": 4.0}}
    assert engine.feedback_aggregate(agg_req).buckets[0].total_count == 4
    purge(engine, {"$or": [eq_id("b"), eq_id("c")]})
    engine.check_invariants()
    assert engine.feedback_stats(stats_req).window_stats == {"score": {"sum": 3.0, "count": 2.0}}
    assert engine.feedback_aggregate(agg_req).buckets[0].total_count == 2
    assert engine.feedback_query({"project_id": P, "fields": ["count(*)"]}).total_count == 2
    engine.check_invariants()
