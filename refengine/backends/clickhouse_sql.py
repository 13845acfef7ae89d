"""The SQL of the ClickHouse backend: the ``feedback`` table, and one statement per plan.

Pure functions from a plan of :mod:`refengine.semantics` to ``(sql, params)``: every
value of a request is a bound parameter (``{name:Type}``), never text in the SQL.
The only words built from a request are column aliases made of a stats metric's
slug, which the plan has already restricted to ``[a-zA-Z0-9_]``, and the percentile
names ``p95`` / ``p99.9`` (digits and a dot): production builds its aliases the same
way, so a fractional percentile is a syntax error here as it is there
(spec/SEMANTICS.md, "Stats / Deviations from production").

The statements follow production's shape (spec/SEMANTICS.md; the functions named in
the production notes): ``sumMap`` over key and value arrays (which drops a key whose
sum is zero), ``countIf``, ``toStartOfInterval`` buckets, ``JSONExtractRaw`` read
with ``toFloat64OrNull``, ``quantileOrNull`` and the ``all_buckets`` grid joined to
the aggregated rows. This module needs no ClickHouse to import: the tests read its
statements without a database.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ..rows import FeedbackRow
from ..semantics.aggregate import AggregatePlan
from ..semantics.stats import MetricPlan, StatsPlan

Params = dict[str, Any]

TABLE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("id", "String"),
    ("project_id", "String"),
    ("weave_ref", "String"),
    ("wb_user_id", "String"),
    ("creator", "Nullable(String)"),
    ("created_at", "DateTime64(3, 'UTC')"),
    ("feedback_type", "String"),
    ("payload_dump", "String"),
    ("annotation_ref", "Nullable(String)"),
    ("runnable_ref", "Nullable(String)"),
    ("call_ref", "Nullable(String)"),
    ("trigger_ref", "Nullable(String)"),
    ("queue_id", "Nullable(String)"),
    ("scorer_tags", "Array(String) DEFAULT []"),
    ("scorer_tag_reasons", "Map(String, String) DEFAULT map()"),
    ("scorer_tag_confidences", "Map(String, Float64) DEFAULT map()"),
    ("scorer_ratings", "Map(String, Float64) DEFAULT map()"),
    ("scorer_rating_reasons", "Map(String, String) DEFAULT map()"),
    ("scorer_rating_confidences", "Map(String, Float64) DEFAULT map()"),
    ("span_agent_name", "String DEFAULT ''"),
    ("span_agent_version", "String DEFAULT ''"),
    ("span_status_code", "Enum8('UNSET' = 0, 'OK' = 1, 'ERROR' = 2) DEFAULT 'UNSET'"),
    ("span_conversation_id", "String DEFAULT ''"),
    ("span_trace_id", "String DEFAULT ''"),
    ("scorer_trace_id", "String DEFAULT ''"),
    # Not a production column: the create response's microseconds, so that a dump
    # taken from this table later round-trips exactly as the engine's does.
    ("created_at_us", "Int64"),
)
"""The production ``feedback`` columns (spec/SEMANTICS.md, "The stored row"), in order."""


def create_table_sql(table: str) -> str:
    """``CREATE TABLE IF NOT EXISTS`` for the feedback table ``table`` (an identifier
    the backend chose, never request text).

    A plain MergeTree ordered by project and time: every query reads one project's
    window. Production orders a ReplacingMergeTree by ``(project_id, weave_ref,
    wb_user_id, id)``, which can fold rows repeating all four during a merge;
    refengine keeps every repeated id, as the spec says production's queries see it.
    """
    columns = ",\n  ".join(f"{name} {kind}" for name, kind in TABLE_COLUMNS)
    return (
        f"CREATE TABLE IF NOT EXISTS {table} (\n  {columns}\n) "
        "ENGINE = MergeTree ORDER BY (project_id, created_at)"
    )


# --- insert --------------------------------------------------------------------------------

_INSERT_STRUCTURE = ", ".join(
    "created_at_ms Int64" if name == "created_at" else f"{name} {kind.split(' DEFAULT')[0]}"
    for name, kind in TABLE_COLUMNS
)
_INSERT_SELECT = ", ".join(
    "fromUnixTimestamp64Milli(created_at_ms, 'UTC')" if name == "created_at" else name
    for name, _ in TABLE_COLUMNS
)


def row_record(row: FeedbackRow) -> dict[str, Any]:
    """One stored row as the JSON object the insert reads (``created_at_ms`` for the
    ``DateTime64(3)``, maps as objects). ``O(size of the row)``."""
    return {
        "id": row.id,
        "project_id": row.project_id,
        "weave_ref": row.weave_ref,
        "wb_user_id": row.wb_user_id,
        "creator": row.creator,
        "created_at_ms": row.created_at_ms,
        "feedback_type": row.feedback_type,
        "payload_dump": row.payload_dump,
        "annotation_ref": row.annotation_ref,
        "runnable_ref": row.runnable_ref,
        "call_ref": row.call_ref,
        "trigger_ref": row.trigger_ref,
        "queue_id": row.queue_id,
        "scorer_tags": list(row.scorer_tags),
        "scorer_tag_reasons": dict(row.scorer_tag_reasons),
        "scorer_tag_confidences": dict(row.scorer_tag_confidences),
        "scorer_ratings": dict(row.scorer_ratings),
        "scorer_rating_reasons": dict(row.scorer_rating_reasons),
        "scorer_rating_confidences": dict(row.scorer_rating_confidences),
        "span_agent_name": row.span_agent_name,
        "span_agent_version": row.span_agent_version,
        "span_status_code": row.span_status_code,
        "span_conversation_id": row.span_conversation_id,
        "span_trace_id": row.span_trace_id,
        "scorer_trace_id": row.scorer_trace_id,
        "created_at_us": row.created_at_us,
    }


def insert_sql(table: str, rows: Sequence[FeedbackRow]) -> tuple[str, Params]:
    """One ``INSERT ... SELECT`` of every row, read by ``format(JSONEachRow)`` from a
    single bound ``String`` parameter: one statement, one block, so a batch is
    written whole or not at all (the block is sized to hold the batch).

    Floats are parsed exactly (``precise_float_parsing``): Python writes the shortest
    repr of each rating, and the stored Float64 must be that very number.
    Runtime complexity: ``O(total size of the rows)``.
    """
    data = "\n".join(json.dumps(row_record(row), allow_nan=False) for row in rows)
    sql = (
        f"INSERT INTO {table} SELECT {_INSERT_SELECT} "
        f"FROM format(JSONEachRow, {{structure:String}}, {{rows:String}}) "
        f"SETTINGS precise_float_parsing = 1, {_one_block(len(rows))}"
    )
    return sql, {"structure": _INSERT_STRUCTURE, "rows": data}


def _one_block(rows: int) -> str:
    """Settings that make an INSERT of ``rows`` rows one block, hence one part: it is
    stored whole or not at all."""
    block = max(rows, 1)
    return (
        f"max_insert_block_size = {block}, min_insert_block_size_rows = {block}, "
        f"min_insert_block_size_bytes = 0, max_block_size = {block}"
    )


def bulk_insert_sql(table: str, rows: int) -> str:
    """One ``INSERT ... SELECT`` of ``rows`` rows from an Arrow IPC file whose path is
    the bound ``{path:String}`` and whose columns are those of :func:`row_record`
    (``created_at_ms`` an int64, the maps Arrow maps, the tags a list of strings;
    :func:`refengine.backends.clickhouse.arrow_table` writes it). Arrow carries every
    value in binary: strings byte for byte, NULLs as nulls, floats bit for bit. One
    block, so the statement is all or nothing like :func:`insert_sql`.
    """
    return (
        f"INSERT INTO {table} SELECT {_INSERT_SELECT} FROM file({{path:String}}, Arrow) "
        f"SETTINGS {_one_block(rows)}"
    )


# --- aggregate ------------------------------------------------------------------------------

_OBJECT_NAME = "splitByChar(':', splitByChar('/', ifNull({col}, ''))[-1])[1]"
"""The stored row / Derived keys: the last ``/`` segment up to its first ``:``."""

DERIVED_COLUMNS = {
    "scorer_id": _OBJECT_NAME.format(col="runnable_ref"),
    "monitor_id": _OBJECT_NAME.format(col="trigger_ref"),
    "span_type": "if(length(splitByChar('/', weave_ref)) >= 2, "
    "splitByChar('/', weave_ref)[-2], '')",
}
"""The derived keys of spec/SEMANTICS.md, "The stored row", as SQL over the stored columns."""


def _id_filter(column: str, wanted: Sequence[str], name: str, params: Params) -> str:
    """Aggregate / Filters, ``scorer_ids`` / ``monitor_ids``: exact values, or a prefix
    for a value ending in ``*`` (every trailing ``*`` stripped)."""
    params[f"{name}_exact"] = [w for w in wanted if not w.endswith("*")]
    params[f"{name}_prefix"] = [w.rstrip("*") for w in wanted if w.endswith("*")]
    return (
        f"(has({{{name}_exact:Array(String)}}, {column}) OR "
        f"arrayExists(p -> startsWith({column}, p), {{{name}_prefix:Array(String)}}))"
    )


def aggregate_sql(table: str, p: AggregatePlan) -> tuple[str, Params]:
    """The statement answering an aggregate plan: one row per (bucket, group).

    Columns: ``bucket`` (epoch ms; only with buckets), ``g0``, ``g1``, ... (the
    group values as strings, in ``group_by`` order), ``total_count``,
    ``scored_count``, and ``sumMap`` key/value arrays ``tag_counts``,
    ``rating_counts``, ``rating_sums``. Without buckets and groups there is no
    ``GROUP BY``, so the answer is one row even when nothing matched, as production's.
    Ordered by bucket, then group values (``span_status_code`` by enum value).
    """
    params: Params = {
        "project_id": p.project_id,
        "after_ms": p.after_ms,
        "before_ms": p.before_ms,
    }
    where = []
    if p.feedback_types:
        params["feedback_types"] = [t.rstrip("*") for t in p.feedback_types]
        where.append(
            "arrayExists(t -> startsWith(feedback_type, t), {feedback_types:Array(String)})"
        )
    if p.monitor_ids:
        where.append(_id_filter("monitor_id", p.monitor_ids, "monitor_ids", params))
    if p.scorer_ids:
        where.append(_id_filter("scorer_id", p.scorer_ids, "scorer_ids", params))
    if p.span_agent_names:
        params["span_agent_names"] = list(p.span_agent_names)
        where.append("has({span_agent_names:Array(String)}, span_agent_name)")
    if p.span_types:
        params["span_types"] = list(p.span_types)
        where.append("has({span_types:Array(String)}, span_type)")
    if p.tags:
        params["tags"] = list(p.tags)
        where.append("hasAny(scorer_tags, {tags:Array(String)})")
    if p.rating_min is not None or p.rating_max is not None:
        where.append("mapContains(scorer_ratings, '_rating_')")
    if p.rating_min is not None:
        params["rating_min"] = p.rating_min
        where.append("scorer_ratings['_rating_'] >= {rating_min:Float64}")
    if p.rating_max is not None:
        params["rating_max"] = p.rating_max
        where.append("scorer_ratings['_rating_'] <= {rating_max:Float64}")
    keys: list[str] = []
    selects: list[str] = []
    if p.time_bucket_seconds is not None:
        params["bucket_seconds"] = p.time_bucket_seconds
        selects.append(
            "toInt64(toUnixTimestamp(toStartOfInterval(created_at, "
            "toIntervalSecond({bucket_seconds:Int64})))) * 1000 AS bucket"
        )
        keys.append("bucket")
    for i, dim in enumerate(p.group_by):
        selects.append(f"toString({dim}) AS g{i}")
        keys.append(dim)
    selects += [
        "count() AS total_count",
        "countIf(notEmpty(scorer_tags) OR notEmpty(scorer_ratings)) AS scored_count",
        "sumMap(scorer_tags, arrayMap(t -> toUInt64(1), scorer_tags)) AS tag_counts",
        "sumMap(mapKeys(scorer_ratings), arrayMap(k -> toUInt64(1), mapKeys(scorer_ratings)))"
        " AS rating_counts",
        "sumMap(mapKeys(scorer_ratings), mapValues(scorer_ratings)) AS rating_sums",
    ]
    derived = ", ".join(f"{sql} AS {name}" for name, sql in DERIVED_COLUMNS.items())
    sql = (
        f"SELECT {', '.join(selects)} FROM ("
        f"SELECT *, {derived} FROM {table} "
        "WHERE project_id = {project_id:String} "
        "AND created_at >= fromUnixTimestamp64Milli({after_ms:Int64}, 'UTC') "
        "AND created_at < fromUnixTimestamp64Milli({before_ms:Int64}, 'UTC'))"
    )
    if where:
        sql += " WHERE " + " AND ".join(where)
    if keys:
        sql += f" GROUP BY {', '.join(keys)} ORDER BY {', '.join(keys)}"
    return sql, params


# --- stats ----------------------------------------------------------------------------------


def _path_args(metric_index: int, metric: MetricPlan, params: Params) -> str:
    """The metric's path keys as bound ``String`` arguments of a ``JSONExtract*`` call."""
    names = []
    for j, key in enumerate(metric.spec.json_path.split(".")):
        name = f"path_{metric_index}_{j}"
        params[name] = key
        names.append(f"{{{name}:String}}")
    return ", ".join(names)


