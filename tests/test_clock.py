"""Clocks."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

from refengine import ManualClock, SystemClock
from refengine.clock import as_utc


def test_system_clock_is_aware_utc() -> None:
    now = SystemClock()()
    assert now.tzinfo == timezone.utc
    assert abs(datetime.now(timezone.utc) - now) < timedelta(seconds=5)


def test_manual_clock_set_and_advance() -> None:
    clock = ManualClock("2024-01-01T00:00:00Z")
    assert clock() == datetime(2024, 1, 1, tzinfo=timezone.utc)
    assert clock.advance(seconds=1.5) == datetime(2024, 1, 1, 0, 0, 1, 500000, tzinfo=timezone.utc)
    assert clock.advance(milliseconds=1) == datetime(
        2024, 1, 1, 0, 0, 1, 501000, tzinfo=timezone.utc
    )
    assert clock.set("2023-06-01T05:00:00+02:00") == datetime(2023, 6, 1, 3, tzinfo=timezone.utc)
    assert clock.advance(seconds=-3600) == datetime(2023, 6, 1, 2, tzinfo=timezone.utc)


def test_manual_clock_naive_is_utc() -> None:
    assert ManualClock(datetime(2024, 1, 1))().tzinfo == timezone.utc
    assert as_utc(datetime(2024, 1, 1, 3)) == datetime(2024, 1, 1, 3, tzinfo=timezone.utc)


def test_manual_clock_threads_lose_no_advance() -> None:
    clock = ManualClock("2024-01-01T00:00:00Z")

    def work() -> None:
        for _ in range(1000):
            clock.advance(milliseconds=1)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert clock() == datetime(2024, 1, 1, 0, 0, 8, tzinfo=timezone.utc)
