"""``POST /feedback/create``: the validation chain and the row it produces.

:func:`prepare_row` runs production's checks in production's order (the first
failure is reported, as :class:`InvalidRequest`), processes the payload, and
returns the row to store, its id not yet drawn when the request has none. It writes
nothing: the engine draws ids and stores the rows of a single create or a whole
batch only once every item passed (spec/SEMANTICS.md, "Create / Batches").

Steps (spec/SEMANTICS.md, "Create"):

1. a user id is known;
2. fixed payload schemas (``wandb.reaction.1``, ``wandb.note.1``);
3. type-specific ref rules (annotation / runnable / agent monitor / other);
4. scorer columns reserved to scorer feedback types;
5. agent user feedback needs tags;
6. ref formats (and the annotation ref's project);
7. agent targets: span ids checked against, or filled from, the weave_ref;
8. payload processing (reaction emoji), finiteness, JSON text, 1 MiB limit;
9. the status code is a known enum value; the row is stamped and built.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from itertools import chain
from operator import itemgetter
from typing import Any, NamedTuple

import emoji
from pydantic import BaseModel, Field, ValidationError

from .. import errors
from ..errors import InvalidRequest, format_message
from ..frozenmap import EMPTY
from ..models import FeedbackCreateReq, FeedbackCreateRes
from ..refs import ParsedRef, is_call_ref, parse_agent_ref, parse_ref
from ..rows import STATUS_CODES, FeedbackRow, build_row, datetime_to_us, payload_text, with_id

MAX_PAYLOAD_CHARS = 1 << 20  # 1 MiB of json.dumps output
MAX_BATCH_ITEMS = 10_000
"""Create / Batches: items per batch."""
MAX_PAYLOAD_DEPTH = 64
"""Create / 8: how deep objects and arrays may nest in a payload (the payload is 1)."""
SCORER_TYPES_PREFIX = "wandb.runnable"
AGENT_MONITOR = "wandb.agent_monitor"
AGENT_USER_FEEDBACK = "wandb.agent_user_feedback"
# The five tone suffixes of the emoji package's shortcodes; production detones names.
_TONE_SUFFIXES = (
    "_light_skin_tone",
    "_medium-light_skin_tone",
    "_medium_skin_tone",
    "_medium-dark_skin_tone",
    "_dark_skin_tone",
)


# --- fixed payload schemas (extra keys are allowed, as in production) ---------------


class _ReactionPayload(BaseModel):
    emoji: str


class _NotePayload(BaseModel):
    note: str = Field(min_length=1, max_length=1024)


class _AnnotationPayload(BaseModel):
    value: Any


class _RunnablePayload(BaseModel):
    output: Any


_FIXED_SCHEMAS: dict[str, type[BaseModel]] = {
    "wandb.reaction.1": _ReactionPayload,
    "wandb.note.1": _NotePayload,
}


class PreparedCreate(NamedTuple):
    """A validated create: the row to store — with the request's id, or ``""`` when
    the id is still to be drawn (:attr:`needs_id`) — and what the response echoes."""

    row: FeedbackRow
    created_at: datetime
    payload: dict[str, Any]

    @property
    def needs_id(self) -> bool:
        """True when the request gave no id: the engine draws one as it stores it."""
        return not self.row.id

    def response(self, row: FeedbackRow) -> FeedbackCreateRes:
        """The create response for ``row``, this create's row as stored (id drawn)."""
        result: FeedbackCreateRes = _new_response(
            {
                "id": row.id,
                "created_at": self.created_at,
                "wb_user_id": row.wb_user_id,
                "payload": self.payload,
            }
        )
        return result


IdFactory = Callable[[], str]
"""A caller's source of row ids (``Engine(id_factory=...)``)."""