def metric_expression(metric_index: int, metric: MetricPlan, params: Params) -> str:
    """Stats / Extracting a metric, as production reads it: numeric
    ``toFloat64OrNull(JSONExtractRaw(...))``, boolean ``1``/``0`` for the raw tokens
    ``true``/``false`` (else NULL), categorical ``JSONExtractString``."""
    args = _path_args(metric_index, metric, params)
    raw = f"JSONExtractRaw(payload_dump, {args})"
    if metric.spec.value_type == "numeric":
        return f"toFloat64OrNull({raw})"
    if metric.spec.value_type == "boolean":
        return f"if({raw} = 'true', 1, if({raw} = 'false', 0, NULL))"
    return f"JSONExtractString(payload_dump, {args})"


_AGGREGATE_SQL = {
    "sum": "sumOrNull({m})",
    "avg": "avgOrNull({m})",
    "min": "minOrNull({m})",
    "max": "maxOrNull({m})",
    "count": "countOrNull({m})",
    "count_true": "countIf({m} = 1)",
    "count_false": "countIf({m} = 0)",
}
"""Stats / Aggregations, as production's SQL computes each (``OrNull``: no value is
NULL; the ``countIf`` pair is 0)."""


def metric_selects(
    metric_index: int, metric: MetricPlan, params: Params
) -> list[tuple[str, str, str]]:
    """``(agg name, select expression, alias)`` for each aggregation then percentile of
    one metric, aliases ``{agg}_{slug}`` and ``p{p}_{slug}`` as production writes them."""
    m = f"m_{metric.slug}"
    out = [
        (agg, _AGGREGATE_SQL[agg].format(m=m), f"{agg}_{metric.slug}")
        for agg in metric.aggregations
    ]
    for j, (name, level) in enumerate(metric.percentiles):
        level_param = f"level_{metric_index}_{j}"
        params[level_param] = level
        out.append(
            (name, f"quantileOrNull({{{level_param}:Float64}})({m})", f"{name}_{metric.slug}")
        )
    return out


