"""The ``refengine`` command line: demo, serve, dump, load.

Every command has ``--help``. Failures print one line on stderr,
``refengine: error: ...``, and exit with status 1 (2 for a bad command line);
never a traceback. The server extra (FastAPI, uvicorn) is imported only by
``serve``, so ``demo``, ``dump`` and ``load`` run on the core install.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta, timezone
from functools import partial
from typing import IO, Any, NoReturn, TypeVar

from . import __version__, dumpfile
from .clock import Clock, ManualClock, SystemClock
from .engine import EXECUTORS, Engine
from .errors import DumpFormatError, InvalidRequest
from .rows import FeedbackRow, datetime_to_us, us_to_datetime
from .synthetic import synthetic_requests

DEMO_PROJECT = "acme/agent-demo"
DEMO_START = datetime(2024, 5, 1, tzinfo=timezone.utc)
DEMO_DAYS = 7
DEMO_USER = "demo-user"
BLOCKS = " ▏▎▍▌▋▊▉█"

T = TypeVar("T")


class CliError(Exception):
    """A failure to report as one line on stderr (exit status 1)."""


# --- progress ----------------------------------------------------------------------


class Progress:
    """A ``label: done/total`` counter on stderr, redrawn in place.

    Shown only when stderr is a terminal and the work has run for more than a
    second, so pipes, logs and quick runs stay quiet.
    """

    def __init__(self, label: str, total: int | None = None, stream: IO[str] | None = None):
        self.label = label
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = _isatty(self.stream)
        self.started = time.monotonic()
        self.last_drawn = 0.0
        self.drawn = False

    def update(self, done: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self.started < 1.0 or now - self.last_drawn < 0.1:
            return
        self.last_drawn = now
        total = f"/{self.total:,}" if self.total is not None else ""
        self.stream.write(f"\r{self.label}: {done:,}{total}")
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()

    def track(self, items: Iterable[T], every: int = 1) -> Iterator[T]:
        """Yield ``items``, counting them."""
        count = 0
        try:
            for item in items:
                yield item
                count += 1
                if count % every == 0:
                    self.update(count)
        finally:
            self.close()


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


# --- demo data ---------------------------------------------------------------------


def seeded_ids(seed: int) -> Iterator[str]:
    """Deterministic UUID-shaped row ids, so a seed gives the same dump byte for byte."""
    rng = random.Random(f"refengine-demo-ids-{seed}")
    while True:
        yield str(uuid.UUID(int=rng.getrandbits(128), version=4))


def build_demo(seed: int, rows: int) -> Engine:
    """The demo project: ``rows`` creates over a week, through ``feedback_create``."""
    clock = ManualClock(DEMO_START)
    ids = seeded_ids(seed)
    engine = Engine(clock=clock, user_id=DEMO_USER, id_factory=lambda: next(ids))
    requests = synthetic_requests(DEMO_PROJECT, rows, DEMO_START, timedelta(days=DEMO_DAYS), seed)
    for moment, request in Progress("creating demo feedback", rows).track(requests, every=100):
        clock.set(moment)
        engine.feedback_create(request)
    clock.set(DEMO_START + timedelta(days=DEMO_DAYS))
    return engine


def _ms(moment: datetime) -> int:
    return datetime_to_us(moment) // 1000


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        parts = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(cells)
        ]
        return "  ".join(parts).rstrip()

    return [line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def _num(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{float(value):.{digits}f}"


def bar(value: float, scale: float, width: int = 40) -> str:
    """A horizontal bar of eighth blocks: ``value / scale`` of ``width`` cells."""
    if scale <= 0 or value <= 0:
        return ""
    eighths = round(min(value / scale, 1.0) * width * 8)
    return BLOCKS[8] * (eighths // 8) + (BLOCKS[eighths % 8] if eighths % 8 else "")


def demo_report(engine: Engine, seed: int) -> list[str]:
    """The demo's tables and chart, as lines of text."""
    start, end = DEMO_START, DEMO_START + timedelta(days=DEMO_DAYS)
    window = {"project_id": DEMO_PROJECT, "after_ms": _ms(start), "before_ms": _ms(end)}
    out = [
        f"refengine demo: {len(engine):,} feedback rows in {DEMO_PROJECT}, "
        f"{start:%Y-%m-%d} to {end:%Y-%m-%d} (seed {seed})",
        "",
        "Per scorer - POST /feedback/aggregate, group_by [scorer_id]",
    ]
    by_scorer = engine.feedback_aggregate({**window, "group_by": ["scorer_id"]})
    rows = []
    for b in by_scorer.buckets:
        count = b.rating_counts.get("_rating_", 0)
        avg = b.rating_sums.get("_rating_", 0.0) / count if count else None
        top = sorted(b.tag_counts.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
        rows.append(
            [
                b.group.get("scorer_id") or "(none)",
                _num(b.total_count),
                _num(b.scored_count),
                _num(avg),
                ", ".join(f"{tag} {n}" for tag, n in top) or "-",
            ]
        )
    out += _table(["scorer_id", "total", "scored", "avg _rating_", "top tags"], rows, {1, 2, 3})

    out += ["", "Daily scorer output - POST /feedback/stats, feedback_type wandb.agent_monitor"]
    stats = engine.feedback_stats(
        {
            "project_id": DEMO_PROJECT,
            "start": start,
            "end": end,
            "granularity": 86400,
            "feedback_type": "wandb.agent_monitor",
            "metrics": [
                {
                    "json_path": "output.score",
                    "aggregations": ["avg", "min", "max"],
                    "percentiles": [95],
                },
                {"json_path": "output.passed", "value_type": "boolean"},
            ],
        }
    )
    keys = [
        "avg_output_score",
        "min_output_score",
        "max_output_score",
        "p95_output_score",
        "count_true_output_passed",
        "count_false_output_passed",
    ]
    headers = ["day", "rows", "avg score", "min", "max", "p95", "passed", "failed"]
    rows = [
        [str(bucket["timestamp"])[:10], _num(bucket["count"])]
        + [_num(bucket[key]) for key in keys[:4]]
        + [_num(int(bucket[key])) for key in keys[4:]]
        for bucket in stats.buckets
    ]
    ws = stats.window_stats or {}
    score, passed = ws.get("output_score", {}), ws.get("output_passed", {})
    rows.append(
        [
            "whole week",
            _num(sum(int(b["count"]) for b in stats.buckets)),
            *(_num(score.get(k)) for k in ("avg", "min", "max", "p95")),
            *(_num(int(passed.get(k) or 0)) for k in ("count_true", "count_false")),
        ]
    )
    out += _table(headers, rows, set(range(1, 8)))

    out += ["", "avg _rating_ every 12 hours - POST /feedback/aggregate, time_bucket_seconds 43200"]
    series = engine.feedback_aggregate({**window, "time_bucket_seconds": 43200})
    for b in series.buckets:
        count = b.rating_counts.get("_rating_", 0)
        avg = b.rating_sums.get("_rating_", 0.0) / count if count else 0.0
        when = us_to_datetime((b.time_bucket_start_ms or 0) * 1000)
        out.append(f"{when:%m-%d %H:%M}  {bar(avg, 1.0):<40}  {avg:.3f}")
    out.append(f"{'':13}{'0':<20}{'0.5':<20}1")
    return out


# --- commands ----------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    engine = build_demo(args.seed, args.rows)
    for line in demo_report(engine, args.seed):
        print(line)
    return 0


def _load_into(engine: Engine, paths: Sequence[str]) -> None:
    """Load dumps into ``engine``; each file all or nothing, checked before storing."""
    for path in paths:
        progress = Progress(f"reading {path}", None)
        try:
            rows = dumpfile.read_rows(path, track=partial(progress.track, every=1000))
        except OSError as exc:
            raise CliError(f"cannot read {path}: {exc.strerror or exc}") from None
        engine.insert_rows(rows)


def cmd_load(args: argparse.Namespace) -> int:
    engine = Engine()
    _load_into(engine, args.files)
    rows = []
    for project in engine.projects():
        project_rows = engine.rows(project)
        types = Counter(row.feedback_type for row in project_rows)
        rows.append(
            [
                project,
                _num(len(project_rows)),
                _iso(project_rows[0]),
                _iso(project_rows[-1]),
                str(len(types)),
            ]
        )
    names = ", ".join(args.files)
    print(f"{names}: valid, {len(engine):,} rows in {len(rows)} project(s)")
    if rows:
        for line in _table(["project", "rows", "first", "last", "types"], rows, {1, 4}):
            print(line)
    return 0


def _iso(row: FeedbackRow) -> str:
    return us_to_datetime(row.created_at_us).isoformat(timespec="milliseconds")


def cmd_dump(args: argparse.Namespace) -> int:
    if args.demo:
        engine = build_demo(args.seed, args.rows)
    elif args.data:
        engine = Engine()
        _load_into(engine, args.data)
    else:
        raise CliError("nothing to dump: pass --demo or --data FILE (see refengine dump --help)")
    projects = [p for p in engine.projects() if not args.project or p in args.project]
    rows = (row for project in projects for row in engine.rows(project))
    if args.out == "-":
        count = dumpfile.write_rows(rows, sys.stdout)
        sys.stdout.flush()
    else:
        try:
            with open(args.out, "w", encoding="utf-8") as out:
                count = dumpfile.write_rows(rows, out)
        except OSError as exc:
            raise CliError(f"cannot write {args.out}: {exc.strerror or exc}") from None
        print(f"wrote {count:,} rows to {args.out}", file=sys.stderr)
    return 0


def parse_api_key(text: str) -> tuple[str, str | None]:
    """``KEY`` or ``KEY=USER_ID`` (split at the first ``=``; an empty user means none)."""
    key, _, user = text.partition("=")
    if not key:
        raise argparse.ArgumentTypeError(f"expected KEY or KEY=USER_ID, got {text!r}")
    return key, user or None


def parse_clock(text: str) -> ManualClock:
    try:
        return ManualClock(text)
    except (ValueError, OverflowError):
        raise argparse.ArgumentTypeError(
            f"not an ISO 8601 date-time: {text!r} (e.g. 2024-05-01T12:00:00Z)"
        ) from None


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn  # noqa: PLC0415 - the server extra, needed only here

        from .server import create_app, set_nodelay  # noqa: PLC0415
    except ImportError as exc:
        raise CliError(
            f"`refengine serve` needs the server extra ({exc.name or exc} is missing): "
            "pip install 'refengine[server]'"
        ) from None
    clock: Clock = args.clock if args.clock is not None else SystemClock()
    engine = Engine(clock=clock, executor=args.executor)
    if args.data:
        _load_into(engine, args.data)
    keys = dict(args.api_key or [])
    try:
        sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((args.host, args.port))
        set_nodelay(sock)
        sock.listen(2048)  # connections queue from now on, before uvicorn starts
    except (OSError, OverflowError) as exc:
        raise CliError(f"cannot listen on {args.host}:{args.port}: {exc}") from None
    host, port = sock.getsockname()[:2]
    where = f"[{host}]" if ":" in host else host
    notes = [f"{len(engine):,} rows", f"{args.executor} executor"]
    notes.append(f"clock fixed at {clock().isoformat()}" if args.clock else "system clock")
    notes.append(f"{len(keys)} API key(s)" if keys else "open: no API keys configured")
    print(f"refengine serving http://{where}:{port} ({'; '.join(notes)})", file=sys.stderr)
    print(
        "  routes: POST /feedback/create, /feedback/batch/create, /feedback/aggregate, "
        "/feedback/stats; GET /health, /docs",
        file=sys.stderr,
    )
    config = uvicorn.Config(
        create_app(engine, api_keys=keys), log_level=args.log_level, lifespan="off"
    )
    uvicorn.Server(config).run(sockets=[sock])
    return 0


# --- parser ------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse, with errors on one line (plus a pointer to --help)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="refengine",
        description="In-memory reference engine for the trace server feedback endpoints.",
        epilog="Start with `refengine demo`. Each command has --help.",
    )
    parser.add_argument("--version", action="version", version=f"refengine {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    demo = commands.add_parser(
        "demo",
        help="build a synthetic project and print aggregate and stats tables",
        description="Build a realistic synthetic project - a week of scorer feedback from "
        "several monitors, scorers and agents, with ratings, tags and numeric/boolean/"
        "categorical payloads - through feedback_create, then print an aggregate table, "
        "a stats table and a chart. The output is the same for the same --seed.",
    )
    demo.add_argument("--seed", type=int, default=7, help="random seed (default: 7)")
    demo.add_argument(
        "--rows", type=_count, default=2000, help="feedback rows to create (default: 2000)"
    )
    demo.set_defaults(run=cmd_demo)

    serve = commands.add_parser(
        "serve",
        help="serve the feedback endpoints over HTTP (needs refengine[server])",
        description="Serve POST /feedback/create, /feedback/batch/create, /feedback/aggregate "
        "and /feedback/stats, GET /health and the OpenAPI document (/openapi.json, /docs). "
        'With a fixed --clock, POST /refengine/clock {"now": ISO8601} moves it (a '
        "refengine-only test control). Stop with Ctrl-C.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, default=6345, help="port, 0 = any (default: 6345)")
    serve.add_argument(
        "--executor",
        choices=sorted(EXECUTORS),
        default="fast",
        help="how queries are folded: 'fast' (the indexes, default) or 'reference' "
        "(the plain row-at-a-time folds of refengine.semantics); the answers are the same",
    )
    serve.add_argument(
        "--data", action="append", metavar="ROWS.jsonl", help="preload a dump (repeatable)"
    )
    serve.add_argument(
        "--api-key",
        action="append",
        type=parse_api_key,
        metavar="KEY[=USER_ID]",
        help="accept only these keys (HTTP Basic api:KEY), acting as USER_ID; repeatable. "
        "Without any, every caller is accepted.",
    )
    serve.add_argument(
        "--clock",
        type=parse_clock,
        metavar="ISO8601",
        help="fix the engine clock (created_at, default stats end) at this instant",
    )
    serve.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="uvicorn log level (default: info)",
    )
    serve.set_defaults(run=cmd_serve)

    dump = commands.add_parser(
        "dump",
        help="write a dataset as a JSON Lines dump",
        description="Write rows as a JSON Lines dump (one stored row per line; the format "
        "`serve --data` and `load` read). Source: --demo (the demo dataset for --seed and "
        "--rows, byte-for-byte reproducible) or --data (re-write existing dumps, e.g. to "
        "merge them or keep some projects). OUT '-' writes to stdout.",
    )
    source = dump.add_mutually_exclusive_group()
    source.add_argument("--demo", action="store_true", help="dump the demo dataset")
    source.add_argument(
        "--data", action="append", metavar="ROWS.jsonl", help="dump these dumps (repeatable)"
    )
    dump.add_argument("--seed", type=int, default=7, help="demo seed (default: 7)")
    dump.add_argument("--rows", type=_count, default=2000, help="demo rows (default: 2000)")
    dump.add_argument(
        "--project", action="append", metavar="ID", help="keep only this project (repeatable)"
    )
    dump.add_argument("out", metavar="OUT", help="output file, or - for stdout")
    dump.set_defaults(run=cmd_dump)

    load = commands.add_parser(
        "load",
        help="check dumps and summarise them per project",
        description="Read JSON Lines dumps as `serve --data` would, checking every line; "
        "print rows, first and last created_at and the number of feedback types per "
        "project. A bad line fails with FILE:LINE: reason and exit status 1.",
    )
    load.add_argument("files", nargs="+", metavar="ROWS.jsonl", help="dump files")
    load.set_defaults(run=cmd_load)

    _add_conformance_commands(commands)
    return parser


