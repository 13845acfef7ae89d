"""The Engine façade: input forms, isolation, thread safety."""

from __future__ import annotations

import contextlib
import itertools
import threading
import uuid
from collections.abc import Callable

import pytest
from pydantic import ValidationError

from refengine import Engine, InvalidRequest, ManualClock
from refengine.models import FeedbackCreateBatchReq, FeedbackCreateReq, unknown_fields


def simple(project: str = "e/p", **fields: object) -> dict[str, object]:
    return {"project_id": project, "weave_ref": "r", "feedback_type": "t", "payload": {}, **fields}


def test_accepts_model_or_dict() -> None:
    engine = Engine(clock=ManualClock("2024-01-01T00:00:00Z"))
    engine.feedback_create(FeedbackCreateReq.model_validate(simple()))
    engine.feedback_create(simple())
    assert len(engine.rows("e/p")) == 2


@pytest.mark.parametrize("bad", [None, 5, "text", [1, 2]])
def test_non_mapping_input_is_a_validation_error(bad: object) -> None:
    with pytest.raises(ValidationError):
        Engine().feedback_create(bad)  # type: ignore[arg-type]


def test_batch_model_is_left_as_given() -> None:
    # A batch validated from a dict is consumed as it is prepared; a caller's model
    # must come back untouched.
    engine = Engine(clock=ManualClock("2024-01-01T00:00:00Z"))
    batch = FeedbackCreateBatchReq.model_validate({"batch": [simple(id="a"), simple(id="b")]})
    items = list(batch.batch)
    res = engine.feedback_create_batch(batch)
    assert batch.batch == items
    assert [r.id for r in res.res] == ["a", "b"]
    res = engine.feedback_create_batch({"batch": [simple(id="c"), simple(id="d")]})
    assert [r.id for r in res.res] == ["c", "d"]
    assert [r.id for r in engine.rows("e/p")] == ["a", "b", "c", "d"]


def test_projects_are_isolated() -> None:
    engine = Engine()
    engine.feedback_create(simple("a/x"))
    engine.feedback_create(simple("b/y"))
    engine.feedback_create(simple("b/y"))
    assert engine.projects() == ["a/x", "b/y"]
    assert [len(engine.rows(p)) for p in ("a/x", "b/y", "c/z")] == [1, 2, 0]
    assert len(engine) == 3


def test_rows_follow_clock_not_insertion() -> None:
    clock = ManualClock("2024-01-01T00:00:10Z")
    engine = Engine(clock=clock)
    engine.feedback_create(simple(id="late"))
    clock.set("2024-01-01T00:00:05Z")
    engine.feedback_create(simple(id="early"))
    assert [r.id for r in engine.rows("e/p")] == ["early", "late"]
    engine.check_invariants()


def run_in_threads(work: Callable[[int], None], count: int) -> None:
    """Run ``work(0)`` … ``work(count - 1)`` in threads at once; re-raise the first failure."""
    errors: list[BaseException] = []

    def guarded(t: int) -> None:
        try:
            work(t)
        except BaseException as exc:  # pragma: no cover - surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(t,)) for t in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:  # pragma: no cover - a failure of the code under test
        raise errors[0]


