"""Cost of ``POST /feedback/query`` and ``/feedback/purge`` — prints figures, asserts
nothing about time.

    python benchmarks/bench_query.py                 # 100,000 rows
    python benchmarks/bench_query.py --rows 1000000

Builds a synthetic project (``refengine.synthetic``) and times, as the best of
``--repeat`` runs of the engine method (snapshot, fold and response model included):
a lookup by ``id``, a lookup by ``weave_ref`` with ``sort_by created_at`` (the
official client's common reads), a payload filter with a payload sort and
``limit 100``, and a purge of 100 ids (on a copy of the engine each time). Only the
reference executor exists so far: every query scans the project.
"""

from __future__ import annotations

import argparse
import random
import time
from datetime import datetime, timedelta, timezone
from typing import Any

from refengine import Engine, ManualClock
from refengine.synthetic import synthetic_rows

PROJECT = "bench/query"
START = datetime(2024, 3, 1, tzinfo=timezone.utc)
SPAN = timedelta(days=30)


def best_of(repeat: int, fn: Any) -> tuple[float, Any]:
    best = float("inf")
    result = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rows = synthetic_rows(PROJECT, args.rows, START, SPAN, seed=11)
    engine = Engine(clock=ManualClock(START + SPAN))
    engine.insert_rows(rows)
    rng = random.Random(11)
    target = rows[rng.randrange(len(rows))]
    eq = lambda field, value: {"$eq": [{"$getField": field}, {"$literal": value}]}  # noqa: E731
    by_created = [{"field": "created_at", "direction": "asc"}]
    cases: list[tuple[str, dict[str, Any]]] = [
        ("by id", {"query": {"$expr": eq("id", target.id)}}),
        (
            "by weave_ref, sort created_at",
            {"query": {"$expr": eq("weave_ref", target.weave_ref)}, "sort_by": by_created},
        ),
        (
            "payload filter + sort + limit 100",
            {
                "query": {
                    "$expr": {"$gt": [{"$getField": "payload.output.score"}, {"$literal": 0.5}]}
                },
                "sort_by": [{"field": "payload.output.score", "direction": "desc"}],
                "limit": 100,
            },
        ),
    ]
    print(f"{len(engine):,} rows, reference executor, best of {args.repeat}")
    for name, req in cases:
        seconds, res = best_of(
            args.repeat, lambda req=req: engine.feedback_query({"project_id": PROJECT, **req})
        )
        print(f"  {name:36s} {seconds * 1000:10.1f} ms  ({res.total_count:,} matching)")
    ids = [r.id for r in rng.sample(rows, 100)]
    purge = {"project_id": PROJECT, "query": {"$expr": {"$or": [eq("id", i) for i in ids]}}}
    best = float("inf")
    for _ in range(args.repeat):
        copy = Engine(clock=ManualClock(START + SPAN))
        copy.insert_rows(engine.rows(PROJECT))
        t0 = time.perf_counter()
        copy.feedback_purge(purge)
        best = min(best, time.perf_counter() - t0)
    print(f"  {'purge of 100 ids':36s} {best * 1000:10.1f} ms  ({len(copy):,} rows left)")


if __name__ == "__main__":
    main()