def _add_conformance_commands(commands: Any) -> None:
    """``conformance`` and ``cases``; they need the ``conformance`` extra."""
    try:
        from .conformance.cli import (  # noqa: PLC0415 - optional extra
            add_cases_parser,
            add_conformance_parser,
        )
    except ImportError as exc:
        missing = exc.name or "a dependency"
        for name in ("conformance", "cases"):
            stub = commands.add_parser(name, help="(needs: pip install 'refengine[conformance]')")
            stub.set_defaults(run=lambda _args, missing=missing: _needs_extra(missing))
        return
    add_conformance_parser(commands)
    add_cases_parser(commands)


def _needs_extra(missing: str) -> int:
    raise CliError(f"{missing} is not installed: pip install 'refengine[conformance]'")


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        status: int = args.run(args)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`refengine demo | head`): stop quietly, as Unix tools do.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            pass
        return 141
    except KeyboardInterrupt:
        print("refengine: interrupted", file=sys.stderr)
        return 130
    except (CliError, DumpFormatError, InvalidRequest) as exc:
        print(f"refengine: error: {exc}", file=sys.stderr)
        return 1
    except ImportError as exc:
        print(
            f"refengine: error: {exc.name or exc} is not installed "
            "(pip install 'refengine[server]' or 'refengine[conformance]')",
            file=sys.stderr,
        )
        return 1
    except (OSError, ValueError) as exc:
        print(f"refengine: error: {exc}", file=sys.stderr)
        return 1
    return status


if __name__ == "__main__":
    sys.exit(main())
