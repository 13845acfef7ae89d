"""POST /feedback/replace (refengine/semantics/replace.py and the engine)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from refengine import Engine, InvalidRequest, ManualClock

P = "acme/bot"
BASE = {"project_id": P, "weave_ref": "weave:///acme/bot/call/c1", "feedback_type": "custom"}


@pytest.fixture
def engine() -> Engine:
    engine = Engine(clock=ManualClock("2024-05-01T12:00:00Z"))
    engine.feedback_create({**BASE, "payload": {"v": 1}, "id": "old"})
    engine.feedback_create({**BASE, "payload": {"v": 2}, "id": "keep"})
    return engine


def replace(engine: Engine, **fields: Any) -> Any:
    return engine.feedback_replace({**BASE, "payload": {"v": 3}, **fields})


def test_replace_removes_the_old_row_and_creates_a_new_one(engine: Engine) -> None:
    engine.clock.advance(seconds=5)  # type: ignore[attr-defined]
    res = replace(engine, feedback_id="old")
    assert res.id != "old"
    assert res.payload == {"v": 3}
    assert res.created_at.isoformat() == "2024-05-01T12:00:05+00:00"
    rows = engine.rows(P)
    assert [r.id for r in rows] == ["keep", res.id]
    engine.check_invariants()


def test_replace_keeps_an_id_given_as_id(engine: Engine) -> None:
    res = replace(engine, feedback_id="old", id="old")
    assert res.id == "old"
    assert [r.payload for r in engine.rows(P)] == [{"v": 2}, {"v": 3}]


def test_a_missing_feedback_id_just_creates(engine: Engine) -> None:
    replace(engine, feedback_id="nope")
    assert len(engine.rows(P)) == 3


def test_a_rejected_replacement_keeps_the_old_row(engine: Engine) -> None:
    # The emoji count is a late step of the create chain (production loses the row).
    with pytest.raises(InvalidRequest, match="exactly one emoji"):
        engine.feedback_replace(
            {
                **BASE,
                "feedback_type": "wandb.reaction.1",
                "payload": {"emoji": "ab"},
                "feedback_id": "old",
            }
        )
    with pytest.raises(InvalidRequest, match="annotation_ref is not allowed"):
        replace(engine, feedback_id="old", annotation_ref="weave:///acme/bot/object/a:v1")
    assert [r.id for r in engine.rows(P)] == ["old", "keep"]


def test_feedback_id_is_required(engine: Engine) -> None:
    with pytest.raises(ValidationError):
        replace(engine)
