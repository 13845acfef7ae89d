"""Properties of ``POST /feedback/aggregate`` (Hypothesis).

* agreement with the reference fold (:mod:`refengine.semantics.aggregate`)
  (exact, key order and float sums included);
* metamorphic: bucket rows add up to the unbucketed total, group rows partition the
  total, two adjacent windows split at a bucket boundary add up to the whole, and
  adding a filter never increases a count.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from refengine import Engine
from refengine.models import FeedbackAggregateReq
from refengine.rows import EPOCH, FeedbackRow
from refengine.semantics import aggregate
from refengine.synthetic import synthetic_rows
from reference import reference_aggregate
from strategies import (
    AGG_BUCKET_SECONDS,
    AGG_GROUP_BY,
    BASE,
    PROJECT,
    SPAN_MS,
    aggregate_filters,
    aggregate_requests,
    datasets,
    dense_aggregate_requests,
    dense_rows,
    populate,
)

Dataset = list[tuple[datetime, dict[str, Any]]]
FILTER_KEYS = (
    "feedback_types",
    "tags",
    "rating_min",
    "rating_max",
    "monitor_ids",
    "scorer_ids",
    "span_agent_names",
    "span_types",
)


def run(engine: Engine, req: dict[str, Any]) -> dict[str, Any]:
    return engine.feedback_aggregate(req).model_dump()


def counts_of(buckets: list[dict[str, Any]]) -> tuple[int, int, Counter[str], Counter[str]]:
    """Total, scored, tag and rating-key counts added over ``buckets``."""
    tags: Counter[str] = Counter()
    keys: Counter[str] = Counter()
    for b in buckets:
        tags.update(b["tag_counts"])
        keys.update(b["rating_counts"])
    return (
        sum(b["total_count"] for b in buckets),
        sum(b["scored_count"] for b in buckets),
        tags,
        keys,
    )


def sums_of(buckets: list[dict[str, Any]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for b in buckets:
        for key, value in b["rating_sums"].items():
            out[key] = out.get(key, 0.0) + value
    return out


def close_sums(a: dict[str, float], b: dict[str, float]) -> bool:
    """Equal up to float rounding, a missing key counting as 0 (sumMap drops zeros)."""
    return all(
        math.isclose(a.get(k, 0.0), b.get(k, 0.0), rel_tol=1e-9, abs_tol=1e-9)
        for k in set(a) | set(b)
    )


def unbucketed(req: dict[str, Any]) -> dict[str, Any]:
    return {**req, "time_bucket_seconds": None, "group_by": []}


@given(datasets(), aggregate_requests())
def test_agrees_with_the_reference_fold(dataset: Dataset, req: dict[str, Any]) -> None:
    engine = populate(dataset)
    got = run(engine, req)
    want = reference_aggregate(engine, req)
    # json.dumps keeps key order and the exact repr of every float.
    assert json.dumps(got) == json.dumps(want)


_SYNTHETIC: list[Engine] = []


def synthetic_engine() -> Engine:
    """400 realistic scorer rows over the strategies' 6-hour span (built once)."""
    if not _SYNTHETIC:
        engine = Engine()
        engine.insert_rows(
            synthetic_rows(PROJECT, 400, BASE, timedelta(milliseconds=SPAN_MS), seed=7)
        )
        _SYNTHETIC.append(engine)
    return _SYNTHETIC[0]


@given(aggregate_requests(PROJECT), st.sampled_from([[], ["sc_a"], ["toxicity", "pii*"]]))
def test_agrees_with_the_reference_on_dense_synthetic_data(
    req: dict[str, Any], scorer_ids: list[str]
) -> None:
    """Many rows per (bucket, group) cell: ordering, tags and sums all get exercised."""
    engine = synthetic_engine()
    req = {**req, "scorer_ids": scorer_ids}
    got = run(engine, req)
    assert json.dumps(got) == json.dumps(reference_aggregate(engine, req))


@given(datasets(), aggregate_requests(PROJECT), st.sampled_from(AGG_BUCKET_SECONDS))
def test_bucket_rows_add_up_to_the_total(dataset: Dataset, req: dict[str, Any], size: int) -> None:
    assume((req["before_ms"] - req["after_ms"]) / 1000 / size <= 256)
    engine = populate(dataset)
    bucketed = run(engine, {**req, "time_bucket_seconds": size})["buckets"]
    [total] = run(engine, unbucketed(req))["buckets"]
    assert counts_of(bucketed) == counts_of([total])
    assert close_sums(sums_of(bucketed), total["rating_sums"])
    starts = [b["time_bucket_start_ms"] for b in bucketed]
    assert all(s % (size * 1000) == 0 for s in starts)
    assert starts == sorted(starts)
    assert all(b["total_count"] > 0 for b in bucketed)


