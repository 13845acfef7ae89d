"""Create throughput and memory per stored row. Prints figures; asserts nothing.

    python benchmarks/bench_create.py [--rows N] [--repeat R]

* single: ``engine.feedback_create(dict)`` per row;
* batch: ``engine.feedback_create_batch({"batch": [...]})`` in batches of 500;

each run on a fresh engine, ``--repeat`` times; the best and the median run are
printed (timeit's practice: the best run is the code's own cost, slower runs add
what else the machine was doing — on a shared VM that is a lot), by wall time and
by the process's CPU time. On Linux the share of the machine's time the hypervisor
took for other guests during the runs (``steal`` in ``/proc/stat``) is printed
too: a rate measured while much was stolen says more about the host than the
code. The benchmark's
own request dicts are moved out of the garbage collector's sight first
(``gc.freeze``): a server drops each request once answered, so the collector would
never walk 100,000 of them there.

* index upkeep: the same creates on the fast executor (which keeps each project's
  aggregate index current as rows arrive) over the reference executor (no index),
  runs alternating: what the write-time indexing costs a create.
* memory: tracemalloc's growth per stored row for a typical scorer row (payload
  ``{"output": {"score", "passed", "label"}}``, refs, one or two tags, ratings).
  Each request is parsed from its JSON text inside the measured loop and dropped
  after its create, as a server would, so everything the row keeps is counted
  (nothing is shared with request objects the benchmark holds); the clock moves
  1 s per row, so no two rows share a timestamp. Then the first aggregate grouped
  by ``scorer_id`` and the first stats query of ``output.score`` with percentiles
  over every row build their indexes, and their growth is reported as the
  indexes' share.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
import tracemalloc
from collections.abc import Callable
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


def bench_single(requests: list[dict[str, Any]], executor: str = "fast") -> tuple[float, float]:
    """(wall, CPU) seconds for creating every request, one at a time."""
    engine = Engine(clock=ManualClock(START), executor=executor)
    wall, cpu = time.perf_counter(), time.process_time()
    for req in requests:
        engine.feedback_create(req)
    return time.perf_counter() - wall, time.process_time() - cpu


def bench_batch(batches: list[dict[str, Any]], executor: str = "fast") -> tuple[float, float]:
    """(wall, CPU) seconds for creating every batch."""
    engine = Engine(clock=ManualClock(START), executor=executor)
    wall, cpu = time.perf_counter(), time.process_time()
    for batch in batches:
        engine.feedback_create_batch(batch)
    return time.perf_counter() - wall, time.process_time() - cpu


def cpu_jiffies() -> tuple[int, int] | None:
    """(steal, total) jiffies of all CPUs since boot, from /proc/stat; None elsewhere."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = [int(x) for x in stat.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    return (fields[7], sum(fields)) if len(fields) == 8 else None


def runs(repeat: int, rows: int, fn: Callable[[], tuple[float, float]]) -> str:
    """``fn`` run ``repeat`` times, each after a full collection: best and median
    creates/s by wall time and by CPU time, and the share of time stolen."""
    walls, cpus = [], []
    before = cpu_jiffies()
    for _ in range(repeat):
        gc.collect()
        wall, cpu = fn()
        walls.append(rows / wall)
        cpus.append(rows / cpu)
    after = cpu_jiffies()
    stolen = "n/a"
    if before is not None and after is not None and after[1] > before[1]:
        stolen = f"{(after[0] - before[0]) / (after[1] - before[1]):.0%}"
    return (
        f"best {max(walls):>8,.0f}  median {statistics.median(walls):>8,.0f} creates/s"
        f"  (by CPU time: best {max(cpus):>8,.0f}; {stolen} stolen)"
    )


