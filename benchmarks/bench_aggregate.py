"""Benchmark ``POST /feedback/aggregate`` against the reference fold.

Prints figures; asserts nothing about time. Usage::

    python benchmarks/bench_aggregate.py            # 1,000,000 rows over 30 days
    python benchmarks/bench_aggregate.py --rows 100000

The store holds ``--rows`` synthetic scorer rows (``refengine.synthetic``) spread over
30 days. The issue's headline query — hourly buckets x group_by scorer_id over the
full 30 days — is 720 buckets, which the request model rejects (at most 256 buckets,
and at most 31 days unless the query is a bare total). The closest legal queries are
run instead, and the output says which:

* hourly x scorer_id as three 10-day windows (240 buckets each) covering the 30 days;
* 3-hour buckets x scorer_id over the whole 30 days (240 buckets) in one query;
* the hourly 10-day windows again with a tags filter;
* a 1% window (7.2 hours) hourly x scorer_id — the bisect benefit.

Issue 15's goals are printed next to their rows: the full range folded at 4M rows/s
or more, and the 1% window at least 100 times faster than the full scan (the
reference fold's pass over every row of the project, "ref s": at 200,000 rows).

"rows/s folded" is window rows (before filters) divided by the engine's wall time,
end to end through ``Engine.feedback_aggregate`` (validation, window snapshot, fold,
response). The store's aggregate index is built by the first query that needs it;
that one-off cost is printed separately and the table reports warm queries.
The reference fold (``refengine.semantics.aggregate``) reads every row of the project per
query; it runs in the same process on the same store, and its answers are compared
with the engine's.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from functools import partial
from typing import Any

from refengine import Engine
from refengine.models import FeedbackAggregateReq
from refengine.semantics import aggregate
from refengine.synthetic import synthetic_rows

PROJECT = "bench/agent"
START = datetime(2024, 5, 1, tzinfo=timezone.utc)
DAYS = 30
HOUR_MS = 3_600_000
DAY_MS = 86_400_000


def reference_aggregate(engine: Engine, req: dict[str, Any]) -> dict[str, Any]:
    """The reference fold (refengine.semantics.aggregate) over every row of the project."""
    plan = aggregate.plan(FeedbackAggregateReq.model_validate(req))
    return aggregate.fold(plan, engine.rows(plan.project_id)).model_dump()


def best_of(repeats: int, call: Callable[[], Any]) -> tuple[float, float, Any]:
    """The fastest of ``repeats`` runs — wall seconds and this process's CPU
    seconds (each the minimum over the runs) — and the last result."""
    wall = cpu = float("inf")
    result = None
    for _ in range(repeats):
        gc.collect()
        started, started_cpu = time.perf_counter(), time.process_time()
        result = call()
        cpu = min(cpu, time.process_time() - started_cpu)
        wall = min(wall, time.perf_counter() - started)
    return wall, cpu, result


def met(
    goal: tuple[str, Callable[[float, float], bool]] | None, rate: float, speed_up: float
) -> str:
    """The goal's text and whether the figures meet it."""
    if goal is None:
        return ""
    text, test = goal
    return f"{text}: {'met' if test(rate, speed_up) else 'NOT met'}"


def run_engine(engine: Engine, requests: list[dict[str, Any]]) -> list[Any]:
    return [engine.feedback_aggregate(r) for r in requests]