def uuid7(ms: int | None = None) -> str:
    """A new UUIDv7 string: 48-bit Unix ms timestamp, version 7, 74 random bits.

    The timestamp is ``ms`` (clamped to the 48 bits, 1970 to 10889), or now.
    """
    if ms is None:
        ms = time.time_ns() // 1_000_000
    elif not 0 <= ms <= _UUID7_MAX_MS:
        ms = min(max(ms, 0), _UUID7_MAX_MS)
    value = (ms << 80 | random.getrandbits(80)) & _UUID7_KEEP
    h = (value | _UUID7_SET).to_bytes(16, "big").hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def rows_with_ids(
    prepared: list[PreparedCreate], id_factory: IdFactory | None
) -> list[FeedbackRow]:
    """Create / Batches, the second phase: the rows to store, each missing id drawn
    in order (from ``id_factory``, else a UUIDv7 stamped with the row's
    ``created_at``), every id before any row is stored, so a factory that fails
    stores nothing. The caller holds its write lock. ``O(m)`` for ``m`` rows."""
    return [
        with_id(p.row, uuid7(p.row.created_at_ms) if id_factory is None else id_factory())
        if p.needs_id
        else p.row
        for p in prepared
    ]


_UUID7_MAX_MS = (1 << 48) - 1
_UUID7_SET = 0x7 << 76 | 0x2 << 62  # version 7; the RFC 4122 variant (binary 10)
_UUID7_KEEP = (1 << 128) - 1 & ~(0xF << 76) & ~(0x3 << 62)  # every other bit


def check_batch_size(count: int) -> None:
    """Create / Batches: a batch holds at most :data:`MAX_BATCH_ITEMS` items, checked
    before any item, so a larger one is refused whatever its items. Its rows are
    stored under the engine lock in one step (all or nothing), and the limit keeps
    that step short for the other projects' writes. ``O(1)``."""
    if count > MAX_BATCH_ITEMS:
        raise InvalidRequest(
            format_message(errors.BATCH_TOO_LARGE, limit=MAX_BATCH_ITEMS, count=count)
        )


def prepare_row(
    req: FeedbackCreateReq, *, now: datetime, default_user_id: str | None
) -> PreparedCreate:
    """Validate ``req`` and build its row, stamped ``now``, without drawing an id
    (the first phase of a create; see :class:`PreparedCreate`). Raises
    InvalidRequest, and changes nothing, so a rejected batch uses up no ids.

    Runtime complexity: linear in the size of the request (the payload is
    serialised once, and walked once more only to name a non-finite number).
    """
    user_id = check_user(req, default_user_id)
    check_fixed_schema(req)
    _check_type_refs(req)
    check_scorer_columns(req)
    check_user_feedback_tags(req)
    _check_ref_formats(req)
    conversation_id, trace_id = resolve_agent_target(
        req.feedback_type, req.weave_ref, req.span_conversation_id, req.span_trace_id
    )
    payload = _process_payload(req)
    payload_dump = _checked_payload_text(payload, req)
    check_status_code(req)
    row = build_row(
        req.id or "",
        req.project_id,
        req.weave_ref,
        user_id,
        req.creator,
        datetime_to_us(now),
        req.feedback_type,
        payload_dump,
        req.annotation_ref,
        req.runnable_ref,
        req.call_ref,
        req.trigger_ref,
        req.queue_id,
        req.scorer_tags,
        req.scorer_tag_reasons,
        req.scorer_tag_confidences,
        req.scorer_ratings,
        req.scorer_rating_reasons,
        req.scorer_rating_confidences,
        req.span_agent_name,
        req.span_agent_version,
        req.span_status_code,
        conversation_id,
        trace_id,
        req.scorer_trace_id,
    )
    check_storable_text(row)
    return PreparedCreate(row, now, payload)


# The response model validated from a dict in one C call: a third cheaper than its
# keyword __init__, and the same model (payload copied, every field set).
_new_response = FeedbackCreateRes.__pydantic_validator__.validate_python


def check_user(req: FeedbackCreateReq, default_user_id: str | None) -> str:
    """Create / 1. The user: the request's ``wb_user_id``, else the engine's; a
    create without either is rejected."""
    user_id = req.wb_user_id if req.wb_user_id is not None else default_user_id
    if user_id is None:
        raise InvalidRequest(errors.NO_USER)
    return user_id


