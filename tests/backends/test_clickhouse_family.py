"""The rest of the family on the ClickHouse backend (chdb): query, purge, replace,
payload_schema and server_info answer as the in-memory engine does on the same rows
(or as production does, where the spec lists a deviation), refuse exactly what it
refuses, write all or nothing, and are served over HTTP. Skipped as a whole when the
clickhouse extra is not installed."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import ValidationError

pytest.importorskip("chdb")

from refengine import Engine, InvalidRequest, ManualClock
from refengine.backends.clickhouse import ChdbConnection, ClickHouseBackend
from refengine.conformance.targets import counting_ids
from refengine.errors import BackendUnavailable


@pytest.fixture(scope="module")
def backend() -> Iterator[ClickHouseBackend]:
    # chdb embeds one ClickHouse per process: one temporary database for the module,
    # each test in projects of its own.
    b = ClickHouseBackend(ChdbConnection(max_threads=1), clock=ManualClock("2024-05-01T12:00:00Z"))
    yield b
    b.close()


def get(field: str) -> dict[str, Any]:
    return {"$getField": field}


def lit(value: Any) -> dict[str, Any]:
    return {"$literal": value}


class Pair:
    """The engine and the backend, fed the same writes at the same clock."""

    def __init__(self, backend: ClickHouseBackend) -> None:
        self.project = f"acme/{uuid.uuid4().hex}"
        self.clock = ManualClock("2024-05-01T12:00:00.123Z")
        backend.clock = self.clock
        backend._id_factory = counting_ids()
        self.backend = backend
        self.engine = Engine(clock=self.clock, id_factory=counting_ids())

    def create(self, advance_ms: int = 1000, **fields: Any) -> None:
        body = {
            "project_id": self.project,
            "weave_ref": f"weave:///{self.project}/call/c1",
            "feedback_type": "custom",
            "payload": {},
            **fields,
        }
        for target in (self.engine, self.backend):
            target.feedback_create(body)
        self.clock.advance(seconds=advance_ms / 1000)

    def both(self, method: str, request: dict[str, Any]) -> tuple[Any, Any]:
        """Each side's answer, or its refusal as ``(type, message)``."""
        out = []
        for target in (self.engine, self.backend):
            try:
                out.append(getattr(target, method)({"project_id": self.project, **request}))
            except InvalidRequest as error:
                out.append((InvalidRequest, error.reason))
            except ValidationError as error:
                out.append((ValidationError, error.errors()[0]["msg"]))
        return out[0], out[1]

    def same(self, method: str, request: dict[str, Any]) -> Any:
        ours, theirs = self.both(method, request)
        assert theirs == ours, request
        return ours


@pytest.fixture
def rows(backend: ClickHouseBackend) -> Pair:
    pair = Pair(backend)
    pair.create(
        id="a",
        feedback_type="wandb.runnable.s",
        runnable_ref=f"weave:///{pair.project}/object/s:v1",
        payload={"score": 5.0, "flag": True, "note": "Hello", "output": 1, "big": 1e6},
        scorer_tags=["Nsfw", "ok"],
        scorer_ratings={"_rating_": 0.5, "z": 1e6},
        scorer_tag_reasons={"ok": "fine"},
        span_status_code="OK",
    )
    pair.create(
        id="b",
        payload={"score": 0.9, "flag": False, "s": "007", "nested": {"x": [1, "é"]}},
        span_status_code="ERROR",
        creator="someone",
    )
    pair.create(id="c", advance_ms=0, payload={"score": "high", "none": None, "big": 100000.0})
    pair.create(id="d", advance_ms=0, payload={'we"ird': 1, "a.b": 2, "arr": [[1], {"k": "v"}]})
    pair.create(id="a", payload={"score": -0.0, "flag": 1})  # a repeated id
    return pair


