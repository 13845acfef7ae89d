"""refengine's fast executor side by side with chdb (embedded ClickHouse) on the same rows.

Prints figures next to the goals of issue 15; asserts nothing about time. Usage::

    pip install -e '.[bench]'                    # chdb and pyarrow, never core dependencies
    python benchmarks/bench_chdb.py              # 1,000,000 synthetic rows over 30 days
    python benchmarks/bench_chdb.py --rows 100000 --repeats 5

The same synthetic rows (``refengine.synthetic``) go into an ``Engine`` and into a
chdb ``feedback`` table shaped like production's (``../shared/SEMANTICS-NOTES.md``
section 1: the stored columns, ``scorer_id`` derived from ``runnable_ref`` at query
time, the payload as JSON text). The SQL is shaped like production's queries:
``toStartOfInterval`` buckets, ``countIf``, ``sumMap`` over the tag and rating maps,
``JSONExtractRaw`` + ``toFloat64OrNull`` for a payload metric, ``quantiles``.

Every workload checks three answers against each other in the same run:

* refengine's fast answer equals the reference executor's (``Engine(executor=
  "reference")`` on the same rows) exactly — on the same query, except where the
  output says the reference ran on a one-day window of it (the reference fold over
  hundreds of thousands of rows takes seconds);
* chdb's answer agrees with refengine's cell by cell: counts exactly, sums, means and
  extremes to a relative 1e-9 (ClickHouse adds floats in its own order), percentiles
  against ClickHouse's exact ``quantilesExactInclusive`` (the same R-7 rule; the
  timed query uses production's sampling ``quantiles``, as a user would).

Times are medians over ``--repeats`` runs (garbage collector on, as in a server),
refengine's and chdb's runs alternating; "ratio" is refengine's median over chdb's.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

try:  # the bench extra, never a core dependency
    import chdb
    import pyarrow as pa
    import pyarrow.parquet as pq
    from chdb import session
except ImportError as missing:
    raise SystemExit(f"{missing}: install the bench extra (pip install -e '.[bench]')") from None

from refengine import Engine
from refengine.rows import FeedbackRow
from refengine.synthetic import synthetic_rows

PROJECT = "bench/chdb"
START = datetime(2024, 5, 1, tzinfo=timezone.utc)
DAYS = 30
DAY_MS = 86_400_000
T0 = int(START.timestamp() * 1000)
TAGS = ["hallucination", "toxic"]
REL = 1e-9

DDL = """
CREATE TABLE {table} (
    id String,
    project_id String,
    weave_ref String,
    wb_user_id String,
    creator Nullable(String),
    created_at DateTime64(3, 'UTC'),
    feedback_type String,
    payload_dump String,
    annotation_ref Nullable(String),
    runnable_ref Nullable(String),
    call_ref Nullable(String),
    trigger_ref Nullable(String),
    queue_id Nullable(String),
    scorer_tags Array(String),
    scorer_tag_reasons Map(String, String),
    scorer_tag_confidences Map(String, Float64),
    scorer_ratings Map(String, Float64),
    scorer_rating_reasons Map(String, String),
    scorer_rating_confidences Map(String, Float64),
    span_agent_name String,
    span_agent_version String,
    span_status_code Enum8('UNSET' = 0, 'OK' = 1, 'ERROR' = 2),
    span_conversation_id String,
    span_trace_id String,
    scorer_trace_id String
) ENGINE = MergeTree ORDER BY (project_id, created_at, id)
"""

# scorer_id: the object name of runnable_ref, derived per query as production does.
AGGREGATE_SQL = """
SELECT
    toUnixTimestamp(toStartOfInterval(created_at, INTERVAL {bucket} SECOND)) * 1000 AS b,
    splitByChar(':', splitByChar('/', ifNull(runnable_ref, ''))[-1])[1] AS scorer_id,
    count() AS total_count,
    countIf(notEmpty(scorer_tags) OR notEmpty(mapKeys(scorer_ratings))) AS scored_count,
    sumMap(scorer_tags, arrayMap(t -> toUInt64(1), scorer_tags)) AS tag_counts,
    sumMap(mapKeys(scorer_ratings), arrayMap(k -> toUInt64(1), mapKeys(scorer_ratings)))
        AS rating_counts,
    sumMap(scorer_ratings) AS rating_sums
FROM {table}
WHERE project_id = '{project}'
  AND created_at >= fromUnixTimestamp64Milli({after}, 'UTC')
  AND created_at < fromUnixTimestamp64Milli({before}, 'UTC')
  {where}
