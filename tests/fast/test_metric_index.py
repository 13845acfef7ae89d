"""The per-project stats metric columns (``refengine.fast.metric_index``): they stay a
faithful reading of the stored payloads through appends, out-of-order inserts and
evictions."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given

from refengine import Engine, ManualClock
from refengine.fast.metric_index import MAX_METRIC_COLUMNS, PARSE_CHUNK
from refengine.fast.snapshots import guarded_metric_index, stats_columns
from refengine.fast.summaries import Piece, merge
from refengine.paths import compile_path
from refengine.rows import FeedbackRow
from refengine.store import ProjectStore
from reference import reference_stats
from strategies import interleaved_steps, replay, scorer_row, stats_requests

SCORE = compile_path("output.score", "numeric")
PASSED = compile_path("output.passed", "boolean")


def row(ms: int, score: Any = 0.5, passed: Any = True) -> FeedbackRow:
    return scorer_row(ms, payload={"output": {"score": score, "passed": passed}})


def readings(store: ProjectStore, after: int = 0, before: int = 10**6) -> list[list[Any]]:
    """Per metric (score, passed), the window's entries; None for no value."""
    _, columns = stats_columns(store, after, before, [SCORE, PASSED])
    return [[None if math.isnan(v) else v for v in column] for column in columns]


def test_a_column_reads_every_row_with_nan_for_no_value() -> None:
    store = ProjectStore("e/p")
    store.update([row(1, 0.25), row(2, "0.5", False), row(3, 7, "yes"), row(4, None, None)])
    assert readings(store) == [[0.25, None, 7.0, None], [1.0, 0.0, None, None]]
    rows, columns = stats_columns(store, 2, 4, [SCORE])
    assert [r.created_at_ms for r in rows] == [2, 3]
    assert [str(v) for v in columns[0]] == ["nan", "7.0"]
    store.check_invariants()


def test_appends_are_picked_up_by_the_next_query() -> None:
    store = ProjectStore("e/p")
    store.update([row(1, 0.1), row(2, 0.2)])
    assert readings(store)[0] == [0.1, 0.2]
    store.update([row(3, 0.3), row(3, 0.35)])
    assert readings(store)[0] == [0.1, 0.2, 0.3, 0.35]
    store.check_invariants()


def test_an_insert_before_the_end_rereads_from_that_millisecond() -> None:
    store = ProjectStore("e/p")
    store.update(row(ms, ms / 100) for ms in (10, 20, 30, 40))
    assert readings(store)[0] == [0.1, 0.2, 0.3, 0.4]  # built before the inserts
    store.add(row(25, 0.25))
    store.add(row(5, 0.05))
    store.check_invariants()  # stale columns: the check does not rebuild them
    assert readings(store)[0] == [0.05, 0.1, 0.2, 0.25, 0.3, 0.4]
    assert readings(store, 20, 31)[0] == [0.2, 0.25, 0.3]
    store.check_invariants()


def test_more_rows_than_a_parse_chunk_line_up() -> None:
    store = ProjectStore("e/p")
    n = PARSE_CHUNK * 2 + 3
    store.update(row(ms, float(ms)) for ms in range(n))
    assert readings(store)[0] == [float(ms) for ms in range(n)]
    store.add(row(n, "x"))  # one more, read on its own
    assert readings(store)[0][-2:] == [float(n - 1), None]
    store.check_invariants()


def test_the_least_recently_used_column_is_dropped_and_rebuilt() -> None:
    store = ProjectStore("e/p")
    store.update(row(ms, float(ms)) for ms in range(3))
    readers = [compile_path(f"output.m{i}", "numeric") for i in range(MAX_METRIC_COLUMNS)]
    stats_columns(store, 0, 10, [SCORE])
    for reader in readers:
        stats_columns(store, 0, 10, [reader])
    kept = list(guarded_metric_index(store).index._columns)  # least recently used first
    assert len(kept) == MAX_METRIC_COLUMNS
    assert (SCORE.keys, "numeric") not in kept  # the first one asked for went first
    store.add(row(5, 5.0))
    assert readings(store)[0] == [0.0, 1.0, 2.0, 5.0]  # rebuilt, complete
    store.check_invariants()


