"""The fast stats fold (``refengine.fast.stats``): a window whose columns hold no
NaN (no row without a value) skips the no-value filter; with missing values the
filter runs. Every case agrees with the reference fold."""

from __future__ import annotations

import json
from typing import Any

import pytest

from refengine import Engine, ManualClock
from reference import reference_stats
from strategies import scorer_row

REQ = {
    "project_id": "e/p",
    "start": "1970-01-01T00:00:00Z",
    "end": "1970-01-01T01:00:00Z",
    "granularity": 600,
    "metrics": [
        {
            "json_path": "output.score",
            "aggregations": ["count", "sum", "avg", "min", "max"],
            "percentiles": [0, 50, 100],
        },
        {"json_path": "output.passed", "aggregations": ["count", "sum"]},
    ],
}


@pytest.mark.parametrize(
    "scores",
    [
        [0.5, -0.0, 2.0, 1e308, 1e308],  # no value missing (the sum overflows: not NaN)
        [0.5, None, "x", 2.0, -1.5],  # missing values: NaN entries to drop
        [1e308, 1e308, -1e308, -1e308, 0.5],  # the check's sum overflows, the exact one not
    ],
)
def test_stats_agree_with_the_reference_with_and_without_missing_values(
    scores: list[Any],
) -> None:
    engine = Engine(clock=ManualClock("1970-01-02T00:00:00Z"), executor="fast")
    engine.insert_rows(
        [
            scorer_row(i * 700_000 + j, payload={"output": {"score": score}})
            for i in range(5)
            for j, score in enumerate(scores)
        ]
    )
    assert engine.feedback_stats(REQ).model_dump() == reference_stats(engine, REQ)


@pytest.mark.parametrize("percentiles", [[], [50]])
def test_of_equal_zeros_min_and_max_keep_the_first_with_or_without_percentiles(
    percentiles: list[float],
) -> None:
    # min() and max() keep the first of equal values; a sorted list's last element
    # is the last of them (the fold once answered 0.0 here with percentiles)
    engine = Engine(clock=ManualClock("1970-01-02T00:00:00Z"), executor="fast")
    engine.insert_rows(
        [scorer_row(ms, payload={"output": {"score": s}}) for ms, s in ((1, -0.0), (2, 0.0))]
    )
    metric = {"json_path": "output.score", "aggregations": ["min", "max", "sum"]}
    req = {**REQ, "granularity": 3600, "metrics": [{**metric, "percentiles": percentiles}]}
    got = engine.feedback_stats(req).model_dump()
    expected = reference_stats(engine, req)
    assert json.dumps(got["buckets"]) == json.dumps(expected["buckets"])
    assert json.dumps(got["window_stats"]) == json.dumps(expected["window_stats"])
    extremes = [got["buckets"][0][f"{agg}_output_score"] for agg in ("min", "max")]
    assert [repr(v) for v in extremes] == ["-0.0", "-0.0"]