GROUP BY b, scorer_id
ORDER BY b, scorer_id
"""

STATS_SQL = """
SELECT
    toUnixTimestamp(toStartOfInterval(created_at, INTERVAL {granularity} SECOND, 'UTC')) AS b,
    {aggregates},
    count() AS n
FROM (
    SELECT created_at,
           toFloat64OrNull(JSONExtractRaw(payload_dump, 'output', 'score')) AS score
    FROM {table}
    WHERE project_id = '{project}'
      AND created_at >= toDateTime({start}, 'UTC') AND created_at < toDateTime({end}, 'UTC')
)
GROUP BY b WITH TOTALS
ORDER BY b
"""


# --- loading --------------------------------------------------------------------------


def load_chdb(sess: Any, table: str, rows: Sequence[FeedbackRow]) -> None:
    """Create the production-shaped table ``table`` in the chdb session ``sess`` and
    load ``rows`` into it through a Parquet file (one bulk insert)."""

    def strings(name: str) -> Any:
        return pa.array([getattr(r, name) for r in rows], pa.string())

    def mapping(name: str, value_type: Any) -> Any:
        return pa.array(
            [list(getattr(r, name).items()) for r in rows], pa.map_(pa.string(), value_type)
        )

    data = pa.table(
        {
            "id": strings("id"),
            "project_id": strings("project_id"),
            "weave_ref": strings("weave_ref"),
            "wb_user_id": strings("wb_user_id"),
            "creator": strings("creator"),
            "created_at": pa.array([r.created_at_ms for r in rows], pa.timestamp("ms", "UTC")),
            "feedback_type": strings("feedback_type"),
            "payload_dump": strings("payload_dump"),
            "annotation_ref": strings("annotation_ref"),
            "runnable_ref": strings("runnable_ref"),
            "call_ref": strings("call_ref"),
            "trigger_ref": strings("trigger_ref"),
            "queue_id": strings("queue_id"),
            "scorer_tags": pa.array([list(r.scorer_tags) for r in rows], pa.list_(pa.string())),
            "scorer_tag_reasons": mapping("scorer_tag_reasons", pa.string()),
            "scorer_tag_confidences": mapping("scorer_tag_confidences", pa.float64()),
            "scorer_ratings": mapping("scorer_ratings", pa.float64()),
            "scorer_rating_reasons": mapping("scorer_rating_reasons", pa.string()),
            "scorer_rating_confidences": mapping("scorer_rating_confidences", pa.float64()),
            "span_agent_name": strings("span_agent_name"),
            "span_agent_version": strings("span_agent_version"),
            "span_status_code": strings("span_status_code"),
            "span_conversation_id": strings("span_conversation_id"),
            "span_trace_id": strings("span_trace_id"),
            "scorer_trace_id": strings("scorer_trace_id"),
        }
    )
    sess.query(DDL.format(table=table))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "feedback.parquet")
        pq.write_table(data, path)
        sess.query(f"INSERT INTO {table} SELECT * FROM file('{path}', Parquet)")
    loaded = int(str(sess.query(f"SELECT count() FROM {table}", "CSV")).strip())
    if loaded != len(rows):
        raise SystemExit(f"chdb holds {loaded} rows, expected {len(rows)}")


def chdb_json(sess: Any, sql: str) -> dict[str, Any]:
    """One chdb query's result, parsed (the JSON output format, totals included)."""
    result: dict[str, Any] = json.loads(bytes(sess.query(sql, "JSON").bytes()))
    return result


# --- the queries ----------------------------------------------------------------------


def aggregate_req(after: int, before: int, tags: list[str] | None = None) -> dict[str, Any]:
    req: dict[str, Any] = {
        "project_id": PROJECT,
        "after_ms": after,
        "before_ms": before,
        "time_bucket_seconds": 3600,
        "group_by": ["scorer_id"],
    }
    if tags:
        req["tags"] = tags
    return req


def aggregate_sql(req: dict[str, Any], table: str = "feedback") -> str:
    tags = req.get("tags")
    where = f"AND hasAny(scorer_tags, {tags!r})" if tags else ""
    return AGGREGATE_SQL.format(
        table=table,
        bucket=req["time_bucket_seconds"],
        project=req["project_id"],
        after=req["after_ms"],
        before=req["before_ms"],
        where=where,
    )


