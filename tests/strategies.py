"""Hypothesis strategies shared by every test module (the one place they live).

The core strategy, :func:`datasets`, draws a list of ``(created_at, create request)``
pairs that are all *valid* creates, spread over a small time span with many rows
sharing buckets, scorers, tags and rating keys — so that aggregate and stats
queries over them have plenty of collisions to get wrong.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from enum import IntEnum
from typing import Any

from hypothesis import strategies as st

from refengine import Engine, ManualClock

# The vocabulary and the JSON-value builder are shared with the differential workload
# that `refengine conformance` ships (it cannot import tests/). The tests draw wider
# scalars than the workload does.
from refengine.conformance.workload import (
    AGENTS,
    MONITORS,
    RATING_KEYS,
    SCORERS,
    TAGS,
    span_fields,
)
from refengine.conformance.workload import (
    json_values as _json_values,
)
from refengine.rows import FeedbackRow, make_row

PROJECT = "acme/bot"
OTHER_PROJECT = "acme/other"
BASE = datetime(2024, 3, 9, 22, 0, 0, tzinfo=timezone.utc)  # a few hours before a DST change
SPAN_MS = 6 * 3_600_000  # rows fall in [BASE, BASE + 6 h)


# --- JSON values --------------------------------------------------------------------

finite_floats = st.floats(allow_nan=False, allow_infinity=False, width=64)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    finite_floats,
    st.sampled_from([0.0, -0.0, 0.5, 1.0, 1e-300, 1e300]),
    st.text(max_size=5),
    st.sampled_from(["0.5", "true", "nan", ""]),
)
json_values = _json_values(json_scalars, max_size=3, max_leaves=8)


@st.composite
def payloads(draw: st.DrawFn) -> dict[str, Any]:
    """A payload with an ``output`` that stats metrics can read (or fail to read)."""
    output = draw(
        st.one_of(
            st.fixed_dictionaries(
                {},
                optional={
                    "score": st.one_of(finite_floats, st.integers(-5, 5), json_values),
                    "passed": st.one_of(st.booleans(), json_values),
                    "label": st.one_of(st.sampled_from(["cat", "dog", ""]), json_values),
                },
            ),
            json_values,
        )
    )
    return {"output": output}


class Level(IntEnum):
    """An int subclass: ``json.dumps`` writes it as a plain int."""

    HIGH = 3


class Label(str):
    """A str subclass: ``json.dumps`` writes it as a plain string."""


# Leaves an in-process caller may put in a payload: JSON scalars, and values the JSON
# round trip changes (subclasses, big ints), fails on (NaN, infinity, datetimes) or
# writes with escapes (non-ASCII, astral, control characters, long strings).
python_leaves = st.one_of(
    json_scalars,
    st.sampled_from([Level.HIGH, Label("x"), 10**18 - 1, 10**18, -(10**18), 10**30]),
    st.sampled_from([float("nan"), float("inf"), datetime(2024, 1, 1)]),
    st.text(st.characters(codec="utf-8"), max_size=40),
    st.text(max_size=40).map(Label),
    finite_floats.map(lambda x: x * 1e300),
)
python_keys = st.one_of(
    st.text(max_size=4), st.integers(-2, 2), st.booleans(), st.none(), st.just(1.5)
)
python_payloads = st.dictionaries(
    st.text(max_size=4),
    st.recursive(
        python_leaves,
        lambda children: st.one_of(
            st.lists(children, max_size=3),
            st.lists(children, max_size=3).map(tuple),
            st.dictionaries(python_keys, children, max_size=3),
        ),
        max_leaves=10,
    ),
    max_size=4,
)
"""In-process payloads: nested dicts (any keys), lists and tuples of any leaf."""


# --- create requests ----------------------------------------------------------------


def _ref(kind: str, name: str, digest: str = "v1") -> str:
    return f"weave:///acme/bot/{kind}/{name}:{digest}"


scorer_maps = st.fixed_dictionaries(
    {
        "scorer_tags": st.lists(st.sampled_from(TAGS), max_size=3),
        "scorer_ratings": st.dictionaries(
            st.sampled_from(RATING_KEYS),
            st.one_of(st.sampled_from([0.0, 0.25, 0.5, 1.0]), st.floats(0, 1)),
            max_size=2,
        ),
    }
)


@st.composite
def runnable_requests(draw: st.DrawFn, project_id: str = PROJECT) -> dict[str, Any]:
    scorer = draw(st.sampled_from(SCORERS))
    req: dict[str, Any] = {
        "project_id": project_id,
        "weave_ref": f"weave:///acme/bot/call/{draw(st.integers(0, 9))}",
        "feedback_type": f"wandb.runnable.{scorer}",
        "runnable_ref": _ref("object", scorer, draw(st.sampled_from(["v1", "v2"]))),
        "payload": draw(payloads()),
    }
    if draw(st.booleans()):
        req["trigger_ref"] = _ref("object", draw(st.sampled_from(MONITORS)))
    req.update(draw(scorer_maps))
    req.update(draw(span_fields))
    return req


@st.composite
def agent_monitor_requests(draw: st.DrawFn, project_id: str = PROJECT) -> dict[str, Any]:
    target = draw(
        st.sampled_from(
            [
                "weave:///acme/bot/agent_turn/t1",
                "weave:///acme/bot/agent_turn/t2",
                "weave:///acme/bot/agent_conversation/c%2F1",
                "weave:///acme/bot/call/x",
            ]
        )
    )
    req: dict[str, Any] = {
        "project_id": project_id,
        "weave_ref": target,
        "feedback_type": "wandb.agent_monitor",
        "runnable_ref": _ref("object", draw(st.sampled_from(SCORERS))),
        "call_ref": draw(st.sampled_from(["", "weave:///acme/bot/call/c9"])),
        "trigger_ref": _ref("object", draw(st.sampled_from(MONITORS))),
        "payload": draw(payloads()),
    }
    req.update(draw(scorer_maps))
    req.update(draw(span_fields))
    return req


@st.composite
def custom_requests(draw: st.DrawFn, project_id: str = PROJECT) -> dict[str, Any]:
    return {
        "project_id": project_id,
        "weave_ref": "weave:///acme/bot/call/c1",
        "feedback_type": draw(st.sampled_from(["custom", "custom.score", "wandb.note.1x"])),
        "payload": draw(payloads()),
        **draw(span_fields),
    }


def create_requests(project_id: str = PROJECT) -> st.SearchStrategy[dict[str, Any]]:
    """Any valid create request, scorer-shaped most of the time."""
    return st.one_of(
        runnable_requests(project_id),
        agent_monitor_requests(project_id),
        custom_requests(project_id),
    )


offsets_ms = st.one_of(
    st.integers(0, SPAN_MS - 1),
    st.sampled_from([0, 1, 999, 1000, 3_599_999, 3_600_000, 3_600_001, SPAN_MS - 1]),
)


@st.composite
def datasets(draw: st.DrawFn, max_size: int = 30) -> list[tuple[datetime, dict[str, Any]]]:
    """Valid creates with the instant each is made at; a few go to another project."""
    items = draw(
        st.lists(
            st.tuples(
                offsets_ms,
                st.integers(0, 999),  # microseconds below the millisecond
                st.one_of(
                    create_requests(PROJECT),
                    create_requests(PROJECT),
                    create_requests(OTHER_PROJECT),
                ),
            ),
            max_size=max_size,
        )
    )
    return [(BASE + timedelta(milliseconds=ms, microseconds=us), req) for ms, us, req in items]


def populate(
    dataset: list[tuple[datetime, dict[str, Any]]], engine: Engine | None = None
) -> Engine:
    """An engine (new unless given) holding ``dataset``, each row created at its instant."""
    clock = ManualClock(BASE)
    if engine is None:
        engine = Engine(clock=clock)
    else:
        engine.clock = clock
    for moment, req in dataset:
        clock.set(moment)
        engine.feedback_create(req)
    return engine


# --- stats requests (POST /feedback/stats) ------------------------------------------

STATS_PATHS = [
    "output.score",
    "output.passed",
    "output.label",
    "output",
    "output.0",
    "output.a b",
    "output.score.0",
    "score",
]
STATS_ZONES = [
    "UTC",
    "",
    "America/New_York",  # DST starts 2024-03-10 07:00 UTC, within reach of the requests
    "Asia/Kolkata",  # +05:30
    "Asia/Kathmandu",  # +05:45
    "Australia/Adelaide",  # +10:30
    "Europe/London",
]
STATS_PERCENTILES = [0.0, 5.0, 50.0, 90.0, 95.0, 99.9, 100.0, 33.3333333]
NUMERIC_AGGS = ["sum", "avg", "min", "max", "count", "count_true", "count_false"]


@st.composite
def stats_metrics(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Metrics with distinct paths (so distinct slugs), any valid type and aggregation."""
    paths = draw(st.lists(st.sampled_from(STATS_PATHS), unique=True, max_size=3))
    metrics = []
    for path in paths:
        value_type = draw(st.sampled_from(["numeric", "numeric", "boolean", "categorical"]))
        metric: dict[str, Any] = {"json_path": path, "value_type": value_type}
        if value_type == "categorical":
            if draw(st.booleans()):
                metric["aggregations"] = ["count"]
        else:
            metric["aggregations"] = draw(st.lists(st.sampled_from(NUMERIC_AGGS), max_size=4))
            metric["percentiles"] = draw(st.lists(st.sampled_from(STATS_PERCENTILES), max_size=3))
        metrics.append(metric)
    return metrics