EXPRESSIONS: list[dict[str, Any]] = [
    {"$eq": [get("payload.score"), lit(5)]},
    {"$gte": [get("payload.score"), lit(0)]},
    {"$gt": [get("payload.score"), lit(0.5)]},
    {"$lt": [get("payload.score"), lit("5")]},
    {"$eq": [get("payload.flag"), lit(True)]},
    {"$eq": [get("payload.flag"), lit(False)]},
    {"$eq": [get("payload.s"), lit(7)]},
    {"$eq": [get("payload.score"), lit("5")]},
    {"$eq": [get("payload.score"), lit("-0")]},
    {"$eq": [get("payload.none"), lit("null")]},
    {"$eq": [get("payload.missing"), lit("")]},
    {"$eq": [get("payload.big"), lit("1e+05")]},
    {"$eq": [get("payload.big"), lit("1e+06")]},
    {"$eq": [get("payload.nested.x.1"), lit("é")]},
    {"$eq": [get("payload.nested"), lit('{"x":[1,"é"]}')]},
    {"$eq": [get("payload.a\\.b"), lit(2)]},
    {"$eq": [lit(5), get("payload.score")]},
    {"$eq": [get("payload.score"), get("payload.flag")]},
    {"$eq": [get("payload.score"), lit(None)]},
    {"$in": [get("payload.score"), [lit(5), lit(0.9)]]},
    {"$in": [get("payload.score"), [lit("high"), lit(5)]]},
    {"$in": [get("payload.flag"), [lit(True)]]},
    {"$in": [get("payload.score"), []]},
    {"$not": [{"$in": [get("scorer_ratings._rating_"), []]}]},
    {"$in": [get("id"), [lit("a"), lit("c"), lit(None)]]},
    {"$in": [get("span_status_code"), [lit("OK"), lit(2)]]},
    {"$in": [get("created_at"), [lit(1714564800.123)]]},
    {"$eq": [get("scorer_ratings._rating_"), lit("0.5")]},
    {"$gte": [get("scorer_ratings._rating_"), lit(0)]},
    {"$gt": [get("scorer_ratings.z"), lit(1)]},
    {"$eq": [get("scorer_tag_reasons.ok"), lit("fine")]},
    {"$eq": [{"$convert": {"input": get("payload.flag"), "to": "bool"}}, lit(1)]},
    {"$gt": [{"$convert": {"input": get("payload.score"), "to": "double"}}, lit(1)]},
    {"$eq": [{"$convert": {"input": get("payload.s"), "to": "int"}}, lit(7)]},
    {"$eq": [{"$convert": {"input": get("payload.nope"), "to": "exists"}}, lit(True)]},
    {"$eq": [{"$convert": {"input": get("scorer_ratings.q"), "to": "exists"}}, lit(False)]},
    {"$eq": [{"$convert": {"input": get("span_status_code"), "to": "string"}}, lit("OK")]},
    {"$eq": [{"$convert": {"input": get("created_at"), "to": "string"}}, lit("x")]},
    {"$eq": [{"$size": get("scorer_tags")}, lit(2)]},
    {"$eq": [{"$size": get("scorer_ratings")}, lit(0)]},
    {"$contains": {"input": get("scorer_tags"), "substr": lit("ok")}},
    {"$contains": {"input": get("scorer_tags"), "substr": lit("o")}},
    {"$contains": {"input": get("scorer_tags"), "substr": lit("NSFW"), "case_insensitive": True}},
    {"$contains": {"input": get("payload.note"), "substr": lit("ell")}},
    {"$contains": {"input": get("payload.note"), "substr": lit("")}},
    {"$contains": {"input": get("payload.nested"), "substr": lit("É"), "case_insensitive": True}},
    {"$contains": {"input": get("payload_dump"), "substr": lit("007")}},
    {"$contains": {"input": get("creator"), "substr": lit("some")}},
    {"$eq": [get("created_at"), lit("2024-05-01T12:00:01.123999Z")]},
    {"$lt": [get("created_at"), lit(1714564801)]},
    {"$gt": [get("created_at"), lit("2024-05-01")]},
    {"$eq": [get("created_at"), lit(True)]},
    {"$eq": [get("span_status_code"), lit("OK")]},
    {"$eq": [get("span_status_code"), lit(2)]},
    {"$eq": [get("span_status_code"), lit("BOGUS")]},
    {"$not": [{"$eq": [get("span_status_code"), lit("BOGUS")]}]},
    {"$not": [{"$eq": [get("span_status_code"), lit(None)]}]},
    {"$not": [{"$in": [get("span_status_code"), [lit("BOGUS"), lit(None)]]}]},
    {"$eq": [get("creator"), lit("someone")]},
    {"$not": [{"$eq": [get("creator"), lit("someone")]}]},
    {"$not": [{"$gt": [get("scorer_ratings._rating_"), lit(0)]}]},
    {"$or": [{"$gt": [get("scorer_ratings._rating_"), lit(0)]}, {"$eq": [lit(1), lit(1)]}]},
    {"$and": [{"$eq": [get("id"), lit("a")]}, {"$eq": [get("payload.flag"), lit(1)]}]},
    {"$and": [{"$eq": [get("id"), lit("a")]}]},
    {"$eq": [lit("1"), lit("1")]},
    {"$eq": [lit(1), lit(1.0)]},
    # numbers as toString prints them (not as JSON_VALUE does), literals in a mixed $in
    {"$eq": [{"$convert": {"input": get("scorer_ratings.z"), "to": "string"}}, lit("1000000")]},
    {"$eq": [{"$convert": {"input": get("payload.big"), "to": "double"}}, lit(1e6)]},
    {"$eq": [{"$convert": {"input": lit(1e-7), "to": "string"}}, lit("1e-7")]},
    {"$eq": [{"$convert": {"input": lit(1e21), "to": "string"}}, lit("1e21")]},
    {"$eq": [{"$convert": {"input": lit(False), "to": "string"}}, lit("false")]},
    {"$eq": [{"$convert": {"input": {"$eq": [lit(1), lit(1)]}, "to": "string"}}, lit("1")]},
    {"$in": [get("payload.score"), [lit("high"), lit(5.0)]]},
    {"$in": [get("payload.score"), [lit("5."), lit(5.0), lit(True)]]},
    {"$in": [get("payload.flag"), [lit("x"), lit(True)]]},
    {"$in": [get("scorer_tag_reasons.ok"), [lit("fine"), lit(1)]]},
    # refusals: the same message from both
    {"$eq": [get('payload.we"ird'), lit(1)]},
    {"$eq": [get("payload.a..b"), lit(1)]},
    {"$eq": [get("payload.a\\b"), lit(1)]},
    {"$eq": [get("feedback_type"), lit(5)]},
    {"$eq": [get("scorer_ratings._rating_"), lit("high")]},
    {"$eq": [get("created_at"), lit("yesterday")]},
    {"$contains": {"input": get("payload.note"), "substr": lit(5)}},
    {"$eq": [{"$size": get("id")}, lit(0)]},
    {"$containsToken": {"input": get("id"), "substr": lit("a")}},
    {"$and": []},
]


