"""Hostile but valid requests: time, memory, and how long a create into another
project waits meanwhile — prints figures, asserts nothing about time.

    python benchmarks/bench_hostile.py            # every case, each in a fresh process
    python benchmarks/bench_hostile.py --case path-20001

Issue 15, goal 7 (spec/SEMANTICS.md, the "Limits" rules): every request must be
answered within 2 s (paths, keys, tags, payloads, batches) or 20 s (the big stats
answers) and 1 GiB, or refused with a 400 naming the limit; and a create into
another project, timed from a second thread while the case runs, must return
within 0.5 s. Each case runs in its own process, so ``maxrss`` is that case's
peak resident memory (the process's baseline included). Per case the script
prints the setup, the request's outcome (``ok`` with the answer's size, or the
400 reason), its wall time, the worst and median create latency next to it, and
the peak memory; the goals are printed next to them. Answers are also checked:
each admitted query is answered the same by the reference executor (run after,
untimed), and a refused one must be a 400.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from refengine import Engine, InvalidRequest, ManualClock
from refengine.server import render_json

BUSY = "bench/busy"
OTHER = "bench/other"
START = datetime(2024, 5, 1, tzinfo=timezone.utc)
START_MS = int(START.timestamp() * 1000)
ROWS = 20_000


def _custom(payload: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {
        "project_id": BUSY,
        "weave_ref": f"weave:///{BUSY}/call/c1",
        "feedback_type": "custom",
        "payload": payload,
        **fields,
    }


def _scorer(name: str, **fields: Any) -> dict[str, Any]:
    return {
        "project_id": BUSY,
        "weave_ref": f"weave:///{BUSY}/call/c1",
        "feedback_type": f"wandb.runnable.{name}",
        "runnable_ref": f"weave:///{BUSY}/op/{name}:v1",
        "call_ref": f"weave:///{BUSY}/call/c2",
        "payload": {"output": 1},
        **fields,
    }


def _load(engine: Engine, items: list[dict[str, Any]]) -> None:
    """Create ``items`` one minute apart from START, through the create path."""
    clock = engine.clock
    assert isinstance(clock, ManualClock)
    for i in range(0, len(items), 1000):
        clock.set(START + timedelta(minutes=i))
        engine.feedback_create_batch({"batch": items[i : i + 1000]})
    clock.set(START + timedelta(days=31))


def _stats(metrics: list[dict[str, Any]], granularity: int, days: int = 1) -> dict[str, Any]:
    return {
        "project_id": BUSY,
        "start": START.isoformat(),
        "end": (START + timedelta(days=days)).isoformat(),
        "granularity": granularity,
        "metrics": metrics,
    }


def _aggregate(**fields: Any) -> dict[str, Any]:
    return {"project_id": BUSY, "after_ms": START_MS, "before_ms": START_MS + 86_400_000, **fields}


def _nested(depth: int, leaf: Any) -> Any:
    for _ in range(depth):
        leaf = {"a": leaf}
    return leaf


Case = tuple[str, float, Callable[[Engine], None], Callable[[Engine], Any]]
"""(what it is, the time goal in seconds, setup, the timed request)."""

_PATH_256 = ".".join(["a"] * 128)[:256]


def _cases() -> dict[str, Case]:
    # Rows are built inside each setup, so none outlives it: a benchmark that kept
    # millions of request objects alive would time the garbage collector's passes
    # over them, not the engine.
    def deep_rows() -> list[dict[str, Any]]:
        return [_custom({"a": _nested(62, 1.0)}) for _ in range(ROWS)]  # 64 deep: the most

    def numeric_rows() -> list[dict[str, Any]]:
        return [_custom({"output": {f"s{j}": i * 0.5 for j in range(33)}}) for i in range(ROWS)]

    def wide_path_rows() -> list[dict[str, Any]]:
        return [_custom(_nested(40, {"s": 1.0})) for _ in range(ROWS)]

    return {
        "path-20001": (
            f"stats json_path of 20,001 segments over {ROWS:,} rows",
            2.0,
            lambda e: _load(e, numeric_rows()),
            lambda e: e.feedback_stats(
                _stats([{"json_path": ".".join(["output"] * 20_001)}], 3600)
            ),
        ),
        "path-256": (
            f"stats json_path of 255 characters (128 segments) over {ROWS:,} rows nested 64 deep",
            2.0,
            lambda e: _load(e, deep_rows()),
            lambda e: e.feedback_stats(_stats([{"json_path": _PATH_256}], 3600)),
        ),
        "keys-16000": (
            "one row with 16,000 rating keys, then an aggregate",
            2.0,
            lambda e: _load(
                e, [_scorer("s", scorer_ratings={f"k{i}": 1.0 for i in range(16_000)})]
            ),
            lambda e: e.feedback_aggregate(_aggregate()),
        ),
        "keys-distinct": (
            f"{ROWS:,} rows with 4 new rating keys each (80,000 keys), then an aggregate",
            2.0,
            lambda e: _load(
                e,
                [
                    _scorer("s", scorer_ratings={f"k{i}_{j}": 1.0 for j in range(4)})
                    for i in range(ROWS)
                ],
            ),
            lambda e: e.feedback_aggregate(_aggregate()),
        ),
        "scorers-distinct": (
            f"{ROWS:,} rows from {ROWS:,} distinct scorers, aggregate by scorer_id hourly",
            2.0,
            lambda e: _load(e, [_scorer(f"s{i}", scorer_tags=["t"]) for i in range(ROWS)]),
            lambda e: e.feedback_aggregate(
                _aggregate(group_by=["scorer_id"], time_bucket_seconds=3600)
            ),
        ),
        "tags-100000": (
            "one row with 100,000 tags, then an aggregate filtering on one",
            2.0,
            lambda e: _load(e, [_scorer("s", scorer_tags=[f"t{i}" for i in range(100_000)])]),
            lambda e: e.feedback_aggregate(_aggregate(tags=["t5"])),
        ),
        "tags-distinct": (
            f"{ROWS:,} rows with 4 new tags each, aggregate hourly",
            2.0,
            lambda e: _load(
                e, [_scorer("s", scorer_tags=[f"t{i}_{j}" for j in range(4)]) for i in range(ROWS)]
            ),
            lambda e: e.feedback_aggregate(_aggregate(time_bucket_seconds=3600)),
        ),
        "metrics-200": (
            f"200 metrics x 10,000 buckets over {ROWS:,} rows",
            20.0,
            lambda e: _load(e, numeric_rows()),
            lambda e: e.feedback_stats(
                _stats([{"json_path": f"output.s{i}"} for i in range(200)], 9)
            ),
        ),
        "percentiles-1000": (
            f"1,000 percentiles x 10,000 buckets over {ROWS:,} rows",
            20.0,
            lambda e: _load(e, numeric_rows()),
            lambda e: e.feedback_stats(
                _stats(
                    [{"json_path": "output.s0", "percentiles": [i / 10 for i in range(1000)]}], 9
                )
            ),
        ),
        "metrics-100-rows-100k": (
            "100 metrics (the most) x 3 aggregations, hourly over 31 days, 100,000 rows "
            "(more metrics than a project keeps columns for: every row parsed)",
            20.0,
            lambda e: _load(e, _many_rows(100_000)),
            lambda e: e.feedback_stats(
                _stats([{"json_path": f"output.s{i}"} for i in range(100)], 3600, days=31)
            ),
        ),
        "values-1m": (
            f"the largest answer admitted: 33 metrics x 3 aggregations x 10,001 buckets, "
            f"{ROWS:,} rows",
            20.0,
            lambda e: _load(e, numeric_rows()),
            lambda e: render_json(
                e.feedback_stats(_stats([{"json_path": f"output.s{i}"} for i in range(33)], 9))
            ),
        ),
        "values-1m-long-paths": (
            "33 metrics x 3 aggregations x 10,001 buckets, 250-character paths, rendered",
            20.0,
            lambda e: _load(e, wide_path_rows()),
            lambda e: render_json(
                e.feedback_stats(
                    _stats(
                        [
                            {
                                "json_path": ".".join(["a"] * 40)
                                + f".s{'x' * (166 - len(str(i)))}{i}"
                            }
                            for i in range(33)
                        ],
                        9,
                    )
                )
            ),
        ),
        "batch-10001": (
            "a batch of 10,001 creates",
            2.0,
            lambda e: None,
            lambda e: e.feedback_create_batch(
                {"batch": [_custom({"score": i}) for i in range(10_001)]}
            ),
        ),
        "batch-10000": (
            "a batch of 10,000 creates (the largest admitted)",
            2.0,
            lambda e: None,
            lambda e: e.feedback_create_batch(
                {"batch": [_custom({"score": i}) for i in range(10_000)]}
            ),
        ),
        "depth-5000": (
            "a create whose payload nests 5,000 lists deep",
            2.0,
            lambda e: None,
            lambda e: e.feedback_create(_custom({"deep": _nested_list(5000)})),
        ),
        "depth-64": (
            "a create whose payload nests 64 deep (the deepest admitted), then stats on it",
            2.0,
            lambda e: e.feedback_create(_custom(_nested(63, 1.0))),
            lambda e: e.feedback_stats(_stats([{"json_path": ".".join(["a"] * 63)}], 3600)),
        ),
    }


def _many_rows(n: int) -> list[dict[str, Any]]:
    return [_custom({"output": {f"s{j}": i * 0.25 for j in range(0, 100, 7)}}) for i in range(n)]


def _nested_list(depth: int) -> Any:
    leaf: Any = 1.0
    for _ in range(depth):
        leaf = [leaf]
    return leaf


def _size(result: Any) -> str:
    if isinstance(result, bytes):
        return f"{len(result) / 2**20:.1f} MiB of JSON"
    buckets = getattr(result, "buckets", None)
    if buckets is not None:
        return f"{len(buckets):,} buckets"
    res = getattr(result, "res", None)
    return f"{len(res):,} rows" if res is not None else "1 row"


def run_case(name: str) -> None:
    what, goal, setup, request = _cases()[name]
    engine = Engine(clock=ManualClock(START))
    setup(engine)
    other = Engine.feedback_create
    create = {
        "project_id": OTHER,
        "weave_ref": f"weave:///{OTHER}/call/c1",
        "feedback_type": "custom",
        "payload": {"score": 1},
    }
    other(engine, create)
    latencies: list[float] = []
    done = threading.Event()

    def creator() -> None:
        while not done.is_set():
            t0 = time.perf_counter()
            other(engine, create)
            latencies.append(time.perf_counter() - t0)
            time.sleep(0.002)

    thread = threading.Thread(target=creator)
    thread.start()
    t0 = time.perf_counter()
    try:
        result = request(engine)
        outcome = f"ok, {_size(result)}"
    except InvalidRequest as exc:
        result, outcome = None, f"400 {exc.reason[:110]}"
    elapsed = time.perf_counter() - t0
    done.set()
    thread.join()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if result is not None and not isinstance(result, bytes) and hasattr(result, "buckets"):
        reference = Engine(clock=engine.clock, executor="reference")
        reference._projects = engine._projects  # the same rows, read by the other executor
        again = request(reference)
        if again != result:
            raise SystemExit(f"{name}: the executors disagree")
    worst = max(latencies) if latencies else 0.0
    median = statistics.median(latencies) if latencies else 0.0
    print(
        f"{name:22} {elapsed:7.2f} s (goal {goal:4.0f} s)  creates {len(latencies):4}: "
        f"median {median * 1000:6.1f} ms, worst {worst * 1000:6.1f} ms (goal 500)  "
        f"maxrss {peak:6.0f} MiB (goal 1024)\n{'':22} {what}: {outcome}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=sorted(_cases()), help="run one case in this process")
    args = parser.parse_args()
    if args.case:
        run_case(args.case)
        return
    print(f"Python {sys.version.split()[0]}; each case in a fresh process", flush=True)
    for name in _cases():
        subprocess.run([sys.executable, __file__, "--case", name], check=True)


if __name__ == "__main__":
    main()
