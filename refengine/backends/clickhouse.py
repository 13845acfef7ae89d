"""The feedback endpoints on ClickHouse: embedded (``chdb``) or a server (``clickhouse-connect``).

:class:`ClickHouseBackend` has the engine's methods — ``feedback_create``,
``feedback_create_batch``, ``feedback_aggregate``, ``feedback_stats``, and the rest of
the family in :mod:`refengine.backends.clickhouse_family` (``feedback_query``,
``feedback_purge``, ``feedback_replace``, ``feedback_payload_schema``,
``server_info``) — taking the same request models (or dicts) and returning the same
response models. The rules are
the shared ones: each request is validated and planned by :mod:`refengine.semantics`
(so both engines refuse exactly the same requests with the same messages), a create
row is prepared by :func:`refengine.semantics.create.prepare_row` (the row the
in-memory engine would store), and the backend only runs each plan as SQL shaped
like production's (:mod:`refengine.backends.clickhouse_sql`).

What ClickHouse answers is production's behaviour, not refengine's Decisions where
they differ: approximate percentiles above 8,192 values, local-midnight buckets in
zones with non-hour offsets, a fractional percentile failing, ``window_stats`` keys
mis-split (spec/SEMANTICS.md, "Deviations from production"; ``spec/skips/chdb.json``
lists the catalogue cases this shows in).

A database failure — a server down or timing out, a statement refused — raises
:class:`refengine.errors.BackendUnavailable` (HTTP 503 with its reason), never a
traceback. Writes are all or nothing: a create or batch is validated whole before a
single ``INSERT`` statement writes it.

Needs the ``clickhouse`` extra: ``chdb`` (embedded) and ``clickhouse-connect``
(a server); each is imported only when a connection of its kind is made.
"""

from __future__ import annotations

import json
import math
import tempfile
import threading
from collections.abc import Iterable, Mapping
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from .. import errors
from ..clock import Clock, SystemClock
from ..engine import coerce_request
from ..errors import BackendUnavailable, format_message
from ..models import (
    UNKNOWN_FIELD_MODES,
    FeedbackAggregateBucket,
    FeedbackAggregateReq,
    FeedbackAggregateRes,
    FeedbackCreateBatchReq,
    FeedbackCreateBatchRes,
    FeedbackCreateReq,
    FeedbackCreateRes,
    FeedbackPayloadSchemaReq,
    FeedbackPayloadSchemaRes,
    FeedbackPurgeReq,
    FeedbackPurgeRes,
    FeedbackQueryReq,
    FeedbackQueryRes,
    FeedbackReplaceReq,
    FeedbackReplaceRes,
    FeedbackStatsReq,
    FeedbackStatsRes,
    ServerInfoRes,
    UnknownFields,
)
from ..rows import FeedbackRow
from ..semantics import aggregate, stats
from ..semantics.create import (
    IdFactory,
    PreparedCreate,
    check_batch_size,
    prepare_row,
    rows_with_ids,
)
from ..semantics.stats import AGGREGATIONS, StatsPlan
from ..semantics.stats_time import render_timestamp
from . import clickhouse_family
from . import clickhouse_sql as sql

Rows = list[list[Any]]


class Connection(Protocol):
    """One way to reach ClickHouse: runs a statement with bound parameters."""

    name: str
    """What the backend is, for messages: ``chdb (temporary)``, ``clickhouse://host``."""

    table: str
    """The feedback table's qualified name (an identifier this module chose)."""

    def query(self, statement: str, params: Mapping[str, Any]) -> Rows:
        """The rows of ``statement`` (each a list of column values), or raise
        :class:`BackendUnavailable`."""
        ...

    def close(self) -> None:
        """Release the connection (a temporary chdb database is deleted)."""
        ...


# --- chdb ------------------------------------------------------------------------------------

_TEXT_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r", "\0": "\\0"})
_QUOTED_ESCAPES = str.maketrans(
    {"\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r", "\0": "\\0", "'": "\\'"}
)
# str.translate: a batch's rows are one parameter of many megabytes.


def _escaped(text: str, table: dict[int, str]) -> str:
    return text.translate(table)