@st.composite
def stats_requests(draw: st.DrawFn) -> dict[str, Any]:
    """A valid stats request (explicit end) over and around the datasets() span."""
    start_ms = draw(
        st.one_of(
            st.integers(-3_600_000, SPAN_MS + 3_600_000),
            st.sampled_from([0, 1_800_000, 3_600_000]),
        )
    )
    start = BASE + timedelta(milliseconds=start_ms, microseconds=draw(st.sampled_from([0, 250])))
    length = draw(
        st.one_of(
            st.integers(0, 9 * 3_600_000).map(lambda ms: timedelta(milliseconds=ms)),
            st.sampled_from([timedelta(0), timedelta(hours=2), timedelta(hours=12)]),
        )
    )
    req: dict[str, Any] = {
        "project_id": draw(st.sampled_from([PROJECT, PROJECT, PROJECT, OTHER_PROJECT])),
        "start": start.isoformat(),
        "end": (start + length).isoformat(),
        "timezone": draw(st.sampled_from(STATS_ZONES)),
        "metrics": draw(stats_metrics()),
    }
    granularity = draw(st.sampled_from([None, None, 0, 60, 300, 900, 1800, 3600, 7, 86400, 1]))
    if granularity is not None:
        req["granularity"] = granularity
    feedback_type = draw(
        st.sampled_from([None, None, "custom", "wandb.agent_monitor", "wandb.runnable.sc_a"])
    )
    if feedback_type is not None:
        req["feedback_type"] = feedback_type
    trigger_ref = draw(
        st.sampled_from(
            [
                None,
                None,
                "weave:///acme/bot/object/mon_1:v1",
                "weave:///acme/bot/object/mon_1:*",
                "weave:///acme/bot/object/mon_:*",
                "weave:///acme/bot/object/watch:v2",
            ]
        )
    )
    if trigger_ref is not None:
        req["trigger_ref"] = trigger_ref
    return req


