"""The per-project aggregate index (``refengine.fast.aggregate_index``): it stays a
faithful copy of the store through appends, out-of-order inserts and evictions."""

from __future__ import annotations

import json
from typing import Any
from unittest import mock

import pytest
from hypothesis import given

from refengine import Engine
from refengine.fast import snapshots
from refengine.fast.aggregate_index import (
    MAX_PARTITIONINGS,
    MAX_PROFILES,
    MAX_RATING_KEYS,
    TooWide,
)
from refengine.fast.snapshots import aggregate_snapshot, guarded_aggregate_index
from refengine.rows import FeedbackRow
from refengine.store import ProjectStore
from reference import reference_aggregate
from strategies import PROJECT, aggregate_requests, interleaved_steps, replay
from strategies import scorer_row as stored_scorer_row

DIMS = ("scorer_id",)


def scorer_row(ms: int, scorer: str = "s", rating: float = 0.5) -> FeedbackRow:
    return stored_scorer_row(ms, scorer, tags=("t",), ratings={"_rating_": rating})


def window_ms(store: ProjectStore, dims: tuple[str, ...] = DIMS) -> dict[Any, list[int]]:
    return {key: view.columns.ms for key, view in aggregate_snapshot(store, dims, 0, 10**6).views}


def test_appends_are_picked_up_by_the_next_query() -> None:
    store = ProjectStore("e/p")
    store.update([scorer_row(1, "a"), scorer_row(2, "b")])
    assert window_ms(store) == {("a",): [1], ("b",): [2]}
    store.add(scorer_row(3, "a"))
    store.add(scorer_row(3, "c"))
    assert window_ms(store) == {("a",): [1, 3], ("b",): [2], ("c",): [3]}
    assert window_ms(store, ()) == {(): [1, 2, 3, 3]}
    store.check_invariants()


def test_an_insert_before_the_end_rebuilds_from_that_millisecond() -> None:
    store = ProjectStore("e/p")
    store.update(scorer_row(ms, "ab"[ms % 2]) for ms in (10, 20, 30, 40))
    assert window_ms(store) == {("a",): [10, 20, 30, 40]}  # built before the inserts
    store.add(scorer_row(25, "a", rating=0.25))
    store.add(scorer_row(5, "c"))
    store.check_invariants()  # stale index: the check does not rebuild it
    assert window_ms(store) == {("a",): [10, 20, 25, 30, 40], ("c",): [5]}
    views = {key: span.columns for key, span in aggregate_snapshot(store, DIMS, 20, 31).views}
    assert views[("a",)].ratings["_rating_"] == [0.5, 0.25, 0.5]
    store.check_invariants()


def test_the_least_recently_used_partitioning_is_dropped_and_rebuilt() -> None:
    store = ProjectStore("e/p")
    store.update(scorer_row(ms) for ms in range(5))
    sets = [("scorer_id",), ("span_agent_name",), ("span_status_code",), ("span_agent_version",)]
    sets += [("scorer_id", "span_status_code")]
    assert len(sets) > MAX_PARTITIONINGS
    for dims in sets:
        assert sum(len(ms) for ms in window_ms(store, dims).values()) == 5
    store.add(scorer_row(7))
    for dims in sets:  # the first set was evicted; it is rebuilt and complete
        assert sum(len(ms) for ms in window_ms(store, dims).values()) == 6
    store.check_invariants()


def test_check_catches_an_index_that_drifted_from_the_store() -> None:
    store = ProjectStore("e/p")
    store.update(scorer_row(ms) for ms in range(5))
    window_ms(store)
    guarded_aggregate_index(store).index.master.ms[2] = 3  # still sorted, but no longer the store
    with pytest.raises(AssertionError, match="master columns differ from the store at row 2"):
        store.check_invariants()


# --- interleaved writes and queries agree with the reference fold ---------------------


def agrees_with_the_reference(engine: Engine, req: dict[str, Any]) -> None:
    got = engine.feedback_aggregate(req).model_dump()
    assert json.dumps(got) == json.dumps(reference_aggregate(engine, req))


@given(interleaved_steps(aggregate_requests(PROJECT)))
def test_queries_between_writes_agree_with_a_full_scan(plan: list[tuple[Any, ...]]) -> None:
    replay(plan, agrees_with_the_reference)


@given(interleaved_steps(aggregate_requests(PROJECT)))
def test_writes_that_index_as_they_go_agree_with_a_full_scan(plan: list[tuple[Any, ...]]) -> None:
    """The same, with every write bringing the index up to date (the lag allowed is
    one row), so the writes, not the queries, extend the ranges that follow the end
    and re-add rows after an insert before the end."""
    with mock.patch.object(snapshots, "KEEP_CURRENT_ROWS", 1):
        replay(plan, agrees_with_the_reference)


# --- a project too wide to index ------------------------------------------------------


def test_a_row_with_more_rating_keys_than_the_index_keeps_gives_it_up() -> None:
    store = ProjectStore("e/p")
    store.update([scorer_row(1, "a")])
    assert window_ms(store) == {("a",): [1]}
    wide = {f"k{i}": 1.0 for i in range(MAX_RATING_KEYS)}  # with _rating_: one too many
    store.add(stored_scorer_row(2, "a", ratings=wide))
    with pytest.raises(TooWide):
        window_ms(store)
    index = guarded_aggregate_index(store).index
    assert index.wide and len(index.master) == 0
    store.add(scorer_row(3, "a"))
    with pytest.raises(TooWide):  # for good: the project never narrows again
        window_ms(store)
    store.check_invariants()