def stats_req(start_ms: int, days: int, percentiles: bool) -> dict[str, Any]:
    metric: dict[str, Any] = {"json_path": "output.score"}
    if percentiles:
        metric["percentiles"] = [50, 95, 99]
    start = datetime.fromtimestamp(start_ms / 1000, timezone.utc)
    return {
        "project_id": PROJECT,
        "start": start.isoformat(),
        "end": (start + timedelta(days=days)).isoformat(),
        "metrics": [metric],
    }


def stats_sql(req: dict[str, Any], granularity: int, quantiles: str) -> str:
    aggregates = "avg(score) AS avg, min(score) AS min, max(score) AS max"
    if req["metrics"][0].get("percentiles"):
        aggregates += f", {quantiles}(0.5, 0.95, 0.99)(score) AS q"
    return STATS_SQL.format(
        table="feedback",
        granularity=granularity,
        aggregates=aggregates,
        project=req["project_id"],
        start=int(datetime.fromisoformat(req["start"]).timestamp()),
        end=int(datetime.fromisoformat(req["end"]).timestamp()),
    )


# --- agreement ------------------------------------------------------------------------


def close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=REL, abs_tol=1e-12)


def as_map(value: Any) -> dict[str, Any]:
    """A sumMap result as a dict: a map from ``sumMap(map)``, a (keys, values) pair
    from ``sumMap(keys, values)``."""
    return dict(value) if isinstance(value, dict) else dict(zip(*value, strict=True))


def aggregate_agrees(ours: Any, theirs: dict[str, Any]) -> tuple[bool, str]:
    """refengine's aggregate answer against chdb's rows, cell by cell."""
    mine = {(b.time_bucket_start_ms, b.group["scorer_id"]): b for b in ours.buckets}
    rows = theirs["data"]
    if len(rows) != len(mine):
        return False, f"{len(mine)} cells vs chdb {len(rows)}"
    total = 0
    for row in rows:
        cell = mine.get((int(row["b"]), row["scorer_id"]))
        if cell is None:
            return False, f"chdb cell {row['b']}/{row['scorer_id']} missing"
        sums = {k: float(v) for k, v in as_map(row["rating_sums"]).items()}
        if (
            cell.total_count != int(row["total_count"])
            or cell.scored_count != int(row["scored_count"])
            or cell.tag_counts != {k: int(v) for k, v in as_map(row["tag_counts"]).items()}
            or cell.rating_counts != {k: int(v) for k, v in as_map(row["rating_counts"]).items()}
            or cell.rating_sums.keys() != sums.keys()
            or not all(close(cell.rating_sums[k], sums[k]) for k in sums)
        ):
            return False, f"cell {row['b']}/{row['scorer_id']} differs"
        total += cell.total_count
    return True, f"{len(rows)} cells, {total:,} rows"


def stats_agrees(ours: Any, theirs: dict[str, Any], exact_q: dict[str, Any]) -> tuple[bool, str]:
    """refengine's stats answer against chdb's: every non-empty bucket and the window."""
    by_start = {int(datetime.fromisoformat(b["timestamp"]).timestamp()): b for b in ours.buckets}
    quantiles = {int(r["b"]): r.get("q") for r in exact_q["data"]}
    quantiles[-1] = exact_q["totals"].get("q")
    levels = ("p50", "p95", "p99")

    def same(mine: dict[str, Any], row: dict[str, Any], key: int, suffix: str) -> bool:
        ok = all(close(mine[f"{agg}{suffix}"], row[agg]) for agg in ("avg", "min", "max"))
        if f"p50{suffix}" in mine:
            wanted = quantiles[key]
            ok = ok and all(
                close(mine[f"{p}{suffix}"], float(q)) for p, q in zip(levels, wanted, strict=True)
            )
        return ok

    non_empty = [b for b in ours.buckets if b["count"]]
    if len(non_empty) != len(theirs["data"]):
        return False, f"{len(non_empty)} buckets vs chdb {len(theirs['data'])}"
    for row in theirs["data"]:
        mine = by_start.get(int(row["b"]))
        if (
            mine is None
            or mine["count"] != int(row["n"])
            or not same(mine, row, int(row["b"]), "_output_score")
        ):
            return False, f"bucket {row['b']} differs"
    window = ours.window_stats["output_score"]
    if not same(window, theirs["totals"], -1, ""):
        return False, "window_stats differ"
    return True, f"{len(non_empty)} buckets, {sum(b['count'] for b in ours.buckets):,} rows"


def dump(res: Any) -> str:
    return json.dumps(res.model_dump(mode="json"), sort_keys=True)


