"""The demo dataset and its report (``refengine demo``, ``refengine dump --demo``).

A week of realistic scorer feedback in one project, built through
``feedback_create`` from :mod:`refengine.synthetic` with a fixed clock and seeded
ids, so a seed gives the same rows, byte for byte, and the same report. The report
answers ``/feedback/aggregate`` and ``/feedback/stats`` over it as text tables.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from .clock import ManualClock
from .engine import Engine
from .rows import datetime_to_us, us_to_datetime
from .synthetic import synthetic_requests

DEMO_PROJECT = "acme/agent-demo"
DEMO_START = datetime(2024, 5, 1, tzinfo=timezone.utc)
DEMO_DAYS = 7
DEMO_USER = "demo-user"
BLOCKS = " ▏▎▍▌▋▊▉█"

Tracker = Callable[
    [Iterable[tuple[datetime, dict[str, Any]]]], Iterable[tuple[datetime, dict[str, Any]]]
]
"""Wraps the stream of (instant, request) pairs, e.g. with a progress counter."""


def seeded_ids(seed: int) -> Iterator[str]:
    """Deterministic UUID-shaped row ids, so a seed gives the same dump byte for byte."""
    rng = random.Random(f"refengine-demo-ids-{seed}")
    while True:
        yield str(uuid.UUID(int=rng.getrandbits(128), version=4))


def build_demo(seed: int, rows: int, track: Tracker | None = None) -> Engine:
    """The demo project: ``rows`` creates over a week, through ``feedback_create``.

    ``track`` may wrap the stream of requests (the command line's progress counter).
    Runtime complexity: O(rows log rows), the creates themselves.
    """
    clock = ManualClock(DEMO_START)
    ids = seeded_ids(seed)
    engine = Engine(clock=clock, user_id=DEMO_USER, id_factory=lambda: next(ids))
    requests: Iterable[tuple[datetime, dict[str, Any]]] = synthetic_requests(
        DEMO_PROJECT, rows, DEMO_START, timedelta(days=DEMO_DAYS), seed
    )
    if track is not None:
        requests = track(requests)
    for moment, request in requests:
        clock.set(moment)
        engine.feedback_create(request)
    clock.set(DEMO_START + timedelta(days=DEMO_DAYS))
    return engine


def _ms(moment: datetime) -> int:
    return datetime_to_us(moment) // 1000


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> list[str]:
    """A plain-text table: a header, a rule, the rows; columns in ``right`` right-aligned."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        parts = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(cells)
        ]
        return "  ".join(parts).rstrip()

    return [line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def number(value: Any, digits: int = 3) -> str:
    """A cell: ``-`` for no value, integers with thousands separators, floats rounded."""
    if value is None:
        return "-"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{float(value):.{digits}f}"


def _whole(value: Any) -> str:
    """A count that comes back as a float, or as null when no row had the metric."""
    return number(None if value is None else int(value))


def bar(value: float, scale: float, width: int = 40) -> str:
    """A horizontal bar of eighth blocks: ``value / scale`` of ``width`` cells."""
    if scale <= 0 or value <= 0:
        return ""
    eighths = round(min(value / scale, 1.0) * width * 8)
    return BLOCKS[8] * (eighths // 8) + (BLOCKS[eighths % 8] if eighths % 8 else "")


def demo_report(engine: Engine, seed: int) -> list[str]:
    """The demo's tables and chart, as lines of text."""
    start, end = DEMO_START, DEMO_START + timedelta(days=DEMO_DAYS)
    window = {"project_id": DEMO_PROJECT, "after_ms": _ms(start), "before_ms": _ms(end)}
    out = [
        f"refengine demo: {len(engine):,} feedback rows in {DEMO_PROJECT}, "
        f"{start:%Y-%m-%d} to {end:%Y-%m-%d} (seed {seed})",
        "",
        "Per scorer - POST /feedback/aggregate, group_by [scorer_id]",
    ]
    by_scorer = engine.feedback_aggregate({**window, "group_by": ["scorer_id"]})
    rows = []
    for b in by_scorer.buckets:
        count = b.rating_counts.get("_rating_", 0)
        avg = b.rating_sums.get("_rating_", 0.0) / count if count else None
        top = sorted(b.tag_counts.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
        rows.append(
            [
                b.group.get("scorer_id") or "(none)",
                number(b.total_count),
                number(b.scored_count),
                number(avg),
                ", ".join(f"{tag} {n}" for tag, n in top) or "-",
            ]
        )
    out += table(["scorer_id", "total", "scored", "avg _rating_", "top tags"], rows, {1, 2, 3})

    out += ["", "Daily scorer output - POST /feedback/stats, feedback_type wandb.agent_monitor"]
    stats = engine.feedback_stats(
        {
            "project_id": DEMO_PROJECT,
            "start": start,
            "end": end,
            "granularity": 86400,
            "feedback_type": "wandb.agent_monitor",
            "metrics": [
                {
                    "json_path": "output.score",
                    "aggregations": ["avg", "min", "max"],
                    "percentiles": [95],
                },
                {"json_path": "output.passed", "value_type": "boolean"},
            ],
        }
    )
    keys = [
        "avg_output_score",
        "min_output_score",
        "max_output_score",
        "p95_output_score",
        "count_true_output_passed",
        "count_false_output_passed",
    ]
    headers = ["day", "rows", "avg score", "min", "max", "p95", "passed", "failed"]
    rows = [
        [str(bucket["timestamp"])[:10], number(bucket["count"])]
        + [number(bucket[key]) for key in keys[:4]]
        + [_whole(bucket[key]) for key in keys[4:]]
        for bucket in stats.buckets
    ]
    ws = stats.window_stats or {}
    score, passed = ws.get("output_score", {}), ws.get("output_passed", {})
    rows.append(
        [
            "whole week",
            number(sum(int(b["count"]) for b in stats.buckets)),
            *(number(score.get(k)) for k in ("avg", "min", "max", "p95")),
            *(_whole(passed.get(k)) for k in ("count_true", "count_false")),
        ]
    )
    out += table(headers, rows, set(range(1, 8)))

    out += ["", "avg _rating_ every 12 hours - POST /feedback/aggregate, time_bucket_seconds 43200"]
    series = engine.feedback_aggregate({**window, "time_bucket_seconds": 43200})
    for b in series.buckets:
        count = b.rating_counts.get("_rating_", 0)
        avg = b.rating_sums.get("_rating_", 0.0) / count if count else 0.0
        when = us_to_datetime((b.time_bucket_start_ms or 0) * 1000)
        out.append(f"{when:%m-%d %H:%M}  {bar(avg, 1.0):<40}  {avg:.3f}")
    out.append(f"{'':13}{'0':<20}{'0.5':<20}1")
    return out
