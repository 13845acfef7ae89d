"""Run the catalogue and the differential workload on a target, and report.

The report has one line per case (PASS / FAIL / SKIP), and for each failure the JSON
path, expected → actual, and a ready-to-paste skip entry; then a summary table of
cases by feature × pass/fail/skip. Skipped cases still run, so a skipped case that
passes is reported and the skip list can shrink.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..models import UnknownFields
from .backend import Backend, ConformanceError, Outcome, TargetUnavailable, call
from .cases import (
    DEFAULT_COMPARE,
    PLACEHOLDER,
    CaseFile,
    dump_json,
    first_message,
    run_case,
    selected,
    substitute,
)
from .compare import Difference, diff, merge_rules
from .targets import DEFAULT_INSTANT, InProcessTarget

SKIP_REASONS = ("bug", "missing_feature", "irrelevant")
MAX_DIFFS_SHOWN = 12

Printer = Callable[[str], None]


# --- skips ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Skip:
    case: str
    reason: str
    note: str = ""

    def to_json(self) -> dict[str, str]:
        return {"case": self.case, "reason": self.reason, "note": self.note}


def load_skips(path: Path) -> dict[str, Skip]:
    """A skip file: a JSON list (or ``{"skips": [...]}``) of ``{case, reason, note}``."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConformanceError(f"cannot read skip file {path}: {exc}") from exc
    if isinstance(data, dict):
        data = data.get("skips")
    if not isinstance(data, list):
        raise ConformanceError(f"{path}: expected a list of skip entries")
    skips: dict[str, Skip] = {}
    for i, entry in enumerate(data):
        if not isinstance(entry, dict) or not isinstance(entry.get("case"), str):
            raise ConformanceError(f"{path}: entry {i} needs a string 'case'")
        reason = entry.get("reason")
        if reason not in SKIP_REASONS:
            raise ConformanceError(
                f"{path}: entry {i} ({entry['case']}): reason must be one of "
                f"{', '.join(SKIP_REASONS)}, got {reason!r}"
            )
        extra = set(entry) - {"case", "reason", "note"}
        if extra:
            raise ConformanceError(f"{path}: entry {i} has unknown keys {sorted(extra)}")
        skips[entry["case"]] = Skip(entry["case"], reason, str(entry.get("note", "")))
    return skips


# --- checking ----------------------------------------------------------------------------


def check_outcome(
    expect: dict[str, Any],
    outcome: Outcome,
    endpoint: str,
    compare: dict[str, Any] | None,
    step_compare: dict[str, Any] | None = None,
) -> list[Difference]:
    """Differences between an expectation (placeholders already filled) and an outcome."""
    status = expect.get("status")
    if status == 200:
        if outcome.status != 200:
            return [Difference("(status)", 200, outcome.status, f"message: {outcome.message}")]
        rules = merge_rules((compare or {}).get(endpoint, DEFAULT_COMPARE[endpoint]), step_compare)
        return diff(expect.get("body"), outcome.body, rules)
    if outcome.status != status:
        body = outcome.message if outcome.status != 200 else "a 200 response"
        return [Difference("(status)", status, outcome.status, f"message: {body}")]
    wanted = expect.get("message_contains", "")
    if wanted not in (outcome.message or ""):
        return [Difference("(message)", f"… {wanted} …", outcome.message, "substring not found")]
    return []


@dataclass
class StepFailure:
    index: int
    endpoint: str
    diffs: list[Difference]


@dataclass
class CaseResult:
    case_id: str
    feature: str
    passed: bool
    failures: list[StepFailure] = field(default_factory=list)
    error: str | None = None
    skip: Skip | None = None

    @property
    def status(self) -> str:
        if self.skip is not None:
            return "skip"
        return "pass" if self.passed else "fail"

    def first_problem(self) -> str:
        if self.error is not None:
            return self.error
        for failure in self.failures:
            if failure.diffs:
                return failure.diffs[0].render(limit=80)
        return ""

    def skip_entry(self, reason: str = "bug") -> dict[str, str]:
        return {"case": self.case_id, "reason": reason, "note": self.first_problem()}