def chdb_param(value: Any) -> str:
    """A parameter value as chdb's ``params`` want it: the text ClickHouse parses for
    the placeholder's type — a string in the escaped (TSV) form, an array of strings
    as a quoted array literal, a number as its exact repr.

    >>> chdb_param("a\\nb"), chdb_param(["it's"]), chdb_param(0.1), chdb_param(3)
    ('a\\\\nb', "['it\\\\'s']", '0.1', '3')
    """
    if isinstance(value, str):
        return _escaped(value, _TEXT_ESCAPES)
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join("'" + _escaped(str(v), _QUOTED_ESCAPES) + "'" for v in value) + "]"
    raise TypeError(f"no ClickHouse parameter form for {type(value).__name__}")


_OUTPUT_SETTINGS = (
    " SETTINGS output_format_json_quote_64bit_integers = 0, output_format_json_quote_denormals = 1"
)
# 64-bit counts as JSON numbers; inf and nan as strings, which float() reads back.


class ChdbConnection:
    """Embedded ClickHouse (``chdb``): a temporary database (``path=None``, deleted on
    :meth:`close`) or one kept in the directory ``path``. ``max_threads`` limits the
    threads of a query (``1``: float sums in one order, reproducible from run to run).

    chdb embeds one ClickHouse per process, on one path at a time: a second
    connection to another path fails (:class:`BackendUnavailable`) until the first
    is closed. Statements run one at a time (a lock): the embedded engine is not to
    be entered from two threads at once.
    """

    def __init__(self, path: str | None = None, *, max_threads: int | None = None) -> None:
        try:
            from chdb import session as chdb_session  # noqa: PLC0415 - the clickhouse extra
        except ImportError as exc:
            raise BackendUnavailable(
                format_message(errors.BACKEND_EXTRA_MISSING, backend="chdb", missing=exc.name)
            ) from None
        self._tmp = tempfile.TemporaryDirectory(prefix="refengine-chdb-") if path is None else None
        self.path = self._tmp.name if self._tmp is not None else path
        self.name = "chdb (temporary database)" if path is None else f"chdb at {path}"
        self.table = "refengine.feedback"
        self._lock = threading.Lock()
        # One thread adds every sum in one order: the same answer on every run (several
        # threads sum parts in whichever order they finish, as production's servers do).
        threads = "" if max_threads is None else f", max_threads = {int(max_threads)}"
        self._select_settings = _OUTPUT_SETTINGS + threads
        try:
            # chdb's functions carry no annotations: held as Any, checked by the tests.
            new_session: Any = chdb_session.Session
            self._session: Any = new_session(self.path)
        except Exception as exc:  # chdb raises its own RuntimeError subclasses
            if self._tmp is not None:
                self._tmp.cleanup()
            raise _failure(self.name, exc) from None
        self.query("CREATE DATABASE IF NOT EXISTS refengine", {})
        self.query(sql.create_table_sql(self.table), {})

    def query(self, statement: str, params: Mapping[str, Any]) -> Rows:
        bound = {name: chdb_param(value) for name, value in params.items()}
        is_select = statement.lstrip().startswith(("SELECT", "WITH"))
        text = statement + self._select_settings if is_select else statement
        with self._lock:
            try:
                result = self._session.query(text, "JSONCompact", params=bound)
            except Exception as exc:  # chdb raises its own RuntimeError subclasses
                raise _failure(self.name, exc) from None
        if not is_select:
            return []
        raw = result.bytes()
        if not raw:
            return []
        rows: Rows = json.loads(raw)["data"]
        return rows

    def close(self) -> None:
        with self._lock:
            self._session.close()
        if self._tmp is not None:
            self._tmp.cleanup()


# --- clickhouse-connect ----------------------------------------------------------------------


