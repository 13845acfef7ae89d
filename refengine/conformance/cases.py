"""The case catalogue: load, validate against the schema, run, and regenerate.

``spec/cases/*.json`` hold the cases; ``spec/cases.schema.json`` their format.
Expectations are written by the in-process engine (:func:`update_catalogue`,
``refengine cases --update``) and reviewed like code.
"""

from __future__ import annotations

import argparse
import copy
import fnmatch
import json
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..models import UnknownFields
from .backend import Backend, ConformanceError, Outcome, call
from .targets import DEFAULT_INSTANT, InProcessTarget, counting_ids


def find_spec_dir() -> Path:
    """The ``spec/`` directory the kit reads: the copy installed inside the package
    (``refengine/spec/``, present in a wheel install), else the checkout's ``spec/``
    (an editable install or a run from the source tree, where ``spec/`` is the one
    source the installed copy is built from)."""
    package = Path(__file__).resolve().parents[1]
    installed = package / "spec"
    if (installed / "cases.schema.json").is_file():
        return installed
    return package.parent / "spec"


SPEC_DIR = find_spec_dir()
CASES_DIR = SPEC_DIR / "cases"
SCHEMA_PATH = SPEC_DIR / "cases.schema.json"
SEMANTICS_PATH = SPEC_DIR / "SEMANTICS.md"
INDEX_NAME = "INDEX.md"
PLACEHOLDER = "{project}"

DEFAULT_COMPARE: dict[str, dict[str, Any]] = {
    "create": {
        "ignore": ["$.id", "$.wb_user_id"],
        "timestamps": ["$.created_at"],
        "tolerance": {"rel": 1e-9, "abs": 1e-12},
    },
    "create_batch": {
        "ignore": ["$.res[*].id", "$.res[*].wb_user_id"],
        "timestamps": ["$.res[*].created_at"],
        "tolerance": {"rel": 1e-9, "abs": 1e-12},
    },
    "aggregate": {
        "unordered": [{"path": "$.buckets", "within": "time_bucket_start_ms"}],
        "tolerance": {"rel": 1e-9, "abs": 1e-12},
    },
    "stats": {
        "timestamps": ["$.start", "$.end", "$.buckets[*].timestamp"],
        "tolerance": {"rel": 1e-9, "abs": 1e-12},
    },
    "query": {
        "ignore": ["$.result[*].wb_user_id"],
        "timestamps": ["$.result[*].created_at"],
        "unordered": [{"path": "$.result"}],
        "tolerance": {"rel": 1e-9, "abs": 1e-12},
    },
    "purge": {},
    "replace": {
        "ignore": ["$.id", "$.wb_user_id"],
        "timestamps": ["$.created_at"],
    },
    "payload_schema": {},
    "server_info": {"ignore": ["$.trace_server_version"]},
}
"""What ``--update`` writes into a file's ``compare`` for each endpoint it uses.

Ids are random and the user is the caller's identity over HTTP, so create responses
are checked for those keys but not their values; a case that sends its own ``id``
overrides ``ignore`` in its step. Rows within one aggregate time bucket are
unordered (production leaves ties unordered); unbucketed rows stay ordered. Query
results are a multiset unless a step with ``sort_by`` says otherwise in its own
``compare`` (``"unordered": []``, or ``within`` a sort key to compare its tie groups
as multisets); the server version is the backend's own.
"""


@dataclass
class CaseFile:
    path: Path
    data: dict[str, Any]

    @property
    def feature(self) -> str:
        return str(self.data.get("feature", self.path.stem))

    def cases(self) -> list[dict[str, Any]]:
        cases = self.data.get("cases", [])
        return cases if isinstance(cases, list) else []


# --- loading and validation --------------------------------------------------------------


def load_schema(path: Path = SCHEMA_PATH) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return schema


