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
single ``INSERT`` statement writes it. Rows already built (a dump, a benchmark) take
the bulk path, :meth:`ClickHouseBackend.insert_rows`: an Arrow file on chdb, the
create's JSON statement on a server, :data:`BULK_ROWS` rows a statement.

Needs the ``clickhouse`` extra: ``chdb`` (embedded) and ``clickhouse-connect``
(a server); each is imported only when a connection of its kind is made.
"""

from __future__ import annotations

import json
import logging
import math
import re
import tempfile
import threading
from collections.abc import Iterable, Mapping, Sequence
from itertools import accumulate, chain
from operator import itemgetter
from typing import Any, NamedTuple, Protocol
from urllib.parse import unquote, urlsplit

from .. import errors
from ..clock import Clock, SystemClock
from ..engine import coerce_request
from ..errors import BackendUnavailable, format_message
from ..frozenmap import items_of
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

    def insert_rows(self, rows: Sequence[FeedbackRow]) -> None:
        """Store built rows in one all-or-nothing statement, by the fastest path the
        connection has, or raise :class:`BackendUnavailable`."""
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


OUTPUT_SETTINGS: Mapping[str, int] = {
    "output_format_json_quote_64bit_integers": 0,
    "output_format_json_quote_denormals": 1,
}
"""The settings every ``SELECT`` runs with, on either connection: 64-bit counts as JSON
numbers; inf and nan as strings, which float() reads back."""

_OUTPUT_SETTINGS = " SETTINGS " + ", ".join(f"{k} = {v}" for k, v in OUTPUT_SETTINGS.items())


def _is_select(statement: str) -> bool:
    return statement.lstrip().startswith(("SELECT", "WITH"))


def _json_int(text: str) -> int | float:
    # ClickHouse writes a Float64 negative zero as -0, which is no integer's text.
    return -0.0 if text == "-0" else int(text)


def json_compact_rows(name: str, raw: bytes) -> Rows:
    """The rows of a ``SELECT`` answered in ``JSONCompact`` with :data:`OUTPUT_SETTINGS`
    (each a list of column values; no bytes: no rows), as both connections decode
    them. An answer that is not that raises :class:`BackendUnavailable` naming
    ``name``. Runtime complexity: ``O(len(raw))``.

    >>> json_compact_rows("x", b'{"meta": [], "data": [[1, "inf", ["a"]]], "rows": 1}')
    [[1, 'inf', ['a']]]
    >>> try:
    ...     json_compact_rows("clickhouse://h", b"<html>")
    ... except BackendUnavailable as exc:
    ...     print(exc.reason)
    clickhouse://h failed: the answer is not JSONCompact (Expecting value: line 1 column 1 (char 0))
    """
    if not raw:
        return []
    try:
        answer = json.loads(raw, parse_int=_json_int)
        rows = answer["data"]
        if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
            raise ValueError("data is not a list of rows")
    except (ValueError, TypeError, KeyError) as exc:
        # json.JSONDecodeError and UnicodeDecodeError are ValueErrors.
        detail = format_message(errors.BACKEND_NOT_JSON_COMPACT, detail=str(exc) or repr(exc))
        raise BackendUnavailable(
            format_message(errors.BACKEND_FAILED, backend=name, detail=detail)
        ) from None
    return rows


def arrow_table(rows: Sequence[FeedbackRow]) -> Any:
    """The rows as a ``pyarrow.Table`` with the columns of
    :func:`refengine.backends.clickhouse_sql.row_record` (what
    :func:`~refengine.backends.clickhouse_sql.bulk_insert_sql` reads), built column by
    column: strings as UTF-8, ``None`` as null, floats as float64, ``created_at_ms``
    and ``created_at_us`` as int64, tags a list array, each map a map array.

    Raises ``ValueError``: ``UnicodeEncodeError`` for a string UTF-8 cannot hold (a
    lone surrogate), ``pyarrow.ArrowInvalid`` past 2**31 tags or map entries in all.
    Runtime complexity: ``O(total size of the rows)``.
    """
    import pyarrow as pa  # noqa: PLC0415 - chdb's own dependency, needed here only

    text = pa.string()
    fields = FeedbackRow._fields

    def values(name: str) -> Sequence[Any]:
        return list(map(itemgetter(fields.index(name)), rows))

    def offsets(cells: Sequence[Sequence[Any]]) -> Any:
        return pa.array([0, *accumulate(map(len, cells))], pa.int32())

    def flat(cells: Sequence[Sequence[Any]], kind: Any) -> Any:
        return pa.array(list(chain.from_iterable(cells)), kind)

    data: dict[str, Any] = {}
    for name, kind in sql.TABLE_COLUMNS:
        if name == "created_at":
            data["created_at_ms"] = pa.array(values("created_at_ms"), pa.int64())
        elif kind == "Int64":
            data[name] = pa.array(values(name), pa.int64())
        elif kind.startswith("Array(String)"):
            tags = values(name)
            data[name] = pa.ListArray.from_arrays(offsets(tags), flat(tags, text))
        elif kind.startswith("Map("):
            # Keys and values as two tuples per map (a FrozenMap's own), then flat.
            keys, items = items_of(values(name))
            value_type = pa.float64() if "Float64" in kind else text
            data[name] = pa.MapArray.from_arrays(
                offsets(keys), flat(keys, text), flat(items, value_type)
            )
        else:
            data[name] = pa.array(values(name), text)
    return pa.table(data)


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
        is_select = _is_select(statement)
        text = statement + self._select_settings if is_select else statement
        with self._lock:
            try:
                result = self._session.query(text, "JSONCompact", params=bound)
            except Exception as exc:  # chdb raises its own RuntimeError subclasses
                raise _failure(self.name, exc) from None
        if not is_select:
            return []
        return json_compact_rows(self.name, result.bytes())

    def insert_rows(self, rows: Sequence[FeedbackRow]) -> None:
        """Write the rows as an Arrow IPC file and insert it with one ``INSERT ...
        SELECT FROM file()`` (:func:`~refengine.backends.clickhouse_sql.bulk_insert_sql`):
        no text to escape or parse, about twenty times the rows per second of the
        JSON statement. A string UTF-8 cannot hold (a lone surrogate) fails the batch,
        as that statement does. Runtime complexity: ``O(total size of the rows)``.
        """
        if not rows:
            return
        from pyarrow import feather  # noqa: PLC0415 - chdb's own dependency

        try:
            table = arrow_table(rows)
        except ValueError as exc:  # UnicodeEncodeError, pyarrow.ArrowInvalid
            raise _failure(self.name, exc) from None
        with tempfile.TemporaryDirectory(prefix="refengine-insert-") as tmp:
            path = f"{tmp}/rows.arrow"
            feather.write_feather(table, path, compression="uncompressed")
            self.query(sql.bulk_insert_sql(self.table, len(rows)), {"path": path})

    def close(self) -> None:
        with self._lock:
            self._session.close()
        if self._tmp is not None:
            self._tmp.cleanup()


# --- clickhouse-connect ----------------------------------------------------------------------


class ClickHouseURL(NamedTuple):
    """A ``clickhouse://`` URL taken apart (see :func:`parse_clickhouse_url`)."""

    host: str
    port: int
    username: str
    password: str
    database: str
    secure: bool

    @property
    def name(self) -> str:
        """The server as messages show it: no credentials."""
        scheme = "clickhouses" if self.secure else "clickhouse"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}/{self.database}"


