"""The ClickHouse backend over HTTP (``clickhouse://``, through ``clickhouse-connect``),
against ``chdb_http.py``: ClickHouse's HTTP interface answered by chdb in a process of
its own. The same answers as the embedded connection, parameters bound exactly, and
every failure of the server — down, refusing, answering garbage, too slow — a 503
naming the server and never its password. Skipped without the clickhouse extra."""

from __future__ import annotations

import base64
import json
import math
import os
import re
import select
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("chdb")
pytest.importorskip("clickhouse_connect")

from refengine import Engine, ManualClock
from refengine.backends import clickhouse_sql as sql
from refengine.backends.clickhouse import (
    PIECE_BYTES,
    ChdbConnection,
    ClickHouseBackend,
    ClickHouseConnectConnection,
    Connection,
    connect,
    escaped_size,
    split_long_parameters,
)
from refengine.conformance.cases import CaseFile, load_catalogue
from refengine.conformance.runner import load_skips, run_catalogue
from refengine.conformance.targets import InProcessTarget, Outcome, counting_ids
from refengine.errors import BackendUnavailable

ROOT = Path(__file__).resolve().parents[2]
SKIPS = ROOT / "spec" / "skips" / "chdb.json"
SHIM = Path(__file__).with_name("chdb_http.py")
USER, PASSWORD, DATABASE = "tester", "s3cret:p@ss", "refengine_http"


@dataclass
class Shim:
    """A running ``chdb_http.py``."""

    port: int
    process: subprocess.Popen[str]

    def url(self, password: str = PASSWORD, database: str = DATABASE) -> str:
        quoted = urllib.request.quote(password, safe="")
        return f"clickhouse://{USER}:{quoted}@127.0.0.1:{self.port}/{database}"

    def fault(self, mode: str) -> None:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/__shim__/fault", data=mode.encode(), method="POST"
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200


@pytest.fixture(scope="module")
def shim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shim]:
    path = tmp_path_factory.mktemp("chdb-http")
    command = [sys.executable, str(SHIM), "--path", str(path / "db"),
               "--user", USER, "--password", PASSWORD, "--database", DATABASE,
               "--setting", "max_threads=1"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 120)
        line = process.stdout.readline() if ready else ""
        found = re.fullmatch(r"listening on (\d+)\n", line)
        assert found, f"the shim did not start: {line!r}"
        yield Shim(int(found.group(1)), process)
    finally:
        process.terminate()
        process.wait(timeout=60)


@pytest.fixture
def faults(shim: Shim) -> Iterator[Shim]:
    """The shim, back to normal after the test whatever fault it set."""
    try:
        yield shim
    finally:
        shim.fault("")


@pytest.fixture(scope="module")
def http_backend(shim: Shim) -> Iterator[ClickHouseBackend]:
    backend = ClickHouseBackend(
        ClickHouseConnectConnection(shim.url()), clock=ManualClock("2024-05-01T12:00:00Z")
    )
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def chdb_backend() -> Iterator[ClickHouseBackend]:
    # One thread, as the shim's server profile has it: every float sum added in one
    # order on both, so their answers can be compared exactly.
    connection = ChdbConnection(max_threads=1)
    backend = ClickHouseBackend(connection, clock=ManualClock("2024-05-01T12:00:00Z"))
    yield backend
    backend.close()


def _create(project: str, **fields: Any) -> dict[str, Any]:
    return {
        "project_id": project,
        "weave_ref": f"weave:///{project}/call/c1",
        "feedback_type": "custom",
        "payload": {},
        **fields,
    }


# --- the shim itself ------------------------------------------------------------------------------


