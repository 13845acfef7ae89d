"""The HTTP server: routes, error bodies, auth, the clock control, fuzzing, concurrency."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the server extra (refengine[server]) is not installed")

import warnings

import httpx

with warnings.catch_warnings():  # starlette's note about httpx2; not ours to act on
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from refengine import Engine, ManualClock, SystemClock, server
from refengine.server import BackgroundServer, create_app, derived_user_id

START = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)
PROJECT = "acme/bot"
BASE = f"weave:///{PROJECT}"
START_MS = int(START.timestamp() * 1000)


def note(i: int = 0, **extra: Any) -> dict[str, Any]:
    return {
        "project_id": PROJECT,
        "weave_ref": f"{BASE}/call/c{i}",
        "feedback_type": "custom",
        "payload": {"score": 0.5, "i": i},
        **extra,
    }


def monitor(score: float, tags: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "project_id": PROJECT,
        "weave_ref": f"{BASE}/agent_turn/t1",
        "feedback_type": "wandb.agent_monitor",
        "runnable_ref": f"{BASE}/object/toxicity:v1",
        "call_ref": f"{BASE}/call/s1",
        "trigger_ref": f"{BASE}/object/prod:d1",
        "payload": {"output": {"score": score, "passed": score >= 0.5}},
        "scorer_tags": tags,
        "scorer_ratings": {"_rating_": score},
        **extra,
    }


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def engine(clock: ManualClock) -> Engine:
    return Engine(clock=clock)


@pytest.fixture
def client(engine: Engine) -> Iterator[TestClient]:
    with TestClient(create_app(engine)) as test_client:
        yield test_client


# --- routes ---------------------------------------------------------------------------


def test_create_returns_published_shape_with_offset(client: TestClient, engine: Engine) -> None:
    res = client.post("/feedback/create", json=note(1, id="my-id"))
    assert res.status_code == 200
    body = res.json()
    assert body == {
        "id": "my-id",
        "created_at": "2024-05-01T12:00:00+00:00",
        "wb_user_id": "refengine",
        "payload": {"score": 0.5, "i": 1},
    }
    assert [row.id for row in engine.rows(PROJECT)] == ["my-id"]


def test_batch_create_and_all_or_nothing(client: TestClient, engine: Engine) -> None:
    res = client.post("/feedback/batch/create", json={"batch": [note(1), note(2)]})
    assert res.status_code == 200
    assert [item["payload"]["i"] for item in res.json()["res"]] == [1, 2]
    bad = {**note(3), "feedback_type": "wandb.note.1", "payload": {}}
    res = client.post("/feedback/batch/create", json={"batch": [note(4), bad]})
    assert res.status_code == 400
    assert res.json()["reason"].startswith("Invalid payload for feedback_type wandb.note.1")
    assert len(engine) == 2


def test_aggregate_route(client: TestClient) -> None:
    for score, tags in [(0.2, ["toxic"]), (0.8, ["great", "toxic"])]:
        assert client.post("/feedback/create", json=monitor(score, tags)).status_code == 200
    res = client.post(
        "/feedback/aggregate",
        json={
            "project_id": PROJECT,
            "after_ms": START_MS - 1000,
            "before_ms": START_MS + 1000,
            "group_by": ["scorer_id"],
        },
    )
    assert res.status_code == 200
    body = res.json()
    assert body["after_ms"] == START_MS - 1000
    assert body["time_bucket_seconds"] is None
    [bucket] = body["buckets"]
    assert bucket["group"] == {"scorer_id": "toxicity"}
    assert bucket["total_count"] == 2
    assert bucket["scored_count"] == 2
    assert bucket["tag_counts"] == {"great": 1, "toxic": 2}
    assert bucket["rating_counts"] == {"_rating_": 2}
    assert bucket["rating_sums"]["_rating_"] == pytest.approx(1.0)


def test_stats_route_renders_offsets(client: TestClient, clock: ManualClock) -> None:
    client.post("/feedback/create", json=monitor(0.25, []))
    clock.advance(seconds=3600)
    client.post("/feedback/create", json=monitor(0.75, []))
    res = client.post(
        "/feedback/stats",
        json={
            "project_id": PROJECT,
            "start": "2024-05-01T12:00:00Z",
            "end": "2024-05-01T14:00:00Z",
            "granularity": 3600,
            "timezone": "America/New_York",
            "metrics": [{"json_path": "output.score"}],
        },
    )
    assert res.status_code == 200
    body = res.json()
    assert body["start"] == "2024-05-01T12:00:00+00:00"
    assert body["end"] == "2024-05-01T14:00:00+00:00"
    assert [b["timestamp"] for b in body["buckets"]] == [
        "2024-05-01T08:00:00-04:00",
        "2024-05-01T09:00:00-04:00",
    ]
    assert [b["avg_output_score"] for b in body["buckets"]] == [0.25, 0.75]
    assert body["window_stats"]["output_score"] == {"avg": 0.5, "min": 0.25, "max": 0.75}


def test_stats_end_defaults_to_engine_clock(client: TestClient, clock: ManualClock) -> None:
    clock.set("2024-05-02T00:00:00Z")
    res = client.post("/feedback/stats", json={"project_id": PROJECT, "start": "2024-05-01"})
    assert res.status_code == 200
    assert res.json()["end"] == "2024-05-02T00:00:00+00:00"


def test_stats_default_end_over_31_days_is_422(client: TestClient) -> None:
    # The range check runs in the engine once "end" has become now: still a 422.
    res = client.post("/feedback/stats", json={"project_id": PROJECT, "start": "2024-03-01"})
    assert res.status_code == 422
    assert res.json() == {
        "detail": [
            {
                "loc": ["body"],
                "msg": "Value error, Feedback request date range cannot exceed 31 days",
                "type": "value_error",
            }
        ]
    }


def test_health_and_openapi(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    doc = client.get("/openapi.json").json()
    assert set(doc["paths"]) >= {
        "/feedback/create",
        "/feedback/batch/create",
        "/feedback/aggregate",
        "/feedback/stats",
    }
    assert "/refengine/clock" not in doc["paths"]
    assert doc["components"]["securitySchemes"]["HTTPBasic"] == {"type": "http", "scheme": "basic"}
    create = doc["paths"]["/feedback/create"]["post"]
    assert create["responses"]["422"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/HTTPValidationError"
    }
    assert "FeedbackStatsReq" in doc["components"]["schemas"]


# --- errors ---------------------------------------------------------------------------


def test_request_model_error_is_trimmed_422(client: TestClient) -> None:
    res = client.post("/feedback/create", json={**note(), "project_id": 5, "bogus": {1, 2}.pop()})
    assert res.status_code == 422
    detail = res.json()["detail"]
    assert {tuple(item["loc"]) for item in detail} == {("body", "project_id"), ("body", "bogus")}
    assert all(set(item) == {"loc", "msg", "type"} for item in detail)
    assert {item["type"] for item in detail} == {"string_type", "extra_forbidden"}


def test_model_validator_error_loc_is_body(client: TestClient) -> None:
    res = client.post(
        "/feedback/aggregate", json={"project_id": PROJECT, "after_ms": 10, "before_ms": 10}
    )
    assert res.status_code == 422
    assert res.json()["detail"] == [
        {
            "loc": ["body"],
            "msg": "Value error, before_ms must be greater than after_ms",
            "type": "value_error",
        }
    ]


@pytest.mark.parametrize(
    ("content", "headers"),
    [
        (b"{not json", {"content-type": "application/json"}),
        (b"\xff\xfe\x00", {"content-type": "application/json"}),
        (b"[" * 100_000, {"content-type": "application/json"}),
        (b"", {"content-type": "application/json"}),
        (b"project_id=a", {"content-type": "application/x-www-form-urlencoded"}),
        (b'{"project_id": "a"}', {"content-type": "text/plain"}),
        (b"null", {"content-type": "application/json"}),
    ],
)
def test_malformed_bodies_are_422(
    client: TestClient, content: bytes, headers: dict[str, str]
) -> None:
    for route in ("/feedback/create", "/feedback/aggregate"):
        res = client.post(route, content=content, headers=headers)
        assert res.status_code == 422, (route, res.text)
        assert all(set(item) == {"loc", "msg", "type"} for item in res.json()["detail"])


def test_non_json_values_in_error_input_do_not_break_422(client: TestClient) -> None:
    # Python's JSON parser reads NaN and 1e400; pydantic's error "input"/"ctx" would
    # then hold values json cannot render. The trimmed body has none.
    res = client.post(
        "/feedback/aggregate",
        content=b'{"project_id": "p", "after_ms": NaN, "before_ms": 1e400, "rating_min": Infinity}',
        headers={"content-type": "application/json"},
    )
    assert res.status_code == 422
    assert {tuple(item["loc"]) for item in res.json()["detail"]} >= {
        ("body", "after_ms"),
        ("body", "before_ms"),
        ("body", "rating_min"),
    }


def test_non_finite_payload_is_400(client: TestClient) -> None:
    res = client.post(
        "/feedback/create",
        content=json.dumps(note(payload={"x": float("nan")})).encode(),
        headers={"content-type": "application/json"},
    )
    assert res.status_code == 400
    assert "non-finite" in res.json()["reason"]


def test_out_of_range_dates_are_422(client: TestClient) -> None:
    res = client.post(
        "/feedback/stats", json={"project_id": PROJECT, "start": "9999-12-31T23:59:59-01:00"}
    )
    assert res.status_code == 422
    assert res.json()["detail"][0]["loc"] == ["body", "start"]


def test_overflowing_sum_renders_as_json_number(client: TestClient) -> None:
    for _ in range(2):
        client.post("/feedback/create", json=monitor(1.7e308, []))
    res = client.post(
        "/feedback/aggregate",
        json={"project_id": PROJECT, "after_ms": 0, "before_ms": START_MS + 1},
    )
    assert res.status_code == 200
    assert b"1e999" in res.content
    assert res.json()["buckets"][0]["rating_sums"]["_rating_"] == float("inf")


def test_lone_surrogates_do_not_break_responses(client: TestClient) -> None:
    raw = b'{"project_id": "p\\ud800", "weave_ref": "w", "feedback_type": "t", "payload": {}}'
    res = client.post("/feedback/create", content=raw, headers={"content-type": "application/json"})
    assert res.status_code in (200, 400, 422)
    res.json()


def test_deep_payload_is_handled(client: TestClient) -> None:
    payload: dict[str, Any] = {}
    for _ in range(900):
        payload = {"a": payload}
    res = client.post("/feedback/create", json=note(payload=payload))
    assert res.status_code in (200, 400, 422)


def test_wrong_method_and_unknown_route(client: TestClient) -> None:
    assert client.get("/feedback/create").status_code == 405
    assert client.post("/feedback/nope", json={}).status_code == 404


# --- auth -----------------------------------------------------------------------------


def basic(username: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def user_of(client: TestClient, headers: dict[str, str], **body: Any) -> str:
    res = client.post("/feedback/create", json=note(**body), headers=headers)
    assert res.status_code == 200, res.text
    user: str = res.json()["wb_user_id"]
    return user


def test_open_server_derives_users(client: TestClient, engine: Engine) -> None:
    assert user_of(client, {}) == "refengine"
    assert user_of(client, basic("", "")) == "refengine"  # what the client sends keyless
    assert user_of(client, basic("alice", "x")) == "alice"
    key = "0123456789abcdef"
    expected = "user-" + hashlib.sha256(key.encode()).hexdigest()[:12]
    assert derived_user_id(key) == expected
    assert user_of(client, basic("api", key)) == expected
    assert user_of(client, basic("api", key)) == expected  # stable
    assert user_of(client, {"Authorization": "Basic !!!not-base64"}) == "refengine"
    assert user_of(client, {"Authorization": "Bearer tok"}) == "refengine"
    # A client-sent wb_user_id is always overwritten, in batches too.
    assert user_of(client, basic("alice", "x"), wb_user_id="mallory") == "alice"
    res = client.post(
        "/feedback/batch/create",
        json={"batch": [note(1, wb_user_id="mallory"), note(2)]},
        headers=basic("bob", "y"),
    )
    assert [item["wb_user_id"] for item in res.json()["res"]] == ["bob", "bob"]
    assert "mallory" not in {row.wb_user_id for row in engine.rows(PROJECT)}


def test_configured_keys(engine: Engine) -> None:
    app = create_app(engine, api_keys={"k1": "alice", "k2": None})
    with TestClient(app) as client:
        assert user_of(client, basic("api", "k1")) == "alice"
        assert user_of(client, basic("someone", "k1"), wb_user_id="x") == "alice"
        assert user_of(client, basic("api", "k2")) == derived_user_id("k2")
        assert user_of(client, basic("carol", "k2")) == "carol"
        for headers in ({}, basic("api", "wrong"), basic("api", ""), {"Authorization": "Basic ?"}):
            for route in ("/feedback/create", "/feedback/stats", "/refengine/clock"):
                res = client.post(route, json={}, headers=headers)
                assert res.status_code == 401, (route, headers)
                assert res.headers["www-authenticate"] == "Basic"
                assert res.json()["detail"]
        assert len(engine) == 4
        assert client.get("/health").status_code == 200  # no auth on liveness


def test_401_comes_before_body_validation(engine: Engine) -> None:
    with TestClient(create_app(engine, api_keys={"k": None})) as client:
        assert client.post("/feedback/create", content=b"{bad").status_code == 401


@pytest.mark.parametrize(
    "body", [b"{bad", b"[]", json.dumps(note(wb_user_id=7)).encode(), b"x" * 100_000]
)
def test_401_whatever_the_body_and_the_body_is_never_read(engine: Engine, body: bytes) -> None:
    import asyncio

    app = create_app(engine, api_keys={"k": None})
    reads: list[object] = []
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        reads.append(body)
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/feedback/create",
        "raw_path": b"/feedback/create",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 401
    assert reads == []  # refused on its headers alone
    assert len(engine) == 0


def test_unknown_fields_over_http(engine: Engine) -> None:
    extra = {"not_a_field": 1}
    with TestClient(create_app(engine)) as client:  # default: reject, as published
        res = client.post("/feedback/create", json=note(**extra))
        assert res.status_code == 422
        assert res.json()["detail"][0]["loc"] == ["body", "not_a_field"]
    ignoring = Engine(clock=ManualClock(START), unknown_fields="ignore")
    with TestClient(create_app(ignoring)) as client:
        assert client.post("/feedback/create", json=note(**extra)).status_code == 200
        batch = {"batch": [note(1, **extra), note(2)], **extra}
        assert client.post("/feedback/batch/create", json=batch).status_code == 200
        stats = {
            "project_id": PROJECT,
            "start": "2024-05-01T00:00:00Z",
            "end": "2024-05-02T00:00:00Z",
            "metrics": [{"json_path": "score", "aggregations": ["max"], **extra}],
            **extra,
        }
        res = client.post("/feedback/stats", json=stats)
        assert res.status_code == 200, res.text
        assert res.json()["window_stats"] == {"score": {"max": 0.5}}
        # only unknown fields go: a known field that does not fit is still a 422
        assert client.post("/feedback/create", json=note(payload=3, **extra)).status_code == 422
    assert len(ignoring) == 3
    assert all("not_a_field" not in row.payload for row in ignoring.rows(PROJECT))


# --- clock control --------------------------------------------------------------------


def test_clock_control(client: TestClient) -> None:
    assert client.get("/refengine/clock").json() == {
        "now": "2024-05-01T12:00:00+00:00",
        "manual": True,
    }
    res = client.post("/refengine/clock", json={"now": "2024-06-01T08:30:00+02:00"})
    assert res.json() == {"now": "2024-06-01T06:30:00+00:00", "manual": True}
    assert client.post("/feedback/create", json=note()).json()["created_at"] == (
        "2024-06-01T06:30:00+00:00"
    )
    assert client.post("/refengine/clock", json={"now": "yesterday"}).status_code == 422
    assert client.post("/refengine/clock", json={}).status_code == 422


def test_clock_control_needs_manual_clock() -> None:
    with TestClient(create_app(Engine(clock=SystemClock()))) as client:
        res = client.post("/refengine/clock", json={"now": "2024-06-01T00:00:00Z"})
        assert res.status_code == 409
        assert "--clock" in res.json()["reason"]
        assert client.get("/refengine/clock").json()["manual"] is False


# --- fuzz: nothing answers 500 --------------------------------------------------------

ROUTES = ["/feedback/create", "/feedback/batch/create", "/feedback/aggregate", "/feedback/stats"]
ROUTES_ALL = [*ROUTES, "/refengine/clock"]

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(
        [
            "2024-05-01T12:00:00Z",
            "9999-12-31T23:59:59-01:00",
            "0001-01-01T00:00:00+01:00",
            PROJECT,
            f"{BASE}/object/x:1",
            f"{BASE}/op/x:1",
            f"{BASE}/call/c",
            f"{BASE}/agent_turn/t",
            "wandb.agent_monitor",
            "wandb.runnable.x",
            "wandb.annotation.x",
            "wandb.reaction.1",
            "wandb.note.1",
            "output.score",
            "UTC",
            "Asia/Kolkata",
        ]
    )
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)

FIELDS = {
    "/feedback/create": [*note(), "scorer_ratings", "runnable_ref", "span_status_code"],
    "/feedback/aggregate": [
        "project_id",
        "after_ms",
        "before_ms",
        "time_bucket_seconds",
        "rating_min",
        "group_by",
        "tags",
        "scorer_ids",
    ],
    "/feedback/stats": [
        "project_id",
        "start",
        "end",
        "granularity",
        "timezone",
        "metrics",
        "trigger_ref",
    ],
    "/refengine/clock": ["now"],
}
VALID = {
    "/feedback/create": note(),
    "/feedback/batch/create": {"batch": [note()]},
    "/feedback/aggregate": {"project_id": PROJECT, "after_ms": 0, "before_ms": START_MS + 1},
    "/feedback/stats": {
        "project_id": PROJECT,
        "start": "2024-05-01T00:00:00Z",
        "metrics": [{"json_path": "output.score", "percentiles": [50]}],
    },
    "/refengine/clock": {"now": "2024-05-01T12:00:00Z"},
}


@st.composite
def near_valid(draw: st.DrawFn, route: str) -> Any:
    """A valid body with a few fields replaced, dropped or added."""
    body = json.loads(json.dumps(VALID[route]))
    target = body["batch"][0] if route == "/feedback/batch/create" else body
    fields = FIELDS["/feedback/create" if route == "/feedback/batch/create" else route]
    for _ in range(draw(st.integers(1, 3))):
        name = draw(st.sampled_from(fields))
        if draw(st.booleans()):
            target[name] = draw(json_values)
        else:
            target.pop(name, None)
    if route == "/feedback/stats" and draw(st.booleans()):
        body["metrics"] = [
            {
                "json_path": draw(json_scalars),
                "value_type": draw(st.sampled_from(["numeric", "boolean", "categorical", "x"])),
                "aggregations": draw(st.lists(st.sampled_from(["sum", "count", "p", 1]))),
                "percentiles": draw(st.lists(json_scalars, max_size=2)),
            }
        ]
    return body


def raw_bodies() -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=64),
        json_values.map(lambda v: json.dumps(v).encode()),
        st.sampled_from([b"NaN", b'{"a": Infinity}', b"1e999", b"{" * 3000, b'"\\ud800"']),
    )


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_fuzz_never_500(data: st.DataObject) -> None:
    engine = Engine(clock=ManualClock(START))
    keys = data.draw(st.sampled_from([None, {"k": None}, {"k": "alice"}]))
    # raise_server_exceptions=True: an unhandled exception fails the test outright.
    with TestClient(create_app(engine, api_keys=keys)) as client:
        for _ in range(3):
            route = data.draw(st.sampled_from(ROUTES_ALL))
            headers = {
                "content-type": data.draw(
                    st.sampled_from(["application/json", "text/plain", "application/x+json"])
                )
            }
            headers.update(
                data.draw(st.sampled_from([{}, basic("api", "k"), basic("u", "x"), {"x": "y"}]))
            )
            kind = data.draw(st.sampled_from(["near", "json", "raw"]))
            if kind == "near":
                content = json.dumps(data.draw(near_valid(route))).encode()
            elif kind == "json":
                content = json.dumps(data.draw(json_values)).encode()
            else:
                content = data.draw(raw_bodies())
            res = client.post(route, content=content, headers=headers)
            assert res.status_code in (200, 400, 401, 409, 422), (route, content, res.text)
            body = res.json()
            if res.status_code == 400:
                assert set(body) == {"reason"}
            if res.status_code == 422:
                assert all(set(item) == {"loc", "msg", "type"} for item in body["detail"])


# --- live server ----------------------------------------------------------------------


def test_live_server_concurrent_creates() -> None:
    """8 client threads x 500 creates at a real `refengine serve` process; afterwards
    every row is there exactly once (each row carries a unique tag, and the aggregate
    counts every tag once)."""
    threads_n, per_thread = 8, 500
    code = "import sys; from refengine.cli import main; sys.exit(main(sys.argv[1:]))"
    argv = ["serve", "--port", "0", "--clock", "2024-05-01T12:00:00Z", "--log-level", "warning"]
    proc = subprocess.Popen([sys.executable, "-c", code, *argv], stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()  # "refengine serving http://127.0.0.1:PORT (...)"
        match = re.search(r"http://127\.0\.0\.1:\d+", first)
        assert match, first
        base_url = match.group(0)
        # Keep draining the server's stderr so a chatty log can never fill the pipe.
        threading.Thread(target=proc.stderr.read, daemon=True).start()
        errors: list[str] = []

        def worker(t: int) -> None:
            try:
                with httpx.Client(base_url=base_url, timeout=60.0) as http:
                    for i in range(per_thread):
                        body = monitor(0.5, [f"t{t}-{i}"], id=f"t{t}-{i}")
                        res = http.post("/feedback/create", json=body)
                        if res.status_code != 200 or res.json()["id"] != f"t{t}-{i}":
                            errors.append(f"{t}/{i}: {res.status_code} {res.text}")
            except Exception as exc:
                errors.append(f"thread {t}: {exc!r}")

        workers = [threading.Thread(target=worker, args=(t,)) for t in range(threads_n)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(timeout=300)
        assert not any(w.is_alive() for w in workers)
        assert errors == []
        with httpx.Client(base_url=base_url, timeout=60.0) as http:
            res = http.post(
                "/feedback/aggregate",
                json={"project_id": PROJECT, "after_ms": 0, "before_ms": START_MS + 1},
            )
        assert res.status_code == 200, res.text
        [bucket] = res.json()["buckets"]
        assert bucket["total_count"] == threads_n * per_thread, bucket["total_count"]
        expected = {f"t{t}-{i}": 1 for t in range(threads_n) for i in range(per_thread)}
        assert bucket["tag_counts"] == expected
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


def test_background_server_in_process() -> None:
    engine = Engine(clock=ManualClock(START))
    with (
        BackgroundServer(create_app(engine)) as server,
        httpx.Client(base_url=server.base_url, timeout=30.0) as http,
    ):
        for i in range(20):
            assert http.post("/feedback/create", json=note(i, id=f"n{i}")).status_code == 200
    assert sorted(row.id for row in engine.rows(PROJECT)) == sorted(f"n{i}" for i in range(20))
    engine.check_invariants()


def test_listening_socket_queues_connections_before_serving() -> None:
    import socket

    from refengine.server import listening_socket

    sock = listening_socket("127.0.0.1", 0)
    try:
        port = sock.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass  # accepted into the backlog: nothing serves it yet
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        with pytest.raises(OSError):
            listening_socket("127.0.0.1", port)  # taken, and listening: no reuse
    finally:
        sock.close()
    with pytest.raises(OverflowError):
        listening_socket("127.0.0.1", 70000)


def test_docs_page_needs_no_network(engine: Engine) -> None:
    # With keys configured too: the documentation is public, like /health.
    with TestClient(create_app(engine, api_keys={"k": None})) as client:
        page = client.get("/docs")
        assert page.status_code == 200
        assets = re.findall(r"""(?:src|href)=['"]([^'"]+)['"]""", page.text)
        scripts_and_styles = [a for a in assets if a.endswith((".js", ".css"))]
        assert len(scripts_and_styles) == 2, assets
        for url in assets:
            assert url.startswith("/"), f"/docs loads {url} from elsewhere"
            res = client.get(url)
            assert res.status_code == 200, url
        assert "SwaggerUIBundle" in client.get(next(a for a in assets if a.endswith(".js"))).text
        assert client.get("/docs/oauth2-redirect").status_code == 200
        assert client.get("/openapi.json").status_code == 200
    with TestClient(create_app(engine)) as client:
        assert client.get("/redoc").status_code == 404  # one documentation page, not two


# --- query, purge, replace, payload_schema, server_info ---------------------------------


def test_query_route_renders_rows_and_total_count(client: TestClient) -> None:
    for i in range(3):
        assert client.post("/feedback/create", json=note(i, id=f"n{i}")).status_code == 200
    res = client.post(
        "/feedback/query",
        json={
            "project_id": PROJECT,
            "query": {"$expr": {"$gte": [{"$getField": "payload.i"}, {"$literal": 1}]}},
            "sort_by": [{"field": "payload.i", "direction": "desc"}],
            "limit": 1,
        },
    )
    assert res.status_code == 200
    body = res.json()
    assert body["total_count"] == 2
    (row,) = body["result"]
    assert row["id"] == "n2"
    assert row["created_at"] == "2024-05-01T12:00:00+00:00"
    assert row["payload"] == {"score": 0.5, "i": 2}


def test_query_route_errors(client: TestClient) -> None:
    res = client.post("/feedback/query", json={"project_id": PROJECT, "limit": -1})
    assert (res.status_code, res.json()) == (400, {"reason": "Limit must be non-negative"})
    res = client.post("/feedback/query", json={"project_id": PROJECT, "query": {"$expr": {}}})
    assert res.status_code == 422
    deep = '{"$not":[' * 5000 + '{"$literal":1}' + "]}" * 5000
    body = '{"project_id":"p","query":{"$expr":' + deep + "}}"
    res = client.post("/feedback/query", content=body, headers={"content-type": "application/json"})
    assert res.status_code == 422


def test_purge_and_replace_routes(client: TestClient, engine: Engine) -> None:
    client.post("/feedback/create", json=note(1, id="a"))
    client.post("/feedback/create", json=note(2, id="b"))
    by_id = {"$eq": [{"$getField": "id"}, {"$literal": "a"}]}
    res = client.post("/feedback/purge", json={"project_id": PROJECT, "query": {"$expr": by_id}})
    assert (res.status_code, res.json()) == (200, {})
    res = client.post("/feedback/replace", json={**note(3), "feedback_id": "b", "wb_user_id": "x"})
    assert res.status_code == 200
    assert res.json()["wb_user_id"] == "refengine"  # the authenticated user wins
    assert [row.payload["i"] for row in engine.rows(PROJECT)] == [3]
    bad = {"$in": [{"$getField": "id"}, []]}
    res = client.post("/feedback/purge", json={"project_id": PROJECT, "query": {"$expr": bad}})
    assert res.status_code == 400


def test_payload_schema_and_server_info_routes(client: TestClient) -> None:
    client.post("/feedback/create", json=note(1))
    res = client.post(
        "/feedback/payload_schema",
        json={
            "project_id": PROJECT,
            "start": "2024-05-01T00:00:00Z",
            "end": "2024-05-02T00:00:00Z",
        },
    )
    assert res.json() == {
        "paths": [
            {"json_path": "i", "value_type": "numeric"},
            {"json_path": "score", "value_type": "numeric"},
        ]
    }
    info = client.get("/server_info").json()
    assert info["min_required_weave_python_version"] == "0.0.0"
    doc = client.get("/openapi.json").json()
    assert set(doc["paths"]) >= {
        "/feedback/query",
        "/feedback/purge",
        "/feedback/replace",
        "/feedback/payload_schema",
        "/server_info",
    }


# --- the direct path answers exactly as the FastAPI routes do ---------------------------

_AUTH = {"Authorization": "Basic " + base64.b64encode(b"api:k1").decode()}
_JSON = {"content-type": "application/json"}
_CALL = "weave:///acme/bot/call/c1"
_CUSTOM = {"project_id": "acme/bot", "weave_ref": _CALL, "feedback_type": "custom", "payload": {}}
_SAME_PATH_REQUESTS: list[tuple[str, str, Any, dict[str, str]]] = [
    ("GET", "/health", None, {}),
    ("POST", "/feedback/create", {**_CUSTOM, "payload": {"score": 0.5}}, _JSON),
    ("POST", "/feedback/create", {**_CUSTOM, "wb_user_id": "mallory"}, {**_JSON, **_AUTH}),
    ("POST", "/feedback/create", {**_CUSTOM, "span_status_code": "BAD"}, _JSON),  # 400
    ("POST", "/feedback/create", {**_CUSTOM, "payload": {"deep": [[[[[[[[1]]]]]]]]}}, _JSON),
    ("POST", "/feedback/create", {**_CUSTOM, "surprise": 1}, _JSON),  # 422, FastAPI's
    ("POST", "/feedback/create", "not an object", _JSON),
    ("POST", "/feedback/create", _CUSTOM, {"content-type": "text/plain"}),
    ("POST", "/feedback/batch/create", {"batch": [_CUSTOM, _CUSTOM]}, _JSON),
    ("POST", "/feedback/batch/create", {"batch": [_CUSTOM] * 10_001}, _JSON),  # 400
    (
        "POST",
        "/feedback/aggregate",
        {"project_id": "acme/bot", "after_ms": 0, "before_ms": 1},
        _JSON,
    ),
    (
        "POST",
        "/feedback/aggregate",
        {
            "project_id": "acme/bot",
            "after_ms": 1714500000000,
            "before_ms": 1714600000000,
            "time_bucket_seconds": 3600,
        },
        _JSON,
    ),
    ("POST", "/feedback/aggregate", {"project_id": "acme/bot"}, _JSON),  # 422
    (
        "POST",
        "/feedback/stats",
        {
            "project_id": "acme/bot",
            "start": "2024-05-01T11:00:00Z",
            "metrics": [{"json_path": "score", "percentiles": [50]}],
        },
        _JSON,
    ),
    ("POST", "/feedback/stats", {"project_id": "acme/bot", "start": "2024-01-01T00:00:00Z"}, _JSON),
    (
        "POST",
        "/feedback/stats",
        {
            "project_id": "acme/bot",
            "start": "2024-05-01T11:00:00Z",
            "metrics": [{"json_path": "a-b"}],
        },
        _JSON,
    ),
    (
        "POST",
        "/feedback/stats",
        {"project_id": "acme/bot", "start": "9999-12-31T23:59:59-01:00"},
        _JSON,
    ),
]


def test_the_direct_path_answers_byte_for_byte_as_the_routes_do(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A query string sends a request through FastAPI's routing (which ignores it);
    # without one, the gate answers it directly. Two engines on the same clock and
    # ids see the same requests in the same order.
    def app() -> TestClient:
        numbers = iter(range(10**6))
        engine = Engine(
            clock=ManualClock("2024-05-01T12:00:00Z"), id_factory=lambda: f"id-{next(numbers)}"
        )
        return TestClient(create_app(engine, api_keys={"k1": "alice", "k2": None}))

    answered: list[str] = []
    direct_answer = server._Gate._direct

    async def counted(self: Any, endpoint: Any, scope: Any, body: bytes) -> Any:
        answer = await direct_answer(self, endpoint, scope, body)
        if answer is not None:
            answered.append(scope["path"])
        return answer

    monkeypatch.setattr(server._Gate, "_direct", counted)
    with app() as direct, app() as routed:
        for method, path, body, extra in _SAME_PATH_REQUESTS:
            content = None if body is None else json.dumps(body)
            headers = {**_AUTH, **extra}
            a = direct.request(method, path, content=content, headers=headers)
            b = routed.request(method, path + "?via=fastapi", content=content, headers=headers)
            assert (a.status_code, a.content) == (b.status_code, b.content), (path, body)
            assert a.headers.items() == b.headers.items(), (path, body)
    # every request the models accept, none of the others (FastAPI words their 422)
    assert len(answered) == 11


class CoreOnly:
    """A backend with only the four core methods (as the ClickHouse one is so far)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.clock = engine.clock
        self.user_id = engine.user_id
        self.unknown_fields = engine.unknown_fields
        self.feedback_create = engine.feedback_create
        self.feedback_create_batch = engine.feedback_create_batch
        self.feedback_aggregate = engine.feedback_aggregate
        self.feedback_stats = engine.feedback_stats


def test_a_backend_without_the_rest_of_the_family_answers_501(engine: Engine) -> None:
    with TestClient(create_app(CoreOnly(engine))) as client:  # type: ignore[arg-type]
        assert client.post("/feedback/create", json=note(0)).status_code == 200
        res = client.post("/feedback/query", json={"project_id": PROJECT})
        assert res.status_code == 501
        assert res.json() == {"reason": "CoreOnly does not implement feedback_query yet"}
        assert client.get("/server_info").status_code == 501
    assert len(engine) == 1
