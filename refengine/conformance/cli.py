"""``refengine conformance`` and ``refengine cases``.

The lead's ``refengine/cli.py`` registers both with :func:`add_conformance_parser`
and :func:`add_cases_parser`; ``python -m refengine.conformance`` runs them too.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .backend import Backend, ConformanceError
from .cases import CASES_DIR, add_cases_arguments, cases_command, load_catalogue, selected
from .runner import load_skips, report, run_catalogue, run_differential, write_junit
from .targets import HttpTarget, InProcessTarget

DEFAULT_EXAMPLES = 50


def make_target(spec: str, api_key: str | None) -> Backend:
    """``inprocess`` (the fast executor, checked against the reference oracle) or an
    ``http(s)://host:port`` base URL."""
    if spec == "inprocess":
        return InProcessTarget(executor="fast")
    if spec.startswith(("http://", "https://")):
        return HttpTarget(spec, api_key)
    raise ConformanceError(f"--target must be 'inprocess' or an http(s):// URL, got {spec!r}")


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
    parser.add_argument("--cases-dir", type=Path, default=CASES_DIR, help="the case directory")


def conformance_command(args: argparse.Namespace) -> int:
    """Run the catalogue (and the differential workload); 0 only if everything passes."""
    try:
        files = load_catalogue(args.cases_dir)
        skips = load_skips(args.skip) if args.skip else {}
        target = make_target(args.target, args.api_key)
    except ConformanceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not files:
        print(
            f"error: no case files in {args.cases_dir} (the catalogue is spec/cases/ in a"
            " checkout of refengine; run from one, or pass --cases-dir)",
            file=sys.stderr,
        )
        return 2
    chosen = {case["id"] for _f, case in selected(files, args.cases)}
    if not chosen:
        print(f"error: no case matches {args.cases!r}", file=sys.stderr)
        return 2
    try:
        results = run_catalogue(target, files, args.cases, skips)
        differential = run_differential(target, args.differential_examples, args.seed)
    finally:
        close = getattr(target, "close", None)
        if callable(close):
            close()
    unknown = sorted(set(skips) - chosen) if args.cases is None else []
    report(results, differential if args.differential_examples > 0 else None, unknown_skips=unknown)
    if args.junit:
        write_junit(args.junit, results, differential if args.differential_examples > 0 else None)
    failed = any(r.status == "fail" for r in results) or not differential.passed
    return 1 if failed else 0


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
