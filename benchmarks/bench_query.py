"""Cost of ``POST /feedback/query`` and ``/feedback/purge`` — prints figures, asserts
nothing about time.

    python benchmarks/bench_query.py                 # 100,000 rows
    python benchmarks/bench_query.py --rows 1000000

Builds a synthetic project (``refengine.synthetic``) and times, as the best of
``--repeat`` runs of the engine method (snapshot, fold and response model included):
a lookup by ``id``, a lookup by ``weave_ref`` with ``sort_by created_at`` (the
official client's common reads), a payload filter with a payload sort and
``limit 100``, and a purge of 100 ids (on a copy of the engine each time) — on the
fast executor next to the reference one, every answer checked equal. The fast
executor reads lookups by id or weave_ref from its key index
(``refengine.fast.key_index``), built by the first such query (timed apart, as
"key index build"); any other query scans the project on both executors.
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
    engine = Engine(clock=ManualClock(START + SPAN), executor="reference")
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
    fast = Engine(clock=ManualClock(START + SPAN), executor="fast")
    fast.insert_rows(rows)
    engines = {"fast": fast, "reference": engine}
    t0 = time.perf_counter()
    fast.feedback_query({"project_id": PROJECT, **cases[0][1]})
    build = time.perf_counter() - t0
    print(f"{len(engine):,} rows, best of {args.repeat}; fast executor's key index build: "
          f"{build * 1000:,.0f} ms (first lookup)")  # fmt: skip
    print(f"  {'':36s} {'fast':>10s} {'reference':>12s}")
    for name, req in cases:
        timed = {}
        answers = []
        for label, eng in engines.items():
            body = {"project_id": PROJECT, **req}
            seconds, res = best_of(args.repeat, lambda body=body, eng=eng: eng.feedback_query(body))
            timed[label] = seconds
            answers.append(res)
        if answers[0] != answers[1]:
            raise SystemExit(f"{name}: the executors disagree")
        print(
            f"  {name:36s} {timed['fast'] * 1000:8.2f} ms {timed['reference'] * 1000:10.1f} ms"
            f"  ({answers[0].total_count:,} matching)"
        )
    ids = [r.id for r in rng.sample(rows, 100)]
    purge = {"project_id": PROJECT, "query": {"$expr": {"$or": [eq("id", i) for i in ids]}}}
    for label in engines:
        best = float("inf")
        for _ in range(args.repeat):
            copy = Engine(clock=ManualClock(START + SPAN), executor=label)
            copy.insert_rows(engine.rows(PROJECT))
            copy.feedback_query({"project_id": PROJECT, **cases[0][1]})  # indexes warm
            t0 = time.perf_counter()
            copy.feedback_purge(purge)
            best = min(best, time.perf_counter() - t0)
        print(f"  purge of 100 ids, {label:19s} {best * 1000:10.1f} ms  ({len(copy):,} rows left)")


if __name__ == "__main__":
    main()
