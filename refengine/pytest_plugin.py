"""pytest fixtures for downstream tests (registered through the ``pytest11`` entry point).

* ``feedback_clock`` — a :class:`~refengine.ManualClock` at 2024-05-01T12:00:00Z;
* ``feedback_engine`` — a fresh :class:`~refengine.Engine` on that clock, per test.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from .clock import ManualClock
from .engine import Engine

FIXED_START = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)


@pytest.fixture
def feedback_clock() -> ManualClock:
    """A manual clock standing at 2024-05-01T12:00:00Z; move it with set/advance."""
    return ManualClock(FIXED_START)


@pytest.fixture
def feedback_engine(feedback_clock: ManualClock) -> Engine:
    """A fresh, empty engine on ``feedback_clock``, isolated per test."""
    return Engine(clock=feedback_clock)
