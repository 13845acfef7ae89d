"""Throughput of ``POST /feedback/stats`` — prints figures, asserts nothing about time.

    python benchmarks/bench_stats.py            # 1,000,000 rows over 30 days
    python benchmarks/bench_stats.py --rows 100000

Builds a synthetic project (``refengine.synthetic``), then times three queries over
the whole 30-day window (auto granularity → 86400 s, 30 buckets): one numeric metric
``output.score`` with avg/min/max, the same with percentiles [50, 95, 99], and the
boolean metric ``output.passed``. Each is timed as the best of ``--repeat`` runs of
``Engine.feedback_stats`` (window snapshot and response model included) and compared
with one run of the reference fold (``refengine.semantics.stats``), whose
answer must agree.

The first query of a metric also parses every stored payload once to build that
metric's column (``refengine.fast.metric_index``); its time is printed apart, as "first".
Issue 15's goal, stats at 10M rows/s or more (window rows over the best run's wall
time), is printed next to each query.
"""

from __future__ import annotations

import argparse
import random
import time
from datetime import datetime, timedelta, timezone
from typing import Any

from refengine import Engine, ManualClock
from refengine.models import FeedbackStatsReq
from refengine.semantics import stats
from refengine.synthetic import synthetic_rows

PROJECT = "bench/stats"
START = datetime(2024, 3, 1, tzinfo=timezone.utc)
SPAN = timedelta(days=30)


def build(n_rows: int) -> Engine:
    """An engine holding exactly ``n_rows`` synthetic rows spread over SPAN."""
    # synthetic_rows skips reactions (~3 %): draw a few more, then keep n evenly at random
    rows = synthetic_rows(PROJECT, int(n_rows * 1.05) + 10, START, SPAN, seed=7)
    keep = sorted(random.Random(7).sample(range(len(rows)), min(n_rows, len(rows))))
    engine = Engine(clock=ManualClock(START + SPAN))
    engine.insert_rows(rows[i] for i in keep)
    return engine


def best_of(repeat: int, fn: Any) -> tuple[float, float, Any]:
    """(first run's seconds, best run's seconds, last result)."""
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return times[0], min(times), result


def reference_stats(engine: Engine, req: dict[str, Any]) -> dict[str, Any]:
    """The reference fold (refengine.semantics.stats) over every row of the project."""
    plan = stats.plan(FeedbackStatsReq.model_validate(req), engine.clock())
    return stats.fold(plan, engine.rows(plan.project_id)).model_dump()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows to build")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per query")
    args = parser.parse_args()

    t0 = time.perf_counter()
    engine = build(args.rows)
    n = len(engine)
    print(f"built {n:,} rows over {SPAN.days} days in {time.perf_counter() - t0:.1f} s")

    base: dict[str, Any] = {
        "project_id": PROJECT,
        "start": START.isoformat(),
        "end": (START + SPAN).isoformat(),
    }
    queries = [
        ("numeric avg/min/max", [{"json_path": "output.score"}]),
        (
            "numeric avg/min/max + p50/p95/p99",
            [{"json_path": "output.score", "percentiles": [50, 95, 99]}],
        ),
        (
            "boolean count_true/count_false",
            [{"json_path": "output.passed", "value_type": "boolean"}],
        ),
    ]
    print(
        f"{'query':<36} {'first s':>8} {'engine s':>9} {'rows/s':>12} {'ref s':>9} "
        f"{'speed-up':>9}  agree  goal (issue 15: >= 10M rows/s)"
    )
    for name, metrics in queries:
        req = {**base, "metrics": metrics}
        first, seconds, res = best_of(args.repeat, lambda req=req: engine.feedback_stats(req))
        t1 = time.perf_counter()
        expected = reference_stats(engine, req)
        ref_seconds = time.perf_counter() - t1
        agree = res.buckets == expected["buckets"] and res.window_stats == expected["window_stats"]
        window_rows = sum(b["count"] for b in res.buckets)
        print(
            f"{name:<36} {first:>8.3f} {seconds:>9.3f} {window_rows / seconds:>12,.0f} "
            f"{ref_seconds:>9.2f} {ref_seconds / seconds:>8.1f}x  {agree!s:<5}"
            f"  {'met' if window_rows / seconds >= 10e6 else 'NOT met'}"
        )
    print(f"granularity {res.granularity} s, {len(res.buckets)} buckets")


if __name__ == "__main__":
    main()