_DATABASE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def parse_clickhouse_url(url: str) -> ClickHouseURL:
    """``clickhouse://[user[:password]@]host[:port][/database]`` (``clickhouses://``:
    TLS) taken apart: port 8123, or 8443 with TLS; user ``default``, no password;
    database ``default``; user and password percent-decoded. A URL without a host,
    with a port that is not 1-65535, a database name that is not a plain identifier
    (it is written unquoted in the SQL) or a query string raises
    :class:`BackendUnavailable`, whose message shows the password as ``***``.

    >>> url = parse_clickhouse_url("clickhouse://me:p%40ss@127.0.0.1:9000/fb")
    >>> url.host, url.port, url.username, url.password, url.database, url.secure
    ('127.0.0.1', 9000, 'me', 'p@ss', 'fb', False)
    >>> parse_clickhouse_url("clickhouses://db.example").name
    'clickhouses://db.example:8443/default'
    >>> try:
    ...     parse_clickhouse_url("clickhouse://me:s3cret@h/no-dashes")
    ... except BackendUnavailable as exc:
    ...     print(exc.reason)  # doctest: +NORMALIZE_WHITESPACE
    bad ClickHouse URL 'clickhouse://me:***@h/no-dashes': the database name must be
    letters, digits and underscores, not starting with a digit
    """

    def refuse(problem: str) -> BackendUnavailable:
        return BackendUnavailable(
            format_message(
                errors.BACKEND_BAD_URL, url=errors.redact_credentials(url), problem=problem
            )
        )

    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # a port that is not a number, or out of range
        raise refuse(errors.BACKEND_URL_BAD_PORT) from None
    if parts.scheme not in ("clickhouse", "clickhouses"):
        raise BackendUnavailable(
            format_message(errors.BACKEND_BAD_SPEC, spec=errors.redact_credentials(url))
        )
    if not parts.hostname:
        raise refuse(errors.BACKEND_URL_NO_HOST)
    if port == 0:
        raise refuse(errors.BACKEND_URL_BAD_PORT)
    if parts.query or parts.fragment or "?" in url or "#" in url:
        raise refuse(errors.BACKEND_URL_EXTRA)
    database = unquote(parts.path.removeprefix("/")) or "default"
    if not _DATABASE_NAME.fullmatch(database):
        raise refuse(errors.BACKEND_URL_BAD_DATABASE)
    secure = parts.scheme == "clickhouses"
    return ClickHouseURL(
        host=parts.hostname,
        port=port or (8443 if secure else 8123),
        username=unquote(parts.username or "default"),
        password=unquote(parts.password or ""),
        database=database,
        secure=secure,
    )