# --- stats values for the fast fold's summaries, runs and rank selection -------------

DBL_MAX = 1.7976931348623157e308
stats_floats = st.one_of(
    st.sampled_from([0.0, -0.0, 1.0, 0.5, -2.0, 1e308, -1e308, DBL_MAX, -DBL_MAX]),
    st.sampled_from([5e-324, -5e-324, 2.0**-1022, 2.0**970, 2.0**60, 3.0 * 2.0**60]),
    finite_floats,
    st.floats(-1, 1),
)
"""Finite floats, many of them at the edges: zeros of both signs, the ends of the
range, subnormals, values whose sums overflow or round at the top of the range."""

float_runs = st.lists(st.lists(stats_floats, max_size=8), min_size=1, max_size=5)
"""Consecutive runs of values (some empty)."""
run_sums = st.lists(st.booleans(), min_size=5, max_size=5)
"""For each of up to five runs, whether its sum is scaled (true) or its values kept."""
quantile_levels = st.lists(st.sampled_from([0.0, 0.05, 0.5, 0.9, 0.999, 1.0]), max_size=4)
"""Percentile levels (``p / 100``), the ends included."""

sorted_float_lists = st.lists(
    st.lists(
        st.one_of(st.sampled_from([0.0, -0.0, 1.0, 0.5, -2.0]), finite_floats), max_size=12
    ).map(sorted),
    min_size=1,
    max_size=6,
)
"""Sorted lists (stable: equal zeros keep their drawn order) with many ties."""

