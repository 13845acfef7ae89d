"""Create throughput and memory per stored row. Prints figures; asserts nothing.

    python benchmarks/bench_create.py [--rows N]

* single: ``engine.feedback_create(dict)`` per row;
* batch: ``engine.feedback_create_batch({"batch": [...]})`` in batches of 500;
* memory: tracemalloc's growth per stored row for a typical scorer row (payload
  ``{"output": {"score", "passed", "label"}}``, refs, one or two tags, ratings).
  Each request is parsed from its JSON text inside the measured loop and dropped
  after its create, as a server would, so everything the row keeps is counted
  (nothing is shared with request objects the benchmark holds); the clock moves
  1 ms per row, so no two rows share a timestamp.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
import tracemalloc
from datetime import datetime, timedelta, timezone
from typing import Any

from refengine import Engine, ManualClock
from refengine.synthetic import synthetic_requests

START = datetime(2024, 5, 1, tzinfo=timezone.utc)


def typical_scorer_requests(n: int) -> list[dict[str, Any]]:
    out = []
    for _, req in synthetic_requests("acme/bot", n * 2, START, timedelta(days=1), seed=1):
        if req["feedback_type"] == "wandb.agent_monitor" and req["scorer_tags"]:
            out.append(req)
            if len(out) == n:
                break
    return out


def bench_single(requests: list[dict[str, Any]]) -> float:
    engine = Engine(clock=ManualClock(START))
    t0 = time.perf_counter()
    for req in requests:
        engine.feedback_create(req)
    return len(requests) / (time.perf_counter() - t0)


def bench_batch(requests: list[dict[str, Any]], size: int = 500) -> float:
    engine = Engine(clock=ManualClock(START))
    batches = [{"batch": requests[i : i + size]} for i in range(0, len(requests), size)]
    t0 = time.perf_counter()
    for batch in batches:
        engine.feedback_create_batch(batch)
    return len(requests) / (time.perf_counter() - t0)


def bytes_per_row(requests: list[dict[str, Any]]) -> float:
    clock = ManualClock(START)
    engine = Engine(clock=clock)
    engine.feedback_create(requests[0])  # project store and interned names exist first
    texts = [json.dumps(req) for req in requests[1:]]
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for text in texts:
        clock.advance(seconds=0.001)
        engine.feedback_create(json.loads(text))
    del text
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before) / (len(requests) - 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=50_000)
    args = parser.parse_args()
    requests = typical_scorer_requests(args.rows)
    print(f"typical scorer request: {requests[0]}")
    print(f"rows per run: {len(requests)}")
    print(f"single create : {bench_single(requests):>10,.0f} creates/s")
    print(f"batch create  : {bench_batch(requests):>10,.0f} creates/s (batches of 500)")
    mem_requests = requests[: min(len(requests), 20_000)]
    print(f"memory        : {bytes_per_row(mem_requests):>10,.0f} bytes per stored row")


if __name__ == "__main__":
    main()