_WHOLE_SECOND = "toDateTime64(toDateTime({{{bound}:Float64}}, {{tz:String}}), 3, {{tz:String}})"
"""A stats bound truncated to whole seconds (Stats / Buckets), typed as ``created_at``."""


def type_and_trigger_filters(
    feedback_type: str | None, trigger_ref: str | None, params: Params
) -> list[str]:
    """The ``feedback_type`` and ``trigger_ref`` conditions of stats and payload_schema
    (spec/SEMANTICS.md, "Stats / Filters"): a type matched exactly; a trigger ref
    exactly, or by prefix when it ends in ``:*`` (production's ``startsWith``). Binds
    their values into ``params``."""
    where = []
    if feedback_type is not None:
        params["feedback_type"] = feedback_type
        where.append("feedback_type = {feedback_type:String}")
    if trigger_ref is not None:
        if trigger_ref.endswith(":*"):
            params["trigger_prefix"] = trigger_ref[:-2]
            where.append("startsWith(trigger_ref, {trigger_prefix:String})")
        else:
            params["trigger_ref"] = trigger_ref
            where.append("trigger_ref = {trigger_ref:String}")
    return where


def _stats_context(table: str, p: StatsPlan, params: Params) -> tuple[str, str]:
    """The filtered, extracted rows of a stats plan (as a subquery body) and the time
    zone expression; fills ``params``.

    The window is production's ``toDateTime({start:Float64})`` (whole seconds), made a
    ``DateTime64(3)`` before it meets ``created_at``: ClickHouse 26.9 misreads a
    ``DateTime`` bound on a ``DateTime64`` sorting-key column (``created_at <
    '03:00:01'`` prunes as ``<= 03:00:00``, so a part whose rows all lie in
    03:00:00.001-03:00:00.999 is skipped). Production's table does not sort by
    ``created_at``; this one does, so it must not compare a DateTime with it.
    """
    params["project_id"] = p.project_id
    params["start"] = p.start.timestamp()
    params["end"] = p.end.timestamp()
    params["tz"] = p.timezone or "UTC"
    where = [
        "project_id = {project_id:String}",
        f"created_at >= {_WHOLE_SECOND.format(bound='start')}",
        f"created_at < {_WHOLE_SECOND.format(bound='end')}",
    ]
    where.extend(type_and_trigger_filters(p.feedback_type, p.trigger_ref, params))
    extracted = [
        f"{metric_expression(i, metric, params)} AS m_{metric.slug}"
        for i, metric in enumerate(p.metrics)
    ]
    body = f"{', '.join(extracted)} FROM {table} WHERE {' AND '.join(where)}"
    return body, "{tz:String}"