@pytest.mark.parametrize("expr", EXPRESSIONS, ids=lambda e: str(e)[:60])
def test_every_expression_matches_the_same_rows(rows: Pair, expr: dict[str, Any]) -> None:
    rows.same("feedback_query", {"query": {"$expr": expr}, "fields": ["id"]})


FIELDS = [
    [],
    ["id", "payload.score", "payload.none", "payload.nested", "payload.nested.x.1", "payload.big"],
    ["payload", "payload_dump", "created_at", "creator", "span_status_code"],
    ["scorer_tags", "scorer_ratings", "scorer_tag_reasons", "scorer_ratings._rating_"],
    ["scorer_tag_reasons.ok", "scorer_ratings.z", "payload.a\\.b", "payload.arr.1"],
    ["count(*)"],
    ["count(*)", "id"],
    ["nope"],
    ["id", "payload."],
]


@pytest.mark.parametrize("fields", FIELDS, ids=str)
def test_projections_are_the_engines(rows: Pair, fields: list[str]) -> None:
    by_id = [{"field": "id", "direction": "asc"}]
    rows.same("feedback_query", {"fields": fields, "sort_by": by_id})


SORTS = [
    [{"field": "payload.score", "direction": "asc"}],
    [{"field": "payload.score", "direction": "desc"}],
    [{"field": "span_status_code", "direction": "asc"}],
    [{"field": "scorer_ratings._rating_", "direction": "desc"}],
    [{"field": "creator", "direction": "asc"}],
    [{"field": "scorer_tags", "direction": "desc"}],
    [{"field": "scorer_ratings", "direction": "asc"}],
    [{"field": "created_at", "direction": "desc"}, {"field": "payload.flag", "direction": "asc"}],
    [{"field": "nope", "direction": "asc"}],
    [{"field": 'payload.we"ird', "direction": "asc"}],
]


