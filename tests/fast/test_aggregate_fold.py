"""The fast aggregate fold's internals: packed counts, the many-keys fallback, the
bucket models built without validation, the filters folded in place (cells and
views that fail whole, sums that skip failing rows, repeated tags in large
masked cells) and the copying fallback past the byte limits. (Agreement of whole
answers with the reference fold: tests/properties/test_aggregate_properties.py.)"""

from __future__ import annotations

import copy
import pickle
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from refengine import Engine
from refengine.fast.aggregate import (
    DIRECT_SUM_ROWS,
    MAX_PACKED_FIELDS,
    _loop_counts,
    _Packing,
    trusted_bucket,
    trusted_buckets,
)
from refengine.fast.columns import new_signatures
from refengine.models import FeedbackAggregateBucket
from refengine.rows import FeedbackRow
from strategies import scorer_row, signature_columns


@given(signature_columns, st.data())
def test_packed_counts_equal_the_per_signature_loop(
    pairs: list[tuple[tuple[str, ...], tuple[str, ...]]], data: st.DataObject
) -> None:
    signatures = new_signatures()
    codes = signatures.encode_all(pairs)
    packing = _Packing(set(codes), signatures.values)
    lo = data.draw(st.integers(0, len(codes)))
    hi = data.draw(st.integers(lo, len(codes)))
    packed = packing.counts(codes, lo, hi)
    looped = _loop_counts(signatures.values, codes, lo, hi)
    assert packed == looped
    assert [list(m) for m in packed[2:]] == [list(m) for m in looped[2:]]  # key order


def test_packed_counts_of_a_large_cell_count_codes_first() -> None:
    signatures = new_signatures()
    pairs = [(("b", "a", "a"), ("k",)), ((), ())] * DIRECT_SUM_ROWS
    codes = signatures.encode_all(pairs)
    counts = _Packing(set(codes), signatures.values).counts(codes, 0, len(codes))
    n = DIRECT_SUM_ROWS
    assert counts == (2 * n, n, {"a": 2 * n, "b": n}, {"k": n})


def _row(ms: int, ratings: dict[str, float]) -> FeedbackRow:
    return scorer_row(ms, "s", tags=("t",), ratings=ratings)


def test_a_view_with_many_keys_falls_back_and_agrees_with_the_reference() -> None:
    many = {f"k{i:03}": float(i) for i in range(MAX_PACKED_FIELDS + 1)}
    rows = [_row(1000, many), _row(2000, {"_rating_": 0.5}), _row(3_700_000, {"k001": 2.0})]
    req: dict[str, Any] = {
        "project_id": rows[0].project_id,
        "after_ms": 0,
        "before_ms": 7_200_000,
        "time_bucket_seconds": 3600,
        "group_by": ["scorer_id"],
    }
    answers = []
    for executor in ("fast", "reference"):
        engine = Engine(executor=executor)
        engine.insert_rows(rows)
        answers.append(engine.feedback_aggregate(req).model_dump())
    assert answers[0] == answers[1]
    first = answers[0]["buckets"][0]
    assert first["rating_counts"]["k064"] == 1
    assert "k000" not in first["rating_sums"]  # a zero sum is dropped, as sumMap does


def test_a_trusted_bucket_is_the_validated_model() -> None:
    values: dict[str, Any] = {
        "time_bucket_start_ms": 3_600_000,
        "group": {"scorer_id": "s"},
        "total_count": 3,
        "scored_count": 2,
        "tag_counts": {"t": 2},
        "rating_counts": {"_rating_": 2},
        "rating_sums": {"_rating_": 1.25},
    }
    trusted = trusted_bucket(dict(values))
    validated = FeedbackAggregateBucket(**values)
    assert trusted == validated
    assert trusted.model_dump_json() == validated.model_dump_json()
    assert trusted.model_fields_set == validated.model_fields_set


def _both(rows: list[FeedbackRow], req: dict[str, Any]) -> list[dict[str, Any]]:
    """The fast and the reference executors' answers to ``req`` over ``rows``."""
    answers = []
    for executor in ("fast", "reference"):
        engine = Engine(executor=executor)
        engine.insert_rows(rows)
        answers.append(engine.feedback_aggregate(req).model_dump())
    return answers


def _req(**extra: Any) -> dict[str, Any]:
    return {
        "project_id": "e/p",
        "after_ms": 0,
        "before_ms": 7_200_000,
        "time_bucket_seconds": 3600,
        "group_by": ["scorer_id"],
        **extra,
    }


def test_the_buckets_of_one_answer_share_no_mutable_map() -> None:
    rows = [_row(ms, {"_rating_": 0.5}) for ms in (1000, 2000, 3_700_000)]
    engine = Engine()
    engine.insert_rows(rows)
    res = engine.feedback_aggregate(_req())
    first, second = res.buckets
    first.group["scorer_id"] = "changed"
    first.tag_counts["t"] = 99
    first.rating_counts.clear()
    assert second.group == {"scorer_id": "s"}
    assert second.tag_counts == {"t": 1} and second.rating_counts == {"_rating_": 1}
    again = engine.feedback_aggregate(_req())  # nor with what the engine keeps
    assert again.buckets[0].group == {"scorer_id": "s"}
    assert again.buckets[0].tag_counts == {"t": 2}


