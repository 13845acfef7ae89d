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


# --- query, purge, replace, payload_schema, server_info ---------------------------------


def _note(i: int, ref: str = f"{BASE}/call/c1") -> dict[str, Any]:
    return {
        "project_id": PROJECT,
        "weave_ref": ref,
        "feedback_type": "custom",
        "payload": {"i": i, "score": i / 4},
    }


def _query(client: Any, expr: dict[str, Any] | None, **extra: Any) -> Any:
    # The request shape the client's FeedbackQuery.refresh sends.
    return client.feedback_query(
        {
            "project_id": PROJECT,
            "fields": None,
            "query": None if expr is None else {"$expr": expr},
            "sort_by": [{"field": "created_at", "direction": "asc"}],
            "limit": None,
            "offset": None,
            **extra,
        }
    )


def test_official_client_feedback_query(live: tuple[Any, Engine, ManualClock]) -> None:
    from weave.trace.feedback import Feedback

    client, _engine, clock = live
    first = client.feedback_create(_note(1))
    clock.advance(seconds=1)
    second = client.feedback_create(_note(2, ref=f"{BASE}/call/c2"))
    clock.advance(seconds=1)
    client.feedback_create(
        {
            "project_id": PROJECT,
            "weave_ref": f"{BASE}/call/c1",
            "feedback_type": "wandb.reaction.1",
            "payload": {"emoji": "👍"},
        }
    )
    everything = _query(client, {"$eq": [{"$literal": "1"}, {"$literal": "1"}]})
    assert everything.total_count == 3
    rows = [Feedback(**row) for row in everything.result]
    assert [row.id for row in rows[:2]] == [first.id, second.id]
    assert rows[0].created_at == START
    assert rows[0].payload == {"i": 1, "score": 0.25}
    assert rows[2].payload["alias"] == ":thumbs_up:"

    by_id = _query(client, {"$eq": [{"$getField": "id"}, {"$literal": second.id}]})
    assert [row["id"] for row in by_id.result] == [second.id]
    by_ref = _query(client, {"$eq": [{"$getField": "weave_ref"}, {"$literal": f"{BASE}/call/c1"}]})
    assert by_ref.total_count == 2
    reactions = _query(
        client,
        {
            "$and": [
                {"$eq": [{"$getField": "feedback_type"}, {"$literal": "wandb.reaction.1"}]},
                {"$eq": [{"$getField": "payload.emoji"}, {"$literal": "👍"}]},
            ]
        },
    )
    assert reactions.total_count == 1
    paged = _query(client, None, limit=1, offset=1)
    assert (paged.total_count, [row["id"] for row in paged.result]) == (3, [second.id])


def test_official_client_purge_replace_schema_info(live: tuple[Any, Engine, ManualClock]) -> None:
    client, engine, clock = live
    first = client.feedback_create(_note(1))
    second = client.feedback_create(_note(2))
    client.feedback_purge(
        {
            "project_id": PROJECT,
            "query": {"$expr": {"$eq": [{"$getField": "id"}, {"$literal": first.id}]}},
        }
    )
    assert [row.id for row in engine.rows(PROJECT)] == [second.id]
    clock.advance(seconds=5)
    replaced = client.feedback_replace({**_note(3), "feedback_id": second.id})
    assert replaced.payload == {"i": 3, "score": 0.75}
    assert [row.payload["i"] for row in engine.rows(PROJECT)] == [3]
    schema = client.feedback_payload_schema(
        {
            "project_id": PROJECT,
            "start": START.isoformat(),
            "end": (START + timedelta(hours=1)).isoformat(),
        }
    )
    assert [(p.json_path, p.value_type) for p in schema.paths] == [
        ("i", "numeric"),
        ("score", "numeric"),
    ]
    info = client.server_info()
    assert info.min_required_weave_python_version == "0.0.0"


def test_weave_client_get_feedback_end_to_end(live: tuple[Any, Engine, ManualClock]) -> None:
    """The higher-level client: a ``WeaveClient`` over the same server (no network
    beyond 127.0.0.1, no ``weave.init``) lists, filters and fetches feedback."""
    from weave.trace.context import weave_client_context
    from weave.trace.feedback import Feedback
    from weave.trace.weave_client import WeaveClient

    server, engine, clock = live
    entity, project = PROJECT.split("/")
    client = WeaveClient(entity, project, server, ensure_project_exists=False)
    note = {"project_id": PROJECT, "weave_ref": f"{BASE}/call/c1", "feedback_type": "wandb.note.1"}
    engine.feedback_create({**note, "payload": {"note": "first"}})
    clock.advance(seconds=1)
    reaction = engine.feedback_create(
        {**note, "feedback_type": "wandb.reaction.1", "payload": {"emoji": "👍🏽"}}
    )
    # What weave.init does once it has a client; the Feedback objects look it up.
    weave_client_context.set_weave_client_global(client)
    try:
        rows = list(client.get_feedback())
        assert [type(r) for r in rows] == [Feedback, Feedback]
        assert [r.feedback_type for r in rows] == ["wandb.note.1", "wandb.reaction.1"]
        # The client filters on payload.emoji as sent: the toned emoji, exactly.
        assert [r.id for r in client.get_feedback(reaction="👍🏽")] == [reaction.id]
        assert list(client.get_feedback(reaction="👍")) == []
        by_id = list(client.get_feedback(reaction.id))
        assert [r.payload["alias"] for r in by_id] == [":thumbs_up_medium_skin_tone:"]
    finally:
        weave_client_context.set_weave_client_global(None)