def _raw(
    shim: Shim, query: str, body: bytes = b"", **headers: str
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{shim.port}/?{query}", data=body or None, headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_the_shim_answers_as_a_server(shim: Shim) -> None:
    # The parts of ClickHouse's HTTP interface the connection relies on.
    auth = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    status, headers, body = _raw(shim, "query=SELECT%201%2C", b"{x:String}", Authorization=auth)
    assert status == 500 and headers["X-ClickHouse-Exception-Code"] == "456"  # no param_x
    status, _, body = _raw(
        shim, "query=SELECT%20%7Bx%3AString%7D%2C&param_x=a%5Cnb&database=" + DATABASE,
        b"currentDatabase()", Authorization=auth,
    )  # fmt: skip
    assert (status, body) == (200, f"a\\nb\t{DATABASE}\n".encode())  # query, newline, body
    status, headers, _ = _raw(shim, "query=SELECT%20*%20FROM%20nowhere", Authorization=auth)
    assert (status, headers["X-ClickHouse-Exception-Code"]) == (404, "60")
    status, headers, body = _raw(shim, f"query=SELECT%201&user={USER}", Authorization=auth)
    assert (status, headers["X-ClickHouse-Exception-Code"]) == (403, "516")
    assert b"simultaneously" in body
    assert _raw(shim, "query=SELECT%201")[0] == 403  # the default user has another password
    with urllib.request.urlopen(f"http://127.0.0.1:{shim.port}/ping", timeout=60) as ping:
        assert ping.read() == b"Ok.\n"


# --- the same answers as the embedded connection ---------------------------------------------

ENDPOINT_METHODS = {
    "create": "feedback_create",
    "create_batch": "feedback_create_batch",
    "aggregate": "feedback_aggregate",
    "stats": "feedback_stats",
    "query": "feedback_query",
    "purge": "feedback_purge",
    "replace": "feedback_replace",
    "payload_schema": "feedback_payload_schema",
    "server_info": "server_info",
}


def implemented_files(backend: ClickHouseBackend) -> list[CaseFile]:
    """The case files whose every step calls an endpoint the backend has today."""
    return [
        f
        for f in load_catalogue()
        if all(
            hasattr(backend, ENDPOINT_METHODS[step["endpoint"]])
            for case in f.cases()
            for step in case["steps"]
        )
    ]


class RecordingTarget(InProcessTarget):
    """A kit target that keeps every outcome, to compare two backends answer by answer."""

    def __init__(self, backend: ClickHouseBackend, prefix: str) -> None:
        super().__init__(engine=backend, project_prefix=prefix)
        self.outcomes: list[Outcome] = []

    def _run(self, method: Any, request: Any) -> Outcome:
        outcome = super()._run(method, request)
        self.outcomes.append(outcome)
        return outcome


def test_the_catalogue_answers_as_on_chdb_with_only_the_documented_skips(
    http_backend: ClickHouseBackend, chdb_backend: ClickHouseBackend
) -> None:
    files = implemented_files(http_backend)
    endpoints = {step["endpoint"] for f in files for c in f.cases() for step in c["steps"]}
    assert {"create", "create_batch", "aggregate", "stats"} <= endpoints
    skips = load_skips(SKIPS)
    prefix = f"conformance/{uuid.uuid4().hex}-p"  # the same projects on both: the same bodies
    targets = []
    for backend in (http_backend, chdb_backend):
        backend._id_factory = counting_ids()
        target = RecordingTarget(backend, prefix)
        results = run_catalogue(target, files, skips=skips)
        failing = {r.case_id: r.first_problem() for r in results if not r.passed}
        assert set(failing) == set(skips) & {r.case_id for r in results}, failing
        targets.append(target)
    over_http, embedded = (
        [_unnamed(o, t.engine.connection.name) for o in t.outcomes] for t in targets
    )
    assert len(over_http) == len(embedded) > 300
    for ours, theirs in zip(over_http, embedded, strict=True):
        assert ours == theirs


def _unnamed(outcome: Outcome, name: str) -> tuple[int, Any, str | None]:
    """An outcome to compare across connections: a 503 (the one documented skip) by
    the ClickHouse error it names — the excerpt of the statement differs with the
    table's name and the driver's ``FORMAT`` suffix."""
    if outcome.status == 503:
        assert outcome.message is not None and outcome.message.startswith(f"{name} failed: ")
        return 503, None, re.findall(r"\(([A-Z_]+)\)$", outcome.message)[0]
    return outcome.status, outcome.body, outcome.message


NASTY = [
    "it's \\ a\n\t'; DROP TABLE feedback; -- é👍 {x:String}",
    "\r\0\x01`\"\\'\\\\n\\t ${y:String} {{z}} %s %(w)s",
    "\u2028\ufeff\U0010ffff",
    "",
    "\\",
    "'",
]


@pytest.mark.parametrize("connection_kind", ["http", "chdb"])
def test_parameters_arrive_exactly(
    connection_kind: str, http_backend: ClickHouseBackend, chdb_backend: ClickHouseBackend
) -> None:
    # Every parameter form the backend's SQL binds, read back as the server parsed it.
    backend = http_backend if connection_kind == "http" else chdb_backend
    connection: Connection = backend.connection
    floats = [0.1, 1 / 3, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, -0.0, 1e22, -1.5]
    ints = [0, -(2**63), 2**63 - 1, 1714521600000]
    params: dict[str, Any] = {f"f{i}": f for i, f in enumerate(floats)}
    params |= {f"i{i}": n for i, n in enumerate(ints)}
    params |= {f"s{i}": s for i, s in enumerate(NASTY)}
    params |= {"a": NASTY, "e": [], "inf": math.inf, "nan": math.nan}
    selects = [f"{{f{i}:Float64}}" for i in range(len(floats))]
    selects += [f"{{i{i}:Int64}}" for i in range(len(ints))]
    selects += [f"{{s{i}:String}}" for i in range(len(NASTY))]
    selects += ["{a:Array(String)}", "{e:Array(String)}", "{inf:Float64}", "{nan:Float64}"]
    (row,) = connection.query(f"SELECT {', '.join(selects)}", params)
    got_floats = [float(v) for v in row[: len(floats)]]
    assert [f.hex() for f in got_floats] == [f.hex() for f in floats]
    rest = row[len(floats) :]
    assert rest[: len(ints)] == ints
    rest = rest[len(ints) :]
    assert rest[: len(NASTY)] == NASTY
    assert rest[len(NASTY) :][:2] == [NASTY, []]
    assert float(rest[-2]) == math.inf and math.isnan(float(rest[-1]))


def test_strings_are_stored_and_matched_exactly(http_backend: ClickHouseBackend) -> None:
    project = f"acme/strings-{uuid.uuid4().hex}"
    http_backend.clock = ManualClock("2024-05-01T00:00:00Z")
    for nasty in NASTY:
        http_backend.feedback_create(
            _create(project, span_agent_name=nasty, payload={"note": nasty, "v": 0.1})
        )
    res = http_backend.feedback_aggregate(
        {"project_id": project, "after_ms": 1714521600000, "before_ms": 1714521600001,
         "span_agent_names": NASTY[:2], "group_by": ["span_agent_name"]}
    )  # fmt: skip
    assert sorted((b.group["span_agent_name"], b.total_count) for b in res.buckets) == sorted(
        (n, 1) for n in NASTY[:2]
    )
    stored = http_backend.connection.query(
        f"SELECT span_agent_name, payload_dump FROM {http_backend.connection.table} "
        "WHERE project_id = {p:String}",
        {"p": project},
    )
    assert sorted(name for name, _ in stored) == sorted(NASTY)
    assert all(json.loads(dump)["note"] == name for name, dump in stored)


def test_a_batch_larger_than_a_servers_field_limit(
    shim: Shim, http_backend: ClickHouseBackend, chdb_backend: ClickHouseBackend
) -> None:
    # One bound String the size of this batch is refused by a default server (128 KiB
    # per field): the connection sends it in pieces and the batch is written whole.
    project = f"acme/big-{uuid.uuid4().hex}"
    note = "é👍'\\\n" * 300
    batch = {"batch": [_create(project, payload={"note": f"{i} {note}"}) for i in range(200)]}
    rows_param = sql.insert_sql("t", [])[1]
    assert "rows" in rows_param  # the insert binds its rows as one String parameter
    for backend in (http_backend, chdb_backend):
        backend.clock = ManualClock("2024-05-01T00:00:00Z")
        assert len(backend.feedback_create_batch(batch).res) == 200
    request = {"project_id": project, "after_ms": 0, "before_ms": 2**41}
    assert http_backend.feedback_aggregate(request) == chdb_backend.feedback_aggregate(request)
    dumps = "SELECT payload_dump FROM {table} WHERE project_id = {{p:String}} ORDER BY payload_dump"
    assert http_backend.connection.query(
        dumps.format(table=http_backend.connection.table), {"p": project}
    ) == chdb_backend.connection.query(
        dumps.format(table=chdb_backend.connection.table), {"p": project}
    )
    # The shim does enforce the limit: a raw client sending one such field is refused.
    import clickhouse_connect

    client = clickhouse_connect.get_client(
        host="127.0.0.1", port=shim.port, username=USER, password=PASSWORD,
        autogenerate_session_id=False,
    )  # fmt: skip
    with pytest.raises(Exception, match="Field value too long"):
        client.raw_query("SELECT length({s:String})", parameters={"s": "x" * (200 * 1024)})
    client.close()
    assert PIECE_BYTES <= 128 * 1024


@pytest.mark.parametrize("unit", ["\\", "👍", "a", "é'\n`\t", "x" * 4095 + "👍"])
def test_pieces_fit_a_field_and_join_to_the_value(unit: str) -> None:
    value = unit * (300_000 // len(unit) + 7)
    text, bound = split_long_parameters("SELECT {v:String}, {v:String}", {"v": value})
    pieces = [bound[f"v__{i}"] for i in range(len(bound))]
    assert "".join(pieces) == value and len(pieces) > 1
    assert all(escaped_size(p) <= PIECE_BYTES for p in pieces)
    assert text.count("concat(") == 2 and "{v:String}" not in text
    items = [unit * (40_000 // len(unit) + 1)] * 5
    text, bound = split_long_parameters("SELECT {a:Array(String)}", {"a": items})
    runs = [bound[f"a__{i}"] for i in range(len(bound))]
    assert [i for run in runs for i in run] == items
    assert all(
        sum(escaped_size(i) + 4 for i in run) <= PIECE_BYTES or len(run) == 1 for run in runs
    )
    # a parameter bound as another type is the server's to refuse, not rewritten
    assert split_long_parameters("SELECT {v:Int64}", {"v": value}) == (
        "SELECT {v:Int64}",
        {"v": value},
    )


def test_a_filter_list_larger_than_a_servers_field_limit(
    http_backend: ClickHouseBackend, chdb_backend: ClickHouseBackend
) -> None:
    project = f"acme/filters-{uuid.uuid4().hex}"
    names = [f"agent-{i:05d}-é👍'\\" + "x" * 40 for i in range(3000)]  # ~150,000 characters
    for backend in (http_backend, chdb_backend):
        backend.clock = ManualClock("2024-05-01T00:00:00Z")
        for name in (names[0], names[-1], "not wanted"):
            backend.feedback_create(_create(project, span_agent_name=name))
    request = {"project_id": project, "after_ms": 1714521600000,
               "before_ms": 1714521600001, "span_agent_names": names}  # fmt: skip
    ours = http_backend.feedback_aggregate(request)
    assert ours == chdb_backend.feedback_aggregate(request)
    assert ours.buckets[0].total_count == 2


def test_requests_from_many_threads(http_backend: ClickHouseBackend) -> None:
    project = f"acme/threads-{uuid.uuid4().hex}"
    http_backend.clock = ManualClock("2024-05-01T00:00:00Z")
    problems: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(5):
                http_backend.feedback_create(_create(project))
                http_backend.feedback_aggregate(
                    {"project_id": project, "after_ms": 0, "before_ms": 2**41}
                )
        except BaseException as exc:  # collected: a thread's failure fails the test
            problems.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert problems == []
    total = http_backend.feedback_aggregate(
        {"project_id": project, "after_ms": 0, "before_ms": 2**41}
    )
    assert total.buckets[0].total_count == 20


# --- failures are 503s with their reason --------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_server_that_is_down(shim: Shim) -> None:
    port = _closed_port()
    url = f"clickhouse://{USER}:{PASSWORD}@127.0.0.1:{port}/db"
    with pytest.raises(BackendUnavailable) as info:
        ClickHouseConnectConnection(url, connect_timeout=5)
    reason = info.value.reason
    assert reason.startswith(f"clickhouse://127.0.0.1:{port}/db failed: ")
    assert "Connection refused" in reason
    assert PASSWORD not in reason and "Traceback" not in reason


def _client_503(backend: ClickHouseBackend) -> dict[str, Any]:
    from fastapi.testclient import TestClient

    from refengine.server import create_app

    client = TestClient(create_app(backend))
    response = client.post(
        "/feedback/aggregate", json={"project_id": "p", "after_ms": 0, "before_ms": 1}
    )
    assert response.status_code == 503
    body: dict[str, Any] = response.json()
    return body


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("error500", "HTTP status 500"),
        ("garbage", "not JSONCompact"),
        ("close", "Remote end closed connection"),
    ],
)
def test_a_server_answering_badly_is_a_503(
    faults: Shim, http_backend: ClickHouseBackend, mode: str, reason: str
) -> None:
    faults.fault(mode)
    with pytest.raises(BackendUnavailable, match=reason):
        http_backend.feedback_aggregate({"project_id": "p", "after_ms": 0, "before_ms": 1})
    body = _client_503(http_backend)
    assert reason in body["reason"] and body["reason"].startswith("clickhouse://127.0.0.1:")
    assert PASSWORD not in body["reason"]


def test_a_server_that_does_not_answer_in_time(faults: Shim) -> None:
    backend = ClickHouseBackend(ClickHouseConnectConnection(faults.url(), timeout=1))
    try:
        faults.fault("hang:3")
        with pytest.raises(BackendUnavailable, match=r"[Tt]imed out"):
            backend.feedback_create(_create("acme/slow"))
        assert "timed out" in _client_503(backend)["reason"].lower()
    finally:
        faults.fault("")
        backend.close()


def test_a_statement_the_server_refuses(http_backend: ClickHouseBackend) -> None:
    with pytest.raises(BackendUnavailable) as info:
        http_backend.connection.query("SELECT * FROM refengine_http.no_such_table", {})
    assert "UNKNOWN_TABLE" in info.value.reason and "for url" not in info.value.reason


def test_wrong_credentials_and_a_missing_database(shim: Shim) -> None:
    with pytest.raises(BackendUnavailable, match="Authentication failed") as info:
        ClickHouseConnectConnection(shim.url(password="wrong-secret"))
    assert "wrong-secret" not in info.value.reason
    with pytest.raises(BackendUnavailable, match="does not exist"):
        ClickHouseConnectConnection(shim.url(database="no_such_db"))


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("clickhouse://", "no host"),
        ("clickhouse://me:hunter2@/db", "no host"),
        ("clickhouse://me:hunter2@h:port/db", "port must be a number"),
        ("clickhouse://h:99999/db", "port must be a number"),
        ("clickhouse://h:0/db", "port must be a number"),
        ("clickhouse://me:hunter2@h/bad-name", "database name"),
        ("clickhouse://h/a/b", "database name"),
        ("clickhouse://h/1db", "database name"),
        ("clickhouse://h/db%3B%20DROP", "database name"),
        ("clickhouse://h/db?secure=1", "query string"),
        ("clickhouses://me:hunter2@h/db#x", "query string"),
    ],
)
def test_bad_urls_are_refused_clearly(url: str, problem: str) -> None:
    with pytest.raises(BackendUnavailable) as info:
        connect(url)
    assert info.value.reason.startswith("bad ClickHouse URL '")
    assert problem in info.value.reason
    assert "hunter2" not in info.value.reason


