"""The ClickHouse backend on embedded ClickHouse (chdb): the case catalogue passes with
only the documented skips, the differential agrees with the oracle, writes are all or
nothing, failures are 503s, and production's own behaviour shows where refengine
decides otherwise. Skipped as a whole when the clickhouse extra is not installed."""

from __future__ import annotations

import json
import struct
import uuid
from collections.abc import Iterator
from datetime import datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

pytest.importorskip("chdb")

from refengine import Engine, InvalidRequest, ManualClock
from refengine.backends.clickhouse import ChdbConnection, ClickHouseBackend, connect
from refengine.backends.clickhouse_sql import insert_sql
from refengine.conformance.cases import SEMANTICS_PATH, load_catalogue
from refengine.conformance.runner import load_skips, run_catalogue, run_differential
from refengine.conformance.targets import InProcessTarget, counting_ids
from refengine.conformance.workload import STEPS
from refengine.errors import BackendUnavailable
from refengine.models import FeedbackStatsReq
from refengine.rows import FeedbackRow, make_row
from refengine.semantics import stats
from refengine.synthetic import synthetic_rows

ROOT = Path(__file__).resolve().parents[2]
SKIPS = ROOT / "spec" / "skips" / "chdb.json"


@pytest.fixture(scope="module")
def backend() -> Iterator[ClickHouseBackend]:
    # chdb embeds one ClickHouse per process: one temporary database for the module,
    # each test in projects of its own.
    # max_threads=1: sums added in one order, so a difference found reproduces.
    connection = ChdbConnection(max_threads=1)
    b = ClickHouseBackend(connection, clock=ManualClock("2024-05-01T12:00:00Z"))
    yield b
    b.close()


def fresh_target(backend: ClickHouseBackend) -> InProcessTarget:
    """A kit target on the shared backend whose projects no earlier test used."""
    return InProcessTarget(engine=backend, project_prefix=f"conformance/{uuid.uuid4().hex}-p")


def _create(project: str, **fields: Any) -> dict[str, Any]:
    return {
        "project_id": project,
        "weave_ref": f"weave:///{project}/call/c1",
        "feedback_type": "custom",
        "payload": {},
        **fields,
    }


def test_the_catalogue_passes_with_only_the_documented_skips(backend: ClickHouseBackend) -> None:
    backend.clock = ManualClock("2024-01-01T00:00:00Z")
    backend._id_factory = counting_ids()
    skips = load_skips(SKIPS)
    results = run_catalogue(fresh_target(backend), load_catalogue(), skips=skips)
    failing = {r.case_id: r.first_problem() for r in results if not r.passed}
    assert set(failing) == set(skips), failing  # every skip still deviates; nothing else fails
    headings = SEMANTICS_PATH.read_text(encoding="utf-8")
    for skip in skips.values():
        # each entry names the spec deviation that explains it
        assert "Deviations from production" in skip.note
        quoted = skip.note.split("'")[1]
        assert quoted in headings, quoted


# Zones of the workload whose UTC offset has not always been a whole number of hours
# (spec/SEMANTICS.md, Stats / Deviations from production, "Epoch alignment in every zone").
LOCAL_MIDNIGHT_ZONES = {"Asia/Kolkata", "Asia/Kathmandu", "Australia/Adelaide"}
DAY = 86_400


