"""Summaries of runs of values (``refengine.fast.summaries``): merged in order they
are the summary of the concatenation, and their sums round as the reference's exact
sums do, bit for bit, overflow included."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given

from refengine.fast.summaries import Piece, exact_total, merge, piece, scaled_sum, summarize
from refengine.semantics.exact import exact_sum, mean
from strategies import DBL_MAX, float_runs, run_sums


def _fields(values: list[float]) -> tuple[int, int, int, str, str]:
    return len(values), values.count(1.0), values.count(0.0), repr(min(values)), repr(max(values))


@given(float_runs, run_sums)
def test_merged_summaries_are_the_summary_of_the_concatenation(
    runs: list[list[float]], exact: list[bool]
) -> None:
    # runs summed as scaled integers or kept as values, in any mix
    values = [v for run in runs for v in run]
    merged = merge(summarize(run, kept) for run, kept in zip(runs, exact, strict=False))
    if not values:
        assert merged is None
        return
    assert merged is not None
    assert (merged.n, merged.ones, merged.zeros, repr(merged.low), repr(merged.high)) == _fields(
        values
    )
    for kept in (True, False):
        whole = summarize(values, kept)
        assert whole is not None
        assert exact_total(merged) == exact_total(whole)
    total, exact = exact_sum([values])
    got_total, got_exact = exact_total(merged)
    assert repr(got_total) == repr(total)
    assert repr(mean(got_total, got_exact, len(values))) == repr(mean(total, exact, len(values)))
    if math.isinf(total):  # the reference keeps the exact sum past the float range
        assert got_exact == exact


@pytest.mark.parametrize(
    ("values", "total"),
    [
        ([0.1] * 10, 1.0),
        ([-0.0], 0.0),  # math.fsum's zero, not the value's
        ([-0.0, -0.0, 0.0], 0.0),
        ([1.0, -1.0], 0.0),
        ([5e-324, 5e-324], 1e-323),
        ([DBL_MAX, 2.0**970], math.inf),  # rounds up past the range
        ([DBL_MAX, 2.0**969], DBL_MAX),
        ([DBL_MAX, DBL_MAX, -DBL_MAX], DBL_MAX),  # an intermediate overflows, not the sum
        ([1e308, 5e-324], 1e308),  # magnitudes too far apart for one float scale
        ([2.0**60, 3.0 * 2.0**60], 2.0**62),  # a negative scale
        ([-1e308, -1e308], -math.inf),
    ],
)
def test_sums_round_as_math_fsum_and_overflow_as_the_reference(
    values: list[float], total: float
) -> None:
    s = summarize(values, exact=True)
    assert s is not None
    got, exact = exact_total(s)
    assert repr(got) == repr(total)
    assert repr(got) == repr(exact_sum([values])[0])
    if math.isinf(total):
        assert exact == sum(map(Fraction, values))
        assert mean(got, exact, len(values)) == float(exact / len(values))
    else:
        assert exact is None


def test_extremes_keep_the_first_of_equal_values_as_min_and_max_do() -> None:
    runs = [[0.0, 1.0], [-0.0, 1.0]]
    merged = merge([summarize(run) for run in runs])
    assert merged is not None
    assert (repr(merged.low), repr(merged.high)) == ("0.0", "1.0")
    flipped = merge([summarize(run) for run in reversed(runs)])
    assert flipped is not None
    assert repr(flipped.low) == "-0.0"
    assert scaled_sum([-0.0, -0.0], -0.0, -0.0).negative_zeros
    assert not scaled_sum([-0.0, 0.0], -0.0, -0.0).negative_zeros
    for kept in (True, False):  # the sum of zeros is math.fsum's: 0.0
        both = merge([summarize([-0.0], kept), summarize([-0.0], exact=True)])
        assert both is not None
        assert repr(exact_total(both)[0]) == repr(math.fsum([-0.0, -0.0]))


def test_a_piece_sorts_its_values_stably_only_when_asked() -> None:
    assert piece([], True) == Piece(None, [])
    kept = piece([0.0, -1.0, -0.0], True)
    assert [repr(v) for v in kept.ordered or []] == ["-1.0", "0.0", "-0.0"]
    assert piece([0.5], False).ordered is None
