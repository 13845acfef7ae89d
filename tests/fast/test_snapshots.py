"""The fast executor's snapshots (``refengine.fast.snapshots``): index work holds
the index's own lock, never the engine lock a write needs."""

from __future__ import annotations

import threading

import pytest

from refengine import Engine, ManualClock
from refengine.fast import snapshots
from refengine.fast.snapshots import (
    aggregate_snapshot,
    aggregate_view,
    guarded_aggregate_index,
    guarded_metric_index,
    stats_columns,
)
from refengine.paths import compile_path
from refengine.rows import make_row
from refengine.store import ProjectStore
from strategies import scorer_row


def test_writes_never_wait_for_an_index_build() -> None:
    """A long index build holds only its project's index lock: while it is held,
    creates into that project and others still complete, and the next query then
    sees them."""
    engine = Engine(clock=ManualClock("2024-05-01T12:00:00Z"))
    create = {"weave_ref": "weave:///e/p/call/c", "feedback_type": "custom", "payload": {}}
    engine.feedback_create({**create, "project_id": "e/busy"})
    busy = engine._projects["e/busy"]  # the store whose build the test stands in for
    index_lock = guarded_aggregate_index(busy).lock
    metrics_lock = guarded_metric_index(busy).lock
    finished = threading.Event()

    def write() -> None:
        engine.feedback_create({**create, "project_id": "e/other"})
        engine.feedback_create({**create, "project_id": "e/busy"})
        finished.set()

    with index_lock, metrics_lock:
        writer = threading.Thread(target=write)
        writer.start()
        # Liveness, not speed: a write waiting on the held locks would never finish.
        assert finished.wait(timeout=60)
    writer.join()
    req = {"project_id": "e/busy", "after_ms": 0, "before_ms": 2**41}
    assert engine.feedback_aggregate(req).buckets[0].total_count == 2
    engine.check_invariants()


def test_removal_keeps_the_indexes_right() -> None:
    """A purge or replace removes rows from the store: both indexes drop what they
    hold from the earliest removed row on and read the rest again."""
    store = ProjectStore("e/p")
    for ms in range(10):
        store.add(
            make_row(
                id=str(ms % 3),
                project_id="e/p",
                weave_ref="r",
                wb_user_id="u",
                creator=None,
                created_at_us=ms * 1000,
                feedback_type="t",
                payload={"v": ms},
            )
        )
    reader = compile_path("v", "numeric")

    def indexed() -> tuple[list[float], int]:
        (column,) = stats_columns(store, 0, 100, [reader])[1]
        views = aggregate_snapshot(store, (), 0, 100).views
        return list(column), sum(span.hi - span.lo for _, span in views)

    assert indexed() == ([float(ms) for ms in range(10)], 10)
    assert store.remove_ids({"1"}) == 3
    store.check_invariants()  # stale and longer than the store: still consistent
    assert indexed() == ([0.0, 2.0, 3.0, 5.0, 6.0, 8.0, 9.0], 7)
    store.check_invariants()
    assert store.remove_ids({"0", "2"}) == 7
    assert len(store) == 0
    store.check_invariants()
    assert indexed() == ([], 0)


def test_an_aggregate_view_reads_the_index_in_place_under_its_lock() -> None:
    engine = Engine()
    engine.insert_rows([scorer_row(ms) for ms in (10, 20, 30)])
    store = engine._store_to_read("e/p")
    guarded = guarded_aggregate_index(store)
    with aggregate_view(store, (), 15, 31) as view:
        assert guarded.lock.locked()
        [(key, span)] = view.views
        assert key == ()
        assert span.columns is guarded.index.master  # no copy
        assert span.columns.ms[span.lo : span.hi] == [20, 30]
    assert not guarded.lock.locked()
    [(_, copied)] = aggregate_snapshot(store, (), 15, 31).views
    assert copied.columns is not guarded.index.master
    assert (copied.columns.ms, copied.lo, copied.hi) == ([20, 30], 0, 2)


def test_writes_keep_the_aggregate_index_current(monkeypatch: pytest.MonkeyPatch) -> None:
    """On the fast executor a write that leaves the index ``KEEP_CURRENT_ROWS`` rows
    or more behind brings it (and a partitioning that reaches the end) up to date;
    a shorter lag is left to the next query or write."""
    monkeypatch.setattr(snapshots, "KEEP_CURRENT_ROWS", 3)
    engine = Engine(executor="fast")
    engine.insert_rows([scorer_row(ms) for ms in (1, 2)])
    store = engine._store_to_read("e/p")
    index = guarded_aggregate_index(store).index
    assert len(index.master) == 0  # lagging two rows: left alone
    engine.insert_rows([scorer_row(3)])
    assert index.master.ms == [1, 2, 3]
    aggregate_snapshot(store, ("scorer_id",), 2, 10)
    engine.insert_rows([scorer_row(ms) for ms in (4, 5, 6)])
    assert index.master.ms == [1, 2, 3, 4, 5, 6]
    assert index.covered(("scorer_id",)) == (1, 6)
    engine.check_invariants()


def test_a_write_leaves_the_index_work_to_a_query_that_holds_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(snapshots, "KEEP_CURRENT_ROWS", 1)
    engine = Engine(executor="fast")
    engine.insert_rows([scorer_row(1)])
    store = engine._store_to_read("e/p")
    guarded = guarded_aggregate_index(store)
    with guarded.lock:  # as a query folding the index would
        engine.insert_rows([scorer_row(2)])  # returns at once, does not wait
        assert guarded.index.master.ms == [1]
    engine.insert_rows([scorer_row(3)])
    assert guarded.index.master.ms == [1, 2, 3]


def test_the_reference_executor_keeps_no_index_for_writes() -> None:
    engine = Engine(executor="reference")
    engine.insert_rows([scorer_row(ms) for ms in range(snapshots.KEEP_CURRENT_ROWS)])
    assert engine._store_to_read("e/p")._derived == {}
