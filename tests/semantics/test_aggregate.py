"""``POST /feedback/aggregate``: one test per rule of spec/SEMANTICS.md "Aggregate"."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from refengine import Engine, ManualClock
from refengine import errors as msg
from refengine.models import FeedbackAggregateReq

PROJECT = "acme/bot"
OTHER = "acme/other"
T0 = 1_717_200_000_000  # 2024-06-01T00:00:00Z, a multiple of every bucket size used here
HOUR = 3_600_000
DAY = 86_400_000


def ref(kind: str, name: str, digest: str = "v1", project: str = PROJECT) -> str:
    return f"weave:///{project}/{kind}/{name}:{digest}"


class Data:
    """An engine plus a clock, and a shorthand to create a row at a given ms."""

    def __init__(self) -> None:
        self.clock = ManualClock(datetime.fromtimestamp(T0 / 1000, tz=timezone.utc))
        self.engine = Engine(clock=self.clock)

    def at(self, ms: int) -> None:
        self.clock.set(datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(milliseconds=ms))

    def scorer(
        self,
        ms: int,
        scorer: str = "sc_a",
        *,
        monitor: str = "mon_1",
        tags: list[str] | None = None,
        ratings: dict[str, float] | None = None,
        agent: str = "",
        version: str = "",
        status: str = "UNSET",
        target: str = "weave:///acme/bot/agent_turn/t1",
        project: str = PROJECT,
    ) -> None:
        """A wandb.agent_monitor row from ``scorer`` run by ``monitor``."""
        self.at(ms)
        self.engine.feedback_create(
            {
                "project_id": project,
                "weave_ref": target,
                "feedback_type": "wandb.agent_monitor",
                "runnable_ref": ref("object", scorer, project=project),
                "call_ref": "",
                "trigger_ref": ref("object", monitor, project=project),
                "payload": {},
                "scorer_tags": tags or [],
                "scorer_ratings": ratings or {},
                "span_agent_name": agent,
                "span_agent_version": version,
                "span_status_code": status,
            }
        )

    def user(self, ms: int, tags: list[str], ratings: dict[str, float] | None = None) -> None:
        """A wandb.agent_user_feedback row: no runnable_ref, no trigger_ref."""
        self.at(ms)
        self.engine.feedback_create(
            {
                "project_id": PROJECT,
                "weave_ref": "weave:///acme/bot/agent_conversation/c1",
                "feedback_type": "wandb.agent_user_feedback",
                "payload": {},
                "scorer_tags": tags,
                "scorer_ratings": ratings or {},
            }
        )

    def custom(self, ms: int, feedback_type: str = "custom.score") -> None:
        """A row of a custom type: no scorer columns at all."""
        self.at(ms)
        self.engine.feedback_create(
            {
                "project_id": PROJECT,
                "weave_ref": "weave:///acme/bot/call/c1",
                "feedback_type": feedback_type,
                "payload": {"x": 1},
            }
        )

    def query(self, **fields: Any) -> list[dict[str, Any]]:
        body = {"project_id": PROJECT, "after_ms": T0, "before_ms": T0 + DAY, **fields}
        res = self.engine.feedback_aggregate(body)
        assert res.after_ms == body["after_ms"]
        assert res.before_ms == body["before_ms"]
        assert res.time_bucket_seconds == body.get("time_bucket_seconds")
        return [bucket.model_dump() for bucket in res.buckets]

    def totals(self, **fields: Any) -> int:
        return sum(b["total_count"] for b in self.query(**fields))


def row(
    total: int,
    scored: int | None = None,
    *,
    start: int | None = None,
    group: dict[str, str] | None = None,
    tags: dict[str, int] | None = None,
    counts: dict[str, int] | None = None,
    sums: dict[str, float] | None = None,
) -> dict[str, Any]:
    return {
        "time_bucket_start_ms": start,
        "group": group or {},
        "total_count": total,
        "scored_count": total if scored is None else scored,
        "tag_counts": tags or {},
        "rating_counts": counts or {},
        "rating_sums": sums or {},
    }


@pytest.fixture
def data() -> Data:
    return Data()


# --- accumulators ----------------------------------------------------------------------


def test_accumulators_of_one_group(data: Data) -> None:
    data.scorer(T0 + 1, tags=["good", "bad"], ratings={"_rating_": 0.5, "zeta": 0.25})
    data.scorer(T0 + 2, tags=["good"], ratings={"_rating_": 0.25})
    data.scorer(T0 + 3)  # a monitor row that scored nothing
    assert data.query() == [
        row(
            3,
            2,
            tags={"bad": 1, "good": 2},
            counts={"_rating_": 2, "zeta": 1},
            sums={"_rating_": 0.75, "zeta": 0.25},
        )
    ]


def test_scored_count_counts_tags_or_ratings(data: Data) -> None:
    data.scorer(T0 + 1, tags=["good"])
    data.scorer(T0 + 2, ratings={"helpful": 1.0})
    data.scorer(T0 + 3)
    data.custom(T0 + 4)
    [only] = data.query()
    assert (only["total_count"], only["scored_count"]) == (4, 2)


def test_repeated_tag_in_one_row_counts_twice(data: Data) -> None:
    data.scorer(T0 + 1, tags=["good", "good", "bad"])
    data.scorer(T0 + 2, tags=["good"])
    [only] = data.query()
    assert only["tag_counts"] == {"bad": 1, "good": 3}
    assert only["scored_count"] == 2


def test_rating_of_exactly_zero_is_counted_but_not_summed(data: Data) -> None:
    data.scorer(T0 + 1, ratings={"_rating_": 0.0, "helpful": 0.5})
    [only] = data.query()
    assert only["rating_counts"] == {"_rating_": 1, "helpful": 1}
    assert only["rating_sums"] == {"helpful": 0.5}


def test_negative_zero_and_cancelling_sums_are_dropped(data: Data) -> None:
    data.scorer(T0 + 1, ratings={"a": -0.0, "b": 0.75, "c": 0.5})
    data.scorer(T0 + 2, ratings={"b": -0.75, "c": 0.25})
    [only] = data.query()
    assert only["rating_counts"] == {"a": 1, "b": 2, "c": 2}
    assert only["rating_sums"] == {"c": 0.75}


def test_sums_add_in_store_order_as_doubles(data: Data) -> None:
    # 0.1 + 0.2 - 0.3 is not 0 in doubles, so the key stays (with the rounding residue).
    data.scorer(T0 + 1, ratings={"k": 0.1})
    data.scorer(T0 + 2, ratings={"k": 0.2})
    data.scorer(T0 + 3, ratings={"k": -0.3})
    [only] = data.query()
    assert only["rating_sums"] == {"k": 0.1 + 0.2 - 0.3}
    assert only["rating_sums"]["k"] != 0.0


def test_map_keys_sorted_by_code_point(data: Data) -> None:
    data.scorer(T0 + 1, tags=["b", "B", "a", "é", "_x"], ratings={"z": 1.0, "Z": 1.0, "_r": 1.0})
    [only] = data.query()
    assert list(only["tag_counts"]) == ["B", "_x", "a", "b", "é"]
    assert list(only["rating_counts"]) == ["Z", "_r", "z"]
    assert list(only["rating_sums"]) == ["Z", "_r", "z"]


# --- the single-row and sparse rules ---------------------------------------------------


def test_no_bucket_no_group_is_one_row_even_when_empty(data: Data) -> None:
    assert data.query() == [row(0, 0)]
    data.scorer(T0 - 1)  # outside the window
    assert data.query() == [row(0, 0)]


def test_empty_result_with_grouping_or_buckets_has_no_rows(data: Data) -> None:
    data.scorer(T0 - 1)
    assert data.query(group_by=["scorer_id"]) == []
    assert data.query(time_bucket_seconds=3600) == []
    assert data.query(time_bucket_seconds=3600, group_by=["scorer_id"]) == []


def test_buckets_are_sparse(data: Data) -> None:
    data.scorer(T0 + 1)
    data.scorer(T0 + 5 * HOUR)
    assert [b["time_bucket_start_ms"] for b in data.query(time_bucket_seconds=3600)] == [
        T0,
        T0 + 5 * HOUR,
    ]


# --- buckets ----------------------------------------------------------------------------


def test_buckets_are_epoch_aligned_and_first_may_start_before_after_ms(data: Data) -> None:
    data.scorer(T0 + 90 * 60_000)  # 01:30
    data.scorer(T0 + 2 * HOUR - 1)  # 01:59:59.999
    data.scorer(T0 + 2 * HOUR)  # 02:00 — next bucket
    res = data.query(after_ms=T0 + HOUR + 1, before_ms=T0 + 3 * HOUR, time_bucket_seconds=3600)
    assert res == [row(2, 0, start=T0 + HOUR), row(1, 0, start=T0 + 2 * HOUR)]


def test_bucket_size_not_dividing_a_day_still_aligns_to_epoch(data: Data) -> None:
    data.scorer(T0 + 1)
    data.scorer(T0 + 7 * 60_000)
    # 7-minute buckets: T0 (epoch seconds 1717200000) mod 420 s = 180 s
    first = (T0 // 420_000) * 420_000
    assert first == T0 - 180_000
    res = data.query(time_bucket_seconds=420)
    assert [(b["time_bucket_start_ms"], b["total_count"]) for b in res] == [
        (first, 1),
        (first + 420_000, 1),
    ]


def test_bucket_boundaries_use_milliseconds(data: Data) -> None:
    data.scorer(T0 + 999)
    data.scorer(T0 + 1000)
    res = data.query(before_ms=T0 + 60_000, time_bucket_seconds=1)
    assert [(b["time_bucket_start_ms"], b["total_count"]) for b in res] == [
        (T0, 1),
        (T0 + 1000, 1),
    ]


def test_window_is_half_open(data: Data) -> None:
    data.scorer(T0 - 1)
    data.scorer(T0)
    data.scorer(T0 + HOUR - 1)
    data.scorer(T0 + HOUR)
    assert data.totals(before_ms=T0 + HOUR) == 2


# --- groups -----------------------------------------------------------------------------


def test_group_by_in_request_order_with_string_values(data: Data) -> None:
    data.scorer(T0 + 1, "sc_b", agent="planner", version="v1")
    data.scorer(T0 + 2, "sc_a", agent="", version="v2")
    data.scorer(T0 + 3, "sc_a", agent="", version="v2")
    res = data.query(group_by=["span_agent_version", "scorer_id"])
    assert [list(b["group"].items()) for b in res] == [
        [("span_agent_version", "v1"), ("scorer_id", "sc_b")],
        [("span_agent_version", "v2"), ("scorer_id", "sc_a")],
    ]
    assert [b["total_count"] for b in res] == [1, 2]
    res = data.query(group_by=["span_agent_name"])
    assert [(b["group"], b["total_count"]) for b in res] == [
        ({"span_agent_name": ""}, 2),
        ({"span_agent_name": "planner"}, 1),
    ]


def test_status_groups_sort_by_enum_value(data: Data) -> None:
    for i, status in enumerate(["OK", "ERROR", "UNSET", "OK"]):
        data.scorer(T0 + i, status=status)
    res = data.query(group_by=["span_status_code"])
    assert [(b["group"]["span_status_code"], b["total_count"]) for b in res] == [
        ("UNSET", 1),
        ("OK", 2),
        ("ERROR", 1),
    ]


def test_status_is_ordered_inside_a_composite_group(data: Data) -> None:
    data.scorer(T0 + 1, "b", status="ERROR")
    data.scorer(T0 + 2, "b", status="UNSET")
    data.scorer(T0 + 3, "a", status="OK")
    res = data.query(group_by=["scorer_id", "span_status_code"])
    assert [tuple(b["group"].values()) for b in res] == [
        ("a", "OK"),
        ("b", "UNSET"),
        ("b", "ERROR"),
    ]


def test_rows_are_ordered_by_bucket_then_group(data: Data) -> None:
    data.scorer(T0 + HOUR + 1, "sc_a")
    data.scorer(T0 + 2, "sc_b")
    data.scorer(T0 + 1, "sc_a", status="ERROR")
    data.scorer(T0 + 3, "sc_a", status="OK")
    res = data.query(time_bucket_seconds=3600, group_by=["span_status_code", "scorer_id"])
    assert [(b["time_bucket_start_ms"], tuple(b["group"].values())) for b in res] == [
        (T0, ("UNSET", "sc_b")),
        (T0, ("OK", "sc_a")),
        (T0, ("ERROR", "sc_a")),
        (T0 + HOUR, ("UNSET", "sc_a")),
    ]


def test_scorer_id_group_of_rows_without_a_ref_is_empty_string(data: Data) -> None:
    data.user(T0 + 1, ["thumbs_up"])
    data.scorer(T0 + 2, "sc_a")
    res = data.query(group_by=["scorer_id"])
    assert [(b["group"], b["total_count"]) for b in res] == [
        ({"scorer_id": ""}, 1),
        ({"scorer_id": "sc_a"}, 1),
    ]


def test_scorer_versions_share_one_scorer_id(data: Data) -> None:
    data.at(T0 + 1)
    for digest in ("v1", "v2"):
        data.engine.feedback_create(
            {
                "project_id": PROJECT,
                "weave_ref": "weave:///acme/bot/call/c1",
                "feedback_type": "wandb.runnable.judge",
                "runnable_ref": ref("object", "judge", digest),
                "payload": {"output": 1},
                "scorer_ratings": {"_rating_": 0.5},
            }
        )
    assert data.query(group_by=["scorer_id"]) == [
        row(2, group={"scorer_id": "judge"}, counts={"_rating_": 2}, sums={"_rating_": 1.0})
    ]


# --- filters ----------------------------------------------------------------------------


def test_feedback_types_prefix_and_star_stripping(data: Data) -> None:
    data.custom(T0 + 1, "custom")
    data.custom(T0 + 2, "custom.score")
    data.custom(T0 + 3, "other")
    data.scorer(T0 + 4)
    assert data.totals(feedback_types=["custom"]) == 2
    assert data.totals(feedback_types=["custom.**"]) == 1
    assert data.totals(feedback_types=["custom.score", "oth"]) == 2
    assert data.totals(feedback_types=["wandb.agent"]) == 1
    assert data.totals(feedback_types=["Custom"]) == 0
    assert data.totals(feedback_types=[""]) == 4
    assert data.totals(feedback_types=["*"]) == 4


def test_scorer_ids_exact_prefix_empty_and_star(data: Data) -> None:
    data.scorer(T0 + 1, "sc_a")
    data.scorer(T0 + 2, "sc_ab")
    data.scorer(T0 + 3, "judge")
    data.user(T0 + 4, ["thumbs_up"])
    assert data.totals(scorer_ids=["sc_a"]) == 1
    assert data.totals(scorer_ids=["sc_a*"]) == 2
    assert data.totals(scorer_ids=["sc*", "judge"]) == 3
    assert data.totals(scorer_ids=[""]) == 1  # rows without a runnable_ref
    assert data.totals(scorer_ids=["*"]) == 4
    assert data.totals(scorer_ids=["sc_"]) == 0  # no '*': exact
    assert data.totals(scorer_ids=["*a"]) == 0  # '*' only means prefix at the end
    # every trailing '*' goes, as production's rstrip("*"); one inside stays literal
    assert data.totals(scorer_ids=["sc_a**"]) == 2
    assert data.totals(scorer_ids=["**"]) == 4
    assert data.totals(scorer_ids=["sc*a*"]) == 0


def test_monitor_ids_on_trigger_ref_name(data: Data) -> None:
    data.scorer(T0 + 1, monitor="mon_1")
    data.scorer(T0 + 2, monitor="mon_2")
    data.scorer(T0 + 3, monitor="watch")
    data.user(T0 + 4, ["thumbs_up"])
    assert data.totals(monitor_ids=["mon_1"]) == 1
    assert data.totals(monitor_ids=["mon*"]) == 2
    assert data.totals(monitor_ids=[""]) == 1
    assert data.totals(monitor_ids=["*"]) == 4
    assert data.totals(monitor_ids=["watch", "mon_2"]) == 2


def test_span_agent_names_exact(data: Data) -> None:
    data.scorer(T0 + 1, agent="planner")
    data.scorer(T0 + 2, agent="planner2")
    data.scorer(T0 + 3, agent="")
    assert data.totals(span_agent_names=["planner"]) == 1
    assert data.totals(span_agent_names=["plan"]) == 0
    assert data.totals(span_agent_names=["", "planner2"]) == 2


def test_span_types_on_weave_ref_segment(data: Data) -> None:
    data.scorer(T0 + 1, target="weave:///acme/bot/agent_turn/t1")
    data.scorer(T0 + 2, target="weave:///acme/bot/agent_conversation/c1")
    data.scorer(T0 + 3, target="weave:///acme/bot/call/x")
    assert data.totals(span_types=["agent_turn"]) == 1
    assert data.totals(span_types=["agent_conversation"]) == 1
    assert data.totals(span_types=["agent_turn", "agent_conversation"]) == 2


def test_tags_any_of_exact_case_sensitive(data: Data) -> None:
    data.scorer(T0 + 1, tags=["good", "bad"])
    data.scorer(T0 + 2, tags=["Good"])
    data.scorer(T0 + 3, tags=["nsfw"])
    data.scorer(T0 + 4)
    assert data.totals(tags=["good"]) == 1
    assert data.totals(tags=["good", "nsfw"]) == 2
    assert data.totals(tags=["goo"]) == 0
    # The filter keeps whole rows: their other tags are still counted.
    assert data.query(tags=["bad"])[0]["tag_counts"] == {"bad": 1, "good": 1}


def test_rating_bounds_inclusive_on_rating_key_only(data: Data) -> None:
    data.scorer(T0 + 1, ratings={"_rating_": 0.25})
    data.scorer(T0 + 2, ratings={"_rating_": 0.5, "helpful": 0.0})
    data.scorer(T0 + 3, ratings={"_rating_": 1.0})
    data.scorer(T0 + 4, ratings={"helpful": 0.5})  # no _rating_: drops out when bounded
    data.scorer(T0 + 5)
    assert data.totals() == 5
    assert data.totals(rating_min=0.5) == 2
    assert data.totals(rating_max=0.5) == 2
    assert data.totals(rating_min=0.25, rating_max=0.5) == 2
    assert data.totals(rating_min=0.0) == 3
    assert data.totals(rating_min=0.5, rating_max=0.5) == 1
    assert data.totals(rating_max=1.0) == 3


def test_rating_min_above_max_matches_nothing(data: Data) -> None:
    data.scorer(T0 + 1, ratings={"_rating_": 0.5})
    assert data.query(rating_min=0.6, rating_max=0.4) == [row(0, 0)]
    assert data.query(rating_min=0.6, rating_max=0.4, group_by=["scorer_id"]) == []


def test_filters_are_anded(data: Data) -> None:
    data.scorer(T0 + 1, "sc_a", tags=["good"], agent="planner")
    data.scorer(T0 + 2, "sc_a", tags=["good"], agent="coder")
    data.scorer(T0 + 3, "sc_b", tags=["good"], agent="planner")
    assert data.totals(scorer_ids=["sc_a"], tags=["good"], span_agent_names=["planner"]) == 1


def test_project_isolation(data: Data) -> None:
    data.scorer(T0 + 1, project=OTHER, ratings={"_rating_": 1.0})
    data.scorer(T0 + 2, ratings={"_rating_": 0.5})
    assert data.query() == [row(1, counts={"_rating_": 1}, sums={"_rating_": 0.5})]
    res = data.engine.feedback_aggregate(
        {"project_id": "nobody/here", "after_ms": T0, "before_ms": T0 + DAY}
    )
    assert [b.total_count for b in res.buckets] == [0]


# --- validation -------------------------------------------------------------------------


def _rejects(body: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        FeedbackAggregateReq.model_validate(body)
    assert message in str(info.value)


def _base(**fields: Any) -> dict[str, Any]:
    return {"project_id": PROJECT, "after_ms": T0, "before_ms": T0 + DAY, **fields}


def test_before_must_be_after(data: Data) -> None:
    _rejects(_base(before_ms=T0), msg.BEFORE_NOT_AFTER)
    _rejects(_base(before_ms=T0 - 1), msg.BEFORE_NOT_AFTER)
    FeedbackAggregateReq.model_validate(_base(before_ms=T0 + 1))


@pytest.mark.parametrize(
    "extra",
    [
        {"time_bucket_seconds": 86_400},
        {"group_by": ["scorer_id"]},
        {"tags": ["x"]},
        {"feedback_types": [""]},
        {"scorer_ids": ["*"]},
        {"monitor_ids": ["m"]},
        {"span_agent_names": [""]},
        {"span_types": ["agent_turn"]},
        {"rating_min": 0.0},
        {"rating_max": 1.0},
    ],
)
def test_over_31_days_only_as_bare_total(extra: dict[str, Any]) -> None:
    exactly = _base(before_ms=T0 + 31 * DAY, **extra)
    FeedbackAggregateReq.model_validate(exactly)
    _rejects({**exactly, "before_ms": T0 + 31 * DAY + 1}, msg.OVER_31_DAYS_NOT_TOTAL)


def test_bare_total_over_31_days_is_allowed(data: Data) -> None:
    data.scorer(T0 + 1)
    data.scorer(T0 + 40 * DAY)
    data.scorer(T0 + 400 * DAY)
    assert data.totals(before_ms=T0 + 365 * DAY) == 2
    assert data.totals(before_ms=T0 + 365 * DAY, tags=[]) == 2  # empty filters are no filters


def test_bucket_count_limit_is_256_with_float_maths() -> None:
    FeedbackAggregateReq.model_validate(_base(before_ms=T0 + 256 * HOUR, time_bucket_seconds=3600))
    FeedbackAggregateReq.model_validate(_base(before_ms=T0 + 256_000, time_bucket_seconds=1))
    _rejects(_base(before_ms=T0 + 256_001, time_bucket_seconds=1), msg.TOO_MANY_AGG_BUCKETS)
    _rejects(_base(before_ms=T0 + 257 * HOUR, time_bucket_seconds=3600), msg.TOO_MANY_AGG_BUCKETS)
    # 10 days of hourly buckets (240) is fine; 11 days (264) is not.
    FeedbackAggregateReq.model_validate(_base(before_ms=T0 + 10 * DAY, time_bucket_seconds=3600))
    _rejects(_base(before_ms=T0 + 11 * DAY, time_bucket_seconds=3600), msg.TOO_MANY_AGG_BUCKETS)


@pytest.mark.parametrize(
    "bad",
    [
        {"after_ms": -1},
        {"time_bucket_seconds": 0},
        {"time_bucket_seconds": -60},
        {"rating_min": -0.01},
        {"rating_max": 1.01},
        {"group_by": ["feedback_type"]},
        {"span_types": ["call"]},
        {"unknown_field": 1},
        {"project_id": None},
    ],
)
def test_model_rejects(data: Data, bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        data.engine.feedback_aggregate(_base(**bad))


def test_response_echoes_the_request(data: Data) -> None:
    data.scorer(T0 + 1)
    res = data.engine.feedback_aggregate(_base(after_ms=T0 + 1, time_bucket_seconds=900))
    assert (res.after_ms, res.before_ms, res.time_bucket_seconds) == (T0 + 1, T0 + DAY, 900)
    assert res.buckets[0].time_bucket_start_ms == T0
