"""pytest fixtures for downstream tests (registered through the ``pytest11`` entry point).

* ``feedback_clock`` — a :class:`~refengine.ManualClock` at 2024-05-01T12:00:00Z;
* ``feedback_engine`` — a fresh :class:`~refengine.Engine` on that clock, per test;
* ``feedback_server`` — a live HTTP server over ``feedback_engine`` on a free
  127.0.0.1 port (uvicorn in a background thread), with ``.base_url``, ``.engine``
  and ``.clock``; started for each test that uses it and stopped after. Needs the
  ``server`` extra; without it, tests using it are skipped with a clear reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
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


@dataclass(frozen=True)
class FeedbackServer:
    """A running refengine server: send requests to ``base_url``."""

    base_url: str
    engine: Engine
    clock: ManualClock


@pytest.fixture
def feedback_server(
    feedback_engine: Engine, feedback_clock: ManualClock
) -> Iterator[FeedbackServer]:
    """A live HTTP server over ``feedback_engine`` (open: no API keys), per test."""
    try:
        from .server import BackgroundServer, create_app  # noqa: PLC0415 - optional extra
    except ImportError as exc:
        pytest.skip(
            f"feedback_server needs the server extra ({exc.name or exc} is missing): "
            "pip install 'refengine[server]'"
        )
    with BackgroundServer(create_app(feedback_engine)) as server:
        yield FeedbackServer(base_url=server.base_url, engine=feedback_engine, clock=feedback_clock)
