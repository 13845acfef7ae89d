"""The fast aggregate fold's internals: packed counts, the many-keys fallback, and
the bucket models built without validation. (Agreement of whole answers with the
reference fold: tests/properties/test_aggregate_properties.py.)"""

from __future__ import annotations

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