PIECE_BYTES = 120 * 1024
"""The most a parameter is sent as in one URL argument or form field: a server refuses
any one over ``http_max_field_value_size`` (128 KiB by default), so a longer value
goes in pieces (:func:`split_long_parameters`). The statement, with a placeholder of
some 20 characters per piece, must fit one such field too: one statement carries at
most about 700 MB of parameters (a larger one is a 503 naming the server's limit)."""

_BACKSLASHED = ("\\", "'", "`", "\t", "\n")  # what clickhouse-connect escapes with a backslash
_BLOCK = 4096  # characters: at most 16 KiB escaped, so a piece always grows


def escaped_size(text: str) -> int:
    """The bytes ``text`` is sent as, escaped: its UTF-8, one more per escaped character.

    >>> escaped_size("it's é")
    8
    """
    return len(text.encode()) + sum(text.count(c) for c in _BACKSLASHED)


def _string_pieces(value: str) -> list[str]:
    """``value`` cut into pieces that each escape to at most :data:`PIECE_BYTES`,
    measured in blocks of :data:`_BLOCK` characters. ``O(len(value))``."""
    pieces = []
    start = end = size = 0
    while end < len(value):
        step = escaped_size(value[end : end + _BLOCK])
        if size + step > PIECE_BYTES:
            pieces.append(value[start:end])
            start, size = end, 0
        size += step
        end += _BLOCK
    pieces.append(value[start:])
    return pieces


def _array_pieces(items: list[str]) -> list[list[str]]:
    """``items`` in runs that each format to at most :data:`PIECE_BYTES` (``'...', ``
    around every item); an item too long for a piece of its own is a run alone."""
    pieces: list[list[str]] = [[]]
    size = 0
    for item in items:
        cost = escaped_size(item) + 4
        if pieces[-1] and size + cost > PIECE_BYTES:
            pieces.append([])
            size = 0
        pieces[-1].append(item)
        size += cost
    return pieces


