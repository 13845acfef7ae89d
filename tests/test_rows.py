"""The stored row: derived keys, time conversions, immutability."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from refengine.rows import STORED_COLUMNS, datetime_to_us, make_row, stored_columns, us_to_datetime


def row(**fields: object):  # type: ignore[no-untyped-def]
    base: dict[str, object] = {
        "id": "r1",
        "project_id": "e/p",
        "weave_ref": "weave:///e/p/agent_turn/t1",
        "wb_user_id": "u",
        "creator": None,
        "created_at_us": 1_714_564_800_123_999,
        "feedback_type": "wandb.agent_monitor",
        "payload": {"output": 1},
    }
    base.update(fields)
    return make_row(**base)  # type: ignore[arg-type]


def test_derived_keys() -> None:
    r = row(runnable_ref="weave:///e/p/object/judge:v2", trigger_ref="weave:///e/p/object/mon:d")
    assert (r.scorer_id, r.monitor_id, r.span_type) == ("judge", "mon", "agent_turn")
    assert r.created_at_ms == 1_714_564_800_123  # truncated, not rounded
    assert r.created_at == datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=timezone.utc)
    assert not r.is_scored


@pytest.mark.parametrize(
    ("tags", "ratings", "scored"),
    [((), {}, False), (("a",), {}, True), ((), {"x": 0.0}, True)],
)
def test_is_scored(tags: tuple[str, ...], ratings: dict[str, float], scored: bool) -> None:
    assert row(scorer_tags=tags, scorer_ratings=ratings).is_scored is scored


def test_rows_are_immutable() -> None:
    r = row()
    with pytest.raises(AttributeError):
        r.id = "other"  # type: ignore[misc]


def test_time_conversions_are_exact() -> None:
    moment = datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc)
    assert us_to_datetime(datetime_to_us(moment)) == moment
    assert datetime_to_us(datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc)) == -1


def test_stored_columns_copy_maps() -> None:
    r = row(scorer_ratings={"a": 1.0}, scorer_tags=["t"])
    cols = stored_columns(r)
    assert list(cols) == list(STORED_COLUMNS)
    cols["scorer_ratings"]["a"] = 5.0
    assert r.scorer_ratings == {"a": 1.0}
    assert cols["scorer_tags"] == ["t"]