def stats_buckets_sql(table: str, p: StatsPlan) -> tuple[str, Params, list[tuple[str, str]]]:
    """The bucket statement of a stats plan, and its ``(agg name, alias)`` columns.

    Production's shape: ``all_buckets`` — every ``toStartOfInterval`` of the window
    from the start's bucket on, stepping ``g`` seconds, before the end — left-joined
    to the rows aggregated per ``toStartOfInterval(created_at, g, tz)``; a ``sum``,
    ``avg`` or ``count`` of an empty bucket is 0, ``min``/``max``/percentiles NULL.
    The bucket column is ``ts`` (epoch seconds). In a zone whose offset has not
    always been whole hours (whole minutes, for a ``g`` of whole minutes), ClickHouse
    counts intervals from each local midnight, off the epoch's grid wherever ``g``
    does not divide that midnight, and rows off the generated grid drop out of the
    join, as in production (spec/SEMANTICS.md, "Stats / Deviations from production",
    "Epoch alignment in every zone").
    """
    params: Params = {"g": p.granularity}
    body, tz = _stats_context(table, p, params)
    interval = "toIntervalSecond({g:Int64})"
    columns: list[tuple[str, str]] = []
    inner: list[str] = []
    outer: list[str] = []
    for i, metric in enumerate(p.metrics):
        for agg, expression, alias in metric_selects(i, metric, params):
            inner.append(f"{expression} AS {alias}")
            if alias.startswith(("sum_", "count_", "avg_")):
                outer.append(f"COALESCE(aggregated_data.{alias}, 0) AS {alias}")
            else:
                outer.append(f"aggregated_data.{alias} AS {alias}")
            columns.append((agg, alias))
    start = f"toDateTime({{start:Float64}}, {tz})"
    end = f"toDateTime({{end:Float64}}, {tz})"
    first = f"toStartOfInterval({start}, {interval}, {tz})"
    sql = (
        "WITH all_buckets AS ("
        f"SELECT {first} + toIntervalSecond(number * {{g:Int64}}) AS bucket "
        "FROM numbers(toUInt64(ceil("
        f"(toUnixTimestamp({end}) - toUnixTimestamp({first})) / {{g:Float64}}))) "
        f"WHERE bucket < {end}), "
        "aggregated_data AS ("
        f"SELECT bucket, {', '.join([*inner, 'count() AS count'])} FROM ("
        f"SELECT toStartOfInterval(created_at, {interval}, {tz}) AS bucket, {body}"
        ") GROUP BY bucket) "
        "SELECT toInt64(toUnixTimestamp(all_buckets.bucket)) AS ts, "
        f"{', '.join([*outer, 'COALESCE(aggregated_data.count, 0) AS count'])} "
        "FROM all_buckets LEFT JOIN aggregated_data "
        "ON all_buckets.bucket = aggregated_data.bucket ORDER BY all_buckets.bucket"
    )
    return sql, params, columns