def run_one(backend: Backend, case_file: CaseFile, case: dict[str, Any]) -> CaseResult:
    """Run one case and compare every step; never raises for a misbehaving backend."""
    result = CaseResult(case["id"], case_file.feature, passed=False)
    try:
        run = run_case(backend, case)
    except TargetUnavailable:
        raise  # not this case's failure: the whole run stops, reported once
    except ConformanceError as exc:
        result.error = str(exc)
        return result
    except Exception as exc:  # a target that blows up is a failed case, not a crashed run
        result.error = f"the target raised {type(exc).__name__}: {exc}"
        return result
    if run.setup_error is not None:
        result.error = run.setup_error
        return result
    compare = case_file.data.get("compare")
    for step_run in run.steps:
        step = step_run.step
        expect = substitute(step["expect"], PLACEHOLDER, run.project)
        diffs = check_outcome(
            expect, step_run.outcome, step["endpoint"], compare, step.get("compare")
        )
        if diffs:
            result.failures.append(StepFailure(step_run.index, step["endpoint"], diffs))
    result.passed = not result.failures
    return result


def run_catalogue(
    backend: Backend,
    files: Sequence[CaseFile],
    pattern: str | None = None,
    skips: dict[str, Skip] | None = None,
    unknown_fields: UnknownFields = "reject",
) -> list[CaseResult]:
    """Run the selected cases that hold for a target in the ``unknown_fields`` mode.

    Raises :class:`TargetUnavailable` as soon as the target cannot run cases at all.
    """
    skips = skips or {}
    results = []
    for case_file, case in selected(files, pattern, unknown_fields):
        result = run_one(backend, case_file, case)
        result.skip = skips.get(case["id"])
        results.append(result)
    return results


# --- differential --------------------------------------------------------------------------


Deviation = Callable[[str, dict[str, Any]], str | None]
"""``(endpoint, request) -> name``: the documented deviation from the oracle that a
read exercises on the target under test, or None. Such a read may differ."""


@dataclass
class DifferentialResult:
    examples: int
    passed: bool
    case: dict[str, Any] | None = None
    diffs: list[Difference] = field(default_factory=list)
    error: str | None = None
    tolerated: dict[str, int] = field(default_factory=dict)
    """How many differing reads each documented deviation explained (``deviation``)."""


def _oracle_expect(outcome: Outcome) -> dict[str, Any]:
    if outcome.status == 200:
        return {"status": 200, "body": outcome.body}
    return {"status": outcome.status, "message_contains": first_message(outcome)}


def compare_workload(
    backend: Backend,
    workload: Any,
    deviation: Deviation | None = None,
    tolerated: dict[str, int] | None = None,
) -> tuple[list[Difference], dict[str, Any]]:
    """Run ``workload`` on ``backend`` and on a fresh oracle; the first differing step's
    diffs (empty if none) and the workload as a case (expectations from the oracle).

    A differing read that ``deviation`` names is counted in ``tolerated`` and the run
    goes on, so a documented deviation met early does not hide a difference after it.
    """
    oracle = InProcessTarget()
    project = backend.new_project()
    backend.set_clock(DEFAULT_INSTANT)
    setup: list[dict[str, Any]] = []
    steps: list[dict[str, Any]] = []
    case: dict[str, Any] = {
        "id": "differential.minimal",
        "description": "A minimal workload on which target and oracle differ (from Hypothesis).",
        "rules": ["differential"],
        "setup": setup,
        "steps": steps,
    }
    for create in workload.creates:
        request = substitute(create.request, PLACEHOLDER, project)
        backend.set_clock(create.at)
        oracle.set_clock(create.at)
        want = oracle.feedback_create(request)
        got = backend.feedback_create(request)
        diffs = check_outcome(_oracle_expect(want), got, "create", None)
        if want.status == 200 and not diffs:
            setup.append({"at": create.at, "create": create.request})
            continue
        steps.append(
            {
                "endpoint": "create",
                "at": create.at,
                "request": create.request,
                "expect": substitute(_oracle_expect(want), project, PLACEHOLDER),
            }
        )
        if diffs:
            return diffs, case
    for query in workload.queries:
        request = substitute(query.request, PLACEHOLDER, project)
        step: dict[str, Any] = {"endpoint": query.endpoint}
        if query.at is not None:  # a write at its own instant
            backend.set_clock(query.at)
            oracle.set_clock(query.at)
            step["at"] = query.at
        want = call(oracle, query.endpoint, request)
        got = call(backend, query.endpoint, request)
        step["request"] = query.request
        step["expect"] = substitute(_oracle_expect(want), project, PLACEHOLDER)
        diffs = check_outcome(_oracle_expect(want), got, query.endpoint, None)
        explained = (
            deviation(query.endpoint, query.request)
            if diffs and deviation is not None and query.at is None
            else None
        )
        if explained is not None:
            if tolerated is not None:
                tolerated[explained] = tolerated.get(explained, 0) + 1
            continue  # left out of the case: it would fail for the documented reason
        steps.append(step)
        if diffs:
            return diffs, case
    return [], case