def schema_errors(data: Any, schema: dict[str, Any] | None = None) -> list[str]:
    """Schema violations of one case file, as ``<json path>: <message>`` lines."""
    import jsonschema  # type: ignore[import-untyped]  # noqa: PLC0415 (test extra)

    validator = jsonschema.Draft202012Validator(schema if schema is not None else load_schema())
    out = []
    for error in sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.path))):
        where = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.path)
        out.append(f"{where}: {error.message}")
    return out


def catalogue_paths(cases_dir: Path = CASES_DIR) -> list[Path]:
    return sorted(cases_dir.glob("*.json"))


def load_catalogue(cases_dir: Path = CASES_DIR, *, validate: bool = True) -> list[CaseFile]:
    """Every case file, validated; raises :class:`ConformanceError` listing the problems,
    or saying in one line that ``cases_dir`` is missing or holds no case file."""
    if not cases_dir.is_dir():
        raise ConformanceError(f"no case directory {cases_dir} (--cases-dir names one)")
    if not catalogue_paths(cases_dir):
        raise ConformanceError(f"no case files in {cases_dir} (expected *.json case files)")
    files = []
    problems = []
    schema = load_schema() if validate else None
    for path in catalogue_paths(cases_dir):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            problems.append(f"{path.name}: not JSON: {exc}")
            continue
        if validate:
            problems.extend(f"{path.name}: {e}" for e in schema_errors(data, schema))
        files.append(CaseFile(path, data))
    problems.extend(duplicate_ids(files))
    if problems:
        raise ConformanceError("invalid case catalogue:\n  " + "\n  ".join(problems))
    return files


def duplicate_ids(files: Iterable[CaseFile]) -> list[str]:
    seen: dict[str, str] = {}
    out = []
    for f in files:
        for case in f.cases():
            cid = case.get("id")
            if not isinstance(cid, str):
                continue
            if cid in seen:
                out.append(f"case id {cid!r} appears in {seen[cid]} and {f.path.name}")
            else:
                seen[cid] = f.path.name
    return out


def selected(
    files: Sequence[CaseFile], pattern: str | None, unknown_fields: UnknownFields | None = None
) -> Iterator[tuple[CaseFile, dict[str, Any]]]:
    """Cases whose id or feature matches ``pattern`` (a glob; plain text is a substring)
    and, when ``unknown_fields`` is given, that hold for a target in that mode."""
    for f in files:
        for case in f.cases():
            if unknown_fields is not None and not applies(case, unknown_fields):
                continue
            if pattern is None or _matches(pattern, case["id"]) or _matches(pattern, f.feature):
                yield f, case


def case_mode(case: dict[str, Any]) -> UnknownFields:
    """The unknown-fields mode a case is written for (``"reject"`` when it holds in both)."""
    return "ignore" if case.get("unknown_fields") == "ignore" else "reject"


def applies(case: dict[str, Any], unknown_fields: UnknownFields) -> bool:
    """Whether ``case`` holds for a target whose unknown-fields mode is ``unknown_fields``."""
    assumed = case.get("unknown_fields")
    return assumed is None or assumed == unknown_fields


def _matches(pattern: str, text: str) -> bool:
    if any(ch in pattern for ch in "*?["):
        return fnmatch.fnmatchcase(text, pattern)
    return pattern in text


# --- placeholders ---------------------------------------------------------------------


def substitute(value: Any, old: str, new: str) -> Any:
    """``value`` with ``old`` replaced by ``new`` in every string (keys included)."""
    if isinstance(value, str):
        return value.replace(old, new)
    if isinstance(value, list):
        return [substitute(v, old, new) for v in value]
    if isinstance(value, dict):
        return {substitute(k, old, new): substitute(v, old, new) for k, v in value.items()}
    return value


# --- running one case -------------------------------------------------------------------


@dataclass
class StepRun:
    index: int
    step: dict[str, Any]
    outcome: Outcome


@dataclass
class CaseRun:
    """What a backend answered for a case: setup failure, or one outcome per step."""

    project: str
    setup_error: str | None
    steps: list[StepRun]