def check_fixed_schema(req: FeedbackCreateReq) -> None:
    """Create / 2. Fixed payload schemas: ``wandb.reaction.1`` and ``wandb.note.1``
    payloads must fit their schemas (extra keys allowed)."""
    schema = _FIXED_SCHEMAS.get(req.feedback_type)
    if schema is not None:
        _check_payload(schema, req.payload, req.feedback_type)


def check_scorer_columns(req: FeedbackCreateReq) -> None:
    """Create / 4. Scorer columns are reserved: the six scorer maps and tags only on
    runnable, agent monitor and agent user feedback."""
    ftype = req.feedback_type
    # Each of the six spelled out: no getattr loop on the create hot path.
    if (
        req.scorer_tags
        or req.scorer_tag_reasons
        or req.scorer_tag_confidences
        or req.scorer_ratings
        or req.scorer_rating_reasons
        or req.scorer_rating_confidences
    ) and not (
        ftype.startswith(SCORER_TYPES_PREFIX) or ftype in (AGENT_MONITOR, AGENT_USER_FEEDBACK)
    ):
        raise InvalidRequest(errors.SCORER_COLUMNS_RESERVED)


def check_user_feedback_tags(req: FeedbackCreateReq) -> None:
    """Create / 5. Agent user feedback carries tags."""
    if req.feedback_type == AGENT_USER_FEEDBACK and not req.scorer_tags:
        raise InvalidRequest(errors.USER_FEEDBACK_TAGS_REQUIRED)


def check_status_code(req: FeedbackCreateReq) -> None:
    """Create / 9. Status codes and writing: ``span_status_code`` is a known enum
    value (production fails the insert); the row is then stamped and built."""
    if req.span_status_code not in STATUS_CODES:
        raise InvalidRequest(format_message(errors.BAD_STATUS_CODE, value=req.span_status_code))


_TEXT_COLUMNS = (
    "id", "project_id", "weave_ref", "wb_user_id", "creator", "feedback_type",
    "annotation_ref", "runnable_ref", "call_ref", "trigger_ref", "queue_id",
    "span_agent_name", "span_agent_version", "span_status_code", "span_conversation_id",
    "span_trace_id", "scorer_trace_id",
)  # fmt: skip
_NO_MAPS = {id(EMPTY)}
_text_columns = itemgetter(*map(FeedbackRow._fields.index, _TEXT_COLUMNS))
_maps_of = itemgetter(
    *map(
        FeedbackRow._fields.index,
        ("scorer_tag_reasons", "scorer_tag_confidences", "scorer_ratings",
         "scorer_rating_reasons", "scorer_rating_confidences"),
    )
)  # fmt: skip
# The row's own string columns (the payload's text is ASCII by construction).


def _row_texts(row: FeedbackRow) -> Iterator[tuple[str, str]]:
    """Every string of ``row`` with the column it is in (a map's keys and values too)."""
    for name, value in zip(FeedbackRow._fields, row, strict=True):
        if isinstance(value, str):
            yield name, value
        elif isinstance(value, tuple):  # scorer_tags
            for tag in value:
                yield name, tag
        elif isinstance(value, Mapping):
            for key, item in value.items():
                yield name, key
                if isinstance(item, str):
                    yield name, item


def check_storable_text(row: FeedbackRow) -> None:
    """Create / 9. Status codes and writing: every string of the row can be stored
    as UTF-8. A lone surrogate (``"\\ud800"``: legal in JSON text, not in UTF-8) in
    a column is a 400 naming the column (production's insert fails on it, a server
    error; the payload is stored with ASCII escapes, so any string may hold one).

    Runtime complexity: ``O(1)`` per string while they are ASCII (CPython knows it of
    each string: ``str.isascii`` reads a flag), checked by C-level passes; a string
    that is not is encoded, and the column is looked for only when one fails.
    """
    texts = chain(filter(None, _text_columns(row)), row.scorer_tags)
    maps = _maps_of(row)
    if set(map(id, maps)) != _NO_MAPS:  # rows without entries share EMPTY (build_row)
        tag_reasons, tag_confidences, ratings, rating_reasons, rating_confidences = maps
        texts = chain(
            texts,
            *(tag_reasons, tag_reasons.values(), tag_confidences, ratings),
            *(rating_reasons, rating_reasons.values(), rating_confidences),
        )
    if all(map(str.isascii, texts)):
        return
    for name, text in _row_texts(row):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            char = f"U+{ord(text[exc.start]):04X}"
            raise InvalidRequest(
                format_message(errors.UNSTORABLE_TEXT, field=name, char=char)
            ) from None