class ClickHouseConnectConnection:
    """A ClickHouse server or cluster through ``clickhouse-connect``:
    ``clickhouse://[user[:password]@]host[:port][/database]`` (``clickhouses://`` for
    TLS; port 8123, or 8443 with TLS; database ``default``). Parameters are bound
    server-side. Not tested in refengine's CI (no server there).
    """

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        parts = urlsplit(url)
        database = parts.path.strip("/") or "default"
        if not database.replace("_", "").isalnum():
            raise BackendUnavailable(format_message(errors.BACKEND_BAD_SPEC, spec=url))
        self.name = f"clickhouse://{parts.hostname}:{parts.port or ''}/{database}"
        self.table = f"{database}.feedback"
        try:
            import clickhouse_connect  # noqa: PLC0415 - the clickhouse extra
        except ImportError as exc:
            raise BackendUnavailable(
                format_message(errors.BACKEND_EXTRA_MISSING, backend="clickhouse", missing=exc.name)
            ) from None
        secure = parts.scheme == "clickhouses"
        try:
            self._client = clickhouse_connect.get_client(
                host=parts.hostname or "localhost",
                port=parts.port or (8443 if secure else 8123),
                username=unquote(parts.username or "default"),
                password=unquote(parts.password or ""),
                database=database,
                secure=secure,
                connect_timeout=timeout,
                send_receive_timeout=timeout,
            )
        except Exception as exc:  # the driver's own errors, and the socket's
            raise _failure(self.name, exc) from None
        self.query(sql.create_table_sql(self.table), {})

    def query(self, statement: str, params: Mapping[str, Any]) -> Rows:
        try:
            if statement.lstrip().startswith(("SELECT", "WITH")):
                result = self._client.query(statement, parameters=dict(params))
                return [list(row) for row in result.result_rows]
            self._client.command(statement, parameters=dict(params))
        except Exception as exc:  # the driver's own errors, and the socket's
            raise _failure(self.name, exc) from None
        return []

    def close(self) -> None:
        self._client.close()


def _failure(name: str, exc: BaseException) -> BackendUnavailable:
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return BackendUnavailable(format_message(errors.BACKEND_FAILED, backend=name, detail=detail))


def connect(spec: str) -> Connection:
    """The connection a ``--backend`` spec names: ``chdb`` (a temporary database),
    ``chdb:DIR`` (kept in ``DIR``) or a ``clickhouse://`` / ``clickhouses://`` URL;
    anything else raises :class:`BackendUnavailable`."""
    if spec == "chdb":
        return ChdbConnection()
    if spec.startswith("chdb:") and len(spec) > len("chdb:"):
        return ChdbConnection(spec[len("chdb:") :])
    if spec.startswith(("clickhouse://", "clickhouses://")):
        return ClickHouseConnectConnection(spec)
    raise BackendUnavailable(format_message(errors.BACKEND_BAD_SPEC, spec=spec))


# --- the backend -------------------------------------------------------------------------------


def _number(value: Any) -> float | None:
    """A result cell as a float: NULL → None; ``"inf"``/``"nan"`` text → ±inf / nan."""
    if value is None:
        return None
    return float(value)