STATS_ROW_OFFSETS_MS = st.one_of(
    st.integers(0, 5 * 3_600_000 - 1),
    st.sampled_from([0, 1, 999, 1000, 1_799_999, 3_599_999, 3_600_000, 7_200_000, 10_799_000]),
)
stats_scores = st.one_of(stats_floats, st.sampled_from([None, "x", True]))


@st.composite
def stats_value_rows(draw: st.DrawFn, max_size: int = 60) -> list[FeedbackRow]:
    """Stored rows of project ``e/p`` over five hours from the epoch, with many per
    hour (ties in time too): ``output.score`` from :data:`stats_scores` (some
    without a value), ``output.passed`` a boolean or none."""
    items = draw(
        st.lists(
            st.tuples(STATS_ROW_OFFSETS_MS, stats_scores, st.sampled_from([True, False, None])),
            max_size=max_size,
        )
    )
    return [
        scorer_row(ms, scorer=f"s{i}", payload={"output": {"score": score, "passed": passed}})
        for i, (ms, score, passed) in enumerate(items)
    ]


@st.composite
def stats_value_requests(draw: st.DrawFn) -> dict[str, Any]:
    """A stats request of project ``e/p`` over part of :func:`stats_value_rows`' five
    hours: windows starting on or off the hour, buckets aligned with hours or not
    (60 s, 90 s, 90 min), every aggregation of ``output.score`` with percentiles,
    ``output.passed`` with or without; sometimes a ``feedback_type`` filter."""
    start_s = draw(st.one_of(st.integers(-3600, 5 * 3600), st.sampled_from([0, 1800, 3600, 3601])))
    length_s = draw(st.one_of(st.integers(0, 6 * 3600), st.sampled_from([3600, 5 * 3600])))
    granularity = draw(st.sampled_from([None, 60, 90, 600, 3600, 5400, 7200, 10800, 86400]))
    levels = draw(st.lists(st.sampled_from(STATS_PERCENTILES), max_size=4))
    passed: dict[str, Any] = {"json_path": "output.passed", "value_type": "boolean"}
    if draw(st.booleans()):
        passed["percentiles"] = draw(st.lists(st.sampled_from([0.0, 50.0, 90.0]), max_size=2))
    req: dict[str, Any] = {
        "project_id": "e/p",
        "start": datetime.fromtimestamp(start_s, timezone.utc).isoformat(),
        "end": datetime.fromtimestamp(start_s + length_s, timezone.utc).isoformat(),
        "timezone": draw(st.sampled_from(STATS_ZONES)),
        "metrics": [
            {"json_path": "output.score", "aggregations": NUMERIC_AGGS, "percentiles": levels},
            passed,
        ],
    }
    if granularity is not None:
        req["granularity"] = granularity
    feedback_type = draw(st.sampled_from([None, None, None, "wandb.runnable.s", "custom"]))
    if feedback_type is not None:  # the rows' own type, or none of them
        req["feedback_type"] = feedback_type
    return req


# --- aggregate requests -------------------------------------------------------------

BASE_MS = int(BASE.timestamp() * 1000)
AGG_BUCKET_SECONDS = [1, 60, 420, 900, 3600, 7200, 86_400]
AGG_GROUP_BY = ["scorer_id", "span_agent_name", "span_agent_version", "span_status_code"]
AGG_FEEDBACK_TYPES = ["", "*", "custom", "custom.**", "wandb.runnable.", "wandb.agent_monitor", "x"]
AGG_IDS = ["", "*", "**", "sc_a", "sc*", "sc**", "judge", "mon_1", "mon*", "watch", "w*", "nope"]