def _check_payload(schema: type[BaseModel], payload: dict[str, Any], ftype: str) -> None:
    try:
        schema.model_validate(payload)
    except ValidationError as exc:
        raise InvalidRequest(
            format_message(errors.INVALID_PAYLOAD, feedback_type=ftype, detail=_brief(exc))
        ) from None


def _brief(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in err['loc']) or 'payload'}: {err['msg']}"
        for err in exc.errors()
    )


def _check_type_refs(req: FeedbackCreateReq) -> None:
    """Create / 3. Type-specific refs: annotation, runnable, agent monitor, other."""
    ftype = req.feedback_type
    if ftype.startswith("wandb.annotation"):
        if not ftype.startswith("wandb.annotation."):
            raise InvalidRequest(
                format_message(errors.INVALID_ANNOTATION_TYPE, feedback_type=ftype)
            )
        if not req.annotation_ref:
            raise InvalidRequest(errors.ANNOTATION_REF_REQUIRED)
        name = ftype[len("wandb.annotation.") :]
        parsed = _parse_kind(req.annotation_ref, "annotation_ref", ("object",))
        if parsed.name != name:
            raise InvalidRequest(format_message(errors.ANNOTATION_REF_NAME, name=name))
        _check_payload(_AnnotationPayload, req.payload, ftype)
        return
    if req.annotation_ref is not None:
        raise InvalidRequest(errors.ANNOTATION_REF_NOT_ALLOWED)
    if ftype.startswith("wandb.runnable"):
        if not ftype.startswith("wandb.runnable."):
            raise InvalidRequest(format_message(errors.INVALID_RUNNABLE_TYPE, feedback_type=ftype))
        if not req.runnable_ref:
            raise InvalidRequest(errors.RUNNABLE_REF_REQUIRED)
        name = ftype[len("wandb.runnable.") :]
        parsed = _parse_kind(req.runnable_ref, "runnable_ref", ("op", "object"))
        if parsed.name != name:
            raise InvalidRequest(format_message(errors.RUNNABLE_REF_NAME, name=name))
        if parsed.kind == "op" and not req.call_ref:
            raise InvalidRequest(errors.CALL_REF_REQUIRED_FOR_OPS)
        _check_payload(_RunnablePayload, req.payload, ftype)
        return
    if ftype == AGENT_MONITOR:
        if not req.runnable_ref:
            raise InvalidRequest(
                format_message(errors.AGENT_MONITOR_FIELD_REQUIRED, field="runnable_ref")
            )
        if req.call_ref is None:
            raise InvalidRequest(
                format_message(errors.AGENT_MONITOR_FIELD_REQUIRED, field="call_ref")
            )
        if req.trigger_ref is None:
            raise InvalidRequest(
                format_message(errors.AGENT_MONITOR_FIELD_REQUIRED, field="trigger_ref")
            )
        return
    for field in ("runnable_ref", "call_ref", "trigger_ref"):
        if getattr(req, field) is not None:
            raise InvalidRequest(format_message(errors.NOT_ALLOWED_FOR_NON_RUNNABLE, field=field))


_REF_KINDS = {"object": "an object ref", "op": "an op ref", "call": "a call ref"}


def _parse_kind(ref: str, field: str, kinds: tuple[str, ...]) -> ParsedRef:
    parsed = parse_ref(ref)
    if parsed is None or parsed.kind not in kinds:
        raise _invalid_ref(ref, field, kinds)
    return parsed


