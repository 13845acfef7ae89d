"""A deliberately simple model of ``POST /feedback/aggregate`` for cross-checking.

A plain full scan over ``engine.rows(project)`` with straightforward per-row code
and no cleverness, written from SEMANTICS-NOTES §3 independently of
``refengine/aggregate.py`` (it imports nothing from it). Returns plain dicts shaped
like ``FeedbackAggregateRes.model_dump()``.
"""

from __future__ import annotations

from typing import Any

from refengine import Engine
from refengine.rows import FeedbackRow

STATUS_RANK = {"UNSET": 0, "OK": 1, "ERROR": 2}


def _id_matches(value: str, wanted: list[str]) -> bool:
    for w in wanted:
        if w.endswith("*"):
            prefix = w
            while prefix.endswith("*"):
                prefix = prefix[:-1]
            if value.startswith(prefix):
                return True
        elif value == w:
            return True
    return False


def _type_matches(value: str, wanted: list[str]) -> bool:
    for w in wanted:
        prefix = w
        while prefix.endswith("*"):
            prefix = prefix[:-1]
        if value.startswith(prefix):
            return True
    return False


def row_matches(row: FeedbackRow, req: dict[str, Any]) -> bool:
    """True when ``row`` passes every filter of ``req`` (window included)."""
    if row.project_id != req["project_id"]:
        return False
    if not (req["after_ms"] <= row.created_at_ms < req["before_ms"]):
        return False
    if req.get("feedback_types") and not _type_matches(row.feedback_type, req["feedback_types"]):
        return False
    if req.get("monitor_ids") and not _id_matches(row.monitor_id, req["monitor_ids"]):
        return False
    if req.get("scorer_ids") and not _id_matches(row.scorer_id, req["scorer_ids"]):
        return False
    if req.get("span_agent_names") and row.span_agent_name not in req["span_agent_names"]:
        return False
    if req.get("span_types") and row.span_type not in req["span_types"]:
        return False
    if req.get("tags"):
        found = False
        for tag in row.scorer_tags:
            if tag in req["tags"]:
                found = True
        if not found:
            return False
    low = req.get("rating_min")
    high = req.get("rating_max")
    if low is not None or high is not None:
        if "_rating_" not in row.scorer_ratings:
            return False
        rating = row.scorer_ratings["_rating_"]
        if low is not None and rating < low:
            return False
        if high is not None and rating > high:
            return False
    return True


def naive_aggregate(engine: Engine, req: dict[str, Any]) -> dict[str, Any]:
    """The aggregate answer for ``req`` (a dict) by brute force."""
    width = req.get("time_bucket_seconds")
    dims = list(req.get("group_by") or [])
    cells: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in engine.rows(req["project_id"]):
        if not row_matches(row, req):
            continue
        start = None
        if width is not None:
            start = (row.created_at_ms // 1000) // width * width * 1000
        group = {}
        for dim in dims:
            group[dim] = str(getattr(row, dim))
        cell_key = (start, *[group[d] for d in dims])
        if cell_key not in cells:
            cells[cell_key] = {
                "time_bucket_start_ms": start,
                "group": group,
                "total_count": 0,
                "scored_count": 0,
                "tag_counts": {},
                "rating_counts": {},
                "rating_sums": {},
            }
        cell = cells[cell_key]
        cell["total_count"] += 1
        if len(row.scorer_tags) > 0 or len(row.scorer_ratings) > 0:
            cell["scored_count"] += 1
        for tag in row.scorer_tags:
            cell["tag_counts"][tag] = cell["tag_counts"].get(tag, 0) + 1
        for key, value in row.scorer_ratings.items():
            cell["rating_counts"][key] = cell["rating_counts"].get(key, 0) + 1
            cell["rating_sums"][key] = cell["rating_sums"].get(key, 0.0) + value

    if not cells and width is None and not dims:
        cells[(None,)] = {
            "time_bucket_start_ms": None,
            "group": {},
            "total_count": 0,
            "scored_count": 0,
            "tag_counts": {},
            "rating_counts": {},
            "rating_sums": {},
        }

    out = []
    for cell in cells.values():
        cell["tag_counts"] = dict(sorted(cell["tag_counts"].items()))
        cell["rating_counts"] = dict(sorted(cell["rating_counts"].items()))
        sums = {}
        for key in sorted(cell["rating_sums"]):
            if cell["rating_sums"][key] != 0:
                sums[key] = float(cell["rating_sums"][key])
        cell["rating_sums"] = sums
        out.append(cell)

    def sort_key(cell: dict[str, Any]) -> tuple[Any, ...]:
        parts: list[Any] = [cell["time_bucket_start_ms"] or 0]
        for dim in dims:
            value = cell["group"][dim]
            if dim == "span_status_code":
                parts.append(STATUS_RANK[value])
            else:
                parts.append(value)
        return tuple(parts)

    out.sort(key=sort_key)
    return {
        "time_bucket_seconds": width,
        "after_ms": req["after_ms"],
        "before_ms": req["before_ms"],
        "buckets": out,
    }