# --- timing ---------------------------------------------------------------------------


def interleaved(
    repeats: int, first: Callable[[], Any], second: Callable[[], Any]
) -> tuple[float, Any, float, Any]:
    """Median wall seconds and last result of each call, the two run alternately
    so that a busy minute on a shared machine slows both, not one."""
    times: tuple[list[float], list[float]] = ([], [])
    results: list[Any] = [None, None]
    for _ in range(repeats):
        for i, call in enumerate((first, second)):
            started = time.perf_counter()
            results[i] = call()
            times[i].append(time.perf_counter() - started)
    return statistics.median(times[0]), results[0], statistics.median(times[1]), results[1]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:9.2f}"


class Report:
    def __init__(self) -> None:
        self.lines: list[str] = []
        header = (
            f"{'workload':<58} {'refengine ms':>12} {'chdb ms':>9} {'ratio':>6}  {'goal':<22}"
            f" {'met':>3}  checks"
        )
        print(header)
        print("-" * len(header))

    def row(
        self, label: str, ours: float, theirs: float | None, *, goal: str, met: bool, checks: str
    ) -> None:
        ratio = "" if theirs is None else f"{ours / theirs:6.2f}"
        other = "—" if theirs is None else ms(theirs)
        print(
            f"{label:<58} {ms(ours):>12} {other:>9} {ratio:>6}  {goal:<22}"
            f" {'yes' if met else 'NO':>3}  {checks}",
            flush=True,
        )


def reference_check(
    engines: tuple[Engine, Engine],
    method: str,
    req: dict[str, Any],
    got: Any,
    *,
    narrow: Callable[[], dict[str, Any]],
) -> str:
    """fast's answer == the reference executor's, on ``req`` itself when the store is
    small enough, else on ``narrow()`` (a one-day window of it)."""
    fast, reference = engines
    if len(fast) <= 200_000:
        want = getattr(reference, method)(req)
        where = "same query"
    else:
        req = narrow()
        got = getattr(fast, method)(req)
        want = getattr(reference, method)(req)
        where = "1-day window"
    return f"ref {'==' if dump(got) == dump(want) else '!= (WRONG)'} ({where})"


