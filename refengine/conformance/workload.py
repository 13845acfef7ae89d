"""Hypothesis strategies for the differential workload: rows, then queries over them.

A workload is a list of creates (each at its own instant, in a window around a
daylight-saving change in America/New_York, with ids from a small pool so that
queries can name them and repeats happen) followed by aggregate, stats, query and
payload_schema requests over that window, interleaved with purges, replaces and
more creates (each write at its own instant). Strings use the ``{project}``
placeholder like the case files, so a failing workload prints as a ready-to-read
case.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from hypothesis import strategies as st

P = "{project}"
BASE = datetime(2024, 3, 10, 3, 0, 0, tzinfo=timezone.utc)  # New York springs forward at 07:00
BASE_MS = int(BASE.timestamp() * 1000)
SPAN_MS = 6 * 3_600_000

SCORERS = ["sc_a", "sc_b", "judge"]
MONITORS = ["mon_1", "mon_2", "watch"]
TAGS = ["good", "bad", "nsfw", "Good"]
RATING_KEYS = ["_rating_", "helpful", "zeta"]
AGENTS = ["", "planner", "coder"]
VERSIONS = ["", "v1", "v2"]
STATUSES = ["UNSET", "OK", "ERROR"]
ZONES = ["UTC", "", "America/New_York", "Asia/Kolkata", "Australia/Adelaide", "Europe/London"]
PATHS = ["output.score", "output.passed", "output.label", "output", "output.0", "output.a b"]
IDS = [f"fb-{i}" for i in range(6)]


@dataclass(frozen=True)
class Create:
    at: str
    request: dict[str, Any]


@dataclass(frozen=True)
class Query:
    """A step after the setup creates: a read, or a write at its own instant ``at``."""

    endpoint: str
    request: dict[str, Any]
    at: str | None = None


@dataclass(frozen=True)
class Workload:
    creates: list[Create]
    queries: list[Query]


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _ref(kind: str, name: str, digest: str = "v1") -> str:
    return f"weave:///{P}/{kind}/{name}:{digest}"


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.sampled_from([0.0, -0.0, 0.5, 1.0, 2.5, 1e-300, 1e300, 2**64, -(2**63) - 1]),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.sampled_from(["0.5", "true", "cat", "dog", ""]),
)


def json_values(
    scalars: st.SearchStrategy[Any], max_size: int, max_leaves: int
) -> st.SearchStrategy[Any]:
    """JSON values built from ``scalars``: lists and objects whose keys include the
    tricky ones (an all-digit key, a key with a space). Shared with the test suite's
    strategies, which pass wider scalars."""
    return st.recursive(
        scalars,
        lambda inner: (
            st.lists(inner, max_size=max_size)
            | st.dictionaries(
                st.sampled_from(["score", "passed", "label", "0", "a b"]), inner, max_size=max_size
            )
        ),
        max_leaves=max_leaves,
    )


values = json_values(scalars, max_size=2, max_leaves=5)
outputs = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "score": st.one_of(st.floats(-10, 10, width=32), st.integers(-3, 3), values),
            "passed": st.one_of(st.booleans(), values),
            "label": st.one_of(st.sampled_from(["cat", "dog", ""]), values),
        },
    ),
    values,
)
span_fields = st.fixed_dictionaries(
    {
        "span_agent_name": st.sampled_from(AGENTS),
        "span_agent_version": st.sampled_from(VERSIONS),
        "span_status_code": st.sampled_from(STATUSES),
    }
)
scorer_maps = st.fixed_dictionaries(
    {
        "scorer_tags": st.lists(st.sampled_from(TAGS), max_size=3),
        "scorer_ratings": st.dictionaries(
            st.sampled_from(RATING_KEYS), st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]), max_size=2
        ),
    }
)


@st.composite
def create_bodies(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["runnable", "monitor", "custom"]))
    body: dict[str, Any] = {
        "project_id": P,
        "id": draw(st.sampled_from(IDS)),
        "payload": {"output": draw(outputs)},
    }
    if kind == "runnable":
        scorer = draw(st.sampled_from(SCORERS))
        body.update(
            weave_ref=f"weave:///{P}/call/c{draw(st.integers(0, 3))}",
            feedback_type=f"wandb.runnable.{scorer}",
            runnable_ref=_ref("object", scorer, draw(st.sampled_from(["v1", "v2"]))),
        )
        if draw(st.booleans()):
            body["trigger_ref"] = _ref("object", draw(st.sampled_from(MONITORS)))
        body.update(draw(scorer_maps))
    elif kind == "monitor":
        body.update(
            weave_ref=draw(
                st.sampled_from(
                    [
                        f"weave:///{P}/agent_turn/t1",
                        f"weave:///{P}/agent_conversation/c%2F1",
                        f"weave:///{P}/call/x",
                    ]
                )
            ),
            feedback_type="wandb.agent_monitor",
            runnable_ref=_ref("object", draw(st.sampled_from(SCORERS))),
            call_ref="",
            trigger_ref=_ref(
                "object", draw(st.sampled_from(MONITORS)), draw(st.sampled_from(["v1", "v2"]))
            ),
        )
        body.update(draw(scorer_maps))
    else:
        body.update(
            weave_ref=f"weave:///{P}/call/c1",
            feedback_type=draw(st.sampled_from(["custom", "custom.score"])),
        )
    body.update(draw(span_fields))
    return body


instants = st.builds(
    lambda ms, us: BASE + timedelta(milliseconds=ms, microseconds=us),
    st.one_of(st.integers(0, SPAN_MS - 1), st.sampled_from([0, 999, 1000, 3_600_000, 14_400_000])),
    st.sampled_from([0, 0, 999]),
)


@st.composite
def aggregate_requests(draw: st.DrawFn) -> dict[str, Any]:
    # Mostly windows that cover the data; sometimes anywhere (narrow, empty, offset).
    after = BASE_MS + draw(st.one_of(st.integers(-3_600_000, 600_000), st.integers(0, SPAN_MS)))
    before = after + draw(
        st.one_of(st.integers(SPAN_MS, SPAN_MS + 3_600_000), st.integers(1, SPAN_MS))
    )
    req: dict[str, Any] = {"project_id": P, "after_ms": after, "before_ms": before}
    bucket = draw(st.sampled_from([None, None, 60, 300, 900, 3600, 7200, 86400]))
    if bucket is not None:
        req["time_bucket_seconds"] = bucket
    optional: dict[str, Any] = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "feedback_types": st.lists(
                    st.sampled_from(
                        [
                            "wandb.runnable",
                            "wandb.runnable.sc_a",
                            "custom*",
                            "",
                            "wandb.agent_monitor",
                        ]
                    ),
                    max_size=2,
                ),
                "tags": st.lists(st.sampled_from(TAGS), max_size=2),
                "rating_min": st.sampled_from([0.0, 0.25, 0.5]),
                "rating_max": st.sampled_from([0.5, 0.75, 1.0]),
                "monitor_ids": st.lists(st.sampled_from([*MONITORS, "mon*", ""]), max_size=2),
                "scorer_ids": st.lists(st.sampled_from([*SCORERS, "sc_*", ""]), max_size=2),
                "span_agent_names": st.lists(st.sampled_from(AGENTS), max_size=2),
                "span_types": st.lists(
                    st.sampled_from(["agent_turn", "agent_conversation"]), max_size=2
                ),
                "group_by": st.lists(
                    st.sampled_from(
                        ["scorer_id", "span_agent_name", "span_agent_version", "span_status_code"]
                    ),
                    max_size=2,
                    unique=True,
                ),
            },
        )
    )
    req.update(optional)
    return req


def _slug(path: str) -> str:
    return path.replace(".", "_").replace(" ", "_")


@st.composite
def metric_specs(draw: st.DrawFn) -> dict[str, Any]:
    path = draw(st.sampled_from(PATHS))
    value_type = draw(st.sampled_from(["numeric", "boolean", "categorical"]))
    spec: dict[str, Any] = {"json_path": path, "value_type": value_type}
    if value_type == "categorical":
        if draw(st.booleans()):
            spec["aggregations"] = ["count"]
        return spec
    aggs = ["sum", "avg", "min", "max", "count", "count_true", "count_false"]
    spec["aggregations"] = draw(st.lists(st.sampled_from(aggs), max_size=3, unique=True))
    if value_type == "numeric" or draw(st.booleans()):
        spec["percentiles"] = draw(
            st.lists(st.sampled_from([0, 5, 50, 95, 100, 99.9]), max_size=2, unique=True)
        )
    return spec


@st.composite
def stats_requests(draw: st.DrawFn) -> dict[str, Any]:
    start = BASE + timedelta(
        milliseconds=draw(st.one_of(st.integers(-3_600_000, 600_000), st.integers(0, SPAN_MS))),
        microseconds=draw(st.sampled_from([0, 0, 500])),
    )
    end = start + timedelta(
        seconds=draw(st.one_of(st.integers(6 * 3600, 8 * 3600), st.integers(0, 8 * 3600)))
    )
    req: dict[str, Any] = {
        "project_id": P,
        "start": _iso(start),
        "end": _iso(end),
        "metrics": draw(
            st.lists(
                metric_specs(), min_size=1, max_size=2, unique_by=lambda m: _slug(m["json_path"])
            )
        ),
    }
    optional: dict[str, Any] = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "granularity": st.sampled_from([None, 0, 7, 60, 300, 900, 3600, 86400, -60]),
                "timezone": st.sampled_from(ZONES),
                "feedback_type": st.sampled_from(
                    ["custom", "wandb.agent_monitor", "wandb.runnable.sc_a"]
                ),
                "trigger_ref": st.sampled_from(
                    [_ref("object", "mon_1"), _ref("object", "mon_1", "*"), "x"]
                ),
            },
        )
    )
    req.update(optional)
    return req


def _field(name: str) -> dict[str, Any]:
    return {"$getField": name}


def _literal(value: Any) -> dict[str, Any]:
    return {"$literal": value}


def _eq_id(id_: str) -> dict[str, Any]:
    return {"$eq": [_field("id"), _literal(id_)]}


QUERY_FIELDS = [
    "id",
    "feedback_type",
    "payload",
    "payload.output.score",
    "payload.output.label",
    "scorer_ratings._rating_",
    "scorer_tags",
    "span_status_code",
    "created_at",
]
comparisons = st.one_of(
    st.builds(_eq_id, st.sampled_from(IDS)),
    st.builds(
        lambda ref: {"$eq": [_field("weave_ref"), _literal(ref)]},
        st.sampled_from([f"weave:///{P}/call/c1", f"weave:///{P}/agent_turn/t1"]),
    ),
    st.builds(
        lambda op, v: {op: [_field("payload.output.score"), _literal(v)]},
        st.sampled_from(["$gt", "$lte", "$eq"]),
        st.sampled_from([0, 0.5, 1, "0.5"]),
    ),
    st.builds(
        lambda tag: {"$contains": {"input": _field("scorer_tags"), "substr": _literal(tag)}},
        st.sampled_from(TAGS),
    ),
    st.builds(
        lambda v: {"$gte": [_field("scorer_ratings._rating_"), _literal(v)]},
        st.sampled_from([0.0, 0.5, 1]),
    ),
    st.builds(
        lambda status: {"$eq": [_field("span_status_code"), _literal(status)]},
        st.sampled_from([*STATUSES, "BOGUS"]),
    ),
)
expressions = st.recursive(
    comparisons,
    lambda inner: st.one_of(
        st.builds(lambda items: {"$and": items}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda items: {"$or": items}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda item: {"$not": [item]}, inner),
    ),
    max_leaves=4,
)


@st.composite
def query_requests(draw: st.DrawFn) -> dict[str, Any]:
    req: dict[str, Any] = {"project_id": P}
    if draw(st.booleans()):
        req["query"] = {"$expr": draw(expressions)}
    if draw(st.booleans()):
        req["fields"] = draw(st.lists(st.sampled_from(QUERY_FIELDS), min_size=1, unique=True))
    if draw(st.booleans()):
        direction = st.sampled_from(["asc", "desc"])
        req["sort_by"] = draw(
            st.lists(
                st.builds(
                    lambda f, d: {"field": f, "direction": d},
                    st.sampled_from(["created_at", "payload.output.score", "span_status_code"]),
                    direction,
                ),
                min_size=1,
                max_size=2,
            )
        )
    if draw(st.booleans()):
        req["limit"] = draw(st.integers(0, 4))
    if draw(st.booleans()):
        req["offset"] = draw(st.integers(0, 3))
    return req


purge_requests = st.builds(
    lambda ids: {
        "project_id": P,
        "query": {"$expr": _eq_id(ids[0]) if len(ids) == 1 else {"$or": [_eq_id(i) for i in ids]}},
    },
    st.lists(st.sampled_from(IDS), min_size=1, max_size=3),
)


@st.composite
def payload_schema_requests(draw: st.DrawFn) -> dict[str, Any]:
    req: dict[str, Any] = {
        "project_id": P,
        "start": _iso(BASE - timedelta(hours=1)),
        "end": _iso(BASE + timedelta(milliseconds=SPAN_MS + 3_600_000)),
    }
    optional: dict[str, Any] = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "feedback_type": st.sampled_from(["custom", "wandb.agent_monitor"]),
                "trigger_ref": st.sampled_from(
                    [_ref("object", "mon_1"), _ref("object", "mon_1", "*")]
                ),
                "sample_limit": st.integers(1, 3),
            },
        )
    )
    req.update(optional)
    return req


STEPS: dict[str, st.SearchStrategy[Query]] = {
    "aggregate": st.builds(Query, st.just("aggregate"), aggregate_requests()),
    "stats": st.builds(Query, st.just("stats"), stats_requests()),
    "query": st.builds(Query, st.just("query"), query_requests()),
    "payload_schema": st.builds(Query, st.just("payload_schema"), payload_schema_requests()),
    "purge": st.builds(Query, st.just("purge"), purge_requests),
    "replace": st.builds(
        lambda moment, body, old: Query("replace", {**body, "feedback_id": old}, _iso(moment)),
        instants,
        create_bodies(),
        st.sampled_from(IDS),
    ),
    "create": st.builds(
        lambda moment, body: Query("create", body, _iso(moment)), instants, create_bodies()
    ),
}
"""The steps after the setup creates, by endpoint."""
queries = st.one_of(*STEPS.values())


@st.composite
def workloads(
    draw: st.DrawFn,
    max_rows: int = 12,
    max_queries: int = 4,
    endpoints: Sequence[str] | None = None,
) -> Workload:
    """Setup creates, then steps of the ``endpoints`` given (every one of
    :data:`STEPS` by default; an endpoint not in it is a ``KeyError``)."""
    rows = draw(st.lists(st.tuples(instants, create_bodies()), min_size=1, max_size=max_rows))
    creates = [Create(_iso(moment), body) for moment, body in rows]
    steps = st.one_of(*(STEPS[e] for e in (STEPS if endpoints is None else endpoints)))
    return Workload(creates, draw(st.lists(steps, min_size=1, max_size=max_queries)))