AGG_FILTERS: dict[str, st.SearchStrategy[Any]] = {
    "feedback_types": st.lists(st.sampled_from(AGG_FEEDBACK_TYPES), min_size=1, max_size=2),
    "tags": st.lists(st.sampled_from([*TAGS, "none"]), min_size=1, max_size=2),
    "rating_min": st.one_of(st.sampled_from([0.0, 0.25, 0.5, 1.0]), st.floats(0, 1)),
    "rating_max": st.one_of(st.sampled_from([0.0, 0.25, 0.5, 1.0]), st.floats(0, 1)),
    "monitor_ids": st.lists(st.sampled_from(AGG_IDS), min_size=1, max_size=2),
    "scorer_ids": st.lists(st.sampled_from(AGG_IDS), min_size=1, max_size=2),
    "span_agent_names": st.lists(st.sampled_from([*AGENTS, "plan"]), min_size=1, max_size=2),
    "span_types": st.lists(
        st.sampled_from(["agent_turn", "agent_conversation"]), min_size=1, max_size=2
    ),
}


@st.composite
def aggregate_filters(draw: st.DrawFn, max_filters: int = 2) -> dict[str, Any]:
    """Up to ``max_filters`` of the aggregate filters, over the dataset vocabulary
    (few at a time, so that most queries still match some rows)."""
    names = draw(st.lists(st.sampled_from(sorted(AGG_FILTERS)), max_size=max_filters, unique=True))
    return {name: draw(AGG_FILTERS[name]) for name in names}


@st.composite
def aggregate_requests(draw: st.DrawFn, project_id: str | None = None) -> dict[str, Any]:
    """A valid aggregate request (a dict) whose window overlaps the datasets' span.

    The bucket size, when drawn, is one that keeps the window within 256 buckets.
    """
    edges = st.one_of(
        st.integers(-3_600_000, SPAN_MS + 3_600_000),
        st.sampled_from([0, 1, 1000, 3_600_000, SPAN_MS - 1, SPAN_MS]),
    )
    after = draw(edges)
    before = draw(edges.filter(lambda ms: ms != after))
    after, before = min(after, before), max(after, before)
    length_s = (before - after) / 1000
    sizes = [n for n in AGG_BUCKET_SECONDS if length_s / n <= 256]
    bucket = draw(st.one_of(st.none(), st.sampled_from(sizes))) if sizes else None
    req: dict[str, Any] = {
        "project_id": project_id
        or draw(st.sampled_from([PROJECT, PROJECT, PROJECT, OTHER_PROJECT])),
        "after_ms": BASE_MS + after,
        "before_ms": BASE_MS + before,
        "time_bucket_seconds": bucket,
        "group_by": draw(st.lists(st.sampled_from(AGG_GROUP_BY), max_size=3, unique=True)),
    }
    req.update(draw(aggregate_filters()))
    return req


# --- stored rows built directly (no create chain) -----------------------------------


def scorer_row(
    ms: int,
    scorer: str = "s",
    tags: tuple[str, ...] = (),
    ratings: dict[str, float] | None = None,
    payload: dict[str, Any] | None = None,
) -> FeedbackRow:
    """A stored scorer row of project ``e/p`` created at ``ms``, for store-level tests."""
    return make_row(
        id=f"{scorer}{ms}",
        project_id="e/p",
        weave_ref="weave:///e/p/call/c1",
        wb_user_id="u",
        creator=None,
        created_at_us=ms * 1000,
        feedback_type="wandb.runnable.s",
        payload=payload or {},
        runnable_ref=f"weave:///e/p/object/{scorer}:v1",
        scorer_tags=tags,
        scorer_ratings=ratings or {},
    )


# --- interleaved creates and queries (the query indexes stay current) ---------------


