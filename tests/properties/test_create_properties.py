"""Properties of create and of the dump format (Hypothesis)."""

from __future__ import annotations

import json
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from refengine import Engine, InvalidRequest, ManualClock
from refengine.rows import datetime_to_us
from strategies import PROJECT, create_requests, datasets, populate, python_payloads


@given(create_requests(), st.datetimes(timezones=st.just(timezone.utc)))
def test_valid_requests_are_stored_exactly(request: dict[str, Any], moment: datetime) -> None:
    engine = Engine(clock=ManualClock(moment))
    res = engine.feedback_create(request)
    (row,) = engine.rows(PROJECT)
    assert row.id == res.id
    assert row.created_at_us == datetime_to_us(moment)
    assert row.created_at_ms == row.created_at_us // 1000
    assert row.payload == json.loads(json.dumps(request["payload"]))
    assert row.payload == res.payload
    assert list(row.scorer_tags) == request.get("scorer_tags", [])
    assert dict(row.scorer_ratings) == request.get("scorer_ratings", {})
    for field in ("feedback_type", "weave_ref", "runnable_ref", "trigger_ref", "span_agent_name"):
        assert getattr(row, field) == request.get(field, getattr(row, field))
    assert row.span_status_code == request.get("span_status_code", "UNSET")
    engine.check_invariants()


def _same(a: Any, b: Any) -> bool:
    """Equal, type for type, floats by repr (so -0.0 differs from 0.0), keys in order."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, float):
        return repr(a) == repr(b)
    return bool(a == b)


@given(python_payloads)
def test_stored_payload_is_its_json_text_parsed_back(payload: dict[str, Any]) -> None:
    engine = Engine(clock=ManualClock("2024-05-01T12:00:00Z"))
    request = {"project_id": PROJECT, "weave_ref": "r", "feedback_type": "t", "payload": payload}
    try:
        text = json.dumps(payload, allow_nan=False)
    except (ValueError, TypeError):
        with pytest.raises(InvalidRequest):
            engine.feedback_create(request)
        assert len(engine) == 0
        return
    engine.feedback_create(request)
    (row,) = engine.rows(PROJECT)
    assert row.payload_dump == text  # exactly what json.dumps writes
    assert _same(row.payload, json.loads(text))


# Each mutation breaks a valid request in a way the model or the chain must catch.
MUTATIONS: list[tuple[str, Any]] = [
    ("span_status_code", "DONE"),
    ("payload", {"x": float("nan")}),
    ("payload", ["not", "an", "object"]),
    ("annotation_ref", "weave:///acme/bot/object/a:1"),
    ("scorer_ratings", {"_rating_": float("inf")}),
    ("feedback_type", "wandb.runnableX"),
    ("surprise_field", 1),
    ("project_id", None),
    ("trigger_ref", "weave:///acme/bot/op/m:1"),
]


@given(datasets(max_size=8), create_requests(), st.sampled_from(MUTATIONS))
def test_invalid_requests_never_change_the_store(
    dataset: list[Any], request: dict[str, Any], mutation: tuple[str, Any]
) -> None:
    engine = populate(dataset)
    before = {p: engine.rows(p) for p in engine.projects()}
    field, value = mutation
    bad = {**request, field: value}
    try:
        engine.feedback_create(bad)
    except (InvalidRequest, ValidationError):
        pass
    else:
        raise AssertionError(f"accepted an invalid request: {bad}")
    try:
        engine.feedback_create_batch({"batch": [request, bad]})
    except (InvalidRequest, ValidationError):
        pass
    else:
        raise AssertionError("accepted a batch with an invalid item")
    assert {p: engine.rows(p) for p in engine.projects()} == before


@given(datasets())
def test_dump_then_load_is_identity(dataset: list[Any]) -> None:
    engine = populate(dataset)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rows.jsonl"
        engine.dump(path)
        loaded = Engine.load(path)
    assert loaded.projects() == engine.projects()
    for project in engine.projects():
        assert loaded.rows(project) == engine.rows(project)
    loaded.check_invariants()
