"""Benchmark the ClickHouse backend (embedded chdb) next to the in-memory engine.

Prints figures; asserts nothing about time. Usage::

    python benchmarks/bench_clickhouse.py --rows 1000000
    python benchmarks/bench_clickhouse.py --rows 10000000 --no-memory   # chdb only

Builds about ``--rows`` synthetic scorer rows over 30 days (a few percent fewer:
``refengine.synthetic`` leaves reactions out) in chunks of a million — one chunk of
synthetic rows over the first slice of the 30 days, then copies of it, each shifted
one slice later — and loads every chunk into a temporary chdb database
(``insert_rows``: the Arrow bulk path, 100,000 rows a statement) and, unless
``--no-memory``, into the in-memory engine. It prints the load rates apart (building
the rows, chdb, the engine), the old path's rate on a sample (one JSON statement,
the create path), then the performance issue's queries, best of three wall times:
aggregate hourly x ``scorer_id`` over 10 days, the same with a ``tags`` filter, 3-hour
buckets over 30 days; stats ``output.score`` avg/min/max over 7 days, then with
p50/p95/p99. Where both engines hold the rows their answers are compared: counts
exactly, sums and means to 1e-9 relative, percentiles reported apart (ClickHouse's
``quantile`` samples above 8,192 values: a documented deviation). Memory: the
process's resident set after each load and the chdb table's size on disk; the load
average is printed with the figures (the VM is shared).
"""

from __future__ import annotations

import argparse
import math
import os
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

from refengine import Engine
from refengine.backends import clickhouse_sql as sql
from refengine.backends.clickhouse import ChdbConnection, ClickHouseBackend
from refengine.clock import ManualClock
from refengine.rows import FeedbackRow
from refengine.synthetic import synthetic_rows

PROJECT = "bench/agent"
START = datetime(2024, 5, 1, tzinfo=timezone.utc)
SPAN = timedelta(days=30)
START_MS = int(START.timestamp() * 1000)
DAY_MS = 86_400_000
CHUNK = 1_000_000
OLD_PATH_SAMPLE = 20_000
TOLERANCE = 1e-9