def test_an_unknown_backend_spec_hides_its_password() -> None:
    with pytest.raises(BackendUnavailable) as info:
        connect("mysql://me:hunter2@h/db")
    assert "unknown backend 'mysql://me:***@h/db'" in info.value.reason


# --- refengine serve -------------------------------------------------------------------------


def test_serve_over_a_clickhouse_url(shim: Shim, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "refengine", "serve", "--backend", shim.url(),
               "--port", "0", "--clock", "2024-05-01T12:00:00Z"]  # fmt: skip
    server = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert server.stderr is not None
        ready, _, _ = select.select([server.stderr], [], [], 120)
        banner = server.stderr.readline() if ready else ""
        found = re.search(r"serving http://127\.0\.0\.1:(\d+) \(", banner)
        assert found, banner
        assert f"backend clickhouse://127.0.0.1:{shim.port}/{DATABASE}" in banner
        assert PASSWORD not in banner
        base = f"http://127.0.0.1:{found.group(1)}"
        project = f"acme/serve-{uuid.uuid4().hex}"
        for path, body in [
            ("/feedback/create", _create(project)),
            ("/feedback/aggregate", {"project_id": project, "after_ms": 0, "before_ms": 2**41}),
        ]:
            request = urllib.request.Request(
                base + path, data=json.dumps(body).encode(),
                headers={"Content-Type": "application/json"},
            )  # fmt: skip
            with urllib.request.urlopen(request, timeout=60) as response:
                answer = json.loads(response.read())
        assert answer["buckets"][0]["total_count"] == 1
    finally:
        server.terminate()
        server.wait(timeout=60)
    # A server that is down: one line on stderr, exit status 1, no traceback.
    down = subprocess.run(
        [sys.executable, "-m", "refengine", "serve", "--backend",
         f"clickhouse://{USER}:{PASSWORD}@127.0.0.1:{_closed_port()}/db", "--port", "0"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert down.returncode == 1
    assert down.stderr.startswith("refengine: error: clickhouse://127.0.0.1:")
    assert "Connection refused" in down.stderr and PASSWORD not in down.stderr
    assert "Traceback" not in down.stderr


def test_load_a_dump_over_a_clickhouse_url(shim: Shim, tmp_path: Path) -> None:
    # A file is one INSERT: here about 1.5 MB of rows, bound in pieces.
    dump = tmp_path / "rows.jsonl"
    cli = [sys.executable, "-m", "refengine"]
    subprocess.run([*cli, "dump", "--demo", "--rows", "2000", str(dump)], check=True)
    assert dump.stat().st_size > 10 * 128 * 1024
    url = shim.url(database="loaded")
    with pytest.raises(BackendUnavailable, match="does not exist"):
        ClickHouseConnectConnection(url)  # the URL's database must exist ...
    admin = ClickHouseConnectConnection(shim.url())  # ... created by its owner
    admin.query("CREATE DATABASE loaded", {})
    admin.close()
    done = subprocess.run([*cli, "load", "--backend", url, str(dump)],
                          capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"2,000 rows loaded into clickhouse://127.0.0.1:{shim.port}/loaded" in done.stdout
    assert PASSWORD not in done.stdout + done.stderr
    # Every column arrived: the backend answers as the engine holding the same dump.
    engine = Engine.load(dump)
    backend = ClickHouseBackend.open(url)
    try:
        (project,) = backend.projects()
        ((last,),) = backend.connection.query(
            f"SELECT toUnixTimestamp64Milli(max(created_at)) FROM {backend.connection.table}", {}
        )
        requests = [
            {"project_id": project, "after_ms": 0, "before_ms": 2**41},
            {"project_id": project, "after_ms": last - 30 * 86_400_000, "before_ms": last + 1,
             "time_bucket_seconds": 86_400, "group_by": ["scorer_id"]},
        ]  # fmt: skip
        for request in requests:
            theirs = backend.feedback_aggregate(request)
            ours = engine.feedback_aggregate(request)
            assert _rounded(theirs.model_dump()) == _rounded(ours.model_dump())
        assert len(theirs.buckets) > 10
    finally:
        backend.close()


def _rounded(value: Any) -> Any:
    """Float sums to 9 significant digits: ClickHouse adds in its own order."""
    if isinstance(value, float):
        return float(f"{value:.9g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def test_engine_and_http_backend_refuse_alike(http_backend: ClickHouseBackend) -> None:
    from pydantic import ValidationError

    from refengine import InvalidRequest

    request = {"project_id": "p", "after_ms": 5, "before_ms": 5}
    messages = []
    for target in (Engine(), http_backend):
        with pytest.raises((InvalidRequest, ValidationError)) as info:
            target.feedback_aggregate(request)
        messages.append(str(info.value))
    assert messages[0] == messages[1]