def _invalid_ref(ref: str, field: str, kinds: tuple[str, ...]) -> InvalidRequest:
    wanted = " or ".join(_REF_KINDS[k] for k in kinds)
    return InvalidRequest(format_message(errors.INVALID_REF, ref=ref, field=field, kind=wanted))


def _check_ref_formats(req: FeedbackCreateReq) -> None:
    """Create / 6. Ref formats (and the annotation ref's project)."""
    # Empty strings are "no ref" here: the agent monitor rule lets "" through.
    if req.runnable_ref:
        _parse_kind(req.runnable_ref, "runnable_ref", ("op", "object"))
    if req.call_ref and not is_call_ref(req.call_ref):
        raise _invalid_ref(req.call_ref, "call_ref", ("call",))
    if req.trigger_ref:
        _parse_kind(req.trigger_ref, "trigger_ref", ("object",))
    if req.annotation_ref:
        parsed = _parse_kind(req.annotation_ref, "annotation_ref", ("object",))
        if parsed.project_id != req.project_id:
            raise InvalidRequest(
                format_message(
                    errors.ANNOTATION_REF_PROJECT, ref=req.annotation_ref, project_id=req.project_id
                )
            )


def resolve_agent_target(
    feedback_type: str, weave_ref: str, conversation_id: str, trace_id: str
) -> tuple[str, str]:
    """Create / 7. Agent targets: the ``(span_conversation_id, span_trace_id)`` to
    store, checked against, or filled from, an agent weave_ref."""
    if feedback_type not in (AGENT_MONITOR, AGENT_USER_FEEDBACK):
        return conversation_id, trace_id
    target = parse_agent_ref(weave_ref)
    if target is None:
        return conversation_id, trace_id
    if target.kind == "agent_conversation":
        if conversation_id and conversation_id != target.ident:
            raise InvalidRequest(
                format_message(
                    errors.CONVERSATION_ID_CONFLICT, given=conversation_id, from_ref=target.ident
                )
            )
        if trace_id:
            raise InvalidRequest(format_message(errors.TRACE_ID_ON_CONVERSATION, given=trace_id))
        return target.ident, trace_id
    if trace_id and trace_id != target.ident:
        raise InvalidRequest(
            format_message(errors.TRACE_ID_CONFLICT, given=trace_id, from_ref=target.ident)
        )
    return conversation_id, target.ident


def _process_payload(req: FeedbackCreateReq) -> dict[str, Any]:
    """The payload to store: the request's own, or a copy with the reaction fields."""
    if req.feedback_type != "wandb.reaction.1":
        return req.payload  # nothing changes it: the row keeps its text, the response a copy
    payload = dict(req.payload)
    value = payload["emoji"]  # step 2 guarantees a string
    if emoji.emoji_count(value) != 1:
        raise InvalidRequest(errors.EMOJI_NOT_ONE)
    detoned = emoji.replace_emoji(value, replace=_detone)
    payload["alias"] = emoji.demojize(value)
    payload["detoned"] = detoned
    payload["detoned_alias"] = emoji.demojize(detoned)
    return payload


def _detone(chars: str, _data: Any) -> str:
    """One emoji without skin tones, by name: the toneless shortcode emojized back.

    Working on names, not code points, is production's rule: a multi-person sequence
    with two tones becomes the emoji its toneless name denotes (👩🏽‍🤝‍👨🏿 → 👫).
    """
    name = emoji.demojize(chars)
    for suffix in _TONE_SUFFIXES:
        name = name.replace(suffix, "")
    return str(emoji.emojize(name))


def _reject_non_finite_ratings(req: FeedbackCreateReq) -> None:
    for name, mapping in (
        ("scorer_tag_confidences", req.scorer_tag_confidences),
        ("scorer_ratings", req.scorer_ratings),
        ("scorer_rating_confidences", req.scorer_rating_confidences),
    ):
        if not mapping or all(map(math.isfinite, mapping.values())):
            continue  # the common case, checked at C speed
        for key, value in mapping.items():
            if not math.isfinite(value):
                raise InvalidRequest(
                    format_message(errors.NON_FINITE, where=f"{name}[{key!r}]", value=value)
                )