def stats_window_sql(table: str, p: StatsPlan) -> tuple[str, Params, list[tuple[str, str]]]:
    """The window statement of a stats plan (one row, no ``GROUP BY``): the same
    filters and aggregations over the whole window, and its ``(agg, alias)`` columns."""
    params: Params = {}
    body, _tz = _stats_context(table, p, params)
    columns: list[tuple[str, str]] = []
    selects: list[str] = []
    for i, metric in enumerate(p.metrics):
        for agg, expression, alias in metric_selects(i, metric, params):
            selects.append(f"{expression} AS {alias}")
            columns.append((agg, alias))
    return f"SELECT {', '.join(selects)} FROM (SELECT {body})", params, columns


WINDOW_ALIAS_PREFIXES = ("count_true", "count_false", "avg", "sum", "min", "max", "count")
"""The order in which production recovers an aggregation from a window column's alias."""


def split_window_alias(alias: str) -> tuple[str, str]:
    """``(slug, agg)`` of a window column as production recovers them from its alias:
    the first prefix of :data:`WINDOW_ALIAS_PREFIXES` that matches, else ``pNN_``.

    So a slug that starts with one of those words is mis-split, as in production
    (spec/SEMANTICS.md, "Stats / Deviations from production"):

    >>> split_window_alias("avg_output_score")
    ('output_score', 'avg')
    >>> split_window_alias("count_true_x")
    ('x', 'count_true')
    >>> split_window_alias("p95_output_score")
    ('output_score', 'p95')
    """
    for prefix in WINDOW_ALIAS_PREFIXES:
        if alias.startswith(prefix + "_"):
            return alias[len(prefix) + 1 :], prefix
    name, _, slug = alias.partition("_")
    return slug, name


def sum_map(value: Any) -> dict[str, Any]:
    """A ``sumMap`` result — ``(keys, values)`` as a pair of arrays, in either client's
    rendering — as a dict in key order."""
    if isinstance(value, Mapping):
        return dict(value)
    keys, values = value
    return dict(zip(keys, values, strict=True))


__all__ = [
    "DERIVED_COLUMNS",
    "TABLE_COLUMNS",
    "aggregate_sql",
    "bulk_insert_sql",
    "create_table_sql",
    "insert_sql",
    "metric_expression",
    "row_record",
    "split_window_alias",
    "stats_buckets_sql",
    "stats_window_sql",
    "sum_map",
]
