"""POST /feedback/payload_schema (refengine/semantics/payload_schema.py)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from refengine import Engine, ManualClock
from refengine.semantics.payload_schema import discover, value_type

P = "acme/bot"


def schema(engine: Engine, **req: Any) -> dict[str, str]:
    res = engine.feedback_payload_schema({"project_id": P, "start": "2024-05-01T00:00:00Z", **req})
    return {p.json_path: p.value_type for p in res.paths}


def put(engine: Engine, payload: dict[str, Any], **fields: Any) -> None:
    engine.feedback_create(
        {
            "project_id": P,
            "weave_ref": "weave:///acme/bot/call/c1",
            "feedback_type": "custom",
            "payload": payload,
            **fields,
        }
    )
    engine.clock.advance(seconds=1)  # type: ignore[attr-defined]


def test_discovery_rules() -> None:
    found = discover(
        [
            {
                "a": 1,
                "b": {"c": True, "d": [0.1, 0.2]},
                "e.f": 1,
                " ": 2,
                "g": [{"h": 1}],
                "i": None,
                "j-k": 1,
                "l": [[1]],
            },
        ]
    )
    assert {k: value_type(v) for k, v in found.items()} == {
        "a": "numeric",
        "b.c": "boolean",
        "b.d": "numeric",
        "i": "boolean",
    }


def test_types_unite_over_samples() -> None:
    assert value_type({"number", "null"}) == "numeric"
    assert value_type({"boolean", "null"}) == "boolean"
    assert value_type({"number", "boolean"}) == "categorical"
    assert value_type({"string"}) == "categorical"


def test_one_sample_per_trigger_ref_group_the_newest() -> None:
    engine = Engine(clock=ManualClock("2024-05-01T12:00:00Z"))
    trig = "weave:///acme/bot/object/m:v1"
    put(
        engine,
        {"old": 1},
        feedback_type="wandb.agent_monitor",
        trigger_ref=trig,
        runnable_ref="weave:///acme/bot/object/s:v1",
        call_ref="weave:///acme/bot/call/c",
    )
    put(
        engine,
        {"new": "x"},
        feedback_type="wandb.agent_monitor",
        trigger_ref=trig,
        runnable_ref="weave:///acme/bot/object/s:v1",
        call_ref="weave:///acme/bot/call/c",
    )
    put(engine, {"plain": 1})
    put(engine, {"plain2": True})
    found = schema(engine, end="2024-05-01T13:00:00Z")
    assert found == {"new": "categorical", "plain2": "boolean"}
    assert schema(engine, end="2024-05-01T13:00:00Z", sample_limit=1) == {"plain2": "boolean"}
    assert schema(
        engine, end="2024-05-01T13:00:00Z", trigger_ref="weave:///acme/bot/object/m:*"
    ) == {"new": "categorical"}
    assert schema(engine, end="2024-05-01T13:00:00Z", feedback_type="custom") == {
        "plain2": "boolean"
    }


def test_window_truncated_to_seconds_and_end_defaults_to_now() -> None:
    engine = Engine(clock=ManualClock("2024-05-01T12:00:00.500Z"))
    put(engine, {"a": 1})  # at .500; the clock moves to 12:00:01.500
    assert schema(engine, start="2024-05-01T12:00:00.900Z", end="2024-05-01T12:00:01.200Z") == {
        "a": "numeric"
    }
    assert schema(engine) == {"a": "numeric"}


def test_request_model_checks() -> None:
    engine = Engine(clock=ManualClock("2024-05-01T12:00:00Z"))
    with pytest.raises(ValidationError):
        schema(engine, sample_limit=0)
    with pytest.raises(ValidationError):
        schema(engine, sample_limit=5001)
    with pytest.raises(ValidationError, match="end must be after start"):
        schema(engine, end="2024-04-30T00:00:00Z")
    with pytest.raises(ValidationError, match="cannot exceed 31 days"):
        schema(engine, start="2024-01-01T00:00:00Z")