@pytest.mark.parametrize("sort_by", SORTS, ids=str)
@pytest.mark.parametrize("page", [{}, {"limit": 2}, {"limit": 2, "offset": 2}, {"offset": 4}])
def test_order_and_pages_are_the_engines(
    rows: Pair, sort_by: list[dict[str, str]], page: dict[str, int]
) -> None:
    # Ties (c and d share a millisecond, a repeats) keep store order on both.
    rows.same("feedback_query", {"fields": ["id", "payload"], "sort_by": sort_by, **page})


@pytest.mark.parametrize(
    "page", [{"limit": 0}, {"limit": 1}, {"offset": 1, "limit": 2}, {"limit": -1}, {"offset": -3}]
)
def test_store_order_and_total_count_without_sort_by(rows: Pair, page: dict[str, int]) -> None:
    res = rows.same("feedback_query", {"fields": ["id"], **page})
    if not isinstance(res, tuple):
        assert res.total_count == 5


def test_rows_of_a_burst_keep_insertion_order(backend: ClickHouseBackend) -> None:
    # One millisecond, inserted out of id order, in two batches: store order is
    # insertion order, on the backend as in the engine, after ClickHouse merges too.
    pair = Pair(backend)
    for n in (3, 1, 2):
        pair.create(advance_ms=0, id=f"r{n}")
    batch = {"batch": [{"project_id": pair.project, "weave_ref": "w", "feedback_type": "custom",
                        "payload": {}, "id": f"r{n}"} for n in (9, 0, 5)]}  # fmt: skip
    for target in (pair.engine, pair.backend):
        target.feedback_create_batch(batch)
    backend.connection.query(f"OPTIMIZE TABLE {backend.connection.table} FINAL", {})
    for offset in range(6):
        pair.same("feedback_query", {"fields": ["id"], "limit": 1, "offset": offset})


# --- purge -----------------------------------------------------------------------------


def _ids(target: Any, project: str) -> list[str]:
    res = target.feedback_query({"project_id": project, "fields": ["id"]})
    return [row["id"] for row in res.result]


def test_purge_removes_every_copy_and_nothing_else(rows: Pair, backend: ClickHouseBackend) -> None:
    other = Pair(backend)
    other.create(id="a")
    by_id = [{"$eq": [get("id"), lit(i)]} for i in ("a", "zzz")]
    assert rows.same("feedback_purge", {"query": {"$expr": {"$or": by_id}}}).model_dump() == {}
    assert _ids(backend, rows.project) == ["b", "c", "d"]
    assert _ids(backend, other.project) == ["a"]  # another project's "a" stays
    window = {"after_ms": 0, "before_ms": 2**41}
    ours, theirs = rows.both("feedback_aggregate", window)
    assert theirs == ours and theirs.buckets[0].total_count == 3


@pytest.mark.parametrize(
    "expr",
    [
        {"$in": [get("id"), [lit("a")]]},
        {"$eq": [lit("a"), get("id")]},
        {"$or": [{"$eq": [get("id"), lit("a")]}, {"$in": [get("id"), []]}]},
        {"$or": [{"$eq": [get("id"), lit("a")]}, {"$eq": [get("id"), lit(5)]}]},
        {"$or": []},
    ],
    ids=str,
)
def test_a_refused_purge_removes_nothing(rows: Pair, expr: dict[str, Any]) -> None:
    ours, theirs = rows.both("feedback_purge", {"query": {"$expr": expr}})
    assert theirs == ours and ours[0] is InvalidRequest
    assert _ids(rows.backend, rows.project) == ["a", "b", "c", "d", "a"]