def test_a_query_with_more_metrics_than_are_kept_reads_them_all() -> None:
    clock = ManualClock("2024-03-10T10:00:00Z")
    engine = Engine(clock=clock)
    n = MAX_METRIC_COLUMNS + 4
    for value in (1, 2):
        engine.feedback_create(
            {
                "project_id": "e/p",
                "weave_ref": "r",
                "feedback_type": "t",
                "payload": {f"m{i}": value * i for i in range(n)},
            }
        )
    req = {
        "project_id": "e/p",
        "start": "2024-03-10T09:00:00Z",
        "end": "2024-03-10T11:00:00Z",
        "metrics": [{"json_path": f"m{i}", "aggregations": ["sum"]} for i in range(n)],
    }
    got = engine.feedback_stats(req)
    assert got.window_stats == {f"m{i}": {"sum": 3.0 * i} for i in range(n)}
    assert json.dumps(got.buckets) == json.dumps(reference_stats(engine, req)["buckets"])
    engine.check_invariants()


def test_a_categorical_metric_has_no_column() -> None:
    store = ProjectStore("e/p")
    with pytest.raises(ValueError, match="categorical metric has no column"):
        stats_columns(store, 0, 1, [compile_path("output.label", "categorical")])


def test_check_catches_a_column_that_drifted_from_the_store() -> None:
    store = ProjectStore("e/p")
    store.update(row(ms, float(ms)) for ms in range(5))
    readings(store)
    column = guarded_metric_index(store).index._columns[(SCORE.keys, "numeric")]
    column[2] = 9.0
    with pytest.raises(AssertionError, match="differs from the store"):
        store.check_invariants()
    column[2] = 2.0
    store.check_invariants()
    column.append(5.0)
    with pytest.raises(AssertionError, match="longer than the store"):
        store.check_invariants()


# --- interleaved writes and queries agree with the reference fold ---------------------


def agrees_with_the_reference(engine: Engine, req: dict[str, Any]) -> None:
    got = engine.feedback_stats(req)
    expected = reference_stats(engine, req)
    assert json.dumps(got.buckets) == json.dumps(expected["buckets"])
    assert json.dumps(got.window_stats) == json.dumps(expected["window_stats"])


@given(interleaved_steps(stats_requests()))
def test_queries_between_writes_agree_with_a_full_scan(plan: list[tuple[Any, ...]]) -> None:
    replay(plan, agrees_with_the_reference)


HOUR = 3_600_000


def hour_pieces(store: ProjectStore, start: int, end: int, ordered: bool = True) -> list[Piece]:
    """The pieces of output.score's values of the rows in ``[start, end)`` (ms, whole
    seconds)."""
    guarded = guarded_metric_index(store)
    index = guarded.index
    with guarded.lock:
        with store.lock:
            columns, new_rows = index.pending(store.rows, [SCORE])
            size = len(store.rows)
        index.catch_up(columns, [SCORE], new_rows, size)
        start_s, end_s = start // 1000, end // 1000
        lo, hi = index.span(start_s, end_s)
        return index.pieces(
            SCORE, columns[0], lo, hi, start_s=start_s, end_s=end_s, ordered=ordered
        )


def test_hour_blocks_and_runs_are_kept_until_a_row_lands_in_them() -> None:
    store = ProjectStore("e/p")
    scores = [0.9, 0.1, 0.5, 0.3, 0.7, 0.2]
    store.update([row(h * HOUR + 10_000 * i, s) for h in range(3) for i, s in enumerate(scores)])

    hours = hour_pieces(store, 0, 3 * HOUR, ordered=False)  # summaries of each hour
    assert [(p.summary.n, p.summary.low, p.ordered) for p in hours if p.summary] == [
        (6, 0.1, None)
    ] * 3
    again = hour_pieces(store, 0, 3 * HOUR, ordered=False)
    assert all(a is b for a, b in zip(again, hours, strict=True))
    (run,) = hour_pieces(store, 0, 3 * HOUR)  # one sorted run of the three hours
    assert list(run.ordered or []) == sorted(scores * 3)
    assert run.summary == merge(p.summary for p in hours)
    assert hour_pieces(store, 0, 3 * HOUR)[0] is run  # not made again
    store.check_invariants()

    store.update([row(HOUR + 5_000, 0.0)])  # into hour 1: its block and the later ones go
    moved = hour_pieces(store, 0, 3 * HOUR, ordered=False)
    assert moved[0] is hours[0]
    assert [p.summary.n for p in moved if p.summary] == [6, 7, 6]
    (again,) = hour_pieces(store, 0, 3 * HOUR)
    assert again is not run
    assert list(again.ordered or []) == sorted([*scores * 3, 0.0])
    store.check_invariants()

    # ranges starting or ending inside hours: the rows outside whole hours are
    # pieces of their own, in store order
    (inside,) = hour_pieces(store, HOUR + 20_000, 2 * HOUR + 30_000)
    assert list(inside.ordered or []) == [0.1, 0.2, 0.3, 0.5, 0.5, 0.7, 0.9]
    before, middle = hour_pieces(store, HOUR + 20_000, 3 * HOUR, ordered=False)
    assert [p.summary.n for p in (before, middle) if p.summary] == [4, 6]
    assert middle is moved[2]
    first, last = hour_pieces(store, 0, 2 * HOUR + 30_000, ordered=False)[-2:]
    assert (first, last.summary.n if last.summary else 0) == (moved[1], 3)
    assert hour_pieces(store, 3 * HOUR, 4 * HOUR) == []
    store.check_invariants()