def interleaved_steps(queries: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[Any]:
    """Plans of up to 25 steps: ``("create", offset_ms, request)`` or ``("query", req)``."""
    return st.lists(
        st.one_of(
            st.tuples(st.just("create"), offsets_ms, create_requests(PROJECT)),
            st.tuples(st.just("query"), queries),
        ),
        max_size=25,
    )


def replay(plan: list[tuple[Any, ...]], check: Callable[[Engine, dict[str, Any]], None]) -> None:
    """Run ``plan`` on a fresh engine: each create at its own instant (the clock often
    goes back), ``check(engine, req)`` at each query; then the engine's invariants."""
    clock = ManualClock(BASE)
    engine = Engine(clock=clock)
    for step in plan:
        if step[0] == "create":
            clock.set(BASE + timedelta(milliseconds=step[1]))
            engine.feedback_create(step[2])
        else:
            check(engine, step[1])
    engine.check_invariants()


# --- Query expressions (POST /feedback/query, purge) --------------------------------

QUERY_FIELDS = [
    "id",
    "feedback_type",
    "payload.output.score",
    "payload.output.passed",
    "payload.output.label",
    "payload.output",
    "scorer_ratings._rating_",
    "scorer_tag_reasons.toxic",
    "span_status_code",
    "created_at",
    "scorer_tags",
]
query_literals = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-2, 2),
    st.sampled_from([0.0, 0.25, 0.5, 1.0, -0.5]),
    st.sampled_from(["", "a", "custom", "OK", "0.5", "1", "true", "toxic", "2024-03-09"]),
)


def _leaf_operand() -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(
        st.builds(lambda f: {"$getField": f}, st.sampled_from(QUERY_FIELDS)),
        st.builds(lambda v: {"$literal": v}, query_literals),
    )


def _comparison(operand: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.builds(
            lambda op, a, b: {op: [a, b]},
            st.sampled_from(["$eq", "$gt", "$gte", "$lt", "$lte"]),
            operand,
            operand,
        ),
        st.builds(lambda a, items: {"$in": [a, items]}, operand, st.lists(operand, max_size=3)),
        st.builds(
            lambda a, b, ci: {"$contains": {"input": a, "substr": b, "case_insensitive": ci}},
            operand,
            operand,
            st.booleans(),
        ),
    )


query_exprs: st.SearchStrategy[dict[str, Any]] = st.recursive(
    _comparison(_leaf_operand()),
    lambda inner: st.one_of(
        st.builds(lambda items: {"$and": items}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda items: {"$or": items}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda item: {"$not": [item]}, inner),
    ),
    max_leaves=6,
)
"""Query expressions over the fields the create strategies fill; many are ill-typed
on purpose (those must be a 400, never a crash)."""


query_sort_keys = st.lists(
    st.fixed_dictionaries(
        {
            "field": st.sampled_from([*QUERY_FIELDS, "creator", "payload", "scorer_ratings"]),
            "direction": st.sampled_from(["asc", "desc"]),
        }
    ),
    max_size=3,
)
"""``sort_by`` lists over the fields the create strategies fill."""

query_projections = st.one_of(
    st.none(),
    st.just(["count(*)"]),
    st.lists(st.sampled_from([*QUERY_FIELDS, "payload", "creator", "scorer_ratings"]), max_size=4),
)
"""``fields``: none (every column), ``count(*)``, or some fields (repeats allowed)."""


wide_query_literals = st.one_of(
    query_literals,
    st.sampled_from([5.0, -0.0, 1e6, 1e-7, 100000.0, 2**63, "1e+06", "-0", "5", "null", "{}"]),
    st.sampled_from(["2024-03-09T22:00:00.500Z", "2024-03-10", 1710021600, 1710021600.5]),
)


def _wide_operand() -> st.SearchStrategy[dict[str, Any]]:
    fields = [*QUERY_FIELDS, "creator", "payload", "payload.output.score.0", "scorer_ratings"]
    leaf = st.one_of(
        st.builds(lambda f: {"$getField": f}, st.sampled_from(fields)),
        st.builds(lambda v: {"$literal": v}, wide_query_literals),
    )
    return st.one_of(
        leaf,
        st.builds(
            lambda operand, to: {"$convert": {"input": operand, "to": to}},
            leaf,
            st.sampled_from(["double", "string", "int", "bool", "exists"]),
        ),
        st.builds(
            lambda f: {"$size": {"$getField": f}},
            st.sampled_from(["scorer_tags", "scorer_ratings", "id"]),
        ),
    )