def build_engines(rows: Iterable[FeedbackRow]) -> tuple[Engine, Engine]:
    rows = list(rows)
    fast, reference = Engine(executor="fast"), Engine(executor="reference")
    fast.insert_rows(rows)
    reference.insert_rows(rows)
    return fast, reference


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the big store")
    parser.add_argument("--small-rows", type=int, default=1000, help="rows in the small store")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per query (median)")
    args = parser.parse_args(argv)

    print(
        f"Python {sys.version.split()[0]}, chdb {chdb.__version__}; load {os.getloadavg()[0]:.2f}"
    )
    started = time.perf_counter()
    rows = synthetic_rows(PROJECT, args.rows, START, timedelta(days=DAYS), seed=42)
    n = len(rows)
    fast, reference = build_engines(rows)
    sess = session.Session()
    load_chdb(sess, "feedback", rows)
    print(
        f"{n:,} rows over {DAYS} days (reactions skipped) in both engines, "
        f"{time.perf_counter() - started:.0f} s to build"
    )

    # Cold: the first aggregate on a fresh engine, right after its load (the load
    # keeps the master columns current; the first query partitions its window).
    # Three fresh engines, medians; the load's own pending garbage collection is run
    # before the query (gc.collect) so that it is not billed to whichever call
    # happens to trigger it.
    ten_days = (T0 + 10 * DAY_MS, T0 + 20 * DAY_MS)
    hourly = aggregate_req(*ten_days)
    colds, loads = [], []
    for _ in range(3):
        cold_engine = Engine(executor="fast")
        started = time.perf_counter()
        cold_engine.insert_rows(rows)
        loads.append(time.perf_counter() - started)
        gc.collect()
        started = time.perf_counter()
        cold_res = cold_engine.feedback_aggregate(hourly)
        colds.append(time.perf_counter() - started)
        del cold_engine
        gc.collect()
    cold, load = statistics.median(colds), statistics.median(loads)
    print()
    report = Report()

    one_day = (T0 + 15 * DAY_MS, T0 + 16 * DAY_MS)
    warm = 0.0
    size = f"{n / 1e6:.2g}M rows"
    for what, req in (
        ("aggregate, 10 days hourly x scorer_id, warm", hourly),
        ("aggregate, same + tags filter", aggregate_req(*ten_days, TAGS)),
    ):
        label = f"{size} {what}"
        fast.feedback_aggregate(req)  # warm the index for this group_by
        ours, got, theirs, answer = interleaved(
            args.repeats,
            lambda req=req: fast.feedback_aggregate(req),
            lambda req=req: chdb_json(sess, aggregate_sql(req)),
        )
        if not warm:
            warm = ours
            if dump(cold_res) != dump(got):
                print("  cold answer != warm answer (WRONG)")
        ok, detail = aggregate_agrees(got, answer)
        narrow = lambda req=req: {**req, "after_ms": one_day[0], "before_ms": one_day[1]}  # noqa: E731
        checks = f"chdb {'agrees' if ok else 'DISAGREES'} ({detail}); " + reference_check(
            (fast, reference), "feedback_aggregate", req, got, narrow=narrow
        )
        report.row(label, ours, theirs, goal="ratio <= 1.0", met=ours <= theirs, checks=checks)

    stats_start = T0 + 10 * DAY_MS
    for what, with_p in (
        ("stats 7 days output.score avg/min/max, warm", False),
        ("stats same + p50/p95/p99", True),
    ):
        label = f"{size} {what}"
        req = stats_req(stats_start, 7, with_p)
        fast.feedback_stats(req)  # builds the metric column once
        granularity = fast.feedback_stats(req).granularity
        sql = stats_sql(req, granularity, "quantiles")
        ours, got, theirs, answer = interleaved(
            args.repeats,
            lambda req=req: fast.feedback_stats(req),
            lambda sql=sql: chdb_json(sess, sql),
        )
        exact = chdb_json(sess, stats_sql(req, granularity, "quantilesExactInclusive"))
        ok, detail = stats_agrees(got, answer, exact)
        narrow = lambda with_p=with_p: stats_req(T0 + 15 * DAY_MS, 1, with_p)  # noqa: E731
        checks = f"chdb {'agrees' if ok else 'DISAGREES'} ({detail}); " + reference_check(
            (fast, reference), "feedback_stats", req, got, narrow=narrow
        )
        met = ours <= 0.5 * theirs
        report.row(label, ours, theirs, goal="ratio <= 0.5", met=met, checks=checks)
    plain_req, with_req = stats_req(stats_start, 7, False), stats_req(stats_start, 7, True)
    plain, _, with_p, _ = interleaved(
        args.repeats * 2,
        lambda: fast.feedback_stats(plain_req),
        lambda: fast.feedback_stats(with_req),
    )
    print(
        f"{'':<4}percentiles cost {with_p / plain:.2f}x the same query without them"
        f" ({ms(with_p).strip()} vs {ms(plain).strip()} ms, interleaved;"
        f" goal <= 2x: {'met' if with_p <= 2 * plain else 'NOT met'})"
    )

    report.row(
        f"{size} first aggregate (cold: index build)",
        cold,
        None,
        goal=f"<= 4x warm ({cold / warm:.1f}x)",
        met=cold <= 4 * warm,
        checks=f"answer == warm answer; load (insert_rows) {load:.2f} s, median of 3",
    )

    small_rows = synthetic_rows(PROJECT, args.small_rows, START, timedelta(days=DAYS), seed=7)
    small_fast, small_ref = build_engines(small_rows)
    load_chdb(sess, "feedback_small", small_rows)
    req = aggregate_req(T0, T0 + 10 * DAY_MS)
    small_fast.feedback_aggregate(req)
    ours, got, theirs, answer = interleaved(
        args.repeats * 5,
        lambda: small_fast.feedback_aggregate(req),
        lambda: chdb_json(sess, aggregate_sql(req, "feedback_small")),
    )
    ok, detail = aggregate_agrees(got, answer)
    checks = f"chdb {'agrees' if ok else 'DISAGREES'} ({detail}); " + reference_check(
        (small_fast, small_ref), "feedback_aggregate", req, got, narrow=lambda: req
    )
    cells = len(got.buckets)
    report.row(
        f"{len(small_rows):,} rows aggregate, 10 days hourly x scorer_id",
        ours,
        theirs,
        goal="ratio <= 0.1",
        met=ours <= 0.1 * theirs,
        checks=checks,
    )
    print(f"{'':<4}{ours / cells * 1e6:.2f} µs per cell over {cells} cells (goal about <= 2 µs)")
    print()
    print(
        f"medians of {args.repeats} runs ({args.repeats * 5} for the small store); "
        f"load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )


if __name__ == "__main__":
    main()