class _Mismatch(AssertionError):
    pass


def run_differential(
    backend: Backend,
    examples: int,
    seed: int | None = None,
    *,
    endpoints: Sequence[str] | None = None,
    deviation: Deviation | None = None,
) -> DifferentialResult:
    """Random rows and queries on ``backend`` and on the oracle; shrunk on a difference.

    ``endpoints`` limits the steps after the setup creates to those endpoints (a
    target that implements only part of the family); ``deviation`` names the reads
    that may differ (see :func:`compare_workload`).
    """
    if examples <= 0:
        return DifferentialResult(0, True)
    try:
        from hypothesis import HealthCheck, Phase, given, settings  # noqa: PLC0415
        from hypothesis import seed as hypothesis_seed  # noqa: PLC0415

        from .workload import workloads  # noqa: PLC0415
    except ImportError as exc:
        return DifferentialResult(0, False, error=f"the differential run needs hypothesis: {exc}")

    last: list[tuple[list[Difference], dict[str, Any]]] = []
    count = [0]
    tolerated: dict[str, int] = {}

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        print_blob=False,
        report_multiple_bugs=False,
    )
    @given(workloads(endpoints=endpoints))
    def check(workload: Any) -> None:
        count[0] += 1
        diffs, case = compare_workload(backend, workload, deviation, tolerated)
        if diffs:
            last.append((diffs, case))
            raise _Mismatch(diffs[0].render())

    test: Callable[[], None] = check
    if seed is not None:
        test = hypothesis_seed(seed)(check)
    try:
        test()
    except _Mismatch:
        diffs, case = last[-1]
        return DifferentialResult(count[0], False, case=case, diffs=diffs, tolerated=tolerated)
    except ConformanceError as exc:
        return DifferentialResult(count[0], False, error=str(exc), tolerated=tolerated)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        return DifferentialResult(count[0], False, error=error, tolerated=tolerated)
    return DifferentialResult(count[0], True, tolerated=tolerated)


# --- reporting -----------------------------------------------------------------------------


def report(
    results: Sequence[CaseResult],
    differential: DifferentialResult | None,
    out: Printer = print,
    unknown_skips: Sequence[str] = (),
) -> None:
    for r in results:
        if r.skip is not None:
            note = "now PASSES: remove it from the skip list" if r.passed else r.skip.reason
            out(f"SKIP  {r.case_id}  ({note})")
        elif r.passed:
            out(f"PASS  {r.case_id}")
        else:
            out(f"FAIL  {r.case_id}  [{r.feature}]")
            if r.error is not None:
                out(f"      {r.error}")
            for failure in r.failures:
                out(f"      step {failure.index} ({failure.endpoint}):")
                for d in failure.diffs[:MAX_DIFFS_SHOWN]:
                    out(f"        {d.render()}")
                if len(failure.diffs) > MAX_DIFFS_SHOWN:
                    out(f"        ... and {len(failure.diffs) - MAX_DIFFS_SHOWN} more differences")
            # Only real differences get here: a target that cannot run cases at all
            # raised TargetUnavailable and stopped the run before any report.
            out(f"      skip entry: {json.dumps(r.skip_entry(), ensure_ascii=False)}")
    passing_skips = [r.case_id for r in results if r.skip is not None and r.passed]
    if passing_skips:
        out("")
        out(f"{len(passing_skips)} skipped case(s) now pass; remove them from the skip list:")
        for cid in passing_skips:
            out(f"  {cid}")
    if unknown_skips:
        out("")
        out("skip entries naming no selected case: " + ", ".join(unknown_skips))
    if differential is not None:
        out("")
        render_differential(differential, out)
    out("")
    out(summary_table(results, differential))