def upkeep(repeat: int, fn: Callable[[str], tuple[float, float]]) -> str:
    """The fast executor's create cost over the reference executor's (which keeps
    no index), runs alternating, each after a full collection: the share the
    write-time index upkeep adds, by the medians of wall and CPU time."""
    times: dict[str, tuple[list[float], list[float]]] = {"fast": ([], []), "reference": ([], [])}
    for _ in range(repeat):
        for executor, (walls, cpus) in times.items():
            gc.collect()
            wall, cpu = fn(executor)
            walls.append(wall)
            cpus.append(cpu)
    (fast_wall, fast_cpu), (ref_wall, ref_cpu) = (
        (statistics.median(w), statistics.median(c)) for w, c in times.values()
    )
    return (
        f"fast / reference {fast_wall / ref_wall:.3f}x wall, {fast_cpu / ref_cpu:.3f}x CPU"
        f" (medians of {repeat}, interleaved)"
    )


def bytes_per_row(requests: list[dict[str, Any]], executor: str = "fast") -> list[float]:
    """tracemalloc's growth per stored row after creating ``requests``, then after
    the first aggregate grouped by ``scorer_id`` over every row (its partitioning),
    then after the first stats query of ``output.score`` with percentiles over every
    row (its metric column and sorted hours): three running totals."""
    clock = ManualClock(START)
    engine = Engine(clock=clock, executor=executor)
    engine.feedback_create(requests[0])  # project store and interned names exist first
    texts = [json.dumps(req) for req in requests[1:]]
    start_ms = int(START.timestamp() * 1000)
    end = START + timedelta(days=1)
    project = requests[0]["project_id"]
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    totals = []
    for text in texts:
        clock.advance(seconds=1)  # 20,000 rows span 5.6 hours: whole hours to sort
        engine.feedback_create(json.loads(text))
    del text
    for query in (
        lambda: engine.feedback_aggregate(
            {
                "project_id": project,
                "after_ms": start_ms,
                "before_ms": start_ms + 86_400_000,
                "group_by": ["scorer_id"],
            }
        ),
        lambda: engine.feedback_stats(
            {
                "project_id": project,
                "start": START.isoformat(),
                "end": end.isoformat(),
                "metrics": [{"json_path": "output.score", "percentiles": [50, 95]}],
            }
        ),
    ):
        gc.collect()
        totals.append(tracemalloc.get_traced_memory()[0])
        query()  # the answer is dropped: only what the engine keeps stays traced
    gc.collect()
    totals.append(tracemalloc.get_traced_memory()[0])
    tracemalloc.stop()
    return [(total - before) / (len(requests) - 1) for total in totals]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    requests = typical_scorer_requests(args.rows)
    batches = [{"batch": requests[i : i + 500]} for i in range(0, len(requests), 500)]
    print(f"typical scorer request: {requests[0]}")
    print(f"rows per run: {len(requests)}, runs: {args.repeat}")
    gc.collect()
    gc.freeze()
    rows = len(requests)
    print(f"single create : {runs(args.repeat, rows, lambda: bench_single(requests))}")
    print(f"batch create  : {runs(args.repeat, rows, lambda: bench_batch(batches))}")
    print("                (batches of 500; stolen: the machine's time taken by the hypervisor)")
    print(f"index upkeep  : single {upkeep(args.repeat, lambda e: bench_single(requests, e))}")
    print(f"                batch  {upkeep(args.repeat, lambda e: bench_batch(batches, e))}")
    gc.unfreeze()
    mem_requests = requests[: min(len(requests), 20_000)]
    row, with_master, with_partitioning, with_metric = [
        *bytes_per_row(mem_requests, "reference")[:1],
        *bytes_per_row(mem_requests),
    ]
    print(
        f"memory        : {with_metric:>6,.0f} bytes per stored row with the indexes"
        f" (goal <= 1,024): the row {row:,.0f} (reference executor, no index),"
        f" + master columns {with_master - row:,.0f} (written as rows arrive),"
        f" + a scorer_id partitioning {with_partitioning - with_master:,.0f},"
        f" + an output.score column with percentiles {with_metric - with_partitioning:,.0f}"
        f"; indexes {(with_metric - row) / with_metric:.0%} of the total"
    )
    print("goal (issue 15): >= 40,000 creates/s, single and batched, in process")


if __name__ == "__main__":
    main()