def run_reference(engine: Engine, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [reference_aggregate(engine, r) for r in requests]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the store")
    parser.add_argument("--repeats", type=int, default=3, help="engine runs per query (best)")
    parser.add_argument(
        "--reference-repeats", type=int, default=1, help="reference-fold runs per query (best)"
    )
    args = parser.parse_args(argv)

    print(f"Python {sys.version.split()[0]}; building {args.rows:,} synthetic rows ...")
    started = time.perf_counter()
    rows = synthetic_rows(PROJECT, args.rows, START, timedelta(days=DAYS), seed=42)
    built = time.perf_counter() - started
    engine = Engine()
    started = time.perf_counter()
    engine.insert_rows(rows)
    inserted = time.perf_counter() - started
    del rows
    stored = len(engine)
    print(f"  generated in {built:.1f} s, inserted in {inserted:.1f} s: {stored:,} rows stored")
    print(f"  (the generator skips reaction rows, so {stored:,} of {args.rows:,} are kept)")

    t0 = int(START.timestamp() * 1000)
    # The aggregate index is built by the first query that needs it; time that apart.
    started = time.perf_counter()
    engine.feedback_aggregate({"project_id": PROJECT, "after_ms": t0, "before_ms": t0 + 1})
    master_s = time.perf_counter() - started
    started = time.perf_counter()
    engine.feedback_aggregate(
        {"project_id": PROJECT, "after_ms": t0, "before_ms": t0 + 1, "group_by": ["scorer_id"]}
    )
    partition_s = time.perf_counter() - started
    print(
        f"  aggregate index built by the first queries: {master_s:.2f} s for the columns,"
        f" {partition_s:.2f} s more for the scorer_id partitions (once; the figures below"
        " are warm)"
    )

    ten_days = [(t0 + i * 10 * DAY_MS, t0 + (i + 1) * 10 * DAY_MS) for i in range(3)]
    one_percent = (t0 + 15 * DAY_MS, t0 + 15 * DAY_MS + DAYS * DAY_MS // 100)

    def body(after: int, before: int, bucket: int, **extra: Any) -> dict[str, Any]:
        return {
            "project_id": PROJECT,
            "after_ms": after,
            "before_ms": before,
            "time_bucket_seconds": bucket,
            "group_by": ["scorer_id"],
            **extra,
        }

    # (label, requests, goal of issue 15 and its test on (rows/s by wall, speed-up))
    Goal = tuple[str, Callable[[float, float], bool]] | None
    queries: list[tuple[str, list[dict[str, Any]], Goal]] = [
        (
            "hourly x scorer_id, 30 days as 3 x 10-day windows (240 buckets each)",
            [body(a, b, 3600) for a, b in ten_days],
            None,
        ),
        (
            "3-hour buckets x scorer_id, 30 days in one query (240 buckets)",
            [body(t0, t0 + DAYS * DAY_MS, 3 * 3600)],
            ("full range >= 4M rows/s", lambda rate, _: rate >= 4e6),
        ),
        (
            "hourly x scorer_id, 3 x 10-day windows, tags=['hallucination','toxic']",
            [body(a, b, 3600, tags=["hallucination", "toxic"]) for a, b in ten_days],
            None,
        ),
        (
            "1% window (7.2 h) hourly x scorer_id",
            [body(*one_percent, 3600)],
            (">= 100x the full scan", lambda _, speed_up: speed_up >= 100),
        ),
    ]
    print()
    print(
        "note: hourly x scorer_id over the full 30 days is 720 buckets; the model allows"
        " at most 256 buckets (and 31 days), so the closest legal queries are run."
    )
    print()
    header = (
        f"{'query':<74} {'window rows':>11} {'out rows':>8} {'engine s':>8} {'cpu s':>6}"
        f" {'rows/s (wall)':>13} {'rows/s (cpu)':>12} {'ref s':>8} {'cpu s':>6}"
        f" {'speed-up':>8} {'same':>4}  goal (issue 15)"
    )
    print(header)
    print("-" * len(header))
    for label, requests, goal in queries:
        window_rows = sum(
            len(engine.window(PROJECT, r["after_ms"], r["before_ms"])) for r in requests
        )
        fast_s, fast_cpu, fast = best_of(args.repeats, partial(run_engine, engine, requests))
        ref_s, ref_cpu, reference = best_of(
            args.reference_repeats, partial(run_reference, engine, requests)
        )
        same = all(
            json.dumps(f.model_dump()) == json.dumps(n)
            for f, n in zip(fast, reference, strict=True)
        )
        out_rows = sum(len(f.buckets) for f in fast)
        print(
            f"{label:<74} {window_rows:>11,} {out_rows:>8,} {fast_s:>8.3f} {fast_cpu:>6.3f}"
            f" {window_rows / fast_s:>13,.0f} {window_rows / fast_cpu:>12,.0f}"
            f" {ref_s:>8.3f} {ref_cpu:>6.3f} {ref_cpu / fast_cpu:>7.1f}x"
            f" {'yes' if same else 'NO':>4}  {met(goal, window_rows / fast_s, ref_cpu / fast_cpu)}"
        )
    print()
    print(
        "rows/s folded = window rows / engine seconds, wall and process CPU (best of"
        f" {args.repeats} each); ref = the reference fold, a full scan of all {stored:,}"
        f" rows per query (best of {args.reference_repeats}); speed-up = ref CPU s / engine"
        " CPU s."
    )
    print(f"load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
