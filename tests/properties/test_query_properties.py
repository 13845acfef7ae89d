"""Properties of query and purge (Hypothesis): paging, logic, removal."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from refengine import Engine, InvalidRequest, ManualClock
from strategies import BASE, OTHER_PROJECT, PROJECT, datasets, populate, query_exprs


def _ids(engine: Engine, expr: dict[str, Any] | None, **req: Any) -> list[str] | None:
    body: dict[str, Any] = {"project_id": PROJECT, "fields": ["id"], **req}
    if expr is not None:
        body["query"] = {"$expr": expr}
    try:
        res = engine.feedback_query(body)
    except InvalidRequest:
        return None
    assert res.total_count >= len(res.result)
    return [row["id"] for row in res.result]


@given(datasets(max_size=12), query_exprs, st.integers(0, 5), st.integers(0, 5))
def test_paging_is_a_slice_and_not_is_disjoint(
    dataset: list[Any], expr: dict[str, Any], limit: int, offset: int
) -> None:
    engine = populate(dataset)
    everything = _ids(engine, None)
    assert everything is not None
    matched = _ids(engine, expr)
    if matched is None:  # an ill-typed expression: a 400, and nothing else happened
        return
    count = engine.feedback_query(
        {"project_id": PROJECT, "query": {"$expr": expr}, "fields": ["count(*)"]}
    )
    assert count.result == [{"count(*)": len(matched)}]
    assert _ids(engine, expr, limit=limit, offset=offset) == matched[offset : offset + limit]
    negated = _ids(engine, {"$not": [expr]})
    assert negated is not None
    assert not set(matched) & set(negated) or len(everything) != len(set(everything))
    assert len(matched) + len(negated) <= len(everything)
    assert _ids(engine, {"$and": [expr, expr]}) == matched
    assert _ids(engine, {"$or": [expr, {"$not": [expr]}]}) == [
        i for i in everything if i in set(matched) | set(negated)
    ]


@given(datasets(max_size=15), st.data())
def test_purge_equals_never_having_created(dataset: list[Any], data: st.DataObject) -> None:
    engine = populate(dataset)
    rows = engine.rows(PROJECT)
    others = engine.rows(OTHER_PROJECT)
    # Warm the indexes so that the purge has to invalidate them.
    start_ms = int(BASE.timestamp() * 1000) - 86_400_000
    window = {"project_id": PROJECT, "after_ms": start_ms, "before_ms": start_ms + 30 * 86_400_000}
    engine.feedback_aggregate({**window, "group_by": ["scorer_id"]})
    ids = data.draw(st.lists(st.sampled_from([r.id for r in rows] + ["nope"]), max_size=4))
    if ids:
        engine.feedback_purge(
            {
                "project_id": PROJECT,
                "query": {
                    "$expr": {"$or": [{"$eq": [{"$getField": "id"}, {"$literal": i}]} for i in ids]}
                },
            }
        )
    engine.check_invariants()
    kept = [r for r in rows if r.id not in set(ids)]
    assert engine.rows(PROJECT) == kept
    fresh = Engine(clock=ManualClock(BASE))
    fresh.insert_rows(kept)
    for group_by in ([], ["scorer_id"], ["span_status_code"]):
        req = {**window, "group_by": group_by}
        assert engine.feedback_aggregate(req) == fresh.feedback_aggregate(req)
    assert engine.rows(OTHER_PROJECT) == others