def test_rows_appended_into_a_runs_last_hour_make_it_anew() -> None:
    store = ProjectStore("e/p")
    store.update([row(h * HOUR + 7, float(h)) for h in range(2)])
    (run,) = hour_pieces(store, 0, 2 * HOUR)
    store.update([row(HOUR + 8, -1.0)])  # at the end: nothing goes stale
    (again,) = hour_pieces(store, 0, 2 * HOUR)
    assert list(again.ordered or []) == [-1.0, 0.0, 1.0]
    assert list(run.ordered or []) == [0.0, 1.0]  # what a fold holds stays as it was
    store.check_invariants()


def test_the_runs_kept_hold_at_most_one_value_per_row() -> None:
    store = ProjectStore("e/p")
    store.update([row(h * HOUR + i, float(i)) for h in range(4) for i in range(3)])
    index = guarded_metric_index(store).index
    runs = lambda: sorted(index._runs[(SCORE.keys, SCORE.value_type)].spans)  # noqa: E731
    hour_pieces(store, 0, 2 * HOUR)
    hour_pieces(store, 2 * HOUR, 4 * HOUR)
    hour = HOUR // 1000  # runs are named by their hours' seconds
    assert runs() == [(0, 2 * hour), (2 * hour, 4 * hour)]  # 12 values for 12 rows
    hour_pieces(store, HOUR, 3 * HOUR)  # 6 more: the least recently used run goes
    assert runs() == [(hour, 3 * hour), (2 * hour, 4 * hour)]
    store.check_invariants()


def test_percentiles_over_sorted_blocks_agree_with_the_reference() -> None:
    rows = [row(h * HOUR // 4 + 7, (h * 37 % 11) / 10) for h in range(40)]
    rows += [row(HOUR + 1, None), row(2 * HOUR, -0.0), row(2 * HOUR + 1, 0.0)]
    req = {
        "project_id": "e/p",
        "start": "1970-01-01T00:00:00Z",
        "end": "1970-01-01T10:00:00Z",
        "granularity": 7200,
        "metrics": [{"json_path": "output.score", "percentiles": [0, 25, 50, 99, 100]}],
    }
    engine = Engine(clock=ManualClock("1970-01-02T00:00:00Z"))
    engine.insert_rows(rows)
    first = engine.feedback_stats(req).model_dump()
    assert engine.feedback_stats(req).model_dump() == first  # from the kept blocks
    assert first == reference_stats(engine, req)
    engine.insert_rows([row(3 * HOUR + 3, 0.05)])
    assert engine.feedback_stats(req).model_dump() == reference_stats(engine, req)


def test_times_far_apart_are_kept_in_eight_bytes_and_read_the_same() -> None:
    # 4-byte seconds about the first row while they fit, 8-byte ones after
    far = (2**31 + 5) * 1000  # more than 68 years after the first row
    engine = Engine(clock=ManualClock("1970-01-02T00:00:00Z"), executor="fast")
    engine.insert_rows([row(HOUR + 1000, 0.25), row(2 * HOUR, 0.5)])

    def around(ms: int) -> dict[str, Any]:
        start = datetime.fromtimestamp(ms // 1000 - 86_400, timezone.utc)
        return {
            "project_id": "e/p",
            "start": start.isoformat(),
            "end": (start + timedelta(days=2)).isoformat(),
            "granularity": 3600,
            "metrics": [{"json_path": "output.score", "aggregations": ["count", "sum", "max"]}],
        }

    agrees_with_the_reference(engine, around(HOUR))
    index = guarded_metric_index(engine._projects["e/p"]).index
    assert index._seconds.typecode == "i"
    engine.insert_rows([row(far, 1.0), row(-far, -1.0)])
    for ms in (-far, HOUR, far):
        agrees_with_the_reference(engine, around(ms))
    assert index._seconds.typecode == "q"
    sums = [engine.feedback_stats(around(ms)).window_stats for ms in (-far, HOUR, far)]
    assert [s["output_score"]["sum"] for s in sums if s] == [-1.0, 0.75, 1.0]
    engine.check_invariants()