def test_concurrent_creates_lose_nothing() -> None:
    engine = Engine()
    per_thread = 500

    def work(t: int) -> None:
        for i in range(per_thread):
            if i % 50 == 0:
                engine.feedback_create_batch(
                    {"batch": [simple(id=f"{t}-{i}-b{j}") for j in range(3)]}
                )
            else:
                engine.feedback_create(simple(id=f"{t}-{i}"))

    run_in_threads(work, 8)
    ids = [r.id for r in engine.rows("e/p")]
    expected = 8 * (per_thread + (per_thread // 50) * 2)
    assert len(ids) == expected == len(set(ids))
    engine.check_invariants()


def numbered_engine() -> Engine:
    numbers = itertools.count()  # next() on a count is atomic: safe across threads
    return Engine(
        clock=ManualClock("2024-01-01T00:00:00Z"), id_factory=lambda: f"id-{next(numbers)}"
    )


def test_rejected_batch_gives_its_ids_back_in_order() -> None:
    engine = numbered_engine()
    bad = simple(span_status_code="BAD")
    for batch in ([simple(), simple(), bad], [simple(), bad], [bad]):
        with pytest.raises(InvalidRequest):
            engine.feedback_create_batch({"batch": batch})
    assert len(engine) == 0
    assert engine.feedback_create(simple()).id == "id-0"
    res = engine.feedback_create_batch({"batch": [simple(id="mine"), simple(), simple()]})
    assert [r.id for r in res.res] == ["mine", "id-1", "id-2"]
    assert engine.feedback_create(simple()).id == "id-3"
    assert [r.id for r in engine.rows("e/p")] == ["id-0", "mine", "id-1", "id-2", "id-3"]


def test_rejected_batch_keeps_no_default_ids() -> None:
    # Default ids tell their row's time, so none drawn by a rejected batch is reused.
    clock = ManualClock("2024-01-01T00:00:00Z")
    engine = Engine(clock=clock)
    with pytest.raises(InvalidRequest):
        engine.feedback_create_batch({"batch": [simple(), simple(span_status_code="BAD")]})
    clock.advance(seconds=60)
    res = engine.feedback_create(simple())
    assert uuid.UUID(res.id).int >> 80 == engine.rows("e/p")[0].created_at_ms == 1704067260000


def test_concurrent_rejected_batches_lose_and_repeat_no_id() -> None:
    engine = numbered_engine()
    bad = simple(span_status_code="BAD")

    def work(_: int) -> None:
        for i in range(60):
            batch = [simple() for _ in range(i % 4)]
            with contextlib.suppress(InvalidRequest):
                engine.feedback_create_batch({"batch": [*batch, bad] if i % 3 else batch})
            engine.feedback_create(simple())

    run_in_threads(work, 6)
    # Each thread's last rejected batch may leave up to three ids to give back; 20
    # more rows take them all. Then every id drawn is stored, each once: 0..n-1.
    engine.feedback_create_batch({"batch": [simple() for _ in range(20)]})
    ids = sorted(int(r.id[3:]) for r in engine.rows("e/p"))
    assert ids == list(range(len(ids)))
    assert len(ids) == 6 * 60 + sum(i % 4 for i in range(60) if i % 3 == 0) * 6 + 20


def test_aggregates_during_concurrent_creates_see_whole_writes() -> None:
    """Queries racing creates (the clock jumping back and forth, so the aggregate
    index is rebuilt often) always see a prefix of whole batches and end exact."""
    clock = ManualClock("2024-01-01T00:00:00Z")
    engine = Engine(clock=clock)
    request = {"project_id": "e/p", "after_ms": 0, "before_ms": 2**42}
    totals: list[int] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def write(t: int) -> None:
        try:
            for i in range(200):
                clock.set(f"2024-01-01T00:00:{(i * 7 + t) % 60:02d}Z")
                engine.feedback_create_batch(
                    {"batch": [simple(id=f"{t}-{i}-{j}") for j in range(2)]}
                )
        except BaseException as exc:  # pragma: no cover - surfaced below
            errors.append(exc)

    def read() -> None:
        try:
            while not done.is_set():
                totals.append(engine.feedback_aggregate(request).buckets[0].total_count)
        except BaseException as exc:  # pragma: no cover - surfaced below
            errors.append(exc)

    writers = [threading.Thread(target=write, args=(t,)) for t in range(4)]
    reader = threading.Thread(target=read)
    reader.start()
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    done.set()
    reader.join()
    assert errors == []
    assert totals
    assert all(total % 2 == 0 for total in totals)  # never half a batch
    assert totals == sorted(totals)
    assert engine.feedback_aggregate(request).buckets[0].total_count == 4 * 200 * 2
    engine.check_invariants()


# --- unknown fields (SEMANTICS "Errors / Unknown fields") ---------------------------------


def test_unknown_fields_default_reject() -> None:
    engine = Engine(clock=ManualClock("2024-01-01T00:00:00Z"))
    with pytest.raises(ValidationError, match="extra_forbidden"):
        engine.feedback_create(simple(surprise=1))
    with pytest.raises(ValidationError, match="extra_forbidden"):
        engine.feedback_create_batch({"batch": [simple(), simple(surprise=1)]})
    assert len(engine) == 0


def test_unknown_fields_ignore_drops_them_everywhere() -> None:
    engine = Engine(clock=ManualClock("2024-01-01T00:00:00Z"), unknown_fields="ignore")
    engine.feedback_create(simple(surprise=1))
    engine.feedback_create_batch({"batch": [simple(a=1), simple(b=2)], "c": 3})
    window = {"project_id": "e/p", "after_ms": 0, "before_ms": 1704153600000, "typo": ["x"]}
    assert engine.feedback_aggregate(window).buckets[0].total_count == 3
    stats = engine.feedback_stats(
        {
            "project_id": "e/p",
            "start": "2024-01-01T00:00:00Z",
            "end": "2024-01-01T01:00:00Z",
            "metrics": [{"json_path": "x", "aggregations": ["count"], "unit": "s"}],
        }
    )
    assert stats.window_stats == {"x": {"count": None}}  # no row has x
    with pytest.raises(ValidationError) as info:  # known fields are still checked
        engine.feedback_create(simple(payload=[], surprise=1))
    assert [e["loc"] for e in info.value.errors()] == [("payload",)]


def test_unknown_fields_mode_is_per_engine() -> None:
    # Two engines in one thread: the mode travels with each call, not with the thread.
    lenient = Engine(unknown_fields="ignore")
    strict = Engine()
    lenient.feedback_create(simple(surprise=1))
    with pytest.raises(ValidationError):
        strict.feedback_create(simple(surprise=1))
    lenient.feedback_create(simple(surprise=2))
    # A block of the other mode around the call changes nothing.
    with unknown_fields("ignore"), pytest.raises(ValidationError):
        strict.feedback_create(simple(surprise=3))
    with unknown_fields("reject"):
        lenient.feedback_create(simple(surprise=4))
    assert (len(lenient), len(strict)) == (3, 0)


def test_unknown_fields_mode_is_checked() -> None:
    with pytest.raises(ValueError, match="unknown_fields must be 'reject' or 'ignore'"):
        Engine(unknown_fields="drop")  # type: ignore[arg-type]


# --- executors -------------------------------------------------------------------------


def test_an_unknown_executor_is_a_clear_error() -> None:
    with pytest.raises(
        ValueError, match="unknown executor 'quick': expected one of 'fast', 'reference'"
    ):
        Engine(executor="quick")


@pytest.mark.parametrize("executor", ["fast", "reference"])
def test_the_engine_says_which_executor_it_uses(executor: str) -> None:
    assert Engine(executor=executor).executor == executor


def test_both_executors_answer_alike() -> None:
    clock = ManualClock("2024-05-01T12:00:00Z")
    engines = [Engine(clock=clock, executor=name) for name in ("fast", "reference")]
    for engine in engines:
        for i, rating in enumerate([0.5, 0.25, -0.75, 0.0]):
            clock.set(f"2024-05-01T12:0{i}:00Z")
            engine.feedback_create(
                {"project_id": "e/p", "weave_ref": "weave:///e/p/call/c", "feedback_type":
                 "wandb.runnable.s", "runnable_ref": "weave:///e/p/object/s:v1",
                 "payload": {"output": {"score": rating}}, "scorer_ratings": {"_rating_": rating},
                 "scorer_tags": ["a"] * i}
            )  # fmt: skip
    after_ms = 1714564800000  # 2024-05-01T12:00:00Z
    aggregate = {"project_id": "e/p", "after_ms": after_ms, "before_ms": after_ms + 600_000,
                 "time_bucket_seconds": 120, "group_by": ["scorer_id"]}  # fmt: skip
    stats = {"project_id": "e/p", "start": "2024-05-01T11:00:00Z",
             "metrics": [{"json_path": "output.score", "percentiles": [50]}]}  # fmt: skip
    fast, reference = engines
    assert fast.feedback_aggregate(aggregate) == reference.feedback_aggregate(aggregate)
    assert fast.feedback_stats(stats) == reference.feedback_stats(stats)
    # end is now (12:03), exclusive: the last row is not in the window
    assert sum(bucket["count"] for bucket in fast.feedback_stats(stats).buckets) == 3
