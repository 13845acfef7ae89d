"""Clocks: anything callable that returns an aware UTC ``datetime``.

The engine stamps ``created_at`` from its clock and resolves a missing stats ``end``
from it. Tests and golden files inject a :class:`ManualClock` so results are exact.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

Clock = Callable[[], datetime]
"""The clock protocol: a zero-argument callable returning an aware UTC datetime."""


def as_utc(moment: datetime) -> datetime:
    """Return ``moment`` in UTC; a naive datetime is taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


class SystemClock:
    """The wall clock, in UTC, with microseconds."""

    def __call__(self) -> datetime:
        return datetime.now(timezone.utc)

    def __repr__(self) -> str:
        return "SystemClock()"


class ManualClock:
    """A clock that stands still until told to move. Thread-safe.

    >>> clock = ManualClock(datetime(2024, 1, 1, tzinfo=timezone.utc))
    >>> clock.advance(seconds=90).isoformat()
    '2024-01-01T00:01:30+00:00'
    >>> clock().isoformat()
    '2024-01-01T00:01:30+00:00'
    """

    def __init__(self, start: datetime | str) -> None:
        self._lock = threading.Lock()
        self._now = _coerce(start)

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, moment: datetime | str) -> datetime:
        """Jump to ``moment`` (backwards is allowed); returns the new time."""
        with self._lock:
            self._now = _coerce(moment)
            return self._now

    def advance(self, seconds: float = 0.0, *, milliseconds: float = 0.0) -> datetime:
        """Move forward (or back, if negative) and return the new time."""
        with self._lock:
            self._now += timedelta(seconds=seconds, milliseconds=milliseconds)
            return self._now

    def __repr__(self) -> str:
        return f"ManualClock({self().isoformat()!r})"


def _coerce(moment: datetime | str) -> datetime:
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    return as_utc(moment)