def test_rating_keys_spread_over_rows_count_as_much_as_keys_in_one_row() -> None:
    store = ProjectStore("e/p")
    rows = [stored_scorer_row(i, "a", ratings={f"k{i}": 1.0}) for i in range(MAX_RATING_KEYS)]
    store.update(rows)
    assert len(window_ms(store)[("a",)]) == MAX_RATING_KEYS  # at the bound: kept
    store.add(stored_scorer_row(10**5, "a", ratings={"one-more": 1.0}))
    with pytest.raises(TooWide):
        window_ms(store)


def test_more_profiles_than_the_index_keeps_gives_it_up() -> None:
    store = ProjectStore("e/p")
    store.update([scorer_row(i, f"s{i}") for i in range(MAX_PROFILES)])
    assert len(window_ms(store)) == MAX_PROFILES
    store.add(scorer_row(10**5, "one-more"))
    with pytest.raises(TooWide):
        window_ms(store)


@pytest.mark.parametrize("executor", ["fast", "reference"])
def test_a_wide_project_is_answered_from_its_rows_as_the_reference_does(executor: str) -> None:
    engine = Engine(executor=executor)
    rows = [
        stored_scorer_row(i, f"s{i % 3}", tags=(f"t{i % 5}",), ratings={f"k{i}": i / 4})
        for i in range(MAX_RATING_KEYS + 50)
    ]
    engine.insert_rows(rows)
    for req in (
        {"project_id": "e/p", "after_ms": 0, "before_ms": 10**6},
        {"project_id": "e/p", "after_ms": 0, "before_ms": 10**6, "group_by": ["scorer_id"]},
        {"project_id": "e/p", "after_ms": 10, "before_ms": 200, "tags": ["t1"]},
    ):
        agrees_with_the_reference(engine, req)
    engine.check_invariants()


# --- a partitioning holds the rows queries asked for ----------------------------------


def test_a_first_query_partitions_its_window_and_later_ones_grow_the_range() -> None:
    store = ProjectStore("e/p")
    store.update(scorer_row(ms, "ab"[ms % 2]) for ms in range(100))
    index = guarded_aggregate_index(store).index
    assert window_ms(store) == {("a",): list(range(0, 100, 2)), ("b",): list(range(1, 100, 2))}
    TWO = (*DIMS, "span_status_code")
    index.partitions(("span_type",), 40, 50)  # another group_by set, asked for ten rows
    assert index.covered(("span_type",)) == (40, 50)
    views = aggregate_snapshot(store, TWO, 40, 50).views
    assert sum(span.hi - span.lo for _, span in views) == 10
    assert index.covered(TWO) == (40, 50)
    # Before the range: it grows to at least twice its size, then holds the window.
    views = aggregate_snapshot(store, TWO, 35, 45).views
    assert index.covered(TWO) == (30, 50)
    assert {key: view.columns.ms for key, view in views} == {
        ("a", "UNSET"): [36, 38, 40, 42, 44],
        ("b", "UNSET"): [35, 37, 39, 41, 43],
    }
    # Past its end: it grows to the window's end, or twice its size, whichever is more.
    aggregate_snapshot(store, TWO, 52, 53)
    assert index.covered(TWO) == (30, 70)
    store.check_invariants()


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 8192])
def test_partitions_built_in_chunks_keep_store_order_in_every_group(chunk: int) -> None:
    # Rows of three groups, interleaved unevenly, a fourth group first seen late.
    scorers = ["a", "b", "a", "c", "a", "a", "b", "c", "c", "a"] * 5 + ["d", "a", "d"]
    store = ProjectStore("e/p")
    store.update(scorer_row(ms, scorer, rating=ms / 8) for ms, scorer in enumerate(scorers))
    with mock.patch("refengine.fast.aggregate_index.BUILD_CHUNK", chunk):
        views = aggregate_snapshot(store, DIMS, 0, 10**6).views
    assert {key: view.columns.ms for key, view in views} == {
        (scorer,): [ms for ms, s in enumerate(scorers) if s == scorer] for scorer in "abcd"
    }
    assert {key: view.columns.ratings["_rating_"] for key, view in views} == {
        (scorer,): [ms / 8 for ms, s in enumerate(scorers) if s == scorer] for scorer in "abcd"
    }
    store.check_invariants()


def test_a_range_that_reaches_the_end_follows_appends_and_others_wait_for_a_query() -> None:
    store = ProjectStore("e/p")
    store.update(scorer_row(ms) for ms in range(10))
    index = guarded_aggregate_index(store).index
    aggregate_snapshot(store, DIMS, 5, 100)  # to the end
    aggregate_snapshot(store, ("span_type",), 0, 3)  # not to the end
    store.update(scorer_row(ms) for ms in range(10, 15))
    aggregate_snapshot(store, (), 0, 100)  # the master catches up
    assert index.covered(DIMS) == (5, 15)
    assert index.covered(("span_type",)) == (0, 3)
    store.check_invariants()
    assert window_ms(store, ("span_type",)) == {("call",): list(range(15))}
    store.check_invariants()
