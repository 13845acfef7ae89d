"""``refengine conformance`` and ``refengine cases``.

The lead's ``refengine/cli.py`` registers both with :func:`add_conformance_parser`
and :func:`add_cases_parser`; ``python -m refengine.conformance`` runs them too.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import errors
from ..models import UNKNOWN_FIELD_MODES, UnknownFields
from .backend import Backend, ConformanceError, TargetUnavailable
from .cases import CASES_DIR, add_cases_arguments, cases_command, load_catalogue, selected
from .runner import load_skips, report, run_catalogue, run_differential, write_junit
from .targets import HttpTarget, InProcessTarget, counting_ids

DEFAULT_EXAMPLES = 50
DEFAULT_WAIT = 30.0


def make_target(
    spec: str, api_key: str | None, unknown_fields: UnknownFields = "reject"
) -> Backend:
    """``inprocess`` (the fast executor in ``unknown_fields`` mode, checked against the
    reference oracle), a ClickHouse backend in process (``chdb``, ``chdb:DIR``,
    ``clickhouse://...``; the clickhouse extra) or an ``http(s)://host:port`` base URL."""
    if spec == "inprocess":
        return InProcessTarget(executor="fast", unknown_fields=unknown_fields)
    if spec == "chdb" or spec.startswith(("chdb:", "clickhouse://", "clickhouses://")):
        return clickhouse_target(spec, unknown_fields)
    if spec.startswith(("http://", "https://")):
        return HttpTarget(spec, api_key)
    # The spec may be a URL with a password in it: never echoed.
    redacted = errors.redact_credentials(spec)
    raise ConformanceError(errors.format_message(errors.CONFORMANCE_BAD_TARGET, spec=redacted))


def clickhouse_target(spec: str, unknown_fields: UnknownFields = "reject") -> InProcessTarget:
    """The ClickHouse backend ``spec`` names, in process, with the kit's clock and
    deterministic ids; a backend that cannot be opened is :class:`TargetUnavailable`."""
    from ..backends.clickhouse import ClickHouseBackend  # noqa: PLC0415 - optional extra
    from ..errors import BackendUnavailable  # noqa: PLC0415

    try:
        backend = ClickHouseBackend.open(
            spec, id_factory=counting_ids(), unknown_fields=unknown_fields
        )
    except BackendUnavailable as exc:
        raise TargetUnavailable(exc.reason) from None
    return InProcessTarget(engine=backend, project_prefix=f"conformance/{uuid.uuid4().hex[:10]}-p")


def add_conformance_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--target",
        required=True,
        help="'inprocess' (the fast executor in process), or the base URL of a server "
        "(http://host:port); the oracle is always the reference executor",
    )
    parser.add_argument("--api-key", help="Basic auth password (the user name is 'api')")
    parser.add_argument(
        "--cases",
        metavar="PATTERN",
        help="only cases whose id or feature matches (glob or substring)",
    )
    parser.add_argument(
        "--junit", type=Path, metavar="OUT.xml", help="also write a JUnit XML report"
    )
    parser.add_argument(
        "--skip",
        type=Path,
        metavar="SKIPS.json",
        help="per-backend skip list: [{case, reason, note}]",
    )
    parser.add_argument(
        "--differential-examples",
        type=int,
        default=DEFAULT_EXAMPLES,
        metavar="N",
        help=f"differential run size (default {DEFAULT_EXAMPLES}; 0 skips it)",
    )
    parser.add_argument("--seed", type=int, help="seed for the differential run")
    parser.add_argument(
        "--cases-dir",
        type=Path,
        default=CASES_DIR,
        help="a case directory of your own (default: the catalogue shipped with refengine)",
    )
    parser.add_argument(
        "--wait",
        type=float,
        default=DEFAULT_WAIT,
        metavar="SECONDS",
        help=f"how long to wait for the target's GET /health (default {DEFAULT_WAIT:g})",
    )
    parser.add_argument(
        "--unknown-fields",
        choices=UNKNOWN_FIELD_MODES,
        default="reject",
        help="what the target does with unknown request fields: 'reject' (422, the "
        "published contract, refengine's default) or 'ignore' (production since "
        "2026-07-28); only the cases that hold in that mode run (default: reject)",
    )


def conformance_command(args: argparse.Namespace) -> int:
    """Run the catalogue (and the differential workload); 0 only if everything passes."""
    try:
        files = load_catalogue(args.cases_dir)
        skips = load_skips(args.skip) if args.skip else {}
        if args.wait < 0:
            raise ConformanceError(f"--wait must be >= 0 seconds, got {args.wait:g}")
        target = make_target(args.target, args.api_key, args.unknown_fields)
    except ConformanceError as exc:
        return usage_error(str(exc))
    chosen = {case["id"] for _f, case in selected(files, args.cases, args.unknown_fields)}
    if not chosen:
        return usage_error(
            f"no case matches {args.cases!r} (--unknown-fields {args.unknown_fields})"
        )
    try:
        preflight = getattr(target, "preflight", None)
        if callable(preflight):
            preflight(args.wait)
        results = run_catalogue(target, files, args.cases, skips, args.unknown_fields)
        differential = run_differential(target, args.differential_examples, args.seed)
    except TargetUnavailable as exc:
        print(f"refengine: error: {exc}", file=sys.stderr)
        return 1
    finally:
        close = getattr(target, "close", None)
        if callable(close):
            close()
    unknown = sorted(set(skips) - chosen) if args.cases is None else []
    report(results, differential if args.differential_examples > 0 else None, unknown_skips=unknown)
    other_mode = sum(1 for _f, _case in selected(files, args.cases)) - len(chosen)
    if other_mode:
        other = "ignore" if args.unknown_fields == "reject" else "reject"
        print(f"{other_mode} case(s) written for --unknown-fields {other} were not run")
    if args.junit:
        write_junit(args.junit, results, differential if args.differential_examples > 0 else None)
    failed = any(r.status == "fail" for r in results) or not differential.passed
    return 1 if failed else 0


def usage_error(message: str) -> int:
    """Report a usage or setup problem in the command line's format; exit status 2."""
    print(f"refengine: error: {message}", file=sys.stderr)
    return 2


def add_conformance_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``conformance`` on an ``argparse`` subparsers object."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "conformance",
        help="check a backend against the case catalogue and the oracle",
        description=conformance_command.__doc__,
    )
    add_conformance_arguments(parser)
    parser.set_defaults(run=conformance_command)
    return parser


def add_cases_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``cases`` on an ``argparse`` subparsers object."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "cases",
        help="validate the case catalogue, or regenerate its expectations (--update)",
        description="Validate spec/cases, or regenerate every expectation with the engine.",
    )
    add_cases_arguments(parser)
    parser.set_defaults(run=cases_command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m refengine.conformance {conformance,cases} ...``."""
    parser = argparse.ArgumentParser(prog="python -m refengine.conformance")
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_conformance_parser(subparsers)
    add_cases_parser(subparsers)
    args = parser.parse_args(argv)
    status: int = args.run(args)
    return status