def run_case(backend: Backend, case: dict[str, Any]) -> CaseRun:
    """Set up a fresh project on ``backend`` and send every step (not compared here).

    Raises :class:`ConformanceError` if the backend cannot set its clock.
    """
    project = backend.new_project()
    backend.set_clock(DEFAULT_INSTANT)
    for i, item in enumerate(case.get("setup", [])):
        backend.set_clock(item["at"])
        outcome = backend.feedback_create(substitute(item["create"], PLACEHOLDER, project))
        if outcome.status != 200:
            error = f"setup[{i}] create failed with status {outcome.status}: {outcome.message}"
            return CaseRun(project, error, [])
    runs = []
    for i, step in enumerate(case["steps"]):
        if "at" in step:
            backend.set_clock(step["at"])
        request = substitute(step["request"], PLACEHOLDER, project)
        runs.append(StepRun(i, step, call(backend, step["endpoint"], request)))
    return CaseRun(project, None, runs)


def expectation(outcome: Outcome, project: str, authored: dict[str, Any]) -> dict[str, Any]:
    """The ``expect`` object the engine's ``outcome`` implies (placeholders restored)."""
    if outcome.status == 200:
        return {"status": 200, "body": substitute(outcome.body, project, PLACEHOLDER)}
    message = first_message(outcome)
    kept = authored.get("message_contains")
    if (
        isinstance(kept, str)
        and kept
        and authored.get("status") == outcome.status
        and substitute(kept, PLACEHOLDER, project) in (outcome.message or "")
    ):
        message = kept  # a shorter authored substring still holds: keep it
    else:
        message = substitute(message, project, PLACEHOLDER)
    return {"status": outcome.status, "message_contains": message}


_VALUE_ERROR = re.compile(r"^(Value error|Assertion failed), ")


def first_message(outcome: Outcome) -> str:
    """The message a case expects: the 400 reason, or the first 422 msg without pydantic's
    ``Value error, `` prefix (so any backend's wording of a model check can match)."""
    body = outcome.body
    if outcome.status == 422 and isinstance(body, dict) and isinstance(body.get("detail"), list):
        for item in body["detail"]:
            if isinstance(item, dict) and isinstance(item.get("msg"), str):
                return _portable(_VALUE_ERROR.sub("", item["msg"]))
    return outcome.message or ""


def _portable(msg: str) -> str:
    """Drop pydantic's parser-specific tail from a type error (``Input should be a valid
    integer, unable to parse ...`` → ``Input should be a valid integer``)."""
    if msg.startswith("Input should be a valid "):
        msg = msg.split(", ", 1)[0].split(" or instance of ", 1)[0]
    return msg


# --- update -----------------------------------------------------------------------------


class UpdateError(ConformanceError):
    pass


def updated_file(case_file: CaseFile) -> dict[str, Any]:
    """The case file with every expectation regenerated by the in-process engine.

    Raises :class:`UpdateError` if a setup create fails, the engine crashes, or a
    step's authored ``expect.status`` disagrees with the engine.
    """
    data = copy.deepcopy(case_file.data)
    problems = []
    endpoints: set[str] = set()
    for case in data.get("cases", []):
        target = InProcessTarget(id_factory=counting_ids(), unknown_fields=case_mode(case))
        run = run_case(target, case)
        if run.setup_error is not None:
            problems.append(f"{case['id']}: {run.setup_error}")
            continue
        for step_run in run.steps:
            step, outcome = step_run.step, step_run.outcome
            endpoints.add(step["endpoint"])
            authored = step.get("expect") or {}
            where = f"{case['id']} step {step_run.index}"
            request = step.get("request")
            if (
                step["endpoint"] in ("stats", "payload_schema")
                and isinstance(request, dict)
                and request.get("end") is None
                and "at" not in step
            ):
                problems.append(f"{where}: a request without end needs the step's 'at'")
                continue
            if outcome.status not in (200, 400, 422):
                problems.append(f"{where}: the engine answered {outcome.status}: {outcome.message}")
                continue
            wanted = authored.get("status")
            if wanted is not None and wanted != outcome.status:
                problems.append(
                    f"{where}: authored to answer {wanted}, the engine answered "
                    f"{outcome.status}: {outcome.message}"
                )
                continue
            step["expect"] = expectation(outcome, run.project, authored)
    if problems:
        raise UpdateError(f"{case_file.path.name}:\n  " + "\n  ".join(problems))
    compare = data.get("compare") or {}
    for endpoint in sorted(endpoints):
        compare.setdefault(endpoint, copy.deepcopy(DEFAULT_COMPARE[endpoint]))
    data["compare"] = {k: compare[k] for k in DEFAULT_COMPARE if k in compare}
    return _ordered_file(data)