@given(
    datasets(),
    aggregate_requests(PROJECT),
    st.lists(st.sampled_from(AGG_GROUP_BY), min_size=1, max_size=4, unique=True),
)
def test_group_rows_partition_the_total(
    dataset: Dataset, req: dict[str, Any], group_by: list[str]
) -> None:
    engine = populate(dataset)
    grouped = run(engine, {**req, "time_bucket_seconds": None, "group_by": group_by})["buckets"]
    [total] = run(engine, unbucketed(req))["buckets"]
    assert counts_of(grouped) == counts_of([total])
    assert close_sums(sums_of(grouped), total["rating_sums"])
    keys = [tuple(b["group"].values()) for b in grouped]
    assert len(set(keys)) == len(keys)  # each group once
    assert all(list(b["group"]) == group_by for b in grouped)


def ms_of(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(milliseconds=1)


@given(datasets(), aggregate_requests(PROJECT), st.data())
def test_adjacent_windows_split_at_a_bucket_boundary(
    dataset: Dataset, req: dict[str, Any], data: st.DataObject
) -> None:
    # Built, not filtered: two rows a < b of the project, a bucket size that puts
    # them in different buckets, a window around both, and a split at a bucket
    # boundary between them — so rows sit on both sides and a misaligned bucket
    # (or one cut at the split) shows.
    instants = sorted({ms_of(m) for m, body in dataset if body["project_id"] == PROJECT})
    assume(len(instants) >= 2)
    i = data.draw(st.integers(0, len(instants) - 2))
    a, b = instants[i], data.draw(st.sampled_from(instants[i + 1 :]))
    fits = [
        size
        for size in (1, 7, 60, 300, 3600, 5400)
        if a // (size * 1000) != b // (size * 1000)
        and b // (size * 1000) - a // (size * 1000) + 3 <= 256
    ]
    assume(fits)
    size = data.draw(st.sampled_from(fits))
    width = size * 1000
    after = data.draw(st.integers(a // width * width - width, a))
    before = data.draw(st.integers(b + 1, b // width * width + width))
    split = data.draw(st.integers(a // width + 1, b // width)) * width
    # Only group_by is kept from the drawn request: filters would often empty the
    # window, and this law does not depend on them (their own properties cover them).
    window = {
        "project_id": PROJECT,
        "group_by": req["group_by"],
        "time_bucket_seconds": size,
        "after_ms": after,
        "before_ms": before,
    }
    engine = populate(dataset)
    whole = run(engine, window)["buckets"]
    left = run(engine, {**window, "before_ms": split})["buckets"]
    right = run(engine, {**window, "after_ms": split})["buckets"]
    assert left + right == whole


@given(datasets(), aggregate_requests(PROJECT), aggregate_filters())
def test_adding_a_filter_never_increases_a_count(
    dataset: Dataset, req: dict[str, Any], extra: dict[str, Any]
) -> None:
    base = {k: v for k, v in req.items() if k not in extra}
    narrowed = {**base, **extra}
    if (narrowed["before_ms"] - narrowed["after_ms"]) > 31 * 86_400_000:
        return
    engine = populate(dataset)
    wide = {
        (b["time_bucket_start_ms"], tuple(b["group"].items())): b
        for b in run(engine, base)["buckets"]
    }
    for b in run(engine, narrowed)["buckets"]:
        cell = (b["time_bucket_start_ms"], tuple(b["group"].items()))
        if b["total_count"] == 0:
            continue  # the single row of an empty bare total
        assert cell in wide
        w = wide[cell]
        assert b["total_count"] <= w["total_count"]
        assert b["scored_count"] <= w["scored_count"]
        assert all(n <= w["tag_counts"][t] for t, n in b["tag_counts"].items())
        assert all(n <= w["rating_counts"][k] for k, n in b["rating_counts"].items())


@given(datasets(), aggregate_requests())
def test_filters_keep_exactly_the_matching_rows(dataset: Dataset, req: dict[str, Any]) -> None:
    """The bare total with the request's filters equals a count of the rows that the
    reference's row predicates accept — the fast filters agree with them."""
    engine = populate(dataset)
    bare = {k: v for k, v in req.items() if k in FILTER_KEYS or k in ("project_id",)}
    bare.update(after_ms=req["after_ms"], before_ms=req["before_ms"])
    [total] = run(engine, bare)["buckets"]
    p = aggregate.plan(FeedbackAggregateReq.model_validate(bare))
    expected = sum(
        1
        for r in engine.rows(req["project_id"])
        if aggregate.in_project_window(p, r) and aggregate.passes_filters(p, r)
    )
    assert total["total_count"] == expected


@settings(max_examples=100)
@given(dense_rows(), dense_aggregate_requests())
def test_agrees_with_the_reference_on_dense_cells_with_every_filter_kind(
    rows: list[FeedbackRow], req: dict[str, Any]
) -> None:
    """The fast fold's in-place filters (signature decisions, per-profile and
    per-row masks) over cells large and small: filters that drop whole cells or
    every row of a view, rating bounds meeting ``-0.0``, repeated tags."""
    engine = Engine()
    engine.insert_rows(rows)
    got = run(engine, req)
    assert json.dumps(got) == json.dumps(reference_aggregate(engine, req))