def _find_non_finite(payload: dict[str, Any]) -> tuple[str, float] | None:
    """The path and value of the first NaN/Infinity, depth first; None if all finite.

    Iterative, so a deeply nested payload cannot exhaust the interpreter stack, and
    each container is walked once, so a payload that contains itself (possible only
    in process) ends. ``O(size of the payload)``.
    """
    stack: list[tuple[str, Any]] = [("", payload)]
    walked: set[int] = set()  # containers already walked, by id (the payload keeps them alive)
    while stack:
        path, value = stack.pop()
        if isinstance(value, float):
            if not math.isfinite(value):
                return path, value
            continue
        if not isinstance(value, (dict, list, tuple)) or id(value) in walked:
            continue
        walked.add(id(value))
        if isinstance(value, dict):
            stack.extend((f"{path}.{key}", item) for key, item in reversed(value.items()))
        elif isinstance(value, (list, tuple)):
            stack.extend((f"{path}[{i}]", item) for i, item in reversed(list(enumerate(value))))
    return None


def too_deep() -> str:
    """The message of a payload nested past :data:`MAX_PAYLOAD_DEPTH`."""
    return format_message(errors.PAYLOAD_TOO_DEEP, limit=MAX_PAYLOAD_DEPTH)


def check_depth(payload: dict[str, Any], text: str) -> None:
    """Create / 8. Payload processing and the size limit: objects and arrays nest
    at most :data:`MAX_PAYLOAD_DEPTH` deep (the payload object is depth 1), so
    every interpreter, encoder and parser refengine runs on reads the stored text
    back the same way. ``text`` is the payload's JSON: a payload nests no deeper
    than the opening brackets its text holds, so only one with more of them is
    walked (iteratively, ``O(size)``)."""
    if text.count("{") + text.count("[") <= MAX_PAYLOAD_DEPTH:
        return
    stack: list[tuple[Any, int]] = [(payload, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_PAYLOAD_DEPTH:
            raise InvalidRequest(too_deep())
        if isinstance(node, dict):
            stack.extend((child, depth + 1) for child in node.values() if _container(child))
        elif isinstance(node, (list, tuple)):
            stack.extend((child, depth + 1) for child in node if _container(child))


def _container(value: Any) -> bool:
    return isinstance(value, (dict, list, tuple))


def _checked_payload_text(payload: dict[str, Any], req: FeedbackCreateReq) -> str:
    """Create / 8. Payload processing and the size limit: the checks, then the
    payload text the row stores.

    The checks, in order: the payload serialises as JSON (no NaN, Infinity or
    foreign type), it nests at most :data:`MAX_PAYLOAD_DEPTH` deep, the scorer maps
    are finite, and the ``json.dumps`` text fits the 1 MiB limit.
    ``O(size of the payload)``: one serialisation (refusing NaN and Infinity
    changes nothing in a finite payload's text); only a failing payload is walked,
    to name the offending path, and only a payload whose text holds more than
    :data:`MAX_PAYLOAD_DEPTH` opening brackets is walked for its depth.
    """
    try:
        text = payload_text(payload)
    except ValueError as exc:
        found = _find_non_finite(payload)
        if found is None:
            raise InvalidRequest(format_message(errors.PAYLOAD_NOT_JSON, detail=exc)) from None
        raise InvalidRequest(
            format_message(errors.NON_FINITE, where="payload" + found[0], value=found[1])
        ) from None
    except RecursionError:
        # Nested past what the encoder's recursion allows (about 1,000 levels on
        # Python 3.11; 3.13 writes far deeper), so past the limit as well.
        raise InvalidRequest(too_deep()) from None
    except TypeError as exc:
        raise InvalidRequest(format_message(errors.PAYLOAD_NOT_JSON, detail=exc)) from None
    check_depth(payload, text)
    _reject_non_finite_ratings(req)
    if len(text) > MAX_PAYLOAD_CHARS:
        raise InvalidRequest(errors.PAYLOAD_TOO_LARGE)
    return text
