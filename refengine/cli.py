"""The ``refengine`` command line: demo, serve, dump, load.

Every command has ``--help``. Failures print one line on stderr,
``refengine: error: ...``, and exit with status 1 (2 for a bad command line);
never a traceback. The server extra (FastAPI, uvicorn) is imported only by
``serve``, so ``demo``, ``dump`` and ``load`` run on the core install.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from functools import partial
from typing import IO, Any, NoReturn, Protocol, TypeVar

from . import __version__, dumpfile
from .clock import Clock, ManualClock, SystemClock
from .demo import Tracker, build_demo, demo_report, number, table
from .engine import EXECUTORS, Engine
from .errors import BackendUnavailable, DumpFormatError, InvalidRequest
from .models import UNKNOWN_FIELD_MODES
from .rows import FeedbackRow, us_to_datetime

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


# --- commands ----------------------------------------------------------------------


def _demo_progress(rows: int) -> Tracker:
    progress = Progress("creating demo feedback", rows)
    return partial(progress.track, every=100)


def cmd_demo(args: argparse.Namespace) -> int:
    engine = build_demo(args.seed, args.rows, _demo_progress(args.rows))
    for line in demo_report(engine, args.seed):
        print(line)
    return 0


class RowSink(Protocol):
    """Where loaded rows go: the engine, or a storage backend."""

    def insert_rows(self, rows: Iterable[FeedbackRow]) -> None: ...


def open_backend(spec: str, **options: Any) -> Any:
    """The storage ``--backend`` names: ``memory`` (None: the in-memory engine), or a
    ClickHouse backend (``chdb``, ``chdb:DIR``, ``clickhouse://...``; the clickhouse
    extra). A spec it cannot open is a :class:`CliError`."""
    if spec == "memory":
        return None
    try:
        from .backends.clickhouse import ClickHouseBackend  # noqa: PLC0415 - optional extra

        return ClickHouseBackend.open(spec, **options)
    except BackendUnavailable as exc:
        raise CliError(exc.reason) from None


def _load_into(engine: RowSink, paths: Sequence[str]) -> int:
    """Load dumps into ``engine``; each file all or nothing, checked before storing.

    Returns how many loaded rows repeat an id loaded before them (in any of the
    files): they are kept, since production stores a repeated id as another row.
    """
    seen: set[str] = set()
    repeats = 0
    for path in paths:
        progress = Progress(f"reading {path}", None)
        try:
            rows = dumpfile.read_rows(path, track=partial(progress.track, every=1000))
        except OSError as exc:
            raise CliError(f"cannot read {path}: {exc.strerror or exc}") from None
        for row in rows:
            if row.id in seen:
                repeats += 1
            else:
                seen.add(row.id)
        engine.insert_rows(rows)
    return repeats


def _repeats_note(repeats: int) -> str:
    return f"{repeats:,} row(s) repeat an earlier id (kept: ids are not unique in production)"


def cmd_load(args: argparse.Namespace) -> int:
    if args.backend != "memory":
        return _load_backend(args)
    engine = Engine()
    repeats = _load_into(engine, args.files)
    rows = []
    for project in engine.projects():
        project_rows = engine.rows(project)
        types = Counter(row.feedback_type for row in project_rows)
        rows.append(
            [
                project,
                number(len(project_rows)),
                _iso(project_rows[0]),
                _iso(project_rows[-1]),
                str(len(types)),
            ]
        )
    names = ", ".join(args.files)
    print(f"{names}: valid, {len(engine):,} rows in {len(rows)} project(s)")
    if repeats:
        print(_repeats_note(repeats))
    if rows:
        for line in table(["project", "rows", "first", "last", "types"], rows, {1, 4}):
            print(line)
    return 0


def _load_backend(args: argparse.Namespace) -> int:
    """``load --backend``: check the dumps whole, then insert them into the backend."""
    backend = open_backend(args.backend)
    try:
        before = len(backend)
        repeats = _load_into(backend, args.files)
        added = len(backend) - before
        print(
            f"{', '.join(args.files)}: valid, {added:,} rows loaded into {backend.connection.name} "
            f"({len(backend):,} rows in {len(backend.projects())} project(s))"
        )
        if repeats:
            print(_repeats_note(repeats))
    except BackendUnavailable as exc:
        raise CliError(exc.reason) from None
    finally:
        backend.close()
    return 0


def _iso(row: FeedbackRow) -> str:
    return us_to_datetime(row.created_at_us).isoformat(timespec="milliseconds")


def cmd_dump(args: argparse.Namespace) -> int:
    if args.demo:
        engine = build_demo(args.seed, args.rows, _demo_progress(args.rows))
    elif args.data:
        engine = Engine()
        repeats = _load_into(engine, args.data)
        if repeats:
            print(f"refengine: note: {_repeats_note(repeats)}", file=sys.stderr)
    else:
        raise CliError("nothing to dump: pass --demo or --data FILE (see refengine dump --help)")
    projects = [p for p in engine.projects() if not args.project or p in args.project]
    missing = [p for p in args.project or [] if p not in engine.projects()]
    if missing:
        known = ", ".join(engine.projects()) or "none"
        print(
            f"refengine: warning: no rows for --project {', '.join(missing)} "
            f"(projects in the data: {known})",
            file=sys.stderr,
        )
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
        import uvicorn  # noqa: F401, PLC0415 - the server extra, needed only here

        from .server import create_app  # noqa: F401, PLC0415
    except ImportError as exc:
        raise CliError(
            f"`refengine serve` needs the server extra ({exc.name or exc} is missing): "
            "pip install 'refengine[server]'"
        ) from None
    clock: Clock = args.clock if args.clock is not None else SystemClock()
    backend = open_backend(args.backend, clock=clock, unknown_fields=args.unknown_fields)
    if backend is None:
        engine: Any = Engine(
            clock=clock, executor=args.executor, unknown_fields=args.unknown_fields
        )
        served = f"{args.executor} executor"
    else:
        engine = backend
        served = f"backend {backend.connection.name}"
    try:
        repeats = _load_into(engine, args.data) if args.data else 0
        return _serve(args, engine, served, repeats)
    except BackendUnavailable as exc:
        raise CliError(exc.reason) from None
    finally:
        if backend is not None:
            backend.close()


def _serve(args: argparse.Namespace, engine: Any, served: str, repeats: int) -> int:
    """Listen, print the banner, and serve ``engine`` (the engine or a backend)."""
    import uvicorn  # noqa: PLC0415 - the server extra, checked by cmd_serve

    from .server import create_app, listening_socket  # noqa: PLC0415

    clock = engine.clock
    keys = dict(args.api_key or [])
    try:
        sock = listening_socket(args.host, args.port)
    except (OSError, OverflowError) as exc:
        raise CliError(f"cannot listen on {args.host}:{args.port}: {exc}") from None
    host, port = sock.getsockname()[:2]
    where = f"[{host}]" if ":" in host else host
    notes = [f"{len(engine):,} rows", served]
    if repeats:
        notes.append(_repeats_note(repeats))
    notes.append(f"clock fixed at {clock().isoformat()}" if args.clock else "system clock")
    notes.append(f"{len(keys)} API key(s)" if keys else "open: no API keys configured")
    notes.append(f"unknown fields: {args.unknown_fields}")
    print(f"refengine serving http://{where}:{port} ({'; '.join(notes)})", file=sys.stderr)
    print(
        "  routes: POST /feedback/create, /feedback/batch/create, /feedback/aggregate, "
        "/feedback/stats, /feedback/query, /feedback/purge, /feedback/replace, "
        "/feedback/payload_schema; GET /server_info, /health, /docs",
        file=sys.stderr,
    )
    config = uvicorn.Config(
        create_app(engine, api_keys=keys), log_level=args.log_level, lifespan="off"
    )
    uvicorn.Server(config).run(sockets=[sock])
    return 0


# --- parser ------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse, with errors on one line, ``refengine: error: ...`` like every other
    failure of the command line (plus a pointer to the command's --help)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"refengine: error: {message} (see {self.prog} --help)\n")


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
        "--backend",
        default="memory",
        metavar="SPEC",
        help="where rows live: 'memory' (default, the in-memory engine), 'chdb' (embedded "
        "ClickHouse, a temporary database), 'chdb:DIR' (kept in DIR) or "
        "clickhouse://[user[:password]@]host[:port][/database]; ClickHouse needs "
        "refengine[clickhouse]",
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
        "--unknown-fields",
        choices=UNKNOWN_FIELD_MODES,
        default="reject",
        help="unknown request fields: 'reject' them with 422 as the published pages say "
        "(default), or 'ignore' them as production does since 2026-07-28",
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
    load.add_argument(
        "--backend",
        default="memory",
        metavar="SPEC",
        help="also insert the rows into a ClickHouse backend ('chdb:DIR' or a "
        "clickhouse:// URL, as for serve; needs refengine[clickhouse]); default "
        "'memory' only checks and summarises",
    )
    load.set_defaults(run=cmd_load)

    _add_conformance_commands(commands)
    return parser


def _add_conformance_commands(commands: Any) -> None:
    """``conformance`` and ``cases``; they need the ``conformance`` extra."""
    try:
        # jsonschema is imported by the commands only when they run; checked here so
        # that a core install names the extra to install, not a missing module.
        import jsonschema  # type: ignore[import-untyped]  # noqa: F401, PLC0415

        from .conformance.cli import (  # noqa: PLC0415 - optional extra
            add_cases_parser,
            add_conformance_parser,
        )
    except ImportError as exc:
        missing = exc.name or "a dependency"
        for name in ("conformance", "cases"):
            stub = commands.add_parser(
                name, help="(needs: pip install 'refengine[conformance]')", add_help=False
            )
            # Whatever the arguments, the answer is the missing extra (see main).
            stub.set_defaults(
                run=lambda _args, missing=missing: _needs_extra(missing), any_arguments=True
            )
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
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown and not getattr(args, "any_arguments", False):
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
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
