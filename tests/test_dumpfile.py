"""The JSON Lines dump: exact round trips and strict, line-numbered loading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from refengine import DumpFormatError, Engine, ManualClock

NOW = "2024-05-01T12:00:00.123456Z"


def sample_engine() -> Engine:
    engine = Engine(clock=ManualClock(NOW))
    engine.feedback_create(
        {
            "project_id": "acme/bot",
            "weave_ref": "weave:///acme/bot/agent_turn/t1",
            "feedback_type": "wandb.agent_monitor",
            "runnable_ref": "weave:///acme/bot/object/judge:v1",
            "call_ref": "",
            "trigger_ref": "weave:///acme/bot/object/mon:d1",
            "payload": {"output": {"score": 0.1 + 0.2, "big": 2**70, "s": "é\u2028\ud800"}},
            "scorer_tags": ["a", "a"],
            "scorer_ratings": {"_rating_": 0.0, "x": 1e-300},
            "scorer_tag_reasons": {"a": "because"},
            "span_status_code": "ERROR",
            "creator": "Jane",
        }
    )
    engine.feedback_create(
        {"project_id": "acme/other", "weave_ref": "r", "feedback_type": "t", "payload": {}}
    )
    return engine


def test_dump_load_is_identity(tmp_path: Path) -> None:
    engine = sample_engine()
    path = tmp_path / "rows.jsonl"
    assert engine.dump(path) == 2
    loaded = Engine.load(path)
    for project in ("acme/bot", "acme/other"):
        assert loaded.rows(project) == engine.rows(project)
    loaded.check_invariants()
    line = json.loads(path.read_text().splitlines()[0])
    assert line["created_at"] == "2024-05-01T12:00:00.123456+00:00"
    assert "created_at_ms" not in line and "scorer_id" not in line


def test_load_keeps_order_of_equal_timestamps(tmp_path: Path) -> None:
    engine = Engine(clock=ManualClock(NOW))
    for i in range(5):
        engine.feedback_create(
            {
                "project_id": "e/p",
                "weave_ref": "r",
                "feedback_type": "t",
                "payload": {},
                "id": str(i),
            }
        )
    engine.dump(tmp_path / "d.jsonl")
    assert [r.id for r in Engine.load(tmp_path / "d.jsonl").rows("e/p")] == list("01234")


def _bad_file(tmp_path: Path, mutate: object) -> Path:
    engine = sample_engine()
    path = tmp_path / "rows.jsonl"
    engine.dump(path)
    lines = path.read_text().splitlines()
    record = json.loads(lines[1])
    lines[1] = mutate(record) if callable(mutate) else str(mutate)
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        ('{"id": "trunc', "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        (
            lambda r: json.dumps({k: v for k, v in r.items() if k != "payload"}),
            "missing column(s) payload",
        ),
        (lambda r: json.dumps({**r, "color": "red"}), "unknown column(s) color"),
        (
            lambda r: json.dumps({**r, "scorer_ratings": {"a": "x"}}),
            "column scorer_ratings must be a map of numbers",
        ),
        (
            lambda r: json.dumps({**r, "scorer_tags": "a"}),
            "column scorer_tags must be a list of strings",
        ),
        (
            lambda r: json.dumps({**r, "span_status_code": "BAD"}),
            "column span_status_code must be a status",
        ),
        (lambda r: json.dumps({**r, "created_at": "yesterday"}), "created_at is not an ISO 8601"),
        (
            lambda r: json.dumps({**r, "created_at": "2024-01-01T00:00:00"}),
            "created_at needs a UTC offset",
        ),
        (lambda r: json.dumps({**r, "creator": 5}), "column creator must be a string or null"),
        (
            # a Float64 column cannot hold it; math.isfinite would overflow on it
            lambda r: json.dumps({**r, "scorer_ratings": {"_rating_": 10**400}}),
            "column scorer_ratings must be a map of numbers",
        ),
        (
            lambda r: json.dumps({**r, "scorer_tag_confidences": {"a": -(10**400)}}),
            "column scorer_tag_confidences must be a map of numbers",
        ),
        (
            # a valid instant locally, but before year 1 in UTC: every dump would fail
            lambda r: json.dumps({**r, "created_at": "0001-01-01T00:00:00+01:00"}),
            "created_at '0001-01-01T00:00:00+01:00' is out of range once converted to UTC",
        ),
        (
            lambda r: json.dumps({**r, "created_at": "9999-12-31T23:59:59-01:00"}),
            "is out of range once converted to UTC",
        ),
        (
            # json.dumps writes NaN, but no stored payload may hold it (create refuses it)
            lambda r: json.dumps({**r, "payload": {"score": float("nan")}}),
            "Out of range float values are not JSON compliant",
        ),
    ],
)
def test_bad_dump_fails_with_line_and_leaves_engine_unchanged(
    tmp_path: Path, mutate: object, reason: str
) -> None:
    path = _bad_file(tmp_path, mutate)
    engine = Engine()
    engine.feedback_create(
        {"project_id": "e/p", "weave_ref": "r", "feedback_type": "t", "payload": {}}
    )
    before = engine.rows("e/p")
    with pytest.raises(DumpFormatError) as info:
        engine.load_rows(path)
    assert info.value.line == 2
    assert reason in info.value.reason
    assert str(info.value).startswith(f"{path}:2: ")
    assert engine.rows("e/p") == before and engine.projects() == ["e/p"]


def test_truncated_file_fails_on_last_line(tmp_path: Path) -> None:
    engine = sample_engine()
    path = tmp_path / "rows.jsonl"
    engine.dump(path)
    text = path.read_text()
    path.write_text(text[: len(text) - 20])
    with pytest.raises(DumpFormatError) as info:
        Engine.load(path)
    assert info.value.line == 2


def test_blank_lines_are_skipped(tmp_path: Path) -> None:
    engine = sample_engine()
    path = tmp_path / "rows.jsonl"
    engine.dump(path)
    path.write_text("\n" + path.read_text() + "\n\n")
    assert len(Engine.load(path)) == 2


def test_non_utf8_file_fails_with_line_and_loads_nothing(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    sample_engine().dump(path)
    path.write_bytes(path.read_bytes() + b"\xff\xfe not text\n")
    engine = Engine()
    with pytest.raises(DumpFormatError) as info:
        engine.load_rows(path)
    assert info.value.line == 3
    assert info.value.reason.startswith("not UTF-8 text")
    assert len(engine) == 0


def test_edge_instants_in_range_load_and_dump(tmp_path: Path) -> None:
    path = _bad_file(
        tmp_path, lambda r: json.dumps({**r, "created_at": "0001-01-01T01:00:00+01:00"})
    )
    engine = Engine.load(path)
    engine.dump(tmp_path / "again.jsonl")  # the row written back, in UTC
    assert (
        '"created_at": "0001-01-01T00:00:00.000000+00:00"' in (tmp_path / "again.jsonl").read_text()
    )


def test_repeated_ids_load_as_separate_rows(tmp_path: Path) -> None:
    engine = sample_engine()
    path = tmp_path / "rows.jsonl"
    engine.dump(path)
    path.write_text(path.read_text() * 2)
    again = Engine.load(path)
    assert len(again) == 2 * len(engine)  # production stores a repeated id as another row
