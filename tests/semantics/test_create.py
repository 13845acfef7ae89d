"""POST /feedback/create: one test per rule of the validation chain, exact messages.

Every rejected request is also checked to have written nothing.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timezone
from typing import Any

import emoji
import pytest
from pydantic import ValidationError

from refengine import Engine, InvalidRequest, ManualClock
from refengine.semantics.create import uuid7

NOW = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)
P = "acme/bot"
OBJ = "weave:///acme/bot/object/{}:v1"
OP = "weave:///acme/bot/op/{}:v1"
CALL = "weave:///acme/bot/call/c1"


@pytest.fixture
def engine() -> Engine:
    return Engine(clock=ManualClock(NOW), id_factory=iter(f"id-{i}" for i in range(999)).__next__)


def req(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "project_id": P,
        "weave_ref": CALL,
        "feedback_type": "custom",
        "payload": {"score": 1},
    }
    base.update(fields)
    return base


def rejects(engine: Engine, request: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        engine.feedback_create(request)
    assert str(info.value) == message
    assert info.value.reason == message
    assert len(engine) == 0, "a rejected create wrote a row"


# --- the happy path -------------------------------------------------------------------


def test_create_stores_row_and_answers(engine: Engine) -> None:
    res = engine.feedback_create(req(creator="Jane", queue_id="q1"))
    assert res.id == "id-0"
    assert res.created_at == NOW  # microseconds kept in the response
    assert res.wb_user_id == "refengine"
    assert res.payload == {"score": 1}
    (row,) = engine.rows(P)
    assert row.created_at_ms == 1714564800123  # stored at millisecond precision
    assert row.created_at_us == 1714564800123456
    assert row.creator == "Jane" and row.queue_id == "q1"
    assert (row.span_status_code, row.span_agent_name, row.scorer_trace_id) == ("UNSET", "", "")


def test_client_id_used_when_truthy(engine: Engine) -> None:
    assert engine.feedback_create(req(id="mine")).id == "mine"
    assert engine.feedback_create(req(id="")).id == "id-0"
    assert engine.feedback_create(req(id="mine")).id == "mine"  # repeats are new rows
    assert [r.id for r in engine.rows(P)] == ["mine", "id-0", "mine"]


def test_default_ids_are_uuid7() -> None:
    engine = Engine(clock=ManualClock(NOW))
    ident = engine.feedback_create(req()).id
    assert len(ident) == 36 and ident[14] == "7" and ident[19] in "89ab"
    assert uuid7() != uuid7()


@pytest.mark.parametrize(
    ("moment", "stamp_ms"),
    [
        ("2024-05-01T12:00:00.123456Z", 1714564800123),
        ("1969-12-31T23:59:59.999Z", 0),  # before the epoch: clamped, never an error
        ("9999-12-31T23:59:59.999999Z", 253402300799999),
    ],
)
def test_default_ids_carry_the_rows_created_at(moment: str, stamp_ms: int) -> None:
    engine = Engine(clock=ManualClock(moment))
    single = engine.feedback_create(req()).id
    batch = [r.id for r in engine.feedback_create_batch({"batch": [req(), req()]}).res]
    for ident in (single, *batch):
        assert uuid.UUID(ident).version == 7
        assert uuid.UUID(ident).int >> 80 == stamp_ms
    assert len({single, *batch}) == 3


def test_uuid7_stamps_the_given_millisecond() -> None:
    for ms, stamp in ((0, 0), (1714564800123, 1714564800123), (-5, 0), (1 << 60, (1 << 48) - 1)):
        parsed = uuid.UUID(uuid7(ms))
        assert (parsed.int >> 80, parsed.version, parsed.variant) == (stamp, 7, uuid.RFC_4122)


def test_uuid7_layout() -> None:
    before_ms = time.time_ns() // 1_000_000
    idents = [uuid7() for _ in range(2000)]
    after_ms = time.time_ns() // 1_000_000
    assert len(set(idents)) == len(idents)
    for ident in idents:
        parsed = uuid.UUID(ident)
        assert str(parsed) == ident  # canonical: lower-case hex, 8-4-4-4-12
        assert (parsed.version, parsed.variant) == (7, uuid.RFC_4122)
        assert before_ms <= parsed.int >> 80 <= after_ms  # the 48-bit ms timestamp
    # The 74 random bits vary: each one is set in some id and clear in another.
    random_bits = [
        (u.int >> 64 & 0xFFF) << 62 | u.int & (1 << 62) - 1 for u in map(uuid.UUID, idents)
    ]
    union = intersection = random_bits[0]
    for bits in random_bits:
        union, intersection = union | bits, intersection & bits
    assert (union, intersection) == ((1 << 74) - 1, 0)


def test_request_user_id_is_used_in_process(engine: Engine) -> None:
    assert engine.feedback_create(req(wb_user_id="u-7")).wb_user_id == "u-7"
    assert Engine(user_id="svc").feedback_create(req()).wb_user_id == "svc"


def test_model_errors_are_validation_errors(engine: Engine) -> None:
    for bad in (
        {"project_id": P},  # missing fields
        req(payload=[1]),  # payload must be an object
        req(scorer_tags="a"),  # a string is not a list
        req(surprise=True),  # unknown field
        req(scorer_ratings={"x": "high"}),
    ):
        with pytest.raises(ValidationError):
            engine.feedback_create(bad)
    assert len(engine) == 0


# --- step 2: fixed payload schemas ----------------------------------------------------


def test_reaction_needs_an_emoji_string(engine: Engine) -> None:
    with pytest.raises(InvalidRequest) as info:
        engine.feedback_create(req(feedback_type="wandb.reaction.1", payload={}))
    assert str(info.value).startswith("Invalid payload for feedback_type wandb.reaction.1: ")
    assert "emoji" in str(info.value)
    assert len(engine) == 0


@pytest.mark.parametrize("note", ["", "x" * 1025, 5])
def test_note_must_be_1_to_1024_characters(engine: Engine, note: Any) -> None:
    with pytest.raises(InvalidRequest) as info:
        engine.feedback_create(req(feedback_type="wandb.note.1", payload={"note": note}))
    assert str(info.value).startswith("Invalid payload for feedback_type wandb.note.1: note")
    assert len(engine) == 0


def test_note_bounds_are_inclusive(engine: Engine) -> None:
    for note in ("x", "x" * 1024):
        engine.feedback_create(req(feedback_type="wandb.note.1", payload={"note": note}))
    assert len(engine) == 2


def test_fixed_schemas_only_for_exact_types(engine: Engine) -> None:
    engine.feedback_create(req(feedback_type="wandb.note.1x", payload={}))
    engine.feedback_create(req(feedback_type="wandb.reaction.2", payload={}))
    assert len(engine) == 2


# --- step 3: type-specific ref rules --------------------------------------------------


def annotation(**fields: Any) -> dict[str, Any]:
    return req(**{"feedback_type": "wandb.annotation.quality", "payload": {"value": 3}, **fields})


def test_annotation_ok(engine: Engine) -> None:
    engine.feedback_create(annotation(annotation_ref=OBJ.format("quality")))
    assert engine.rows(P)[0].annotation_ref == OBJ.format("quality")


def test_annotation_type_needs_dot(engine: Engine) -> None:
    rejects(
        engine,
        req(feedback_type="wandb.annotationX", payload={"value": 1}),
        "Invalid annotation feedback type: wandb.annotationX",
    )


def test_annotation_ref_required(engine: Engine) -> None:
    rejects(engine, annotation(), "annotation_ref is required for annotation feedback")


def test_annotation_ref_must_be_object_ref(engine: Engine) -> None:
    rejects(
        engine,
        annotation(annotation_ref="weave:///acme/bot/object/quality"),
        "Invalid ref: weave:///acme/bot/object/quality (annotation_ref must be an object ref)",
    )


def test_annotation_ref_name_must_match(engine: Engine) -> None:
    rejects(
        engine,
        annotation(annotation_ref=OBJ.format("other")),
        "annotation_ref must point to an object with name quality",
    )


def test_annotation_type_with_empty_name_fails_on_name(engine: Engine) -> None:
    rejects(
        engine,
        req(
            feedback_type="wandb.annotation.", annotation_ref=OBJ.format("x"), payload={"value": 1}
        ),
        "annotation_ref must point to an object with name ",
    )


def test_annotation_payload_needs_value(engine: Engine) -> None:
    with pytest.raises(InvalidRequest) as info:
        engine.feedback_create(annotation(annotation_ref=OBJ.format("quality"), payload={}))
    assert str(info.value).startswith(
        "Invalid payload for feedback_type wandb.annotation.quality: value"
    )


def test_annotation_ref_not_allowed_elsewhere(engine: Engine) -> None:
    rejects(
        engine,
        req(annotation_ref=OBJ.format("quality")),
        "annotation_ref is not allowed for non-annotation feedback",
    )


def runnable(**fields: Any) -> dict[str, Any]:
    return req(**{"feedback_type": "wandb.runnable.judge", "payload": {"output": 0.5}, **fields})


def test_runnable_ok_with_object_and_op_refs(engine: Engine) -> None:
    engine.feedback_create(runnable(runnable_ref=OBJ.format("judge")))
    engine.feedback_create(runnable(runnable_ref=OP.format("judge"), call_ref=CALL))
    assert [r.scorer_id for r in engine.rows(P)] == ["judge", "judge"]


def test_runnable_type_needs_dot(engine: Engine) -> None:
    rejects(
        engine,
        req(feedback_type="wandb.runnablex", payload={"output": 1}),
        "Invalid runnable feedback type: wandb.runnablex",
    )


def test_runnable_ref_required(engine: Engine) -> None:
    rejects(engine, runnable(), "runnable_ref is required for runnable feedback")


def test_runnable_ref_name_must_match(engine: Engine) -> None:
    rejects(
        engine,
        runnable(runnable_ref=OBJ.format("other")),
        "runnable_ref must point to an object with name judge",
    )


def test_runnable_op_ref_needs_call_ref(engine: Engine) -> None:
    rejects(
        engine,
        runnable(runnable_ref=OP.format("judge")),
        "call_ref is required for runnable feedback on ops",
    )


def test_runnable_payload_needs_output(engine: Engine) -> None:
    with pytest.raises(InvalidRequest) as info:
        engine.feedback_create(runnable(runnable_ref=OBJ.format("judge"), payload={"x": 1}))
    assert str(info.value).startswith(
        "Invalid payload for feedback_type wandb.runnable.judge: output"
    )
    assert len(engine) == 0


def monitor(**fields: Any) -> dict[str, Any]:
    base = {
        "feedback_type": "wandb.agent_monitor",
        "runnable_ref": OBJ.format("judge"),
        "call_ref": "",
        "trigger_ref": OBJ.format("mon"),
    }
    base.update(fields)
    return req(**base)


def test_agent_monitor_ok_with_empty_call_ref(engine: Engine) -> None:
    engine.feedback_create(monitor())
    row = engine.rows(P)[0]
    assert (row.call_ref, row.monitor_id, row.scorer_id) == ("", "mon", "judge")


@pytest.mark.parametrize(
    ("field", "value"),
    [("runnable_ref", None), ("runnable_ref", ""), ("call_ref", None), ("trigger_ref", None)],
)
def test_agent_monitor_required_fields(engine: Engine, field: str, value: Any) -> None:
    rejects(engine, monitor(**{field: value}), f"{field} is required for agent monitor feedback")


@pytest.mark.parametrize("field", ["runnable_ref", "call_ref", "trigger_ref"])
def test_refs_not_allowed_on_other_types(engine: Engine, field: str) -> None:
    rejects(engine, req(**{field: ""}), f"{field} is not allowed for non-runnable feedback")


def test_not_allowed_reports_runnable_ref_first(engine: Engine) -> None:
    rejects(
        engine,
        req(trigger_ref=OBJ.format("m"), runnable_ref=OBJ.format("s")),
        "runnable_ref is not allowed for non-runnable feedback",
    )


# --- step 4 and 5: scorer columns ------------------------------------------------------

RESERVED = (
    "scorer_tags, scorer_tag_reasons, scorer_tag_confidences, scorer_ratings, "
    "scorer_rating_reasons, and scorer_rating_confidences are only allowed on "
    "wandb.agent_monitor, wandb.agent_user_feedback, or wandb.runnable feedback"
)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("scorer_tags", ["a"]),
        ("scorer_tag_reasons", {"a": "b"}),
        ("scorer_tag_confidences", {"a": 0.5}),
        ("scorer_ratings", {"_rating_": 0.5}),
        ("scorer_rating_reasons", {"a": "b"}),
        ("scorer_rating_confidences", {"a": 0.5}),
    ],
)
def test_scorer_columns_reserved(engine: Engine, field: str, value: Any) -> None:
    rejects(engine, req(**{field: value}), RESERVED)


def test_empty_scorer_columns_fine_anywhere(engine: Engine) -> None:
    engine.feedback_create(req(scorer_tags=[], scorer_ratings={}))
    assert len(engine) == 1


def test_user_feedback_needs_tags(engine: Engine) -> None:
    rejects(
        engine,
        req(feedback_type="wandb.agent_user_feedback"),
        "scorer_tags is required for agent user feedback",
    )
    engine.feedback_create(req(feedback_type="wandb.agent_user_feedback", scorer_tags=["up"]))
    assert len(engine) == 1


def test_scorer_values_not_range_checked(engine: Engine) -> None:
    engine.feedback_create(monitor(scorer_ratings={"_rating_": 7.5, "neg": -2}))
    assert dict(engine.rows(P)[0].scorer_ratings) == {"_rating_": 7.5, "neg": -2.0}


def test_duplicate_tags_are_kept(engine: Engine) -> None:
    engine.feedback_create(monitor(scorer_tags=["a", "a", "b"]))
    assert engine.rows(P)[0].scorer_tags == ("a", "a", "b")


# --- step 6: ref formats ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"runnable_ref": "weave:///acme/bot/call/c1"},
            "Invalid ref: weave:///acme/bot/call/c1 "
            "(runnable_ref must be an op ref or an object ref)",
        ),
        (
            {"runnable_ref": "weave:///acme/bot/object/judge"},
            "Invalid ref: weave:///acme/bot/object/judge "
            "(runnable_ref must be an op ref or an object ref)",
        ),
        (
            {"call_ref": OBJ.format("c")},
            "Invalid ref: weave:///acme/bot/object/c:v1 (call_ref must be a call ref)",
        ),
        (
            {"trigger_ref": OP.format("m")},
            "Invalid ref: weave:///acme/bot/op/m:v1 (trigger_ref must be an object ref)",
        ),
        (
            {"trigger_ref": "not a ref"},
            "Invalid ref: not a ref (trigger_ref must be an object ref)",
        ),
    ],
)
def test_ref_formats(engine: Engine, fields: dict[str, Any], message: str) -> None:
    rejects(engine, monitor(**fields), message)


def test_annotation_ref_must_be_in_project(engine: Engine) -> None:
    rejects(
        engine,
        annotation(annotation_ref="weave:///other/proj/object/quality:v1"),
        "Annotation ref weave:///other/proj/object/quality:v1 does not match project id acme/bot",
    )


# --- step 7: agent targets ----------------------------------------------------------------

TURN = "weave:///acme/bot/agent_turn/tr-1"
CONV = "weave:///acme/bot/agent_conversation/conv%2F9"


def test_turn_ref_fills_trace_id(engine: Engine) -> None:
    engine.feedback_create(monitor(weave_ref=TURN))
    row = engine.rows(P)[0]
    assert (row.span_trace_id, row.span_conversation_id, row.span_type) == (
        "tr-1",
        "",
        "agent_turn",
    )


def test_conversation_ref_fills_unquoted_conversation_id(engine: Engine) -> None:
    engine.feedback_create(monitor(weave_ref=CONV))
    assert engine.rows(P)[0].span_conversation_id == "conv/9"


def test_conversation_id_conflict(engine: Engine) -> None:
    rejects(
        engine,
        monitor(weave_ref=CONV, span_conversation_id="other"),
        "feedback span_conversation_id 'other' conflicts with conversation ref 'conv/9'",
    )


def test_trace_id_on_conversation(engine: Engine) -> None:
    rejects(
        engine,
        monitor(weave_ref=CONV, span_trace_id="t"),
        "feedback span_trace_id 't' cannot be supplied for conversation-targeted feedback",
    )


def test_trace_id_conflict(engine: Engine) -> None:
    rejects(
        engine,
        monitor(weave_ref=TURN, span_trace_id="tr-2"),
        "feedback span_trace_id 'tr-2' conflicts with turn ref 'tr-1'",
    )


def test_matching_span_ids_pass(engine: Engine) -> None:
    engine.feedback_create(monitor(weave_ref=TURN, span_trace_id="tr-1"))
    engine.feedback_create(monitor(weave_ref=CONV, span_conversation_id="conv/9"))
    assert len(engine) == 2


def test_agent_target_rules_only_for_agent_types(engine: Engine) -> None:
    engine.feedback_create(req(weave_ref=TURN, span_trace_id="elsewhere"))
    assert engine.rows(P)[0].span_trace_id == "elsewhere"


def test_non_agent_weave_ref_skips_target_rules(engine: Engine) -> None:
    engine.feedback_create(monitor(weave_ref="weave:///acme/bot/agent_turn/a/b", span_trace_id="x"))
    assert engine.rows(P)[0].span_trace_id == "x"


# --- step 8: payload processing and limits -----------------------------------------------


def test_reaction_payload_processing(engine: Engine) -> None:
    res = engine.feedback_create(req(feedback_type="wandb.reaction.1", payload={"emoji": "👍🏾"}))
    assert res.payload == {
        "emoji": "👍🏾",
        "alias": ":thumbs_up_medium-dark_skin_tone:",
        "detoned": "👍",
        "detoned_alias": ":thumbs_up:",
    }
    assert engine.rows(P)[0].payload == res.payload


@pytest.mark.parametrize(
    ("text", "detoned"),
    [
        ("👍🏻", "👍"),
        ("x👍🏿y", "x👍y"),  # text around the one emoji is kept
        # two tones: the toneless *name* is another emoji than the sequence with its
        # modifiers cut out (which would be 👩‍🤝‍👨)
        ("👩🏽\u200d🤝\u200d👨🏿", "👫"),
        ("🏾", "🏾"),  # a lone modifier's name has no leading "_": it stays
    ],
)
def test_reaction_detones_by_shortcode(engine: Engine, text: str, detoned: str) -> None:
    res = engine.feedback_create(req(feedback_type="wandb.reaction.1", payload={"emoji": text}))
    assert res.payload["detoned"] == detoned
    assert res.payload["detoned_alias"] == emoji.demojize(detoned)


@pytest.mark.parametrize("text", ["", "hello", "👍👎"])
def test_reaction_needs_exactly_one_emoji(engine: Engine, text: str) -> None:
    rejects(
        engine,
        req(feedback_type="wandb.reaction.1", payload={"emoji": text}),
        "Value of emoji key in payload must be exactly one emoji",
    )


def _payload_of_length(n: int) -> dict[str, Any]:
    # json.dumps({"k": "x" * m}) has length m + 9
    return {"k": "x" * (n - 9)}


def test_payload_limit_is_on_json_dumps_length(engine: Engine) -> None:
    limit = 1_048_576
    assert len(json.dumps(_payload_of_length(limit))) == limit
    engine.feedback_create(req(payload=_payload_of_length(limit)))
    rejects_after = len(engine)
    with pytest.raises(InvalidRequest, match=r"^Feedback payload too large$"):
        engine.feedback_create(req(payload=_payload_of_length(limit + 1)))
    assert len(engine) == rejects_after == 1


def test_payload_limit_counts_ascii_escapes(engine: Engine) -> None:
    # "é" is one character but six in json.dumps output ("\\u00e9").
    payload = {"k": "é" * 200_000}
    assert len(json.dumps(payload)) > 1_048_576
    rejects(engine, req(payload=payload), "Feedback payload too large")


@pytest.mark.parametrize(
    ("item", "width"),
    [
        (-2.2250738585072014e-308, 24),  # the longest float repr
        ("\U0001f600", 14),  # one character, twelve once escaped, plus quotes
        ({"k": None}, 11),
    ],
)
def test_payload_limit_counts_every_item(engine: Engine, item: Any, width: int) -> None:
    # Many small items: the text is long although each item is short. With ", "
    # between items and '{"xs": [...]}' around them, n items make (width + 2) * n + 8.
    fits = (1_048_576 - 8) // (width + 2)
    for n, accepted in ((fits, True), (fits + 1, False)):
        payload = {"xs": [item] * n}
        assert (len(json.dumps(payload)) <= 1_048_576) is accepted
        before = len(engine)
        if accepted:
            engine.feedback_create(req(payload=payload))
            assert len(engine) == before + 1
        else:
            with pytest.raises(InvalidRequest, match=r"^Feedback payload too large$"):
                engine.feedback_create(req(payload=payload))
            assert len(engine) == before


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_payload_rejected(engine: Engine, value: float) -> None:
    with pytest.raises(InvalidRequest) as info:
        engine.feedback_create(req(payload={"a": [1, {"b": value}]}))
    assert str(info.value).startswith(f"payload.a[1].b contains a non-finite number ({value})")
    assert len(engine) == 0


def test_non_finite_rating_rejected(engine: Engine) -> None:
    with pytest.raises(InvalidRequest) as info:
        engine.feedback_create(monitor(scorer_ratings={"_rating_": "NaN"}))
    assert str(info.value).startswith("scorer_ratings['_rating_'] contains a non-finite number")
    assert len(engine) == 0


def test_unserialisable_payload_rejected_in_process(engine: Engine) -> None:
    with pytest.raises(InvalidRequest, match=r"^payload cannot be stored as JSON"):
        engine.feedback_create(req(payload={"when": datetime(2024, 1, 1)}))
    assert len(engine) == 0


TOO_DEEP = "payload nests objects and arrays more than 64 levels deep"


def nested(depth: int, leaf: Any = 1.0, kind: str = "list") -> dict[str, Any]:
    """A payload nesting ``depth`` deep, the payload object itself level 1."""
    for _ in range(depth - 1):
        leaf = [leaf] if kind == "list" else {"a": leaf} if kind == "dict" else (leaf,)
    return {"deep": leaf}


@pytest.mark.parametrize("depth", [65, 1000, 5000])
def test_deeply_nested_payload_is_refused_on_every_interpreter(engine: Engine, depth: int) -> None:
    # 5,000 levels: Python 3.11's encoder gives up (RecursionError), 3.13's writes it;
    # both are refused the same way.
    rejects(engine, req(payload=nested(depth)), TOO_DEEP)


@pytest.mark.parametrize("kind", ["list", "dict", "tuple"])
def test_payload_at_the_depth_limit_is_stored(engine: Engine, kind: str) -> None:
    engine.feedback_create(req(payload=nested(64, kind=kind)))
    rejects_after = Engine(clock=ManualClock(NOW))
    rejects(rejects_after, req(payload=nested(65, kind=kind)), TOO_DEEP)
    assert len(engine) == 1


def test_brackets_inside_strings_do_not_count_as_depth(engine: Engine) -> None:
    res = engine.feedback_create(req(payload={"text": "[{" * 500, "deep": nested(60)}))
    assert res.payload["text"] == "[{" * 500


def test_depth_is_checked_after_serialisation_before_the_scorer_maps(engine: Engine) -> None:
    # A payload json.dumps cannot write is named first; a too-deep one before a
    # non-finite rating.
    rejects(
        engine,
        req(payload={"when": datetime(2024, 1, 1), "deep": nested(70)}),
        "payload cannot be stored as JSON: Object of type datetime is not JSON serializable",
    )
    rejects(
        engine,
        req(
            feedback_type="wandb.runnable.s",
            runnable_ref=OP.format("s"),
            call_ref=CALL,
            payload={"output": nested(70)},
            scorer_ratings={"x": float("nan")},
        ),
        TOO_DEEP,
    )


# --- step 9: the status enum; batches ------------------------------------------------------


def test_unknown_status_code_rejected(engine: Engine) -> None:
    rejects(
        engine,
        req(span_status_code="FAILED"),
        "span_status_code must be one of UNSET, OK, ERROR, got: 'FAILED'",
    )


def test_first_failure_wins(engine: Engine) -> None:
    # both a payload schema error (step 2) and a reserved-column error (step 4)
    with pytest.raises(InvalidRequest, match=r"^Invalid payload"):
        engine.feedback_create(req(feedback_type="wandb.note.1", payload={}, scorer_tags=["a"]))


def test_batch_writes_all_or_nothing(engine: Engine) -> None:
    good = req()
    with pytest.raises(InvalidRequest):
        engine.feedback_create_batch({"batch": [good, good, req(span_status_code="X")]})
    assert len(engine) == 0
    with pytest.raises(ValidationError):
        engine.feedback_create_batch({"batch": [good, {"project_id": P}]})
    assert len(engine) == 0
    res = engine.feedback_create_batch({"batch": [good, req(id="b")]})
    assert [r.id for r in engine.rows(P)] == [r.id for r in res.res]
    assert res.res[1].id == "b"


def test_response_payload_is_independent_of_store(engine: Engine) -> None:
    res = engine.feedback_create(req(payload={"nested": {"x": 1}}))
    res.payload["nested"]["x"] = 99
    assert engine.rows(P)[0].payload == {"nested": {"x": 1}}


def test_payload_that_contains_itself_is_rejected_not_looped_on(engine: Engine) -> None:
    # Only an in-process caller can build one; the request model keeps the cycle.
    payload: dict[str, Any] = {"a": 1.0}
    payload["self"] = [payload]
    with pytest.raises(InvalidRequest, match="Circular reference detected"):
        engine.feedback_create(req(payload=payload))
    assert len(engine) == 0
    payload["a"] = float("nan")
    with pytest.raises(InvalidRequest, match=r"^payload\.a contains a non-finite number"):
        engine.feedback_create(req(payload=payload))
    assert len(engine) == 0


def test_a_batch_at_the_limit_is_stored_and_one_more_item_is_refused(engine: Engine) -> None:
    big = Engine(clock=ManualClock(NOW))
    assert len(big.feedback_create_batch({"batch": [req()] * 10_000}).res) == 10_000
    with pytest.raises(InvalidRequest) as info:
        engine.feedback_create_batch({"batch": [req()] * 10_001})
    assert info.value.reason == (
        "a batch may hold at most 10,000 items, got 10,001: send it in several batches"
    )
    assert len(engine) == 0


def test_the_batch_limit_is_checked_before_any_item(engine: Engine) -> None:
    items = [req(span_status_code="BAD")] * 10_001  # each item would fail on its own
    with pytest.raises(InvalidRequest, match=r"^a batch may hold at most"):
        engine.feedback_create_batch({"batch": items})


# --- Create / 9. Status codes and writing: strings UTF-8 can store ----------------------


@pytest.mark.parametrize(
    ("fields", "column", "char"),
    [
        ({"creator": "a\ud800"}, "creator", "U+D800"),
        ({"id": "\udfff"}, "id", "U+DFFF"),
        ({"span_agent_name": "x\udce9y"}, "span_agent_name", "U+DCE9"),
        ({"scorer_tags": ["ok", "\ud83d"]}, "scorer_tags", "U+D83D"),
        ({"scorer_rating_reasons": {"\ud800": "why"}}, "scorer_rating_reasons", "U+D800"),
        ({"scorer_tag_reasons": {"ok": "why\ud800"}}, "scorer_tag_reasons", "U+D800"),
    ],
)
def test_a_lone_surrogate_in_a_column_is_refused_naming_it(
    engine: Engine, fields: dict[str, Any], column: str, char: str
) -> None:
    scorer = "scorer" in next(iter(fields))
    typed = {"feedback_type": "wandb.runnable.mon", "runnable_ref": OP.format("mon"),
             "call_ref": "weave:///acme/bot/call/c2", "payload": {"output": 1}}  # fmt: skip
    request = req(**(typed if scorer else {}), **fields)
    rejects(engine, request, f"{column} holds a lone surrogate ({char}), which UTF-8 cannot store")


def test_a_lone_surrogate_in_the_payload_is_stored_escaped(engine: Engine) -> None:
    res = engine.feedback_create(req(payload={"\ud800": "é\udfff"}, creator="Zoë 👍"))
    assert res.payload == {"\ud800": "é\udfff"}
    assert engine.rows(P)[0].payload_dump.isascii()