wide_query_exprs: st.SearchStrategy[dict[str, Any]] = st.recursive(
    _comparison(_wide_operand()),
    lambda inner: st.one_of(
        st.builds(lambda items: {"$and": items}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda items: {"$or": items}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda item: {"$not": [item]}, inner),
    ),
    max_leaves=5,
)
""":data:`query_exprs` with ``$convert``, ``$size`` and literals that ClickHouse prints
or parses in its own ways (whole and tiny floats, dates, epoch seconds)."""


@st.composite
def query_requests(draw: st.DrawFn) -> dict[str, Any]:
    """Whole ``/feedback/query`` requests on :data:`PROJECT`: an optional expression,
    projection, ``sort_by``, ``limit`` and ``offset``."""
    request: dict[str, Any] = {"project_id": PROJECT, "sort_by": draw(query_sort_keys)}
    optional = {
        "query": st.builds(lambda expr: {"$expr": expr}, wide_query_exprs),
        "fields": query_projections,
        "limit": st.integers(0, 4),
        "offset": st.integers(0, 4),
    }
    request.update(draw(st.fixed_dictionaries({}, optional=optional)))
    return request


@st.composite
def payload_schema_requests(draw: st.DrawFn) -> dict[str, Any]:
    """``/feedback/payload_schema`` requests on :data:`PROJECT` over windows that cut
    through the rows of :func:`datasets`, with or without its filters."""
    start = BASE + timedelta(milliseconds=draw(st.integers(-1000, SPAN_MS)))
    end = start + timedelta(milliseconds=draw(st.integers(0, SPAN_MS)))
    request: dict[str, Any] = {"project_id": PROJECT, "start": start, "end": end}
    optional = {
        "feedback_type": st.sampled_from(["custom", "wandb.agent_monitor", "wandb.runnable.sc_a"]),
        "trigger_ref": st.sampled_from(
            [_ref("object", "mon_1"), _ref("object", "mon_", "*"), _ref("object", "watch", "v2")]
        ),
        "sample_limit": st.integers(1, 3),
    }
    request.update(draw(st.fixed_dictionaries({}, optional=optional)))
    return request


# --- rows by key: the fast executor's id / weave_ref index ---------------------------

KEY_IDS = ["a", "b", "c", "d"]
KEY_REFS = [f"weave:///e/p/call/c{i}" for i in range(3)]


def _keyed_create(id_: str, ref: str, n: int) -> dict[str, Any]:
    return {
        "project_id": PROJECT,
        "id": id_,
        "weave_ref": ref,
        "feedback_type": "custom",
        "payload": {"n": n},
    }


def _keyed_query(column: str, value: str, extra: bool, sort: bool, swap: bool) -> dict[str, Any]:
    eq = [{"$getField": column}, {"$literal": value}]
    expr: dict[str, Any] = {"$eq": eq[::-1] if swap else eq}
    if extra:
        expr = {"$and": [{"$gte": [{"$getField": "payload.n"}, {"$literal": 2}]}, expr]}
    req: dict[str, Any] = {"project_id": PROJECT, "query": {"$expr": expr}}
    if sort:
        req["sort_by"] = [{"field": "created_at", "direction": "desc"}]
    return req


keyed_steps = st.lists(
    st.one_of(
        st.builds(
            lambda ms, i, r, n: ("create", ms, _keyed_create(i, r, n)),
            offsets_ms,
            st.sampled_from(KEY_IDS),
            st.sampled_from(KEY_REFS),
            st.integers(0, 4),
        ),
        st.builds(lambda i: ("purge", i), st.sampled_from(KEY_IDS)),
        st.builds(
            lambda ms, old, new, r: ("replace", ms, old, _keyed_create(new, r, 9)),
            offsets_ms,
            st.sampled_from(KEY_IDS),
            st.sampled_from(KEY_IDS),
            st.sampled_from(KEY_REFS),
        ),
        st.builds(
            lambda c, v, e, s, w: ("query", _keyed_query(c, v, e, s, w)),
            st.sampled_from(["id", "weave_ref"]),
            st.sampled_from(KEY_IDS + KEY_REFS),
            st.booleans(),
            st.booleans(),
            st.booleans(),
        ),
    ),
    max_size=30,
)
"""Creates with repeating ids and weave_refs at instants that often go back, purges
and replaces by id, and ``$eq`` queries on ``id`` or ``weave_ref`` (either operand
order, sometimes inside an ``$and``, sometimes sorted)."""
# --- fast aggregate internals ---------------------------------------------------------

