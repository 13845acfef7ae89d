"""The rest of the feedback family on ClickHouse: query, purge, replace,
payload_schema and server_info, for :class:`refengine.backends.clickhouse.ClickHouseBackend`.

Each function checks its request with the shared semantics first (the same plans,
so the same refusals and messages as the in-memory engine), then runs the
statements of :mod:`refengine.backends.clickhouse_query_sql` and reads the result
into the engine's response model.

Writes (purge, replace) are made under the backend's write lock, so no two of them
interleave. What a reader sees while one runs: a lightweight ``DELETE`` is applied
part by part, so a query running at the same time may see some of a purge's rows
gone and others not yet; once the purge has answered, every later read sees all of
them gone (``lightweight_deletes_sync = 2``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ..errors import BackendUnavailable
from ..models import (
    FeedbackCreateReq,
    FeedbackPayloadSchemaReq,
    FeedbackPayloadSchemaRes,
    FeedbackPurgeReq,
    FeedbackPurgeRes,
    FeedbackQueryReq,
    FeedbackQueryRes,
    FeedbackReplaceReq,
    FeedbackReplaceRes,
    ServerInfoRes,
)
from ..rows import EPOCH, FeedbackRow, build_row
from ..semantics import feedback_query
from ..semantics import payload_schema as schema
from ..semantics import purge as purge_rules
from ..semantics import replace as replace_rules
from ..semantics import server_info as server_info_rules
from ..semantics.create import IdFactory, PreparedCreate, rows_with_ids
from ..semantics.feedback_query import COUNT_STAR
from . import clickhouse_query_sql as sql
from .clickhouse_sql import insert_sql

if TYPE_CHECKING:
    from .clickhouse import Connection


def _cell(value: Any, reader: str) -> Any:
    """One result cell as the engine renders the field (Query / Projection)."""
    if reader == "json":
        return json.loads(value)
    if reader == "datetime":
        return EPOCH + timedelta(milliseconds=int(value))
    if reader == "float":
        return None if value is None else float(value)
    if reader == "float_map":
        return {k: float(v) for k, v in _as_dict(value).items()}
    if isinstance(value, dict):
        return dict(value)
    return value


def _as_dict(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, dict) else dict(value or {})


def query(connection: Connection, request: FeedbackQueryReq) -> FeedbackQueryRes:
    """``/feedback/query`` (spec/SEMANTICS.md, "Query"): the shared plan checks the
    request (every refusal before any statement), then a count statement gives
    ``total_count`` and a rows statement the page.

    Runtime complexity: two statements; ClickHouse reads the project's rows, and the
    page of ``k`` rows of ``f`` fields is converted in ``O(k · f)`` plus the size of
    the payloads returned.
    """
    feedback_query.plan(request)  # the shared checks; ClickHouse evaluates the rest
    statements = sql.query_statements(connection.table, request)
    (count_row,) = connection.query(statements.count_sql, statements.params)
    total = int(count_row[0])
    if statements.rows_sql is None:
        if request.fields == [COUNT_STAR]:
            return FeedbackQueryRes(result=[{COUNT_STAR: total}], total_count=total)
        return FeedbackQueryRes(result=[], total_count=total)
    outputs = statements.outputs
    result = [
        {key: _cell(value, reader) for (key, reader), value in zip(outputs, row, strict=True)}
        for row in connection.query(statements.rows_sql, statements.params)
    ]
    return FeedbackQueryRes(result=result, total_count=total)


def purge(connection: Connection, request: FeedbackPurgeReq) -> FeedbackPurgeRes:
    """``/feedback/purge`` (spec/SEMANTICS.md, "Purge"): the ids of the accepted query
    shapes (:func:`refengine.semantics.purge.purge_ids`; a refused shape deletes
    nothing), then one lightweight ``DELETE``. One statement: it removes all of the
    ids or, failing, none (:class:`BackendUnavailable`)."""
    ids = purge_rules.purge_ids(request)
    statement, params = sql.delete_sql(connection.table, request.project_id, sorted(ids))
    connection.query(statement, params)
    return FeedbackPurgeRes()


def create_part(request: FeedbackReplaceReq) -> FeedbackCreateReq:
    """The create request inside a replace (:func:`refengine.semantics.replace.create_request`)."""
    return replace_rules.create_request(request)


def stored_rows(connection: Connection, project_id: str, ids: Sequence[str]) -> list[FeedbackRow]:
    """The project's rows with one of ``ids``, read back whole, in store order."""
    statement, params = sql.rows_by_id_sql(connection.table, project_id, ids)
    return [_row(cells) for cells in connection.query(statement, params)]


