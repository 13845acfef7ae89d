"""Latency of a create into one project while another project's first query builds
its index — prints figures, asserts nothing about time.

    python benchmarks/bench_lock.py              # 1,000,000 rows in the busy project
    python benchmarks/bench_lock.py --rows 200000

The busy project holds ``--rows`` synthetic scorer rows (``refengine.synthetic``)
over 30 days and has never been queried, so its first ``group_by`` aggregate builds
the ``scorer_id`` partitions of its window (on the fast executor the load itself
brought the master columns up to date,
:func:`refengine.fast.snapshots.keep_current`). A thread runs that query; meanwhile
the main thread creates rows in another project one at a time, 2 ms apart, and times
each create. The figures: the query's wall time, how many creates ran during it, and
their latency (median, 99th percentile, worst). A create waits only for the engine
lock, which the query holds just to copy the rows its index lacks, and for Python's
global interpreter lock, which the query's thread gives up every few milliseconds
(``sys.getswitchinterval()``).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import threading
import time
from datetime import datetime, timedelta, timezone

from refengine import Engine
from refengine.synthetic import synthetic_rows

BUSY = "bench/busy"
OTHER = "bench/other"
START = datetime(2024, 5, 1, tzinfo=timezone.utc)
DAYS = 30
PAUSE_S = 0.002


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the busy project")
    args = parser.parse_args()

    print(f"Python {sys.version.split()[0]}; building {args.rows:,} synthetic rows ...")
    engine = Engine()
    engine.insert_rows(synthetic_rows(BUSY, args.rows, START, timedelta(days=DAYS), seed=1))
    stored = len(engine.rows(BUSY))
    after_ms = int(START.timestamp() * 1000)
    query = {
        "project_id": BUSY,
        "after_ms": after_ms,
        "before_ms": after_ms + DAYS * 86_400_000,
        "time_bucket_seconds": 3 * 3600,
        "group_by": ["scorer_id"],
    }
    create = {
        "project_id": OTHER,
        "weave_ref": "weave:///bench/other/call/c1",
        "feedback_type": "custom",
        "payload": {"score": 1},
    }
    engine.feedback_create(create)  # warm the create path

    done = threading.Event()
    started = threading.Event()
    query_seconds: list[float] = []

    def first_query() -> None:
        started.set()
        t0 = time.perf_counter()
        engine.feedback_aggregate(query)
        query_seconds.append(time.perf_counter() - t0)
        done.set()

    collections: list[float] = []  # seconds of each full (generation 2) collection
    collecting: list[float] = []

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            collecting.append(time.perf_counter())
        elif collecting:
            collections.append(time.perf_counter() - collecting.pop())

    gc.callbacks.append(on_gc)
    worker = threading.Thread(target=first_query)
    worker.start()
    started.wait()
    latencies: list[float] = []
    while not done.is_set():
        t0 = time.perf_counter()
        engine.feedback_create(create)
        latencies.append(time.perf_counter() - t0)
        time.sleep(PAUSE_S)  # a steady stream, not a second busy thread
    worker.join()
    gc.callbacks.remove(on_gc)

    print(f"busy project: {stored:,} rows; first group_by aggregate: {query_seconds[0]:.3f} s")
    if collections:
        print(
            f"full garbage collections meanwhile: {len(collections)},"
            f" the longest {max(collections) * 1000:.0f} ms (they stop every thread)"
        )
    if not latencies:
        print("no create ran during the query")
        return
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    print(
        f"creates into another project during it: {len(latencies):,}; latency"
        f" median {statistics.median(latencies) * 1000:.2f} ms,"
        f" p99 {p99 * 1000:.2f} ms, worst {ordered[-1] * 1000:.2f} ms"
        f" (goal: worst <= 50 ms; GIL switch interval {sys.getswitchinterval() * 1000:.0f} ms)"
    )


if __name__ == "__main__":
    main()