def split_long_parameters(statement: str, params: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """``(statement, params)`` with every ``String`` or ``Array(String)`` parameter
    too long for one field bound as pieces that the server joins again, so the
    statement sees the same value: ``{rows:String}`` becomes
    ``concat({rows__0:String}, {rows__1:String}, ...)`` and ``{names:Array(String)}``
    ``arrayConcat({names__0:Array(String)}, ...)``. A single array item longer than
    a piece stays too long (the server refuses it, a 503). Runtime complexity:
    ``O(len(statement) × long parameters + total length of the parameters)``.

    >>> split_long_parameters("SELECT {s:String}", {"s": "ab" * 100_000})[0]
    'SELECT concat({s__0:String}, {s__1:String})'
    >>> split_long_parameters("SELECT has({a:Array(String)}, 'x')", {"a": ["y" * 70_000] * 3})[0]
    "SELECT has(arrayConcat({a__0:Array(String)}, {a__1:Array(String)}, {a__2:Array(String)}), 'x')"
    """
    bound: dict[str, Any] = {}
    for name, value in params.items():
        if isinstance(value, str) and escaped_size(value) > PIECE_BYTES:
            kind, join = "String", "concat"
            pieces: list[Any] = _string_pieces(value)
        elif isinstance(value, list) and sum(escaped_size(str(v)) + 4 for v in value) > PIECE_BYTES:
            kind, join = "Array(String)", "arrayConcat"
            pieces = _array_pieces([str(v) for v in value])
        else:
            bound[name] = value
            continue
        pattern = re.compile(r"\{" + re.escape(name) + r"\s*:\s*" + re.escape(kind) + r"\s*\}")
        if not pattern.search(statement):  # bound as another type: left to the server
            bound[name] = value
            continue
        names = [f"{name}__{i}" for i in range(len(pieces))]
        joined = f"{join}(" + ", ".join(f"{{{n}:{kind}}}" for n in names) + ")"
        statement = pattern.sub(joined.replace("\\", "\\\\"), statement)
        bound.update(zip(names, pieces, strict=True))
    return statement, bound


def _driver_detail(exc: BaseException) -> str:
    """The reason in one of the driver's errors, without the request's URL: the
    innermost cause of a transport failure (``Connection refused``, ``Read timed
    out``), or the server's own message."""
    cause: BaseException = exc
    for _ in range(16):  # a cause chain is short; a cycle must not hang us
        reason = getattr(cause, "reason", None)
        inner = reason if isinstance(reason, BaseException) else cause.__cause__
        if inner is None:
            break
        cause = inner
    # One line: the driver appends "\n FORMAT ..." to a statement, which a syntax
    # error's excerpt of the statement then shows.
    text = " ".join(str(cause).split()) or type(cause).__name__
    # urllib3 names its pool ("HTTPConnectionPool(host='h', port=1): ..."), and the
    # driver the URL: the connection's name already says which server it was.
    text = re.sub(r"^HTTPS?Connection(?:Pool)?\([^)]*\):\s*", "", text)
    text = re.sub(r"\s*\(for url [^)]*\)$", "", text)
    # A server's exception is ClickHouse's own text, as chdb gives it.
    text = re.sub(r"^Received ClickHouse exception, code: \d+, server response: ", "", text)
    return re.sub(r"\s*\(version [\d.]+[^)]*\)$", "", text)


class ClickHouseConnectConnection:
    """A ClickHouse server or cluster over HTTP through ``clickhouse-connect``, by a
    ``clickhouse://`` URL (:func:`parse_clickhouse_url`).

    Every statement is a ``raw_query``: a ``SELECT`` is answered in ``JSONCompact``
    with :data:`OUTPUT_SETTINGS` and decoded by :func:`json_compact_rows`, as the chdb
    connection's is, so the two differ only in transport. Parameters are bound
    server-side (``param_<name>``); a long string parameter goes in pieces
    (:func:`split_long_parameters`). No HTTP session: a session admits one query at a
    time, and the backend's callers are many threads.

    ``connect_timeout`` bounds reaching the server and ``timeout`` each answer (in
    whole seconds, at least 1, as the driver counts them). Running out of either, a
    server that is down, refuses a statement or answers what ClickHouse would not,
    raises :class:`BackendUnavailable` naming the server (never its password). The
    feedback table is created on connect, in the URL's database, which must exist.
    """

    def __init__(self, url: str, *, connect_timeout: float = 10, timeout: float = 300) -> None:
        target = parse_clickhouse_url(url)
        self.name = target.name
        self.table = f"{target.database}.feedback"
        try:
            import clickhouse_connect  # noqa: PLC0415 - the clickhouse extra
        except ImportError as exc:
            raise BackendUnavailable(
                format_message(errors.BACKEND_EXTRA_MISSING, backend="clickhouse", missing=exc.name)
            ) from None
        # The driver logs a transport failure as a warning before raising it, which
        # with no logging configured lands on stderr beside the 503's own message.
        logging.getLogger("clickhouse_connect").addHandler(logging.NullHandler())
        try:
            # The driver's annotations are loose: held as Any, checked by the tests.
            get_client: Any = clickhouse_connect.get_client
            self._client: Any = get_client(
                host=target.host,
                port=target.port,
                username=target.username,
                password=target.password,
                database=target.database,
                secure=target.secure,
                connect_timeout=max(1, math.ceil(connect_timeout)),
                send_receive_timeout=max(1, math.ceil(timeout)),
                autogenerate_session_id=False,
            )
        except Exception as exc:  # the driver's own errors, and the socket's
            raise _failure(self.name, _driver_detail(exc)) from None
        self.query(sql.create_table_sql(self.table), {})

    def query(self, statement: str, params: Mapping[str, Any]) -> Rows:
        text, bound = split_long_parameters(statement, params)
        is_select = _is_select(statement)
        try:
            raw = self._client.raw_query(
                text,
                parameters=bound,
                settings=dict(OUTPUT_SETTINGS) if is_select else None,
                fmt="JSONCompact" if is_select else None,
            )
        except Exception as exc:  # the driver's own errors, and the socket's
            raise _failure(self.name, _driver_detail(exc)) from None
        return json_compact_rows(self.name, raw) if is_select else []

    def insert_rows(self, rows: Sequence[FeedbackRow]) -> None:
        """The JSON statement of a create (:func:`~refengine.backends.clickhouse_sql.insert_sql`,
        its rows sent in pieces by :meth:`query`): one block, all or nothing.

        The driver's column insert (Native blocks, compressed) would be faster, but
        the HTTP interface refengine's tests run (``tests/backends/chdb_http.py``)
        models neither binary nor compressed bodies, so it would go untested.
        """
        if rows:
            self.query(*sql.insert_sql(self.table, rows))

    def close(self) -> None:
        self._client.close()


def _failure(name: str, exc: BaseException | str) -> BackendUnavailable:
    """The 503 of a database failure: ``name`` and the first line of the reason."""
    text = str(exc).strip()
    detail = text.splitlines()[0] if text else type(exc).__name__
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
    raise BackendUnavailable(
        format_message(errors.BACKEND_BAD_SPEC, spec=errors.redact_credentials(spec))
    )


# --- the backend -------------------------------------------------------------------------------


def _number(value: Any) -> float | None:
    """A result cell as a float: NULL → None; ``"inf"``/``"nan"`` text → ±inf / nan."""
    if value is None:
        return None
    return float(value)


BULK_ROWS = 100_000
"""Rows per statement of :meth:`ClickHouseBackend.insert_rows` (about 40 MB of Arrow
for typical scorer rows): large enough that a statement's fixed cost is small."""


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
        # One JSON statement, not the bulk path: at a create's size (a batch is at most
        # 10,000 items) it costs no temporary file, and it is one block whatever its size.
        with self._write_lock:
            rows = rows_with_ids(prepared, self._id_factory)
            self.connection.query(*sql.insert_sql(self.connection.table, rows))
        return rows

    def insert_rows(self, rows: Iterable[FeedbackRow]) -> None:
        """Store rows that are already built (a dump, a bulk generator); no create
        validation runs. The connection's bulk path (:meth:`Connection.insert_rows`),
        :data:`BULK_ROWS` rows per statement: each statement is all or nothing, so a
        failure part-way leaves the earlier statements' rows stored (and raises
        :class:`BackendUnavailable`). Runtime complexity: ``O(total size of the rows)``.
        """
        batch: list[FeedbackRow] = []
        for row in rows:
            batch.append(row)
            if len(batch) == BULK_ROWS:
                self.connection.insert_rows(batch)
                batch = []
        if batch:
            self.connection.insert_rows(batch)

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
        return stats.response(plan, self._stats_buckets(plan), self._stats_window(plan))

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
            return clickhouse_family.replace(self.connection, request, prepared, self._id_factory)

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
    "BULK_ROWS",
    "OUTPUT_SETTINGS",
    "PIECE_BYTES",
    "ChdbConnection",
    "ClickHouseBackend",
    "ClickHouseConnectConnection",
    "ClickHouseURL",
    "Connection",
    "arrow_table",
    "chdb_param",
    "connect",
    "escaped_size",
    "json_compact_rows",
    "parse_clickhouse_url",
    "split_long_parameters",
]