def test_a_failing_purge_is_a_503_and_changes_nothing(rows: Pair) -> None:
    broken = ClickHouseBackend(_Failing(rows.backend.connection, "DELETE"))
    purge = {"project_id": rows.project, "query": {"$expr": {"$eq": [get("id"), lit("a")]}}}
    with pytest.raises(BackendUnavailable, match="refused"):
        broken.feedback_purge(purge)
    assert _ids(rows.backend, rows.project) == ["a", "b", "c", "d", "a"]


# --- replace ---------------------------------------------------------------------------


def _replacement(project: str, **fields: Any) -> dict[str, Any]:
    return {
        "project_id": project,
        "weave_ref": f"weave:///{project}/call/c1",
        "feedback_type": "custom",
        "payload": {"v": 9},
        **fields,
    }


def test_replace_is_the_engines(rows: Pair) -> None:
    for extra in ({"feedback_id": "a"}, {"feedback_id": "b", "id": "b"}, {"feedback_id": "zz"}):
        ours, theirs = rows.both("feedback_replace", _replacement(rows.project, **extra))
        assert theirs == ours
    rows.same("feedback_query", {"fields": ["id", "payload", "created_at"]})


@pytest.mark.parametrize(
    "extra",
    [
        {"feedback_type": "wandb.reaction.1", "payload": {"emoji": "two"}},  # a late create step
        {"annotation_ref": "weave:///x/y/object/n:v1"},  # an early one
        {"payload": {"x": float("nan")}},
    ],
    ids=str,
)
def test_a_refused_replace_removes_nothing(rows: Pair, extra: dict[str, Any]) -> None:
    request = _replacement(rows.project, feedback_id="a", **extra)
    ours, theirs = rows.both("feedback_replace", request)
    assert theirs == ours and ours[0] is InvalidRequest
    assert _ids(rows.backend, rows.project) == ["a", "b", "c", "d", "a"]


def test_replace_without_feedback_id_is_a_422(backend: ClickHouseBackend) -> None:
    with pytest.raises(ValidationError):
        backend.feedback_replace(_replacement("acme/x"))


def test_a_replace_whose_insert_fails_writes_the_old_rows_back(rows: Pair) -> None:
    before = rows.backend.feedback_query({"project_id": rows.project, "query": {"$expr":
        {"$eq": [get("id"), lit("a")]}}})  # fmt: skip
    connection = _Failing(rows.backend.connection, "INSERT", times=1)
    broken = ClickHouseBackend(connection, clock=rows.clock)
    with pytest.raises(BackendUnavailable, match="refused"):
        broken.feedback_replace(_replacement(rows.project, feedback_id="a"))
    assert connection.refused == 1  # the new row's insert; the write-back went through
    after = rows.backend.feedback_query({"project_id": rows.project, "query": {"$expr":
        {"$eq": [get("id"), lit("a")]}}})  # fmt: skip
    assert after == before  # every column of both copies, in store order
    assert sorted(_ids(rows.backend, rows.project)) == ["a", "a", "b", "c", "d"]


def test_a_replace_whose_inserts_all_fail_loses_the_old_row_as_documented(rows: Pair) -> None:
    # The guarantee's limit (clickhouse_family.replace): with the database refusing
    # every insert after the delete, the old rows cannot be written back.
    connection = _Failing(rows.backend.connection, "INSERT")
    broken = ClickHouseBackend(connection, clock=rows.clock)
    with pytest.raises(BackendUnavailable, match="refused"):
        broken.feedback_replace(_replacement(rows.project, feedback_id="a"))
    assert connection.refused == 2  # the new row, then the write-back
    assert _ids(rows.backend, rows.project) == ["b", "c", "d"]


def test_a_replace_whose_delete_fails_changes_nothing(rows: Pair) -> None:
    broken = ClickHouseBackend(_Failing(rows.backend.connection, "DELETE"), clock=rows.clock)
    with pytest.raises(BackendUnavailable):
        broken.feedback_replace(_replacement(rows.project, feedback_id="a"))
    assert _ids(rows.backend, rows.project) == ["a", "b", "c", "d", "a"]