def render_differential(result: DifferentialResult, out: Printer = print) -> None:
    if result.passed:
        out(f"differential: {result.examples} examples, target and oracle agree")
        return
    if result.error is not None:
        out(f"differential: ERROR after {result.examples} examples: {result.error}")
        return
    out(f"differential: target and oracle DIFFER (after {result.examples} examples, shrunk):")
    for d in result.diffs[:MAX_DIFFS_SHOWN]:
        out(f"  {d.render()}")
    out("  minimal failing example, as a case (expectations from the oracle):")
    text = dump_json(result.case).rstrip()
    for line in text.splitlines():
        out(f"  {line}")


def summary_table(
    results: Sequence[CaseResult], differential: DifferentialResult | None = None
) -> str:
    features: dict[str, dict[str, int]] = {}
    for r in results:
        row = features.setdefault(r.feature, {"pass": 0, "fail": 0, "skip": 0})
        row[r.status] += 1
    width = max([len("feature"), len("total"), *map(len, features)])
    lines = [f"{'feature':<{width}}  {'pass':>5}  {'fail':>5}  {'skip':>5}"]
    lines.append("-" * len(lines[0]))
    totals = {"pass": 0, "fail": 0, "skip": 0}
    for name in sorted(features):
        row = features[name]
        lines.append(f"{name:<{width}}  {row['pass']:>5}  {row['fail']:>5}  {row['skip']:>5}")
        for k in totals:
            totals[k] += row[k]
    lines.append("-" * len(lines[0]))
    lines.append(
        f"{'total':<{width}}  {totals['pass']:>5}  {totals['fail']:>5}  {totals['skip']:>5}"
    )
    if differential is not None:
        verdict = "pass" if differential.passed else "FAIL"
        lines.append(f"{'differential':<{width}}  {verdict:>5}  ({differential.examples} examples)")
    return "\n".join(lines)


def write_junit(
    path: Path, results: Sequence[CaseResult], differential: DifferentialResult | None
) -> None:
    root = ET.Element("testsuites", name="refengine conformance")
    by_feature: dict[str, list[CaseResult]] = {}
    for r in results:
        by_feature.setdefault(r.feature, []).append(r)
    for feature in sorted(by_feature):
        group = by_feature[feature]
        suite = ET.SubElement(
            root,
            "testsuite",
            name=feature,
            tests=str(len(group)),
            failures=str(sum(r.status == "fail" for r in group)),
            skipped=str(sum(r.status == "skip" for r in group)),
            errors="0",
        )
        for r in group:
            tc = ET.SubElement(
                suite, "testcase", classname=f"conformance.{feature}", name=r.case_id
            )
            if r.status == "skip":
                assert r.skip is not None
                msg = f"{r.skip.reason}: {r.skip.note}"
                if r.passed:
                    msg += " (now passes: remove from the skip list)"
                ET.SubElement(tc, "skipped", message=msg)
            elif r.status == "fail":
                failure = ET.SubElement(tc, "failure", message=r.first_problem())
                failure.text = "\n".join(_failure_lines(r))
    if differential is not None:
        suite = ET.SubElement(
            root,
            "testsuite",
            name="differential",
            tests="1",
            failures="0" if differential.passed else "1",
        )
        tc = ET.SubElement(suite, "testcase", classname="conformance.differential", name="workload")
        if not differential.passed:
            lines: list[str] = []
            render_differential(differential, lines.append)
            failure = ET.SubElement(tc, "failure", message=lines[0])
            failure.text = "\n".join(lines)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


def _failure_lines(r: CaseResult) -> list[str]:
    lines = []
    if r.error is not None:
        lines.append(r.error)
    for failure in r.failures:
        lines.append(f"step {failure.index} ({failure.endpoint}):")
        lines.extend(f"  {d.render()}" for d in failure.diffs)
    lines.append("skip entry: " + json.dumps(r.skip_entry(), ensure_ascii=False))
    return lines
