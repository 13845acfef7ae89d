"""Interop: the official Python client (``weave``'s ``RemoteHTTPTraceServer``) against
a live refengine server. Needs the ``interop`` extra: ``pip install 'refengine[interop]'``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from refengine import Engine, ManualClock

pytestmark = pytest.mark.interop

pytest.importorskip("fastapi", reason="the server extra (refengine[server]) is not installed")
remote = pytest.importorskip(
    "weave.trace_server_bindings.remote_http_trace_server",
    reason="the weave client is not importable: pip install 'refengine[interop]'",
)

from refengine.server import BackgroundServer, create_app, derived_user_id  # noqa: E402

PROJECT = "acme/bot"
BASE = f"weave:///{PROJECT}"
START = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)
START_MS = int(START.timestamp() * 1000)
KEY = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def live() -> Iterator[tuple[Any, Engine, ManualClock]]:
    clock = ManualClock(START)
    engine = Engine(clock=clock)
    app = create_app(engine, api_keys={KEY: None, "other-key": "alice"})
    with BackgroundServer(app) as server:
        client = remote.RemoteHTTPTraceServer(server.base_url, should_batch=False)
        client.set_auth(("api", KEY))
        yield client, engine, clock


def monitor(i: int, score: float, tags: list[str], scorer: str = "toxicity") -> dict[str, Any]:
    return {
        "project_id": PROJECT,
        "weave_ref": f"{BASE}/agent_turn/t{i}",
        "feedback_type": "wandb.agent_monitor",
        "runnable_ref": f"{BASE}/object/{scorer}:v1",
        "call_ref": f"{BASE}/call/s{i}",
        "trigger_ref": f"{BASE}/object/prod-monitor:d1",
        "payload": {"output": {"score": score, "passed": score >= 0.5}},
        "scorer_tags": tags,
        "scorer_ratings": {"_rating_": score},
    }


def test_official_client_create_aggregate_stats(live: tuple[Any, Engine, ManualClock]) -> None:
    client, engine, clock = live
    res = client.feedback_create(monitor(1, 0.25, ["toxic"]))
    assert res.wb_user_id == derived_user_id(KEY)
    assert res.created_at == START
    assert res.payload == {"output": {"score": 0.25, "passed": False}}
    clock.advance(seconds=3600)
    batch = client.feedback_create_batch(
        {"batch": [monitor(2, 0.75, ["great"]), monitor(3, 0.5, [], scorer="helpfulness")]}
    )
    assert [item.created_at for item in batch.res] == [START + timedelta(hours=1)] * 2
    assert len(engine) == 3

    agg = client.feedback_aggregate(
        {
            "project_id": PROJECT,
            "after_ms": START_MS,
            "before_ms": START_MS + 2 * 3600 * 1000,
            "group_by": ["scorer_id"],
        }
    )
    by_scorer = {b.group["scorer_id"]: b for b in agg.buckets}
    assert set(by_scorer) == {"helpfulness", "toxicity"}
    assert by_scorer["toxicity"].total_count == 2
    assert by_scorer["toxicity"].tag_counts == {"great": 1, "toxic": 1}
    assert by_scorer["toxicity"].rating_sums == {"_rating_": 1.0}
    assert by_scorer["helpfulness"].scored_count == 1

    stats = client.feedback_stats(
        {
            "project_id": PROJECT,
            "start": START,
            "end": START + timedelta(hours=2),
            "granularity": 3600,
            "metrics": [
                {"json_path": "output.score", "percentiles": [50]},
                {"json_path": "output.passed", "value_type": "boolean"},
            ],
        }
    )
    assert stats.granularity == 3600
    assert stats.start == START
    assert [b["count"] for b in stats.buckets] == [1, 2]
    assert [b["avg_output_score"] for b in stats.buckets] == [0.25, 0.625]
    assert stats.window_stats["output_score"] == {
        "avg": 0.5,
        "min": 0.25,
        "max": 0.75,
        "p50": 0.5,
    }
    assert stats.window_stats["output_passed"] == {"count_true": 2.0, "count_false": 1.0}


def test_official_client_sees_400_and_401(live: tuple[Any, Engine, ManualClock]) -> None:
    client, engine, _ = live
    bad = {**monitor(1, 0.5, []), "feedback_type": "custom"}  # runnable_ref not allowed
    with pytest.raises(Exception, match="not allowed for non-runnable feedback"):
        client.feedback_create(bad)
    client.set_auth(("api", "wrong-key"))
    with pytest.raises(Exception) as info:
        client.feedback_create(monitor(1, 0.5, []))
    assert getattr(info.value, "status_code", None) == 401
    client.set_auth(("api", "other-key"))
    assert client.feedback_create(monitor(1, 0.5, [])).wb_user_id == "alice"
    assert len(engine) == 1