def _ordered_file(data: dict[str, Any]) -> dict[str, Any]:
    keys = ["feature", "description", "compare", "cases"]
    out = {k: data[k] for k in keys if k in data}
    out.update({k: v for k, v in data.items() if k not in out})
    case_keys = ["id", "description", "rules", "setup", "steps"]
    step_keys = ["endpoint", "at", "request", "expect", "compare"]
    cases = []
    for case in out.get("cases", []):
        c = {k: case[k] for k in case_keys if k in case}
        c.update({k: v for k, v in case.items() if k not in c})
        steps = []
        for step in c.get("steps", []):
            s = {k: step[k] for k in step_keys if k in step}
            s.update({k: v for k, v in step.items() if k not in s})
            steps.append(s)
        c["steps"] = steps
        cases.append(c)
    out["cases"] = cases
    return out


def dump_json(data: Any) -> str:
    """The on-disk form of a case file: indented, with every array or object that holds
    only scalars on one line (a stats bucket is one line). Stable, so regeneration
    diffs are reviewable."""
    return _dump(data, 0) + "\n"


def _is_leaf(value: Any) -> bool:
    children = value.values() if isinstance(value, dict) else value
    return not any(isinstance(c, (dict, list)) for c in children)


def _dump(value: Any, depth: int) -> str:
    if not isinstance(value, (dict, list)) or not value or _is_leaf(value):
        return json.dumps(value, ensure_ascii=False)
    pad = "  " * (depth + 1)
    if isinstance(value, dict):
        items = [
            f"{pad}{json.dumps(k, ensure_ascii=False)}: {_dump(v, depth + 1)}"
            for k, v in value.items()
        ]
        return "{\n" + ",\n".join(items) + "\n" + "  " * depth + "}"
    items = [f"{pad}{_dump(v, depth + 1)}" for v in value]
    return "[\n" + ",\n".join(items) + "\n" + "  " * depth + "]"


# --- rules and the index ----------------------------------------------------------------

_H2 = re.compile(r"^## (.+?)\s*$")
_H3 = re.compile(r"^### (.+?)\s*$")


def semantics_rules(path: Path = SEMANTICS_PATH) -> list[str]:
    """Every ``### `` heading of SEMANTICS.md as ``<## section> / <### heading>``."""
    rules = []
    section = ""
    in_code = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_code = not in_code
            continue
        if in_code:
            continue
        if m := _H2.match(line):
            section = m.group(1)
        elif m := _H3.match(line):
            rules.append(f"{section} / {m.group(1)}")
    return rules


def spec_rules() -> list[str]:
    """The rules of SEMANTICS.md (none when the file is not there)."""
    return semantics_rules() if SEMANTICS_PATH.exists() else []


def rule_index(files: Iterable[CaseFile]) -> dict[str, list[str]]:
    """Rule → ids of the cases citing it, in catalogue order."""
    index: dict[str, list[str]] = {}
    for f in files:
        for case in f.cases():
            for rule in case.get("rules", []):
                index.setdefault(rule, []).append(case["id"])
    return index