signature_columns = st.lists(
    st.tuples(
        st.lists(st.sampled_from(TAGS), max_size=3).map(tuple),  # repeats allowed
        st.lists(st.sampled_from(RATING_KEYS), max_size=3, unique=True).map(tuple),
    ),
    min_size=1,
    max_size=80,
)
"""A column of rows' ``(scorer_tags, rating keys)`` pairs, long enough for cells on
both sides of ``refengine.fast.aggregate.DIRECT_SUM_ROWS``."""

DENSE_TAGS = ("t1", "t2", "t3")
DENSE_KEYS = ("_rating_", "k")
DENSE_VALUES = st.one_of(
    st.sampled_from([-0.0, 0.0, 0.5, -0.5, 1.0, 0.1, 0.2, 1e16, -1e16, 3.0]), finite_floats
)
DENSE_SPAN_MS = 3 * 3_600_000


@st.composite
def dense_rows(draw: st.DrawFn) -> list[FeedbackRow]:
    """Up to 240 stored scorer rows of project ``e/p`` in three hours, in time order:
    cells of many rows (past ``refengine.fast.aggregate.DIRECT_SUM_ROWS``), tags
    repeated within a row, ``-0.0`` and zero-summing ratings, rows without
    ``_rating_``; often one signature or one scorer throughout, so that a filter
    drops whole cells or whole views."""
    scorers = draw(st.sampled_from([("sc_a",), ("sc_a", "sc_b"), ("sc_a", "sc_b", "judge")]))
    tag_sets = st.lists(st.sampled_from(DENSE_TAGS), max_size=3).map(tuple)
    key_sets = st.lists(st.sampled_from(DENSE_KEYS), max_size=2, unique=True)
    one_signature = draw(st.booleans())
    fixed_tags, fixed_keys = draw(tag_sets), draw(key_sets)
    # A size drawn first, then that many instants: long lists as often as short ones.
    size = draw(st.integers(0, 240))
    times = [draw(st.integers(0, DENSE_SPAN_MS - 1)) for _ in range(size)]
    rows = []
    for ms in sorted(times):
        tags, keys = (fixed_tags, fixed_keys) if one_signature else (draw(tag_sets), draw(key_sets))
        ratings = {key: draw(DENSE_VALUES) for key in keys}
        rows.append(scorer_row(BASE_MS + ms, draw(st.sampled_from(scorers)), tags, ratings))
    return rows


@st.composite
def dense_aggregate_requests(draw: st.DrawFn) -> dict[str, Any]:
    """An aggregate request over :func:`dense_rows`' project and span, with the
    filters the fast fold decides per signature (tags, a rating bound's
    ``_rating_`` presence), per profile (``scorer_ids``) and per row (rating
    bounds, ``-0.0`` among them)."""
    bounds = st.one_of(st.none(), st.sampled_from([-0.0, 0.0, 0.1, 0.5, 1.0]), st.floats(0, 1))
    low, high = draw(bounds), draw(bounds)
    if low is not None and high is not None and low > high:
        low, high = high, low
    req: dict[str, Any] = {
        "project_id": "e/p",
        "after_ms": BASE_MS + draw(st.sampled_from([0, 1, 600_000])),
        "before_ms": BASE_MS + draw(st.sampled_from([DENSE_SPAN_MS, DENSE_SPAN_MS - 1, 3_600_000])),
        "time_bucket_seconds": draw(st.sampled_from([None, 60, 900, 3600])),
        "group_by": draw(st.sampled_from([[], ["scorer_id"]])),
        "rating_min": low,
        "rating_max": high,
    }
    if draw(st.booleans()):
        req["tags"] = draw(st.lists(st.sampled_from([*DENSE_TAGS, "none"]), min_size=1, max_size=2))
    if draw(st.booleans()):
        req["scorer_ids"] = draw(st.sampled_from([["sc_a"], ["sc*"], ["judge", "sc_b"], ["none"]]))
    return req
