"""refengine.semantics.stats_time: granularity, the bucket grid, time zones."""

from __future__ import annotations

from datetime import timedelta

import pytest

from refengine import InvalidRequest
from refengine.semantics.stats_time import (
    AUTO_GRANULARITY,
    MAX_BUCKETS,
    auto_granularity,
    bucket_starts,
    check_renderable,
    render_timestamp,
    resolve_granularity,
    zone_of,
)


@pytest.mark.parametrize(("limit", "seconds"), AUTO_GRANULARITY)
def test_every_automatic_bound_is_inclusive(limit: timedelta, seconds: int) -> None:
    assert auto_granularity(limit) == seconds
    assert auto_granularity(limit + timedelta(microseconds=1)) != seconds


def test_beyond_fourteen_days_the_automatic_width_is_a_day() -> None:
    assert auto_granularity(timedelta(days=31)) == 86400


def test_zero_or_null_granularity_is_automatic() -> None:
    span = timedelta(hours=3)
    assert resolve_granularity(0, span) == resolve_granularity(None, span) == 3600


def test_a_granularity_giving_too_many_buckets_is_widened() -> None:
    span = timedelta(days=31)  # 2,678,400 s
    g = resolve_granularity(60, span)
    assert g == 2_678_400 // MAX_BUCKETS + 1 == 268
    assert span.total_seconds() / g <= MAX_BUCKETS
    assert resolve_granularity(3600, span) == 3600  # 744 buckets: kept


def test_buckets_are_aligned_to_the_epoch() -> None:
    assert list(bucket_starts(130, 400, 100)) == [100, 200, 300]
    assert list(bucket_starts(-130, 50, 100)) == [-200, -100, 0]


def test_an_empty_range_has_one_bucket_if_unaligned_and_none_if_aligned() -> None:
    assert list(bucket_starts(150, 150, 100)) == [100]
    assert list(bucket_starts(200, 200, 100)) == []


def test_a_first_bucket_before_year_one_is_refused() -> None:
    check_renderable(bucket_starts(0, 10, 86400))
    with pytest.raises(InvalidRequest, match=r"granularity \d+ is too large"):
        check_renderable(bucket_starts(-10, 10, 10**12))  # first bucket: -10**12 s


def test_an_empty_zone_is_utc_and_an_unknown_one_is_refused() -> None:
    assert zone_of("").key == "UTC"
    with pytest.raises(InvalidRequest, match="Mars/Olympus"):
        zone_of("Mars/Olympus")


def test_timestamps_carry_the_zone_offset_at_that_instant() -> None:
    new_york = zone_of("America/New_York")
    assert render_timestamp(1710050400, new_york) == "2024-03-10T01:00:00-05:00"
    assert render_timestamp(1710054000, new_york) == "2024-03-10T03:00:00-04:00"
    assert render_timestamp(0, zone_of("UTC")) == "1970-01-01T00:00:00+00:00"
