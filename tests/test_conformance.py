"""The conformance kit: the catalogue is valid, up to date, covers every rule, passes on
the reference engine (in process and over HTTP), and catches broken backends with a
readable, path-addressed diff."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from refengine.conformance import cli, runner
from refengine.conformance.backend import Backend, ConformanceError, Outcome
from refengine.conformance.cases import (
    CASES_DIR,
    INDEX_NAME,
    SEMANTICS_PATH,
    CaseFile,
    load_catalogue,
    load_schema,
    rule_index,
    schema_errors,
    spec_rules,
    update_catalogue,
)
from refengine.conformance.runner import (
    Skip,
    load_skips,
    report,
    run_catalogue,
    run_differential,
    summary_table,
    write_junit,
)
from refengine.conformance.targets import InProcessTarget

NOT_NEEDING_A_CASE: dict[str, str] = {
    "Aggregate / Cost": "complexity of the implementation, not observable behaviour",
}


@pytest.fixture(scope="module")
def catalogue() -> list[CaseFile]:
    return load_catalogue()


def lines_of(results: list[runner.CaseResult], **kwargs: Any) -> str:
    out: list[str] = []
    report(results, None, out.append, **kwargs)
    return "\n".join(out)


# --- the catalogue as data -----------------------------------------------------------------


def test_every_case_file_validates_against_the_schema() -> None:
    schema = load_schema()
    paths = sorted(CASES_DIR.glob("*.json"))
    assert len(paths) >= 10
    for path in paths:
        data = json.loads(path.read_text(encoding="utf-8"))
        assert schema_errors(data, schema) == [], path.name


def test_schema_rejects_a_malformed_case() -> None:
    bad = {
        "feature": "x",
        "description": "d",
        "cases": [
            {
                "id": "x.1",
                "description": "d",
                "rules": ["r"],
                "steps": [{"endpoint": "delete", "request": {}, "expect": {"status": 500}}],
            }
        ],
    }
    errors = schema_errors(bad)
    assert any("steps[0].endpoint" in e for e in errors)
    assert any("steps[0].expect" in e for e in errors)


def test_case_ids_are_unique(catalogue: list[CaseFile]) -> None:
    ids = [case["id"] for f in catalogue for case in f.cases()]
    assert len(ids) == len(set(ids))
    assert len(ids) >= 100


def test_expectations_are_up_to_date() -> None:
    """Regenerating in memory reproduces every file byte for byte (and INDEX.md)."""
    texts = update_catalogue(write=False)
    assert CASES_DIR / INDEX_NAME in texts
    stale = [p.name for p, t in texts.items() if p.read_text(encoding="utf-8") != t]
    assert stale == [], "run `refengine cases --update` and review the diff"


def test_every_semantics_rule_has_a_case(catalogue: list[CaseFile]) -> None:
    """Every ``###`` rule of SEMANTICS.md is cited by a case, or listed above with a
    reason."""
    rules = spec_rules()
    assert rules, "no ### headings found in SEMANTICS.md"
    index = rule_index(catalogue)
    uncovered = [r for r in rules if not index.get(r) and r not in NOT_NEEDING_A_CASE]
    assert uncovered == []
    assert set(NOT_NEEDING_A_CASE) <= set(rules), "an exemption names no rule"


def test_cited_rules_exist(catalogue: list[CaseFile]) -> None:
    """A citation names a ``## `` section (e.g. ``Errors``) or a ``section / heading``
    rule of SEMANTICS.md."""
    text = SEMANTICS_PATH.read_text(encoding="utf-8")
    sections = set(re.findall(r"^## (.+?)\s*$", text, flags=re.M))
    rules = set(spec_rules())
    unknown = [r for r in rule_index(catalogue) if r not in sections and r not in rules]
    assert unknown == []


def test_every_endpoint_and_error_status_is_exercised(catalogue: list[CaseFile]) -> None:
    seen = {
        (step["endpoint"], step["expect"]["status"])
        for f in catalogue
        for case in f.cases()
        for step in case["steps"]
    }
    for endpoint in ("create", "create_batch", "aggregate", "stats"):
        assert (endpoint, 200) in seen
        assert (endpoint, 422) in seen
    for endpoint in ("create", "create_batch", "stats"):
        assert (endpoint, 400) in seen


# --- both executors pass ---------------------------------------------------------------


@pytest.mark.parametrize("executor", ["reference", "fast"])
def test_catalogue_passes_in_process(catalogue: list[CaseFile], executor: str) -> None:
    results = run_catalogue(InProcessTarget(executor=executor), catalogue)
    failed = [r for r in results if r.status != "pass"]
    assert failed == [], lines_of(failed)
    table = summary_table(results)
    assert "total" in table
    assert re.search(r"total\s+\d+\s+0\s+0", table)


@pytest.mark.parametrize("executor", ["reference", "fast"])
def test_differential_against_the_reference_agrees(executor: str) -> None:
    result = run_differential(InProcessTarget(executor=executor), examples=15, seed=1)
    assert result.passed, result.error or [d.render() for d in result.diffs]
    assert result.examples >= 1


@pytest.fixture(scope="module")
def http_target() -> Iterator[Backend]:
    server = pytest.importorskip("refengine.server", reason="refengine.server has not landed")
    testclient = pytest.importorskip("fastapi.testclient")
    from refengine import Engine, ManualClock
    from refengine.conformance.targets import DEFAULT_INSTANT, HttpTarget

    engine = Engine(clock=ManualClock(DEFAULT_INSTANT))
    try:
        app = server.create_app(engine=engine, api_keys={"secret": "conformance-user"})
    except TypeError:
        app = server.create_app(engine=engine)
    with testclient.TestClient(app) as client:
        target = HttpTarget("http://testserver", "secret", client=client)
        outcome = target.feedback_aggregate({"project_id": "x/y", "after_ms": 0, "before_ms": 1})
        if outcome.status in (401, 403):
            pytest.skip(f"cannot authenticate against the in-process app: {outcome.message}")
        yield target


def test_catalogue_passes_over_http(catalogue: list[CaseFile], http_target: Backend) -> None:
    results = run_catalogue(http_target, catalogue)
    failed = [r for r in results if r.status != "pass"]
    assert failed == [], lines_of(failed)


def test_differential_over_http_agrees(http_target: Backend) -> None:
    result = run_differential(http_target, examples=5, seed=2)
    assert result.passed, result.error or [d.render() for d in result.diffs]


# --- broken backends are caught -----------------------------------------------------------


class RepeatedTagOnce(InProcessTarget):
    """Stores each distinct tag once per row (so a repeated tag counts once)."""

    name = "repeated-tag-once"

    @staticmethod
    def _dedupe(body: Any) -> Any:
        if isinstance(body, dict) and isinstance(body.get("scorer_tags"), list):
            body = {**body, "scorer_tags": list(dict.fromkeys(body["scorer_tags"]))}
        return body

    def feedback_create(self, request: dict[str, Any]) -> Outcome:
        return super().feedback_create(self._dedupe(request))

    def feedback_create_batch(self, request: dict[str, Any]) -> Outcome:
        if isinstance(request, dict) and isinstance(request.get("batch"), list):
            request = {**request, "batch": [self._dedupe(b) for b in request["batch"]]}
        return super().feedback_create_batch(request)


class PurgeFirstCopyOnly(InProcessTarget):
    """Purges only the first row of a repeated id (production removes every copy)."""

    name = "purge-first-copy-only"

    def feedback_purge(self, request: dict[str, Any]) -> Outcome:
        ids = [
            item["$eq"][1]["$literal"]
            for item in request["query"]["$expr"].get("$or", [request["query"]["$expr"]])
        ]
        for id_ in ids:
            rows = [r for r in self.engine.rows(request["project_id"]) if r.id == id_]
            if rows:
                store = self.engine._projects[request["project_id"]]
                with store.lock:
                    store.remove_ids({id_})
                    store.update(rows[1:])  # the later copies come back
        return Outcome(200, {})


class StartAlignedStats(InProcessTarget):
    """Aligns stats buckets to ``start`` instead of the Unix epoch (the upstream fake)."""

    name = "start-aligned-stats"

    def feedback_stats(self, request: dict[str, Any]) -> Outcome:
        def from_start(start_s: int, end_s: int, g: int) -> range:
            return range(start_s, max(end_s, start_s), g)

        with mock.patch("refengine.semantics.stats.bucket_starts", from_start):
            return super().feedback_stats(request)


class Garbage(InProcessTarget):
    """Answers every query with nonsense and sometimes blows up."""

    name = "garbage"

    def feedback_aggregate(self, request: dict[str, Any]) -> Outcome:
        return Outcome(200, "not an object", None)

    def feedback_stats(self, request: dict[str, Any]) -> Outcome:
        raise RuntimeError("backend exploded")


def test_repeated_tag_counted_once_is_caught(catalogue: list[CaseFile]) -> None:
    results = run_catalogue(RepeatedTagOnce(), catalogue, "agg.acc.repeated-tag")
    [result] = results
    assert result.status == "fail"
    text = lines_of(results)
    assert "$.buckets[0].tag_counts.good: expected 3 → actual 2" in text
    assert "FAIL  agg.acc.repeated-tag" in text
    entry = json.loads(text.split("skip entry: ", 1)[1].splitlines()[0])
    assert entry["case"] == "agg.acc.repeated-tag"
    assert entry["reason"] == "bug"
    assert "$.buckets[0].tag_counts.good" in entry["note"]


def test_start_aligned_buckets_are_caught(catalogue: list[CaseFile]) -> None:
    results = run_catalogue(StartAlignedStats(), catalogue, "stats.bucket.epoch-aligned")
    [result] = results
    assert result.status == "fail"
    text = lines_of(results)
    assert (
        '$.buckets[0].timestamp: expected "2024-03-09T22:00:00+00:00" → '
        'actual "2024-03-09T22:01:40+00:00" (different instants)'
    ) in text


def test_broken_backends_fail_only_where_they_differ(catalogue: list[CaseFile]) -> None:
    results = run_catalogue(RepeatedTagOnce(), catalogue)
    failed = {r.case_id for r in results if r.status == "fail"}
    assert "agg.acc.repeated-tag" in failed
    assert all(cid.startswith(("agg.", "create.batch")) for cid in failed), sorted(failed)
    assert not any(cid.startswith("stats.") for cid in failed)


def test_the_differential_workload_interleaves_every_endpoint() -> None:
    from hypothesis import find

    from refengine.conformance.workload import queries

    for endpoint in ("query", "payload_schema", "purge", "replace", "create"):
        step = find(queries, lambda q, e=endpoint: q.endpoint == e)
        # A write carries its own instant; a read runs at the last one.
        assert (step.at is not None) == (endpoint in ("replace", "create"))


def test_the_differential_compares_after_a_purge() -> None:
    from refengine.conformance.workload import Create, Query, Workload

    body = {"project_id": "{project}", "id": "fb-0", "weave_ref": "weave:///{project}/call/c1",
            "feedback_type": "custom", "payload": {"output": {"score": 1}}}  # fmt: skip
    purge = {"project_id": "{project}",
             "query": {"$expr": {"$eq": [{"$getField": "id"}, {"$literal": "fb-0"}]}}}  # fmt: skip
    workload = Workload(
        [Create("2024-03-10T03:00:00Z", body), Create("2024-03-10T03:00:01Z", body)],
        [Query("purge", purge), Query("query", {"project_id": "{project}", "fields": ["id"]})],
    )
    diffs, case = runner.compare_workload(PurgeFirstCopyOnly(), workload)
    assert any(d.path.startswith("$.total_count") for d in diffs), [d.render() for d in diffs]
    assert case["steps"][-1]["endpoint"] == "query"
    assert runner.compare_workload(InProcessTarget(executor="fast"), workload)[0] == []


class CountingTarget(InProcessTarget):
    """The oracle, counting the endpoints the differential sends it."""

    name = "counting"

    def __init__(self) -> None:
        super().__init__()
        self.sent: set[str] = set()

    def __getattribute__(self, name: str) -> Any:
        if name.startswith("feedback_"):
            object.__getattribute__(self, "sent").add(name.removeprefix("feedback_"))
        return super().__getattribute__(name)


def test_the_differential_sends_only_the_endpoints_given() -> None:
    target = CountingTarget()
    result = run_differential(target, examples=30, seed=4, endpoints=["aggregate"])
    assert result.passed, result.error
    assert target.sent == {"create", "aggregate"}


def _tagged_workload() -> Any:
    from refengine.conformance.workload import Create, Query, Workload

    body = {"project_id": "{project}", "weave_ref": "weave:///{project}/call/c1",
            "feedback_type": "wandb.runnable.sc_a", "payload": {"output": 1},
            "runnable_ref": "weave:///{project}/object/sc_a:v1",
            "scorer_tags": ["a", "a"]}  # fmt: skip
    window = {"project_id": "{project}", "after_ms": 1710028800000, "before_ms": 1710115200000}
    return Workload(
        [Create("2024-03-10T03:00:00Z", body)],
        [Query("aggregate", {**window, "tags": ["a"]}), Query("aggregate", window)],
    )


def test_a_documented_deviation_is_counted_and_the_run_goes_on() -> None:
    # Both aggregates see the repeated tag counted once; naming the first as a
    # deviation leaves the second to fail, and naming both passes.
    def filtered(endpoint: str, request: dict[str, Any]) -> str | None:
        return "filtered" if "tags" in request else None

    tolerated: dict[str, int] = {}
    diffs, case = runner.compare_workload(
        RepeatedTagOnce(), _tagged_workload(), filtered, tolerated
    )
    assert diffs and tolerated == {"filtered": 1}
    assert [s["request"].get("tags") for s in case["steps"]] == [
        None
    ]  # the tolerated read left out
    everything: dict[str, int] = {}
    diffs, _ = runner.compare_workload(
        RepeatedTagOnce(), _tagged_workload(), lambda e, r: "any", everything
    )
    assert diffs == [] and everything == {"any": 2}
    result = run_differential(RepeatedTagOnce(), 60, seed=3, deviation=lambda e, r: "any")
    assert result.passed and result.tolerated.get("any", 0) > 0


def test_differential_catches_a_broken_backend() -> None:
    result = run_differential(RepeatedTagOnce(), examples=200, seed=3)
    assert not result.passed
    assert result.error is None
    assert result.case is not None
    assert any("tag_counts" in d.path for d in result.diffs), [d.render() for d in result.diffs]
    out: list[str] = []
    runner.render_differential(result, out.append)
    text = "\n".join(out)
    assert "minimal failing example" in text
    # The example ends at the differing aggregate and holds a row with a repeated tag.
    assert result.case["steps"][-1]["endpoint"] == "aggregate"
    tags = [item["create"].get("scorer_tags", []) for item in result.case["setup"]]
    assert any(len(t) != len(set(t)) for t in tags)


def test_garbage_from_a_target_is_a_failed_case(catalogue: list[CaseFile]) -> None:
    results = run_catalogue(Garbage(), catalogue, "agg.acc.zero-sum-dropped")
    results += run_catalogue(Garbage(), catalogue, "stats.window.empty")
    assert [r.status for r in results] == ["fail", "fail"]
    text = lines_of(results)
    assert '$: expected {"after_ms"' in text
    assert "(expected an object)" in text
    assert "backend exploded" in text


# --- skips, report, junit, cli --------------------------------------------------------------


def test_skips(tmp_path: Path, catalogue: list[CaseFile]) -> None:
    path = tmp_path / "skips.json"
    path.write_text(
        json.dumps(
            [
                {"case": "agg.acc.repeated-tag", "reason": "bug", "note": "counts tags once"},
                {"case": "agg.acc.scored-count", "reason": "missing_feature", "note": ""},
            ]
        )
    )
    skips = load_skips(path)
    assert skips["agg.acc.repeated-tag"] == Skip("agg.acc.repeated-tag", "bug", "counts tags once")
    results = run_catalogue(RepeatedTagOnce(), catalogue, "agg.acc.*", skips)
    by_id = {r.case_id: r for r in results}
    assert by_id["agg.acc.repeated-tag"].status == "skip"
    assert by_id["agg.acc.scored-count"].status == "skip"
    text = lines_of(results)
    assert "now pass; remove them from the skip list" in text
    assert "  agg.acc.scored-count" in text
    assert "FAIL" not in text


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('[{"case": "x", "reason": "flaky"}]', "reason must be one of"),
        ('[{"reason": "bug"}]', "needs a string 'case'"),
        ('{"x": 1}', "expected a list"),
        ("not json", "cannot read skip file"),
    ],
)
def test_bad_skip_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "skips.json"
    path.write_text(content)
    with pytest.raises(ConformanceError, match=message):
        load_skips(path)


def test_junit(tmp_path: Path, catalogue: list[CaseFile]) -> None:
    import xml.etree.ElementTree as ET

    results = run_catalogue(RepeatedTagOnce(), catalogue, "agg.acc.*")
    out = tmp_path / "out.xml"
    write_junit(out, results, None)
    root = ET.parse(out).getroot()
    [suite] = root.findall("testsuite")
    assert suite.get("name") == "aggregate-accumulators"
    assert suite.get("failures") == "1"
    failure = root.find(".//testcase[@name='agg.acc.repeated-tag']/failure")
    assert failure is not None
    assert "$.buckets[0].tag_counts.good" in (failure.get("message") or "")


def test_cli_on_the_reference(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junit = tmp_path / "j.xml"
    status = cli.main(
        [
            "conformance",
            "--target",
            "inprocess",
            "--cases",
            "stats.pct.*",
            "--differential-examples",
            "3",
            "--seed",
            "4",
            "--junit",
            str(junit),
        ]
    )
    out = capsys.readouterr().out
    assert status == 0, out
    assert "PASS  stats.pct.linear" in out
    assert re.search(r"stats-percentiles\s+6\s+0\s+0", out)
    assert "differential: 3 examples" in out
    assert junit.exists()


def test_cli_exit_status_on_failure(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "make_target", lambda spec, key, mode: RepeatedTagOnce())
    status = cli.main(
        [
            "conformance",
            "--target",
            "inprocess",
            "--cases",
            "agg.acc.repeated-tag",
            "--differential-examples",
            "0",
        ]
    )
    assert status == 1
    assert "$.buckets[0].tag_counts.good" in capsys.readouterr().out


def test_cli_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["conformance", "--target", "ftp://x", "--differential-examples", "0"]) == 2
    assert cli.main(["conformance", "--target", "inprocess", "--cases", "no-such-case-xyz"]) == 2
    assert "no case matches" in capsys.readouterr().err


def test_cli_without_a_catalogue_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # An installed copy outside a checkout has no spec/cases/: never a vacuous pass.
    args = ["conformance", "--target", "inprocess", "--cases-dir", str(tmp_path)]
    assert cli.main([*args, "--differential-examples", "0"]) == 2
    assert f"no case files in {tmp_path}" in capsys.readouterr().err


def test_cli_cases_check(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["cases", "--check"]) == 0
    assert cli.main(["cases"]) == 0
    assert "cases: valid" in capsys.readouterr().out


def test_unreachable_http_target_stops_the_run_once(catalogue: list[CaseFile]) -> None:
    pytest.importorskip("httpx")
    from refengine.conformance.backend import TargetUnavailable
    from refengine.conformance.targets import HttpTarget

    target = HttpTarget("http://127.0.0.1:9", "k", timeout=2.0)
    try:
        with pytest.raises(TargetUnavailable, match="is not reachable"):
            target.preflight(0.3)
        with pytest.raises(TargetUnavailable, match="stopped answering"):
            run_catalogue(target, catalogue, "create.*")
    finally:
        target.close()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _conformance(
    target: str, *extra: str, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    from refengine import cli as main_cli

    status = main_cli.main(
        ["conformance", "--target", target, "--differential-examples", "0", *extra]
    )
    out, err = capsys.readouterr()
    return status, out, err


def test_cli_dead_port_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("httpx")
    url = f"http://127.0.0.1:{_free_port()}"
    status, out, err = _conformance(url, "--wait", "0.3", capsys=capsys)
    assert status == 1
    assert out == ""  # no case ran, no FAIL lines, no skip entries
    assert err.count("\n") == 1
    assert err.startswith(f"refengine: error: {url} is not reachable")


@pytest.mark.parametrize(
    ("keys", "clock", "api_key", "message"),
    [
        ({"secret": None}, True, "wrong", "the credentials were refused; check --api-key"),
        ({}, False, None, "cannot set the clock"),
    ],
)
def test_cli_refusing_target_is_one_line(
    capsys: pytest.CaptureFixture[str],
    keys: dict[str, str | None],
    clock: bool,
    api_key: str | None,
    message: str,
) -> None:
    server = pytest.importorskip("refengine.server")
    from refengine import Engine, ManualClock

    engine = Engine(clock=ManualClock("2024-01-01T00:00:00Z")) if clock else Engine()
    with server.BackgroundServer(server.create_app(engine, api_keys=keys)) as running:
        args = ["--api-key", api_key] if api_key else []
        status, out, err = _conformance(running.base_url, *args, capsys=capsys)
    assert status == 1
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("refengine: error: ") and message in err
    assert len(engine) == 0


def test_cli_target_without_a_clock_route(capsys: pytest.CaptureFixture[str]) -> None:
    server = pytest.importorskip("refengine.server")
    from fastapi import FastAPI

    app = FastAPI()  # not even GET /health: its 404 shows the server is up

    with server.BackgroundServer(app) as running:
        status, out, err = _conformance(running.base_url, capsys=capsys)
    assert (status, out, err.count("\n")) == (1, "", 1)
    assert "has no clock route" in err


def test_cli_a_target_answering_5xx_is_not_up(capsys: pytest.CaptureFixture[str]) -> None:
    server = pytest.importorskip("refengine.server")
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    app = FastAPI()

    @app.get("/health")
    def health() -> JSONResponse:
        return JSONResponse({"status": "starting"}, status_code=503)

    with server.BackgroundServer(app) as running:
        status, out, err = _conformance(running.base_url, "--wait", "0.5", capsys=capsys)
    assert (status, out, err.count("\n")) == (1, "", 1)
    assert "is not reachable: not up within 0.5 s (last: GET /health answered 503)" in err


def test_cli_waits_for_a_server_that_starts_late(capsys: pytest.CaptureFixture[str]) -> None:
    server = pytest.importorskip("refengine.server")
    import threading

    from refengine import Engine, ManualClock

    port = _free_port()
    engine = Engine(clock=ManualClock("2024-01-01T00:00:00Z"))
    started: list[Any] = []

    def start_later() -> None:
        threading.Event().wait(0.5)  # the runner is already polling GET /health
        started.append(server.BackgroundServer(server.create_app(engine), port=port).start())

    thread = threading.Thread(target=start_later)
    thread.start()
    try:
        status, out, _err = _conformance(
            f"http://127.0.0.1:{port}", "--cases", "create.status.*", capsys=capsys
        )
    finally:
        thread.join()
        for running in started:
            running.stop()
    assert status == 0, out
    assert "PASS  create.status.ok" in out


def test_unknown_fields_modes_select_their_cases(catalogue: list[CaseFile]) -> None:
    for mode in ("reject", "ignore"):
        results = run_catalogue(
            InProcessTarget(unknown_fields=mode), catalogue, unknown_fields=mode
        )
        failed = [r for r in results if r.status != "pass"]
        assert failed == [], lines_of(failed)
        ran = {r.case_id for r in results}
        assert ("unknown.ignore.create" in ran) == (mode == "ignore")
        assert ("create.model.unknown-field" in ran) == (mode == "reject")
        assert "create.ok.custom" in ran  # mode-free cases run in both
    # a target in the other mode fails exactly the cases written for the mode
    wrong = run_catalogue(InProcessTarget(unknown_fields="ignore"), catalogue, "unknown.reject.*")
    assert [r.status for r in wrong] == ["fail"]


def test_cli_unknown_fields_option(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = _conformance(
        "inprocess", "--unknown-fields", "ignore", "--cases", "unknown.*", capsys=capsys
    )
    assert status == 0, out
    assert "PASS  unknown.ignore.create" in out
    assert "unknown.reject.metric" not in out
    assert out.endswith("1 case(s) written for --unknown-fields reject were not run\n")


def test_skip_entries_only_for_real_differences(catalogue: list[CaseFile]) -> None:
    [diff] = run_catalogue(RepeatedTagOnce(), catalogue, "agg.acc.repeated-tag")
    assert "skip entry:" in lines_of([diff])
    # an unusable target suggests none: see test_cli_dead_port_is_one_line and
    # test_cli_refusing_target_is_one_line, whose stdout stays empty


def test_cli_names_the_json_path_of_a_planted_bug_over_http(
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = pytest.importorskip("refengine.server")
    from refengine import Engine, ManualClock
    from refengine.models import FeedbackCreateReq

    class TagsOnce(Engine):
        """A backend that stores each distinct tag once per row."""

        def feedback_create(self, req: Any) -> Any:
            if isinstance(req, FeedbackCreateReq):
                req = req.model_copy(update={"scorer_tags": list(dict.fromkeys(req.scorer_tags))})
            return super().feedback_create(req)

    engine = TagsOnce(clock=ManualClock("2024-01-01T00:00:00Z"))
    with server.BackgroundServer(server.create_app(engine)) as running:
        status, out, err = _conformance(
            running.base_url, "--cases", "agg.acc.repeated-tag", capsys=capsys
        )
    assert status == 1, err
    assert "FAIL  agg.acc.repeated-tag" in out
    assert "$.buckets[0].tag_counts.good: expected 3 → actual 2" in out


def test_update_refuses_the_installed_catalogue(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from refengine.conformance import cases

    assert not cases.installed_catalogue(CASES_DIR)  # these tests run on a checkout
    inside = Path(cases.__file__).resolve().parents[1] / "spec" / "cases"
    assert cases.installed_catalogue(inside)
    monkeypatch.setattr(cases, "installed_catalogue", lambda cases_dir: True)
    assert cli.main(["cases", "--update"]) == 2
    assert "would write into the installed catalogue" in capsys.readouterr().err
    assert cli.main(["cases", "--check"]) == 0  # reading it is fine
