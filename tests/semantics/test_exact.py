"""refengine.semantics.exact: correctly rounded sums and means, R-7 percentiles."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from refengine.semantics.exact import (
    exact_sum,
    fraction_to_float,
    interpolate,
    interpolate_ranks,
    mean,
    percentile_level,
)

finite = st.floats(allow_nan=False, allow_infinity=False)


@given(st.lists(st.lists(finite, max_size=8), max_size=5))
def test_the_sum_is_the_exact_sum_correctly_rounded(lists: list[list[float]]) -> None:
    exact = sum((Fraction(v) for values in lists for v in values), Fraction(0))
    total, kept = exact_sum(lists)
    assert total == fraction_to_float(exact)
    if kept is not None:  # only kept when an intermediate overflowed
        assert kept == exact


def test_an_overflowing_intermediate_still_sums_exactly() -> None:
    total, exact = exact_sum([[1e308, 1e308], [-1e308]])
    assert total == 1e308
    assert exact == Fraction(1e308)


def test_a_sum_beyond_the_float_range_is_an_infinity_of_its_sign() -> None:
    assert exact_sum([[1e308, 1e308]])[0] == math.inf
    assert exact_sum([[-1e308, -1e308]])[0] == -math.inf
    assert fraction_to_float(Fraction(10) ** 400) == math.inf
    assert fraction_to_float(-(Fraction(10) ** 400)) == -math.inf


def test_the_mean_of_an_overflowed_sum_is_exact() -> None:
    total, exact = exact_sum([[1e308, 1e308]])
    assert mean(total, exact, 2) == 1e308
    assert mean(3.0, None, 4) == 0.75


@pytest.mark.parametrize(
    ("p", "level"), [(50, 0.5), (99.9, 0.999), (100 / 3, 0.333333), (0, 0.0), (100, 1.0)]
)
def test_the_level_is_p_over_100_rounded_to_six_decimals(p: float, level: float) -> None:
    assert percentile_level(p) == level


def test_interpolation_at_the_ends_and_between() -> None:
    values = [10.0, 20.0, 30.0, 40.0]
    assert interpolate(values, 0.0) == 10.0
    assert interpolate(values, 1.0) == 40.0
    assert interpolate(values, 0.5) == 25.0
    assert interpolate([7.0], 0.3) == 7.0


def test_neighbours_whose_difference_overflows_give_a_finite_value_between_them() -> None:
    got = interpolate([-1e308, 1e308], 0.5)
    assert math.isfinite(got)
    assert -1e308 <= got <= 1e308


@given(st.lists(finite, min_size=1, max_size=30), st.floats(0, 1))
def test_the_interpolated_value_lies_between_its_neighbours(
    values: list[float], level: float
) -> None:
    ordered = sorted(values)
    got = interpolate(ordered, level)
    index = level * (len(ordered) - 1)
    lo = min(math.floor(index), len(ordered) - 1)
    hi = min(lo + 1, len(ordered) - 1)
    assert ordered[lo] <= got <= ordered[hi]
    assert interpolate_ranks(ordered.__getitem__, len(ordered), level) == got