def render_index(files: Sequence[CaseFile], rules: Sequence[str]) -> str:
    """INDEX.md: every cited rule (in order of first citation) → its case ids, and the
    ``rules`` (SEMANTICS.md headings) that no case cites yet — normally none."""
    index = rule_index(files)
    lines = [
        "# Case index",
        "",
        "Generated by `refengine cases --update`; do not edit. Each rule of",
        "spec/SEMANTICS.md (`<section> / <heading>`) and the conformance cases that cover it.",
        "",
        "| rule | cases |",
        "|---|---|",
    ]
    for rule, ids in index.items():
        lines.append(f"| {rule} | {', '.join(f'`{i}`' for i in ids)} |")
    uncovered = [r for r in rules if r not in index]
    if uncovered:
        lines += ["", "Rules without a case:", ""]
        lines += [f"* {r}" for r in uncovered]
    lines += ["", "Machine-readable (rule → case ids):", "", "```json"]
    lines.append(json.dumps(index, indent=2, ensure_ascii=False))
    lines += ["```", ""]
    return "\n".join(lines)


def update_catalogue(cases_dir: Path = CASES_DIR, *, write: bool = True) -> dict[Path, str]:
    """Regenerate every case file (and INDEX.md); returns path → new text.

    With ``write=False`` nothing is written (the tests compare the texts with the
    files on disk to check that expectations are up to date).
    """
    files = load_catalogue(cases_dir, validate=False)
    problems = duplicate_ids(files)
    if problems:
        raise UpdateError("\n".join(problems))
    schema = load_schema()
    texts: dict[Path, str] = {}
    errors = []
    new_files = []
    for f in files:
        try:
            data = updated_file(f)
        except UpdateError as exc:
            errors.append(str(exc))
            continue
        invalid = schema_errors(data, schema)
        if invalid:
            errors.append(f"{f.path.name} (after update):\n  " + "\n  ".join(invalid))
            continue
        texts[f.path] = dump_json(data)
        new_files.append(CaseFile(f.path, data))
    if errors:
        raise UpdateError("cannot update the catalogue:\n" + "\n".join(errors))
    texts[cases_dir / INDEX_NAME] = render_index(new_files, spec_rules())
    if write:
        for path, text in texts.items():
            path.write_text(text, encoding="utf-8")
    return texts


def add_cases_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--update",
        action="store_true",
        help="regenerate every expectation with the in-process engine and write the files",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="exit 1 if regenerating would change any file (nothing is written)",
    )
    parser.add_argument("--cases-dir", type=Path, default=CASES_DIR, help="the case directory")


def installed_catalogue(cases_dir: Path) -> bool:
    """Whether ``cases_dir`` is the copy installed inside the package (read-only:
    spec/ in a checkout is the source it is built from)."""
    installed = Path(__file__).resolve().parents[1] / "spec" / "cases"
    return cases_dir.resolve() == installed


def cases_command(args: argparse.Namespace) -> int:
    cases_dir: Path = args.cases_dir
    if args.update and installed_catalogue(cases_dir):
        print(
            f"refengine: error: --update would write into the installed catalogue {cases_dir};"
            " run it in a checkout of refengine (spec/cases/), or pass --cases-dir",
            file=sys.stderr,
        )
        return 2
    try:
        if args.update or args.check:
            texts = update_catalogue(cases_dir, write=False)
            changed = [
                p for p, t in texts.items() if not p.exists() or p.read_text(encoding="utf-8") != t
            ]
            if args.check:
                for p in changed:
                    print(f"out of date: {p}")
                print(f"{len(texts)} files checked, {len(changed)} out of date")
                return 1 if changed else 0
            for p in changed:
                p.write_text(texts[p], encoding="utf-8")
                print(f"updated {p}")
            print(f"{len(texts)} files regenerated, {len(changed)} changed")
            return 0
        files = load_catalogue(cases_dir)
    except ConformanceError as exc:
        print(f"refengine: error: {exc}", file=sys.stderr)
        return 2
    n = sum(len(f.cases()) for f in files)
    print(f"{len(files)} case files, {n} cases: valid")
    return 0