class _Failing:
    """The module's connection, refusing statements that start with ``word``
    (``times`` of them, or all)."""

    def __init__(self, inner: Any, word: str, times: int | None = None) -> None:
        self.inner, self.name, self.table = inner, inner.name, inner.table
        self.word, self.times, self.refused = word, times, 0

    def query(self, statement: str, params: Any) -> Any:
        if statement.startswith(self.word) and (self.times is None or self.refused < self.times):
            self.refused += 1
            raise BackendUnavailable(f"{self.name} refused: {self.word}")
        return self.inner.query(statement, params)

    def close(self) -> None:
        pass


# --- payload schema and server info ----------------------------------------------------


def test_payload_schema_is_the_engines(backend: ClickHouseBackend) -> None:
    pair = Pair(backend)
    monitor = {"feedback_type": "wandb.agent_monitor", "call_ref": "weave:///e/p/call/c",
               "runnable_ref": "weave:///e/p/object/s:v1"}  # fmt: skip
    pair.create(payload={"old": 1}, trigger_ref="weave:///e/p/object/m:v1", **monitor)
    pair.create(payload={"new": "x"}, trigger_ref="weave:///e/p/object/m:v1", **monitor)
    pair.create(advance_ms=0, payload={"plain": True})
    pair.create(payload={"later": None})  # same millisecond: the later inserted is newest
    pair.create(payload={"a": {"b": [0.1], "c": None}, "d.e": 1, "f": [{"g": 1}], "h-i": 2},
                trigger_ref="weave:///e/p/object/t:v1", **monitor)  # fmt: skip
    window = {"start": "2024-05-01T00:00:00Z", "end": "2024-05-02T00:00:00Z"}
    for extra in (
        {},
        {"sample_limit": 1},
        {"sample_limit": 2},
        {"trigger_ref": "weave:///e/p/object/m:*"},
        {"trigger_ref": "weave:///e/p/object/m:v1"},
        {"feedback_type": "custom"},
        {"start": "2024-05-01T12:00:01.900Z", "end": "2024-05-01T12:00:02.100Z"},
        {"sample_limit": 0},
        {"end": "2024-04-30T00:00:00Z"},
    ):
        pair.same("feedback_payload_schema", {**window, **extra})
    assert pair.same("feedback_payload_schema", {"start": "2024-05-01T12:00:00Z"}).paths


def test_server_info_is_the_engines(backend: ClickHouseBackend) -> None:
    assert backend.server_info() == Engine().server_info()


def test_the_server_answers_the_family_endpoints(backend: ClickHouseBackend) -> None:
    from fastapi.testclient import TestClient

    from refengine.server import create_app

    pair = Pair(backend)
    pair.create(id="a", payload={"v": 1})
    client = TestClient(create_app(backend))
    by_a = {"$expr": {"$eq": [get("id"), lit("a")]}}
    res = client.post("/feedback/query", json={"project_id": pair.project, "fields": ["id"]})
    assert res.status_code == 200 and res.json() == {"result": [{"id": "a"}], "total_count": 1}
    res = client.post("/feedback/replace", json=_replacement(pair.project, feedback_id="a", id="a"))
    assert res.status_code == 200 and res.json()["payload"] == {"v": 9}
    pair.clock.advance(seconds=1)  # the window ends before now
    res = client.post(
        "/feedback/payload_schema",
        json={"project_id": pair.project, "start": "2024-05-01T00:00:00Z"},
    )
    paths = [{"json_path": "v", "value_type": "numeric"}]
    assert res.status_code == 200 and res.json() == {"paths": paths}
    res = client.post("/feedback/purge", json={"project_id": pair.project, "query": by_a})
    assert res.status_code == 200 and res.json() == {}
    res = client.post("/feedback/query", json={"project_id": pair.project, "query": {"$expr":
        {"$containsToken": {"input": get("id"), "substr": lit("a")}}}})  # fmt: skip
    assert res.status_code == 400 and "containsToken" in res.json()["reason"]
    res = client.get("/server_info")
    assert res.status_code == 200 and res.json()["min_required_weave_python_version"] == "0.0.0"
    assert _ids(backend, pair.project) == []