QUERIES: list[tuple[str, str, dict[str, Any]]] = [
    (
        "aggregate 1h x scorer_id, 10 days",
        "feedback_aggregate",
        {"project_id": PROJECT, "after_ms": START_MS, "before_ms": START_MS + 10 * DAY_MS,
         "time_bucket_seconds": 3600, "group_by": ["scorer_id"]},
    ),
    (
        "same + tags filter",
        "feedback_aggregate",
        {"project_id": PROJECT, "after_ms": START_MS, "before_ms": START_MS + 10 * DAY_MS,
         "time_bucket_seconds": 3600, "group_by": ["scorer_id"], "tags": ["hallucination"]},
    ),
    (
        "aggregate 3h x scorer_id, 30 days",
        "feedback_aggregate",
        {"project_id": PROJECT, "after_ms": START_MS, "before_ms": START_MS + 30 * DAY_MS,
         "time_bucket_seconds": 10800, "group_by": ["scorer_id"]},
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


def chunks(rows: int) -> Iterator[list[FeedbackRow]]:
    """About ``rows`` rows over the 30 days, a million at a time: one chunk of
    synthetic rows over the first slice of the span, then copies of it shifted a slice
    later each (ids renumbered), so that building 10M rows costs one million's time
    and no more than two chunks are held at once."""
    count = max(1, math.ceil(rows / CHUNK))
    slice_ms = int(SPAN.total_seconds() * 1000) // count
    base = synthetic_rows(
        PROJECT, min(rows, CHUNK), START, timedelta(milliseconds=slice_ms), seed=42
    )
    yield base
    for i in range(1, count):
        shift_ms = i * slice_ms
        yield [
            row._replace(
                id=f"{row.id[:9]}{i:04x}{row.id[13:]}",
                created_at_us=row.created_at_us + shift_ms * 1000,
                created_at_ms=row.created_at_ms + shift_ms,
            )
            for row in base[: rows - i * CHUNK]
        ]


def rss_mib() -> float:
    """The process's resident set now (chdb runs in this process too)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def best_of(repeats: int, call: Callable[[], Any]) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = call()
        best = min(best, time.perf_counter() - t0)
    return best, result


def close(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(float(a), float(b), rel_tol=TOLERANCE, abs_tol=1e-12)


def cells(res: Any) -> list[dict[str, Any]]:
    """An answer's buckets, then (stats) its window_stats as one more flat bucket."""
    data = res.model_dump(mode="json")
    window = data.get("window_stats") or {}
    flat = {f"{slug}.{name}": v for slug, d in window.items() for name, v in d.items()}
    buckets: list[dict[str, Any]] = data["buckets"]
    return [*buckets, flat] if flat else buckets


def compare(ours: Any, theirs: Any) -> str:
    """How two answers of one query agree: ``equal``, or ``equal but percentiles
    (max relative difference ...)``, or the first difference."""
    a, b = cells(ours), cells(theirs)
    if len(a) != len(b):
        return f"DIFFERENT: {len(a)} vs {len(b)} buckets"
    worst_percentile = 0.0
    for x, y in zip(a, b, strict=True):
        if set(x) != set(y):
            return f"DIFFERENT keys {sorted(set(x) ^ set(y))}"
        for key, value in x.items():
            other = y[key]
            if isinstance(value, dict) and key == "group":
                same = value == other
            elif isinstance(value, dict):
                same = set(value) == set(other) and all(close(value[k], other[k]) for k in value)
            elif any(part[:1] == "p" and part[1:2].isdigit() for part in key.split(".")):
                if value is not None and other is not None:
                    scale = max(abs(value), abs(other), 1e-12)
                    worst_percentile = max(worst_percentile, abs(value - other) / scale)
                same = (value is None) == (other is None)
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                same = close(value, other)
            else:
                same = value == other
            if not same:
                return f"DIFFERENT at {key}: {value!r} vs {other!r}"
    if worst_percentile:
        return f"equal; percentiles within {worst_percentile:.1e} (sampled)"
    return "equal"


def old_path_rate(backend: ClickHouseBackend, rows: list[FeedbackRow]) -> float:
    """Rows per second of the JSON statement (the create path) on ``rows``, into a
    project of their own that no query reads."""
    moved = [row._replace(project_id="bench/old-path") for row in rows]
    t0 = time.perf_counter()
    backend.connection.query(*sql.insert_sql(backend.connection.table, moved))
    return len(moved) / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--no-memory", action="store_true", help="skip the in-memory engine")
    args = parser.parse_args()
    clock = ManualClock("2024-06-01T00:00:00Z")
    connection = ChdbConnection()
    backend = ClickHouseBackend(connection, clock=clock)
    engine = None if args.no_memory else Engine(clock=clock)
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    built = chdb_s = memory_s = 0.0
    loaded = 0
    rss = {"start": rss_mib(), "chdb": 0.0, "memory": 0.0}
    sample: list[FeedbackRow] = []
    t0 = time.perf_counter()
    for chunk in chunks(args.rows):
        t1 = time.perf_counter()
        built += t1 - t0
        backend.insert_rows(chunk)
        t2 = time.perf_counter()
        chdb_s += t2 - t1
        if engine is not None:
            engine.insert_rows(chunk)
            memory_s += time.perf_counter() - t2
        loaded += len(chunk)
        if not sample:
            sample = chunk[:OLD_PATH_SAMPLE]
        del chunk
        t0 = time.perf_counter()
    rss["loaded"] = rss_mib()
    disk = connection.query(
        "SELECT sum(bytes_on_disk), sum(data_uncompressed_bytes) FROM system.parts "
        "WHERE active AND database = 'refengine' AND table = 'feedback'",
        {},
    )[0]
    print(f"{loaded:,} rows built in {built:.1f} s ({loaded / built:,.0f} rows/s)")
    print(f"chdb bulk load: {chdb_s:.1f} s, {loaded / chdb_s:,.0f} rows/s (Arrow file)")
    old = old_path_rate(backend, sample)
    print(f"chdb JSON statement (the create path) on {len(sample):,} rows: {old:,.0f} rows/s")
    if engine is not None:
        print(f"in-memory load: {memory_s:.1f} s, {loaded / memory_s:,.0f} rows/s")
    print(
        f"resident set: {rss['start']:,.0f} MiB at start, {rss['loaded']:,.0f} MiB loaded "
        f"({'chdb only' if engine is None else 'chdb and the engine'}); chdb table "
        f"{int(disk[0]) / 2**20:,.0f} MiB on disk, {int(disk[1]) / 2**20:,.0f} MiB uncompressed"
    )
    print(f"{'query':<40} {'chdb s':>8} {'memory s':>9}  answers")
    for name, method, request in QUERIES:
        ch_s, ch = best_of(3, lambda m=method, r=request: getattr(backend, m)(r))
        if engine is None:
            print(f"{name:<40} {ch_s:>8.3f} {'-':>9}")
            continue
        t_cold = time.perf_counter()
        getattr(engine, method)(request)  # builds the in-memory indexes once
        cold = time.perf_counter() - t_cold
        mem_s, mem = best_of(3, lambda m=method, r=request: getattr(engine, m)(r))
        print(f"{name:<40} {ch_s:>8.3f} {mem_s:>9.3f}  {compare(mem, ch)} (cold {cold:.2f} s)")
    print(f"resident set at the end: {rss_mib():,.0f} MiB")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    backend.close()


if __name__ == "__main__":
    main()
