"""The ``refengine`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone

from .clock import ManualClock
from .engine import Engine
from .synthetic import synthetic_requests

PROJECT = "acme/agent-demo"


def demo(args: argparse.Namespace) -> int:
    start = datetime(2024, 5, 1, tzinfo=timezone.utc)
    clock = ManualClock(start)
    engine = Engine(clock=clock, user_id="demo-user")
    for moment, req in synthetic_requests(PROJECT, args.rows, start, timedelta(days=7), args.seed):
        clock.set(moment)
        engine.feedback_create(req)
    print(f"created {len(engine)} feedback rows in {PROJECT}")
    for row in engine.rows(PROJECT)[:10]:
        print(
            f"{row.created_at.isoformat()}  {row.feedback_type:<28} "
            f"scorer={row.scorer_id or '-':<12} tags={list(row.scorer_tags)}"
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="refengine", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    p_demo = commands.add_parser("demo", help="build a synthetic project and show it")
    p_demo.add_argument("--seed", type=int, default=7)
    p_demo.add_argument("--rows", type=int, default=2000)
    p_demo.set_defaults(run=demo)
    args = parser.parse_args(argv)
    result: int = args.run(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
