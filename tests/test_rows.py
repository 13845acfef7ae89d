"""The stored row: derived keys, time conversions, immutability."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone

import pytest

from refengine import rows
from refengine.frozenmap import FrozenMap
from refengine.rows import (
    STORED_COLUMNS,
    datetime_to_us,
    make_row,
    payload_text,
    stored_columns,
    us_to_datetime,
)


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


def test_rows_are_immutable() -> None:
    r = row(scorer_ratings={"a": 1.0})
    with pytest.raises(AttributeError):
        r.id = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        r.scorer_ratings["a"] = 2.0  # type: ignore[index]
    r.payload["output"] = 2  # a fresh dict each time: the row is untouched
    assert r.payload == {"output": 1}


def test_the_payload_is_stored_as_its_json_dumps_text() -> None:
    payload = {"b": [1, (2.5, None)], "a": {"é": True, "n": -0.0}, "big": 2**70}
    r = row(payload=payload)
    assert r.payload_dump == json.dumps(payload)
    assert r.payload == json.loads(json.dumps(payload))  # the tuple reads back as a list
    assert list(r.payload) == ["b", "a", "big"]
    assert "payload" in STORED_COLUMNS and "payload_dump" not in STORED_COLUMNS


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        ({"x": float("nan")}, ValueError),
        ({"x": float("-inf")}, ValueError),
        ({"x": {1j}}, TypeError),
    ],
)
def test_a_payload_json_cannot_hold_is_refused(payload: dict[str, object], error: type) -> None:
    with pytest.raises(error):
        row(payload=payload)


def test_payload_errors_are_the_standard_encoders(monkeypatch: pytest.MonkeyPatch) -> None:
    looped: dict[str, object] = {"a": 1}
    looped["self"] = [looped]
    for payload in ({"x": [float("nan")]}, {"x": {1j}}, looped):
        with pytest.raises((ValueError, TypeError)) as expected:
            json.dumps(payload, allow_nan=False)
        with pytest.raises(type(expected.value), match=re.escape(str(expected.value))):
            payload_text(payload)
    monkeypatch.setattr(json.encoder, "c_make_encoder", None)  # no C accelerator
    pure = rows._payload_encoder()
    assert pure({"b": [1.5, None], "é": True}) == json.dumps({"b": [1.5, None], "é": True})


def test_scorer_maps_are_compact_and_share_their_keys() -> None:
    a = row(scorer_ratings={"_rating_": 0.5}, scorer_tag_reasons={"t": "why"})
    b = row(scorer_ratings={"_rating_": 0.25})
    assert isinstance(a.scorer_ratings, FrozenMap)
    assert a.scorer_ratings._keys is b.scorer_ratings._keys  # type: ignore[attr-defined]
    assert a.scorer_tag_reasons == {"t": "why"}
    assert a.scorer_rating_reasons is b.scorer_tag_reasons  # the one shared empty map


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


def test_every_column_lands_in_its_field() -> None:
    # make_row builds the tuple positionally; each column must reach its own name.
    values: dict[str, object] = {
        "id": "i",
        "project_id": "e/p",
        "weave_ref": "weave:///e/p/kind/x",
        "wb_user_id": "w",
        "creator": "c",
        "created_at_us": 5_000_123,
        "feedback_type": "ft",
        "payload": {"p": 1},
        "annotation_ref": "ann",
        "runnable_ref": "weave:///e/p/object/sc:1",
        "call_ref": "call",
        "trigger_ref": "weave:///e/p/object/mon:1",
        "queue_id": "q",
        "scorer_tags": ("t1",),
        "scorer_tag_reasons": {"t1": "r"},
        "scorer_tag_confidences": {"t1": 0.1},
        "scorer_ratings": {"k": 0.2},
        "scorer_rating_reasons": {"k": "rr"},
        "scorer_rating_confidences": {"k": 0.3},
        "span_agent_name": "an",
        "span_agent_version": "av",
        "span_status_code": "OK",
        "span_conversation_id": "conv",
        "span_trace_id": "trace",
        "scorer_trace_id": "st",
    }
    r = make_row(**values)  # type: ignore[arg-type]
    assert {name: getattr(r, name) for name in STORED_COLUMNS} == values
    derived = (r.created_at_ms, r.scorer_id, r.monitor_id, r.span_type)
    assert derived == (5_000, "sc", "mon", "kind")


def test_timestamps_of_consecutive_rows() -> None:
    # Rows in the same microsecond or millisecond share their int objects; each row
    # must still hold its own values, whatever the order they come in.
    stamps = [5_000_123, 5_000_123, 5_000_999, 5_001_000, 5_000_123, 7, 7_999, 7]
    rows = [row(created_at_us=us) for us in stamps]
    assert [r.created_at_us for r in rows] == stamps
    assert [r.created_at_ms for r in rows] == [us // 1000 for us in stamps]


def test_equal_tag_lists_share_one_tuple() -> None:
    a, b = row(scorer_tags=["x", "y"]), row(scorer_tags=("x", "y"))
    assert a.scorer_tags == b.scorer_tags == ("x", "y")
    assert a.scorer_tags is b.scorer_tags
    assert row(scorer_tags=["y", "x"]).scorer_tags == ("y", "x")
    assert row(scorer_tags=["x", "x"]).scorer_tags == ("x", "x")  # duplicates are kept