def counts_from_local_midnight(zone: str, granularity: int, start: int, end: int) -> bool:
    """Whether ClickHouse's buckets of ``granularity`` seconds leave the epoch grid
    somewhere in [start, end) in ``zone``: a granularity that is not whole minutes in
    a zone above, and a local midnight near the window that is not a multiple of it."""
    if zone not in LOCAL_MIDNIGHT_ZONES or granularity % 60 == 0:
        return False
    tz = ZoneInfo(zone)
    first = datetime.fromtimestamp(start - granularity - DAY, tz).date()
    for day in range((end - start + granularity) // DAY + 3):
        midnight = datetime.combine(first + timedelta(days=day), time(), tz)
        if int(midnight.timestamp()) % granularity:
            return True
    return False


def documented_deviation(endpoint: str, request: dict[str, Any]) -> str | None:
    """The stats deviation a request exercises on this backend, if any (its name in
    spec/SEMANTICS.md, Stats / Deviations from production)."""
    if endpoint != "stats":
        return None
    metrics = request.get("metrics") or []
    if any(not float(p).is_integer() for m in metrics for p in m.get("percentiles", [])):
        return "Fractional percentile keys"
    try:
        plan = stats.plan(FeedbackStatsReq.model_validate(request), datetime.now(timezone.utc))
    except (InvalidRequest, ValidationError):
        return None  # both refuse it, with the same message
    zone = plan.timezone or "UTC"
    if counts_from_local_midnight(
        zone, plan.granularity, int(plan.start.timestamp()), int(plan.end.timestamp())
    ):
        return "Epoch alignment in every zone"
    return None


# The endpoints the backend implements (the rest of the family joins as it is built).
ENDPOINTS = [e for e in STEPS if e == "create" or hasattr(ClickHouseBackend, f"feedback_{e}")]


@pytest.mark.parametrize("seed", [16, 1, 2, 3])
def test_the_differential_agrees_but_for_documented_deviations(
    backend: ClickHouseBackend, seed: int
) -> None:
    # The workload draws fractional percentiles and 7-second buckets in Kolkata and
    # Adelaide, which this backend answers as production does; only a read that
    # exercises one of those two deviations may differ, and the run goes on past it.
    backend.clock = ManualClock("2024-01-01T00:00:00Z")
    result = run_differential(
        fresh_target(backend), 50, seed=seed, endpoints=ENDPOINTS, deviation=documented_deviation
    )
    assert result.error is None, result.error
    assert result.passed, (result.diffs[0].render(limit=300), result.case)
    assert set(result.tolerated) <= {"Fractional percentile keys", "Epoch alignment in every zone"}


def test_a_stats_window_keeps_a_row_in_its_last_second(backend: ClickHouseBackend) -> None:
    # Found by the differential: ClickHouse 26.9 prunes the parts of a DateTime64(3)
    # sorting key against a DateTime bound at whole seconds (created_at < 03:00:01 as
    # <= 03:00:00), so a part holding only 03:00:00.211 was skipped. The backend's
    # bounds are DateTime64 now; both rows here are alone in their parts.
    project = f"acme/last-second-{uuid.uuid4().hex}"
    for at in ("2024-03-10T03:00:00.211Z", "2024-03-10T03:00:01.999Z"):
        backend.clock = ManualClock(at)
        backend.feedback_create(_create(project, payload={"v": 1}))
    request = {"project_id": project, "start": "2024-03-10T03:00:00.002Z",
               "end": "2024-03-10T03:00:01.002Z", "granularity": 300,
               "metrics": [{"json_path": "v", "aggregations": ["count"]}]}  # fmt: skip
    res = backend.feedback_stats(request)
    assert [b["count"] for b in res.buckets] == [1]
    assert res.window_stats == {"v": {"count": 1.0}}
    request["start"], request["end"] = "2024-03-10T03:00:01.5Z", "2024-03-10T03:00:02Z"
    assert [b["count"] for b in backend.feedback_stats(request).buckets] == [1]


NASTY = ["it's \\ a\n\t\r'; -- \x00 é👍 {x:String}", '"quoted"', "", "\u2028 end"]
FLOATS = [0.1, 1e-300, 5e-324, -0.0, 1.7976931348623157e308, 2.0**53 + 2, 1 / 3]


def nasty_rows(project: str) -> list[FeedbackRow]:
    """Rows that a lossy insert would change: every kind of string, NULLs beside
    values, floats that text round trips get wrong, microsecond instants."""
    rows = []
    for i, text in enumerate(NASTY):
        rows.append(
            make_row(
                id=f"{text}-{i}", project_id=project, weave_ref=f"weave:///{project}/call/{i}",
                wb_user_id=text, creator=None if i % 2 else text,
                created_at_us=1_714_521_600_123_999 + i * 1_000_001,
                feedback_type="wandb.runnable.s", payload={"note": text, "v": FLOATS[i]},
                runnable_ref=None if i % 2 == 0 else text, trigger_ref=text or None,
                scorer_tags=[text, text, "b"], scorer_tag_reasons={text: text, "k": ""},
                scorer_ratings={f"r{j}": f for j, f in enumerate(FLOATS)},
                scorer_rating_confidences={text: FLOATS[-1 - i]},
                span_agent_name=text, span_status_code=("UNSET", "OK", "ERROR")[i % 3],
                span_trace_id=text,
            )
        )  # fmt: skip
    return rows


def float_bits(values: Any) -> list[int]:
    return [struct.unpack("<Q", struct.pack("<d", v))[0] for v in values]


STORED = (
    "SELECT id, weave_ref, wb_user_id, creator, toUnixTimestamp64Milli(created_at), "
    "created_at_us, feedback_type, payload_dump, runnable_ref, trigger_ref, scorer_tags, "
    "mapKeys(scorer_tag_reasons), mapValues(scorer_tag_reasons), mapKeys(scorer_ratings), "
    "arrayMap(x -> toString(reinterpretAsUInt64(x)), mapValues(scorer_ratings)), "
    "arrayMap(x -> toString(reinterpretAsUInt64(x)), mapValues(scorer_rating_confidences)), "
    "toString(span_status_code), span_agent_name, span_trace_id "
    "FROM refengine.feedback WHERE project_id = {project:String} ORDER BY created_at_us"
)


def expected_cells(row: FeedbackRow) -> list[Any]:
    """A row's cells as STORED reads them (maps keep their keys' order)."""
    return [
        row.id, row.weave_ref, row.wb_user_id, row.creator, row.created_at_ms,
        row.created_at_us, row.feedback_type, row.payload_dump, row.runnable_ref,
        row.trigger_ref, list(row.scorer_tags), list(row.scorer_tag_reasons),
        list(row.scorer_tag_reasons.values()), list(row.scorer_ratings),
        [str(b) for b in float_bits(row.scorer_ratings.values())],
        [str(b) for b in float_bits(row.scorer_rating_confidences.values())],
        row.span_status_code, row.span_agent_name, row.span_trace_id,
    ]  # fmt: skip


def test_the_bulk_path_stores_every_value_exactly(backend: ClickHouseBackend) -> None:
    bulk, statement = f"acme/bulk-{uuid.uuid4().hex}", f"acme/stmt-{uuid.uuid4().hex}"
    backend.insert_rows(nasty_rows(bulk))  # Arrow file
    backend.connection.query(*insert_sql(backend.connection.table, nasty_rows(statement)))
    want = [expected_cells(row) for row in nasty_rows(bulk)]
    got = backend.connection.query(STORED, {"project": bulk})
    assert got == want
    assert backend.connection.query(STORED, {"project": statement}) == [
        expected_cells(row) for row in nasty_rows(statement)
    ]


def test_a_string_utf8_cannot_hold_is_refused_by_both_paths(backend: ClickHouseBackend) -> None:
    # A lone surrogate (JSON "\\ud800") is a Python str but no UTF-8: the JSON statement
    # fails in ClickHouse, the Arrow file in pyarrow; both are a 503 storing nothing.
    project = f"acme/surrogate-{uuid.uuid4().hex}"
    (row, *_) = nasty_rows(project)
    bad = [row, row._replace(span_agent_name="lone \ud800")]
    with pytest.raises(BackendUnavailable, match="surrogate"):
        backend.insert_rows(bad)
    with pytest.raises(BackendUnavailable, match="surrogate"):
        backend.connection.query(*insert_sql(backend.connection.table, bad))
    assert project not in backend.projects()


def test_a_failing_bulk_statement_stores_none_of_its_rows(backend: ClickHouseBackend) -> None:
    # More rows than one Arrow record batch (65,536): the bad enum in the last row fails
    # the statement before any of it is written; the good rows then make one part.
    project = f"acme/bulk-fail-{uuid.uuid4().hex}"
    rows = synthetic_rows(project, 72_000, datetime(2024, 5, 1, tzinfo=timezone.utc),
                          timedelta(days=1), seed=3)  # fmt: skip
    assert len(rows) > 65_536
    with pytest.raises(BackendUnavailable, match="chdb"):
        backend.insert_rows([*rows[:-1], rows[-1]._replace(span_status_code="BOGUS")])
    assert project not in backend.projects()
    backend.insert_rows(rows)
    total = (
        backend.feedback_aggregate({"project_id": project, "after_ms": 0, "before_ms": 2**41})
        .buckets[0]
        .total_count
    )
    assert total == len(rows)
    parts = "SELECT uniqExact(_part) FROM refengine.feedback WHERE project_id = {p:String}"
    assert backend.connection.query(parts, {"p": project}) == [[1]]


def test_a_rejected_batch_writes_nothing(backend: ClickHouseBackend) -> None:
    project = "acme/batch"
    good = _create(project)
    bad = _create(project, feedback_type="wandb.note.1")  # no payload.note
    with pytest.raises(InvalidRequest, match="Invalid payload"):
        backend.feedback_create_batch({"batch": [good, good, bad]})
    with pytest.raises(ValidationError):
        backend.feedback_create_batch({"batch": [good, {"project_id": project}]})
    assert project not in backend.projects()
    res = backend.feedback_create_batch({"batch": [good, good]})
    assert len(res.res) == 2
    total = backend.feedback_aggregate({"project_id": project, "after_ms": 0, "before_ms": 2**41})
    assert total.buckets[0].total_count == 2


def test_the_batch_limit_is_the_engines(backend: ClickHouseBackend) -> None:
    project = "acme/batch-limit"
    too_many = {"batch": [_create(project)] * 10_001}
    with pytest.raises(InvalidRequest) as on_backend:
        backend.feedback_create_batch(too_many)
    with pytest.raises(InvalidRequest) as on_engine:
        Engine().feedback_create_batch(too_many)
    assert on_backend.value.reason == on_engine.value.reason
    assert project not in backend.projects()


def test_rejections_match_the_engine(backend: ClickHouseBackend) -> None:
    engine = Engine()
    bad = [
        # an explicit end: a missing one is each engine's clock's now
        ("feedback_stats", {"project_id": "p", "start": "2024-05-01T00:00:00Z",
                            "end": "2024-05-01T01:00:00Z", "metrics": [{"json_path": "a-b"}]}),
        ("feedback_aggregate", {"project_id": "p", "after_ms": 5, "before_ms": 5}),
        ("feedback_create", _create("p", runnable_ref="weave:///p/object/x:1")),
        # a lone surrogate: once a 503 here (ClickHouse cannot parse it), now both 400
        ("feedback_create", _create("p", span_agent_name="a\ud800")),
    ]  # fmt: skip
    for method, request in bad:
        errors = []
        for target in (engine, backend):
            with pytest.raises((InvalidRequest, ValidationError)) as info:
                getattr(target, method)(request)
            errors.append((type(info.value), str(info.value).splitlines()[-1]))
        assert errors[0] == errors[1]


def test_strings_are_stored_and_matched_exactly(backend: ClickHouseBackend) -> None:
    project = "acme/strings"
    backend.clock = ManualClock("2024-05-01T00:00:00Z")
    nasty = "it's \\ a\n\t'; DROP TABLE feedback; -- é👍 {x:String}"
    backend.feedback_create(_create(project, span_agent_name=nasty, payload={"note": nasty}))
    backend.feedback_create(_create(project, span_agent_name="plain"))
    res = backend.feedback_aggregate(
        {"project_id": project, "after_ms": 1714521600000, "before_ms": 1714521600001,
         "span_agent_names": [nasty], "group_by": ["span_agent_name"]}
    )  # fmt: skip
    assert [(b.group, b.total_count) for b in res.buckets] == [({"span_agent_name": nasty}, 1)]


def test_a_database_failure_is_backend_unavailable_and_a_503(backend: ClickHouseBackend) -> None:
    from fastapi.testclient import TestClient

    from refengine.server import create_app

    broken = ClickHouseBackend(backend.connection)
    broken.connection = _MissingTable(backend.connection)
    with pytest.raises(BackendUnavailable, match="chdb"):
        broken.feedback_create(_create("acme/broken"))
    client = TestClient(create_app(broken))
    response = client.post(
        "/feedback/aggregate", json={"project_id": "p", "after_ms": 0, "before_ms": 1}
    )
    assert response.status_code == 503
    assert "failed" in response.json()["reason"]


class _MissingTable:
    """The module's connection, pointed at a table that does not exist."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.name, self.table = inner, inner.name, "refengine.no_such_table"

    def query(self, statement: str, params: Any) -> Any:
        return self.inner.query(statement, params)

    def close(self) -> None:
        pass


def test_a_bad_backend_spec_is_refused() -> None:
    with pytest.raises(BackendUnavailable, match="unknown backend"):
        connect("mysql://x")


def test_local_midnight_buckets_as_in_production(backend: ClickHouseBackend) -> None:
    # Stats / Deviations from production, "Epoch alignment in every zone": with g=77 in
    # Asia/Kolkata ClickHouse counts from local midnight; refengine aligns to the epoch.
    project = "acme/kolkata"
    clock = ManualClock("2024-03-10T00:00:10Z")
    backend.clock = clock
    engine = Engine(clock=clock)
    for target in (backend, engine):
        target.feedback_create(_create(project, payload={"v": 1.0}))
    request = {"project_id": project, "start": "2024-03-10T00:00:00Z",
               "end": "2024-03-10T00:10:00Z", "granularity": 77, "timezone": "Asia/Kolkata",
               "metrics": [{"json_path": "v", "aggregations": ["count"]}]}  # fmt: skip
    ours, theirs = engine.feedback_stats(request), backend.feedback_stats(request)
    assert ours.buckets[0]["timestamp"] != theirs.buckets[0]["timestamp"]
    assert sum(b["count"] for b in ours.buckets) == 1


def test_window_stats_mis_split_as_in_production(backend: ClickHouseBackend) -> None:
    # Stats / Deviations from production, "window_stats keys".
    project = "acme/missplit"
    backend.clock = ManualClock("2024-05-01T00:00:10Z")
    backend.feedback_create(_create(project, payload={"true": {"x": 1}}))
    request = {"project_id": project, "start": "2024-05-01T00:00:00Z",
               "end": "2024-05-01T01:00:00Z",
               "metrics": [{"json_path": "true.x", "aggregations": ["count"]}]}  # fmt: skip
    assert backend.feedback_stats(request).window_stats == {"x": {"count_true": 1.0}}
    assert Engine().feedback_stats(request).window_stats == {"true_x": {"count": None}}


def test_the_skip_file_is_valid_json_with_notes() -> None:
    entries = json.loads(SKIPS.read_text(encoding="utf-8"))
    assert entries and all(entry["note"] for entry in entries)


def test_load_into_a_kept_directory_accumulates(tmp_path: Path) -> None:
    # A process of its own: chdb holds one database directory per process.
    import subprocess
    import sys

    dump = tmp_path / "rows.jsonl"
    store = tmp_path / "store"
    cli = [sys.executable, "-m", "refengine"]
    subprocess.run([*cli, "dump", "--demo", "--rows", "40", str(dump)], check=True)
    outputs = []
    for _ in range(2):
        done = subprocess.run(
            [*cli, "load", "--backend", f"chdb:{store}", str(dump)],
            capture_output=True, text=True, timeout=300, check=True,
        )  # fmt: skip
        outputs.append(done.stdout)
    assert "40 rows loaded" in outputs[0] and "(40 rows in 1 project(s))" in outputs[0]
    assert "(80 rows in 1 project(s))" in outputs[1]
    bad = subprocess.run(
        [*cli, "load", "--backend", "nosuch", str(dump)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 1 and bad.stderr.startswith("refengine: error: unknown backend")
