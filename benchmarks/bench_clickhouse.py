"""Benchmark the ClickHouse backend (embedded chdb) next to the in-memory engine.

Prints figures; asserts nothing about time. Usage::

    python benchmarks/bench_clickhouse.py --rows 1000000
    python benchmarks/bench_clickhouse.py --rows 10000000 --no-memory   # chdb only

Loads ``--rows`` synthetic scorer rows (``refengine.synthetic``, 30 days) into a
temporary chdb database in batches (``insert_rows``: one INSERT per batch), then runs
the performance issue's queries on both: aggregate, 3-hour buckets x ``scorer_id``
over 30 days (240 buckets) and the same hourly over 10 days; stats, ``output.score``
avg/min/max over 7 days, then with percentiles 50/95/99. Each query's best of three
wall times is printed, and the two engines' answers are compared (bucket counts
exactly; the rest is the conformance kit's job).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from refengine import Engine
from refengine.backends.clickhouse import ChdbConnection, ClickHouseBackend
from refengine.clock import ManualClock
from refengine.synthetic import synthetic_rows

PROJECT = "bench/agent"
START = datetime(2024, 5, 1, tzinfo=timezone.utc)
START_MS = int(START.timestamp() * 1000)
DAY_MS = 86_400_000
BATCH = 100_000

QUERIES: list[tuple[str, str, dict[str, Any]]] = [
    (
        "aggregate 3h x scorer_id, 30 days",
        "feedback_aggregate",
        {"project_id": PROJECT, "after_ms": START_MS, "before_ms": START_MS + 30 * DAY_MS,
         "time_bucket_seconds": 10800, "group_by": ["scorer_id"]},
    ),
    (
        "aggregate 1h x scorer_id, 10 days",
        "feedback_aggregate",
        {"project_id": PROJECT, "after_ms": START_MS, "before_ms": START_MS + 10 * DAY_MS,
         "time_bucket_seconds": 3600, "group_by": ["scorer_id"]},
    ),
    (
        "stats output.score avg/min/max, 7 days",
        "feedback_stats",
        {"project_id": PROJECT, "start": "2024-05-01T00:00:00Z", "end": "2024-05-08T00:00:00Z",
         "metrics": [{"json_path": "output.score"}]},
    ),
    (
        "stats same + p50/p95/p99",
        "feedback_stats",
        {"project_id": PROJECT, "start": "2024-05-01T00:00:00Z", "end": "2024-05-08T00:00:00Z",
         "metrics": [{"json_path": "output.score", "percentiles": [50, 95, 99]}]},
    ),
]  # fmt: skip


def best_of(repeats: int, call: Callable[[], Any]) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = call()
        best = min(best, time.perf_counter() - t0)
    return best, result


def counts(res: Any) -> list[int]:
    return [b.total_count if hasattr(b, "total_count") else b["count"] for b in res.buckets]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--no-memory", action="store_true", help="skip the in-memory engine")
    args = parser.parse_args()
    clock = ManualClock("2024-06-01T00:00:00Z")
    backend = ClickHouseBackend(ChdbConnection(), clock=clock)
    engine = None if args.no_memory else Engine(clock=clock)
    t0 = time.perf_counter()
    batch: list[Any] = []
    for row in synthetic_rows(PROJECT, args.rows, START, timedelta(days=30), seed=42):
        batch.append(row)
        if len(batch) == BATCH:
            backend.insert_rows(batch)
            if engine is not None:
                engine.insert_rows(batch)
            batch = []
    if batch:
        backend.insert_rows(batch)
        if engine is not None:
            engine.insert_rows(batch)
    load = time.perf_counter() - t0
    print(f"{args.rows:,} rows loaded in {load:.1f} s (both engines; batches of {BATCH:,})")
    print(f"{'query':<40} {'chdb s':>8} {'memory s':>9}  same counts")
    for name, method, request in QUERIES:
        ch_s, ch = best_of(3, lambda m=method, r=request: getattr(backend, m)(r))
        if engine is None:
            print(f"{name:<40} {ch_s:>8.3f} {'-':>9}")
            continue
        getattr(engine, method)(request)  # builds the in-memory indexes once, not timed
        mem_s, mem = best_of(3, lambda m=method, r=request: getattr(engine, m)(r))
        print(f"{name:<40} {ch_s:>8.3f} {mem_s:>9.3f}  {counts(ch) == counts(mem)}")
    backend.close()


if __name__ == "__main__":
    main()
