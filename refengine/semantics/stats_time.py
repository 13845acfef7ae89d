"""The time grid of ``POST /feedback/stats``: granularity, buckets, time zones.

Each function implements one rule of spec/SEMANTICS.md, "Stats", and names its
heading. Pure functions of the request's numbers; both executors use them through
the plan (:func:`refengine.semantics.stats.plan`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, available_timezones

from .. import errors
from ..errors import InvalidRequest, format_message

NO_METRICS_GRANULARITY = 3600
MAX_BUCKETS = 10_000
AUTO_GRANULARITY: tuple[tuple[timedelta, int], ...] = (
    (timedelta(hours=2), 300),
    (timedelta(hours=12), 3600),
    (timedelta(days=3), 21600),
    (timedelta(days=14), 43200),
)
AUTO_GRANULARITY_MAX = 86400
FIRST_RENDERABLE_S = -62_135_596_800  # 0001-01-01T00:00:00Z


def auto_granularity(span: timedelta) -> int:
    """Stats / Granularity, the automatic width for a range (exact, untruncated);
    every bound is inclusive.

    >>> auto_granularity(timedelta(hours=2)), auto_granularity(timedelta(hours=2, seconds=1))
    (300, 3600)
    """
    for limit, seconds in AUTO_GRANULARITY:
        if span <= limit:
            return seconds
    return AUTO_GRANULARITY_MAX


def resolve_granularity(requested: int | None, span: timedelta) -> int:
    """Stats / Granularity: ``requested`` (null or 0: automatic), then widened so
    there are at most ~10,000 buckets: ``max(g, int(T / 10,000) + 1)`` when
    ``T / g > 10,000`` for a range of ``T`` seconds."""
    g = requested or auto_granularity(span)
    total = span.total_seconds()
    if total / g > MAX_BUCKETS:
        g = max(g, int(total / MAX_BUCKETS) + 1)
    return g


def bucket_starts(start_s: int, end_s: int, g: int) -> range:
    """Stats / Buckets: epoch seconds ``A + i·g`` for every ``i`` with
    ``A + i·g < end_s``, where ``A = floor(start_s / g)·g``.

    >>> list(bucket_starts(130, 400, 100))
    [100, 200, 300]
    """
    first = start_s // g * g
    return range(first, max(end_s, first), g)


def check_renderable(starts: range) -> None:
    """Stats / Checks after the model, the last: a granularity so large that the
    first bucket starts before year 1 cannot be written as a timestamp."""
    if starts.start < FIRST_RENDERABLE_S:
        raise InvalidRequest(format_message(errors.GRANULARITY_TOO_LARGE, g=starts.step))


@lru_cache(maxsize=1)
def _known_zones() -> frozenset[str]:
    return frozenset(available_timezones())


def zone_of(name: str) -> ZoneInfo:
    """Stats / Checks after the model, the time zone: the IANA zone ``name`` (``''``
    means UTC); an unknown name raises InvalidRequest."""
    if name == "":
        name = "UTC"
    if name not in _known_zones():
        raise InvalidRequest(format_message(errors.UNKNOWN_TIMEZONE, tz=name))
    return ZoneInfo(name)


def render_timestamp(epoch_s: int, zone: ZoneInfo) -> str:
    """Stats / Time zones: ISO 8601 in ``zone``'s offset at that instant.

    >>> render_timestamp(1710100800, zone_of("America/New_York"))
    '2024-03-10T16:00:00-04:00'
    """
    return datetime.fromtimestamp(epoch_s, zone).isoformat()


__all__ = [
    "AUTO_GRANULARITY",
    "MAX_BUCKETS",
    "NO_METRICS_GRANULARITY",
    "auto_granularity",
    "bucket_starts",
    "check_renderable",
    "render_timestamp",
    "resolve_granularity",
    "zone_of",
]
