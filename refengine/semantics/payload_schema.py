"""``POST /feedback/payload_schema``: which ``json_path``s a project's payloads hold.

spec/SEMANTICS.md, "Payload schema". Sampling takes, per ``trigger_ref`` group
(rows without one form a single group), the payload of the group's newest row, and
keeps the ``sample_limit`` groups whose newest row is newest; discovery walks those
payloads and unites the value types seen at each path.

Runtime complexity: ``O(k + g log g + s)`` for ``k`` rows in the window, ``g``
groups and ``s`` total size of the sampled payloads.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..models import FeedbackPayloadSchemaReq, FeedbackPayloadSchemaRes, PayloadSchemaPath
from ..rows import FeedbackRow, datetime_to_us

_PATH_CHARS = re.compile(r"[a-zA-Z0-9_. ]+")


@dataclass(frozen=True)
class SchemaPlan:
    """The window in whole seconds (as stats truncates it) and the filters."""

    after_ms: int
    before_ms: int
    feedback_type: str | None
    trigger_ref: str | None
    sample_limit: int


def resolve_end(request: FeedbackPayloadSchemaReq, now: datetime) -> FeedbackPayloadSchemaReq:
    """Payload schema (the request): a missing ``end`` is ``now``, and the request is
    validated again so the range checks apply to it as model errors, as in stats."""
    if request.end is not None:
        return request
    return FeedbackPayloadSchemaReq.model_validate({**request.model_dump(), "end": now})


def plan(request: FeedbackPayloadSchemaReq, now: datetime) -> SchemaPlan:
    """Resolve the window: ``end`` defaults to ``now`` (:func:`resolve_end`), then
    ``start`` and ``end`` are truncated to whole seconds. ``O(1)``."""
    request = resolve_end(request, now)
    if request.end is None:  # resolve_end always sets it; narrowing for the type checker
        raise ValueError("end is unresolved")
    start_s = datetime_to_us(request.start) // 1_000_000
    end_s = datetime_to_us(request.end) // 1_000_000
    return SchemaPlan(
        start_s * 1000,
        end_s * 1000,
        request.feedback_type,
        request.trigger_ref,
        request.sample_limit,
    )


def matches(schema_plan: SchemaPlan, row: FeedbackRow) -> bool:
    """The stats filters: ``feedback_type`` exact; ``trigger_ref`` exact, or a prefix
    when it ends in ``:*``; a row without a trigger_ref never matches one."""
    if schema_plan.feedback_type is not None and row.feedback_type != schema_plan.feedback_type:
        return False
    wanted = schema_plan.trigger_ref
    if wanted is None:
        return True
    if row.trigger_ref is None:
        return False
    if wanted.endswith(":*"):
        return row.trigger_ref.startswith(wanted[:-2])
    return row.trigger_ref == wanted


def sample(schema_plan: SchemaPlan, rows: Sequence[FeedbackRow]) -> list[dict[str, Any]]:
    """The sampled payloads (SEMANTICS "Payload schema / Sampling"). ``rows`` is
    the window in store order, so a group's last row is its newest (ties: the
    later inserted)."""
    newest: dict[str | None, tuple[int, FeedbackRow]] = {}
    for position, row in enumerate(rows):
        if matches(schema_plan, row):
            newest[row.trigger_ref] = (position, row)
    picked = sorted(newest.values(), key=lambda item: item[0], reverse=True)
    return [row.payload for _, row in picked[: schema_plan.sample_limit]]


def discover(payloads: Iterable[Any]) -> dict[str, set[str]]:
    """The JSON types seen at each path (SEMANTICS "Payload schema / Discovery")."""
    seen: dict[str, set[str]] = {}
    for payload in payloads:
        if isinstance(payload, dict):
            _walk(payload, "", seen)
    return {
        path: types
        for path, types in seen.items()
        if "[" not in path and _PATH_CHARS.fullmatch(path)
    }


def _walk(value: dict[str, Any], prefix: str, seen: dict[str, set[str]]) -> None:
    for key, child in value.items():
        if "." in key or not key.strip():
            continue
        path = f"{prefix}.{key}" if prefix else key
        _record(child, path, seen)


def _record(value: Any, path: str, seen: dict[str, set[str]]) -> None:
    if isinstance(value, dict):
        _walk(value, path, seen)
    elif isinstance(value, list):
        for element in value:
            if isinstance(element, dict | list):
                # Such a path would carry "[i]", and every path with "[" is dropped.
                continue
            _record(element, path, seen)
    else:
        seen.setdefault(path, set()).add(_json_type(value))


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return "string"


def value_type(types: set[str]) -> str:
    """Booleans and nulls → boolean (null alone too); numbers and nulls → numeric;
    anything else → categorical."""
    if types <= {"boolean", "null"}:
        return "boolean"
    if types <= {"number", "null"}:
        return "numeric"
    return "categorical"


def fold(schema_plan: SchemaPlan, rows: Sequence[FeedbackRow]) -> FeedbackPayloadSchemaRes:
    """Sample, discover, and answer the paths sorted by ``json_path``."""
    return answer(sample(schema_plan, rows))


def answer(payloads: Iterable[Any]) -> FeedbackPayloadSchemaRes:
    """The response for sampled payloads: their discovered paths, sorted by
    ``json_path``, each with its united value type (a backend that samples in its
    database answers with this)."""
    found = discover(payloads)
    return FeedbackPayloadSchemaRes(
        paths=[
            PayloadSchemaPath(json_path=path, value_type=value_type(types))  # type: ignore[arg-type]
            for path, types in sorted(found.items())
        ]
    )