def test_trusted_buckets_copy_pickle_and_compare_as_validated_ones() -> None:
    values: dict[str, Any] = {
        "time_bucket_start_ms": None,
        "group": {},
        "total_count": 1,
        "scored_count": 0,
        "tag_counts": {},
        "rating_counts": {},
        "rating_sums": {},
    }
    trusted = trusted_buckets([dict(values), {**values, "total_count": 2}])
    validated = FeedbackAggregateBucket(**values)
    assert trusted[0] == validated != trusted[1]
    for copied in (
        copy.copy(trusted[0]),
        copy.deepcopy(trusted[0]),
        trusted[0].model_copy(deep=True),
        pickle.loads(pickle.dumps(trusted[0])),
        FeedbackAggregateBucket.model_validate_json(trusted[0].model_dump_json()),
    ):
        assert copied == validated
    assert repr(trusted[0]) == repr(validated)


def test_a_filter_that_fails_a_whole_cell_or_view_emits_no_cell() -> None:
    rows = [
        _row(1000, {"_rating_": 0.5}),
        scorer_row(2000, "other", tags=("u",), ratings={"_rating_": 0.25}),
        *(
            scorer_row(3_700_000 + i, "s", tags=("u",), ratings={"_rating_": 1.0})
            for i in range(40)
        ),
    ]
    for extra in ({"tags": ["t"]}, {"rating_max": 0.5}, {"scorer_ids": ["s"], "tags": ["u"]}):
        fast, reference = _both(rows, _req(**extra))
        assert fast == reference
    fast, _ = _both(rows, _req(tags=["t"]))
    assert [b["total_count"] for b in fast["buckets"]] == [1]


def test_a_sum_skips_the_rows_a_tags_filter_drops() -> None:
    rows = [
        scorer_row(1000, "s", tags=("t",), ratings={"_rating_": 0.5}),
        scorer_row(2000, "s", tags=("u",), ratings={"_rating_": 0.25}),
        *(
            scorer_row(3_600_000 + i, "s", tags=("tu"[i % 2],), ratings={"_rating_": 1.0})
            for i in range(40)
        ),
    ]
    fast, reference = _both(rows, _req(tags=["t"]))
    assert fast == reference
    assert [b["rating_sums"] for b in fast["buckets"]] == [{"_rating_": 0.5}, {"_rating_": 20.0}]


def test_zero_sums_of_lone_rows_and_large_cells_are_dropped() -> None:
    rows = [
        _row(1000, {"_rating_": -0.0, "k": 0.0}),
        *(_row(3_600_000 + i, {"_rating_": (-1.0) ** i}) for i in range(30)),
    ]
    fast, reference = _both(rows, _req(time_bucket_seconds=60, group_by=[]))
    assert fast == reference
    assert all("_rating_" not in b["rating_sums"] for b in fast["buckets"])


def test_large_masked_cells_count_repeated_tags() -> None:
    rows = [
        scorer_row(1000 + i, "s", tags=("a",) * (1 + i % 3), ratings={"_rating_": i / 100})
        for i in range(90)
    ]
    for extra in ({}, {"rating_min": 0.2}, {"tags": ["a"], "rating_max": 0.6}):
        fast, reference = _both(rows, _req(**extra))
        assert fast == reference
    fast, _ = _both(rows, _req(rating_min=0.2))
    assert fast["buckets"][0]["tag_counts"] == {"a": sum(1 + i % 3 for i in range(20, 90))}


def test_past_the_byte_limits_the_fold_copies_and_still_agrees() -> None:
    many_signatures = [_row(1000 + i, {f"k{i % 7}": 1.0, "_rating_": 0.5}) for i in range(10)] + [
        scorer_row(2000 + i, "s", tags=(f"t{i}",), ratings={"_rating_": 0.5}) for i in range(300)
    ]
    many_profiles = [
        scorer_row(1000 + i, f"sc{i}", tags=("t",), ratings={"_rating_": i / 300})
        for i in range(300)
    ]
    repeated = [scorer_row(1000, "s", tags=("t",) * 300), scorer_row(1001, "s", tags=("t",))]
    cases = [
        (many_signatures, _req(tags=["t3", "t200"])),
        (many_profiles, _req(scorer_ids=["sc1*"], group_by=[])),
        (many_profiles, _req(scorer_ids=["sc2*"], rating_min=0.5)),
        (repeated, _req()),
    ]
    for rows, req in cases:
        fast, reference = _both(rows, req)
        assert fast == reference
        assert fast["buckets"]


def test_a_kept_packing_follows_new_signatures() -> None:
    engine, reference = Engine(), Engine(executor="reference")
    first = [_row(1000, {"_rating_": 0.5})]
    later = [scorer_row(2000, "s", tags=("new",), ratings={"other": 2.0})]
    for rows in (first, later):
        engine.insert_rows(rows)
        reference.insert_rows(rows)
        for req in (_req(), _req(tags=["new"])):
            assert engine.feedback_aggregate(req) == reference.feedback_aggregate(req)
