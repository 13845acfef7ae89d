"""Downstream-style tests: what a user of the pytest plugin writes (no imports needed
for the fixtures; they come from the ``pytest11`` entry point)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from refengine import Engine, ManualClock

pytest_plugins = ["pytester"]

REQUEST = {
    "project_id": "acme/bot",
    "weave_ref": "weave:///acme/bot/call/c1",
    "feedback_type": "custom",
    "payload": {"score": 0.9},
}


def test_feedback_clock_stands_still_until_moved(feedback_clock: ManualClock) -> None:
    assert feedback_clock().isoformat() == "2024-05-01T12:00:00+00:00"
    feedback_clock.advance(seconds=30)
    assert feedback_clock().isoformat() == "2024-05-01T12:00:30+00:00"


def test_feedback_engine_is_fresh_and_uses_the_clock(
    feedback_engine: Engine, feedback_clock: ManualClock
) -> None:
    assert len(feedback_engine) == 0
    feedback_clock.advance(seconds=60)
    res = feedback_engine.feedback_create(REQUEST)
    assert res.created_at == feedback_clock()
    feedback_clock.advance(seconds=60)  # stats "end" defaults to now, and is exclusive
    stats = feedback_engine.feedback_stats(
        {
            "project_id": "acme/bot",
            "start": feedback_clock() - timedelta(hours=1),
            "metrics": [{"json_path": "score"}],
        }
    )
    assert stats.window_stats == {"score": {"avg": 0.9, "min": 0.9, "max": 0.9}}


def test_feedback_engine_is_isolated_per_test(feedback_engine: Engine) -> None:
    assert feedback_engine.projects() == []


def test_feedback_server_over_http(feedback_server: object) -> None:
    httpx = pytest.importorskip("httpx")
    base_url: str = feedback_server.base_url  # type: ignore[attr-defined]
    engine: Engine = feedback_server.engine  # type: ignore[attr-defined]
    clock: ManualClock = feedback_server.clock  # type: ignore[attr-defined]
    clock.set("2024-05-02T00:00:00Z")
    res = httpx.post(f"{base_url}/feedback/create", json=REQUEST, auth=("alice", "x"))
    assert res.status_code == 200
    assert res.json()["created_at"] == "2024-05-02T00:00:00+00:00"
    assert res.json()["wb_user_id"] == "alice"
    assert [row.wb_user_id for row in engine.rows("acme/bot")] == ["alice"]
    assert httpx.get(f"{base_url}/health").json() == {"status": "ok"}


def test_feedback_server_skips_without_the_server_extra(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        "import sys\nsys.modules['refengine.server'] = None  # as if the extra were missing\n"
    )
    pytester.makepyfile("def test_uses_server(feedback_server):\n    raise AssertionError\n")
    result = pytester.runpytest_subprocess("-rs", "-p", "no:cacheprovider")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*feedback_server needs the server extra*pip install*"])