def _row(cells: Sequence[Any]) -> FeedbackRow:
    values = dict(zip(sql.ROW_COLUMNS, cells, strict=True))
    for name in ("scorer_tag_confidences", "scorer_ratings", "scorer_rating_confidences"):
        values[name] = {k: float(v) for k, v in _as_dict(values[name]).items()}
    for name in ("scorer_tag_reasons", "scorer_rating_reasons"):
        values[name] = _as_dict(values[name])
    values["scorer_tags"] = tuple(values["scorer_tags"])
    values["created_at_us"] = int(values["created_at_us"])
    return build_row(*(values[name] for name in sql.ROW_COLUMNS))


def replace(
    connection: Connection,
    request: FeedbackReplaceReq,
    prepared: PreparedCreate,
    id_factory: IdFactory | None,
) -> FeedbackReplaceRes:
    """``/feedback/replace`` (spec/SEMANTICS.md, "Replace"), after the whole create
    chain has run (``prepared``; a refused replacement has deleted nothing).

    Under the caller's write lock: read the old rows back, delete them, insert the
    new row. The guarantee, stated honestly: ClickHouse has no transaction across a
    ``DELETE`` and an ``INSERT``. If the delete fails nothing has changed. If the
    insert fails after the delete, the old rows read before are inserted again
    (every column the same; among rows of the very same millisecond they now come
    last in store order) and the failure is raised
    (:class:`BackendUnavailable`, a 503); only if that write fails too — the
    database gone between two statements — is the old row lost, as production
    loses it. A reader running at the same moment may see the project between the
    statements (the old row gone, the new one not yet there).
    """
    old = stored_rows(connection, request.project_id, [request.feedback_id])
    (row,) = rows_with_ids([prepared], id_factory)
    statement, params = sql.delete_sql(connection.table, request.project_id, [request.feedback_id])
    if old:
        connection.query(statement, params)
    try:
        # A create's statement (one block, all or nothing), not the bulk path.
        connection.query(*insert_sql(connection.table, [row]))
    except BackendUnavailable:
        if old:  # a failure here propagates: the database is gone
            connection.query(*insert_sql(connection.table, old))
        raise
    return FeedbackReplaceRes.model_validate(prepared.response(row).model_dump())


def payload_schema(
    connection: Connection, request: FeedbackPayloadSchemaReq, now: datetime
) -> FeedbackPayloadSchemaRes:
    """``/feedback/payload_schema`` (spec/SEMANTICS.md, "Payload schema"): the shared
    plan (window, defaults), one sampling statement (the newest payload of each
    ``trigger_ref`` group), and the shared discovery over the samples.

    Runtime complexity: one statement over the window's rows; discovery is
    ``O(total size of the sampled payloads)``.
    """
    plan = schema.plan(request, now)
    statement, params = sql.payload_sample_sql(connection.table, request.project_id, plan)
    payloads = [json.loads(row[0]) for row in connection.query(statement, params)]
    return schema.answer(payloads)


def server_info() -> ServerInfoRes:
    """``GET /server_info`` (spec/SEMANTICS.md, "Server info"): no statement."""
    from .. import __version__  # noqa: PLC0415 (the package imports the backends lazily)

    return server_info_rules.server_info(__version__)


__all__ = [
    "create_part",
    "payload_schema",
    "purge",
    "query",
    "replace",
    "server_info",
    "stored_rows",
]