class ClickHouseBackend:
    """The feedback endpoints over a ClickHouse :class:`Connection`.

    The constructor's options are the engine's (``clock``, ``user_id``,
    ``id_factory``, ``unknown_fields``), so a server, the conformance kit and the
    CLI take either. ``executor`` is ``"clickhouse"`` (for the serve banner).
    """

    executor = "clickhouse"

    def __init__(
        self,
        connection: Connection,
        clock: Clock | None = None,
        user_id: str = "refengine",
        id_factory: IdFactory | None = None,
        unknown_fields: UnknownFields = "reject",
    ) -> None:
        if unknown_fields not in UNKNOWN_FIELD_MODES:
            raise ValueError(format_message(errors.UNKNOWN_FIELDS_MODE, value=unknown_fields))
        self.connection = connection
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.user_id = user_id
        self.unknown_fields: UnknownFields = unknown_fields
        self._id_factory = id_factory
        self._write_lock = threading.Lock()

    @classmethod
    def open(cls, spec: str, **options: Any) -> ClickHouseBackend:
        """A backend on the connection ``spec`` names (see :func:`connect`)."""
        return cls(connect(spec), **options)

    def close(self) -> None:
        """Close the connection (a temporary chdb database is deleted)."""
        self.connection.close()

    # --- create ------------------------------------------------------------------------

    def feedback_create(self, req: FeedbackCreateReq | Mapping[str, Any]) -> FeedbackCreateRes:
        """Create, as the engine's: validated and prepared by the shared semantics,
        then written by one INSERT (spec/SEMANTICS.md, "Create")."""
        request = coerce_request(FeedbackCreateReq, req, self.unknown_fields)
        prepared = self._prepare(request)
        (row,) = self._store_prepared([prepared])
        return prepared.response(row)

    def feedback_create_batch(
        self, req: FeedbackCreateBatchReq | Mapping[str, Any]
    ) -> FeedbackCreateBatchRes:
        """Every item validated first, then all written by one INSERT, or none
        (spec/SEMANTICS.md, "Create / Batches")."""
        request = coerce_request(FeedbackCreateBatchReq, req, self.unknown_fields)
        check_batch_size(len(request.batch))  # the engine's limit, the same 400
        prepared = [self._prepare(item) for item in request.batch]
        rows = self._store_prepared(prepared)
        return FeedbackCreateBatchRes(
            res=[p.response(row) for p, row in zip(prepared, rows, strict=True)]
        )

    def _prepare(self, request: FeedbackCreateReq) -> PreparedCreate:
        return prepare_row(request, now=self.clock(), default_user_id=self.user_id)

    def _store_prepared(self, prepared: list[PreparedCreate]) -> list[FeedbackRow]:
        # Every id is drawn before the INSERT, so a failing id_factory writes nothing.
        with self._write_lock:
            rows = rows_with_ids(prepared, self._id_factory)
            self.insert_rows(rows)
        return rows

    def insert_rows(self, rows: Iterable[FeedbackRow]) -> None:
        """Store rows that are already built (a dump, a bulk generator) in one INSERT;
        no create validation runs. ``O(total size of the rows)``."""
        batch = list(rows)
        if batch:
            statement, params = sql.insert_sql(self.connection.table, batch)
            self.connection.query(statement, params)

    # --- queries ------------------------------------------------------------------------

    def feedback_aggregate(
        self, req: FeedbackAggregateReq | Mapping[str, Any]
    ) -> FeedbackAggregateRes:
        """Aggregate, planned by :func:`refengine.semantics.aggregate.plan` and run as
        one statement (spec/SEMANTICS.md, "Aggregate")."""
        plan = aggregate.plan(coerce_request(FeedbackAggregateReq, req, self.unknown_fields))
        statement, params = sql.aggregate_sql(self.connection.table, plan)
        buckets = []
        bucketed = plan.time_bucket_seconds is not None
        for row in self.connection.query(statement, params):
            start = int(row[0]) if bucketed else None
            rest = row[1:] if bucketed else row
            groups, (total, scored, tags, counts, sums) = (
                rest[: len(plan.group_by)],
                rest[len(plan.group_by) :],
            )
            buckets.append(
                FeedbackAggregateBucket(
                    time_bucket_start_ms=start,
                    group=dict(zip(plan.group_by, groups, strict=True)),
                    total_count=int(total),
                    scored_count=int(scored),
                    tag_counts={k: int(v) for k, v in sql.sum_map(tags).items()},
                    rating_counts={k: int(v) for k, v in sql.sum_map(counts).items()},
                    rating_sums={k: float(v) for k, v in sql.sum_map(sums).items()},
                )
            )
        return FeedbackAggregateRes(
            time_bucket_seconds=plan.time_bucket_seconds,
            after_ms=plan.after_ms,
            before_ms=plan.before_ms,
            buckets=buckets,
        )

    def feedback_stats(self, req: FeedbackStatsReq | Mapping[str, Any]) -> FeedbackStatsRes:
        """Stats, planned by :func:`refengine.semantics.stats.plan` (a missing ``end``
        is this backend's clock's now) and run as production runs it: a bucket
        statement over the ``all_buckets`` grid and a window statement
        (spec/SEMANTICS.md, "Stats"). Without metrics no statement runs."""
        plan = stats.plan(coerce_request(FeedbackStatsReq, req, self.unknown_fields), self.clock())
        if not plan.metrics or plan.zone is None:
            return stats.no_metrics_response(plan)
        return FeedbackStatsRes(
            start=plan.start,
            end=plan.end,
            granularity=plan.granularity,
            timezone=plan.timezone,
            buckets=self._stats_buckets(plan),
            window_stats=self._stats_window(plan),
        )

    def _stats_buckets(self, plan: StatsPlan) -> list[dict[str, Any]]:
        statement, params, columns = sql.stats_buckets_sql(self.connection.table, plan)
        assert plan.zone is not None  # a plan with metrics has its zone
        buckets = []
        for row in self.connection.query(statement, params):
            bucket: dict[str, Any] = {"timestamp": render_timestamp(int(row[0]), plan.zone)}
            for (agg, alias), value in zip(columns, row[1:-1], strict=True):
                bucket[alias] = _bucket_value(agg, value)
            bucket["count"] = int(row[-1])
            buckets.append(bucket)
        return buckets

    def _stats_window(self, plan: StatsPlan) -> dict[str, dict[str, float | None]]:
        statement, params, columns = sql.stats_window_sql(self.connection.table, plan)
        rows = self.connection.query(statement, params)
        window: dict[str, dict[str, float | None]] = {}
        for (_agg, alias), value in zip(columns, rows[0] if rows else [], strict=False):
            slug, name = sql.split_window_alias(alias)
            window.setdefault(slug, {})[name] = _number(value)
        return window

    # --- the rest of the family (refengine/backends/clickhouse_family.py) ---------------

    def feedback_query(self, req: FeedbackQueryReq | Mapping[str, Any]) -> FeedbackQueryRes:
        """Query, checked by :func:`refengine.semantics.feedback_query.plan` and run as
        SQL (spec/SEMANTICS.md, "Query"); see :func:`clickhouse_family.query`."""
        request = coerce_request(FeedbackQueryReq, req, self.unknown_fields)
        return clickhouse_family.query(self.connection, request)

    def feedback_purge(self, req: FeedbackPurgeReq | Mapping[str, Any]) -> FeedbackPurgeRes:
        """Purge by id (spec/SEMANTICS.md, "Purge"); see :func:`clickhouse_family.purge`."""
        request = coerce_request(FeedbackPurgeReq, req, self.unknown_fields)
        with self._write_lock:
            return clickhouse_family.purge(self.connection, request)

    def feedback_replace(self, req: FeedbackReplaceReq | Mapping[str, Any]) -> FeedbackReplaceRes:
        """Replace (spec/SEMANTICS.md, "Replace"): the whole create chain first, then
        delete and insert; see :func:`clickhouse_family.replace`."""
        request = coerce_request(FeedbackReplaceReq, req, self.unknown_fields)
        prepared = self._prepare(clickhouse_family.create_part(request))
        with self._write_lock:
            return clickhouse_family.replace(
                self.connection, request, prepared, self._id_factory, self.insert_rows
            )

    def feedback_payload_schema(
        self, req: FeedbackPayloadSchemaReq | Mapping[str, Any]
    ) -> FeedbackPayloadSchemaRes:
        """Payload schema (spec/SEMANTICS.md, "Payload schema"): a missing ``end`` is
        this backend's clock's now; see :func:`clickhouse_family.payload_schema`."""
        request = coerce_request(FeedbackPayloadSchemaReq, req, self.unknown_fields)
        return clickhouse_family.payload_schema(self.connection, request, self.clock())

    def server_info(self) -> ServerInfoRes:
        """What ``GET /server_info`` answers (spec/SEMANTICS.md, "Server info")."""
        return clickhouse_family.server_info()

    # --- reading -----------------------------------------------------------------------

    def __len__(self) -> int:
        rows = self.connection.query(f"SELECT count() FROM {self.connection.table}", {})
        return int(rows[0][0])

    def projects(self) -> list[str]:
        """The ids of the projects that have rows, sorted."""
        statement = f"SELECT DISTINCT project_id FROM {self.connection.table} ORDER BY project_id"
        return [str(row[0]) for row in self.connection.query(statement, {})]


def _bucket_value(agg: str, value: Any) -> float | int | None:
    """A bucket cell: counts as integers, the rest as floats (NULL stays None)."""
    aggregation = AGGREGATIONS.get(agg)
    if value is None:
        return None
    if aggregation is not None and aggregation.integer_in_bucket:
        return int(value)
    number = float(value)
    return number if not math.isnan(number) else None


__all__ = [
    "ChdbConnection",
    "ClickHouseBackend",
    "ClickHouseConnectConnection",
    "Connection",
    "chdb_param",
    "connect",
]
