"""The ref grammar and the names derived from refs."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from refengine.refs import is_call_ref, object_name, parse_agent_ref, parse_ref, span_type


@pytest.mark.parametrize(
    ("ref", "kind", "name", "digest"),
    [
        ("weave:///e/p/object/name:abc", "object", "name", "abc"),
        ("weave:///e/p/op/my_op:v1", "op", "my_op", "v1"),
        ("weave:///e/p/call/0192-ab", "call", "0192-ab", None),
        ("weave:///e/p/object/name:abc/attr/rows/index/3", "object", "name", "abc"),
        ("weave:///e/p/call/c1/extra", "call", "c1", None),
    ],
)
def test_valid_refs(ref: str, kind: str, name: str, digest: str | None) -> None:
    parsed = parse_ref(ref)
    assert parsed is not None
    assert (parsed.kind, parsed.name, parsed.digest, parsed.project_id) == (
        kind,
        name,
        digest,
        "e/p",
    )


@pytest.mark.parametrize(
    "ref",
    [
        "weave:///e/p/object/name",  # no digest
        "weave:///e/p/object/name:",  # empty digest
        "weave:///e/p/object/:abc",  # empty name
        "weave:///e/p/object/a:b:c",  # two colons
        "weave:///e/p/object/name:abc/attr",  # extra not in pairs
        "weave:///e/p/object/name:abc/bogus/x",  # unknown edge
        "weave:///e/p/object/name:abc/index/x",  # non-integer index
        "weave:///e/p/table/abc",
        "weave:///e/p/call/",
        "weave:///e/p/object",
        "weave://e/p/object/name:abc",
        "http://e/p/object/name:abc",
        "",
    ],
)
def test_invalid_refs(ref: str) -> None:
    assert parse_ref(ref) is None


def test_agent_refs() -> None:
    turn = parse_agent_ref("weave:///e/p/agent_turn/t-1")
    assert turn is not None and (turn.kind, turn.ident) == ("agent_turn", "t-1")
    conv = parse_agent_ref("weave:///e/p/agent_conversation/a%2Fb%20c")
    assert conv is not None and (conv.kind, conv.ident) == ("agent_conversation", "a/b c")
    assert parse_agent_ref("weave:///e/p/agent_turn/a/b") is None
    assert parse_agent_ref("weave:///e/p/agent_turn/") is None
    assert parse_agent_ref("weave:///e/p/call/c1") is None


@pytest.mark.parametrize(
    ("ref", "name"),
    [
        ("weave:///e/p/object/scorer_a:abc", "scorer_a"),
        ("weave:///e/p/op/judge:v1", "judge"),
        ("weave:///e/p/object/s:abc/attr/x", "x"),  # the last segment, as the SQL does
        ("plain:thing", "plain"),
        ("", ""),
        (None, ""),
    ],
)
def test_object_name(ref: str | None, name: str) -> None:
    assert object_name(ref) == name


@pytest.mark.parametrize(
    ("ref", "kind"),
    [
        ("weave:///e/p/agent_turn/t1", "agent_turn"),
        ("weave:///e/p/agent_conversation/c", "agent_conversation"),
        ("weave:///e/p/call/c1", "call"),
        ("a/b", "a"),
        ("nothing", ""),
    ],
)
def test_span_type(ref: str, kind: str) -> None:
    assert span_type(ref) == kind


# Ref-like strings: the prefix or a near miss, entity and project (or not), a kind,
# then more parts, each drawn from the grammar's words, empty parts and odd characters.
_word = st.sampled_from(["e", "p", "c1", "n:v", "", ":", "x/y", "call"])
ref_like = st.builds(
    lambda prefix, head, kind, rest: prefix + "/".join([*head, kind, *rest]),
    st.one_of(st.just("weave:///"), st.sampled_from(["weave://", "weave:////", "http:///", ""])),
    st.one_of(st.just(["e", "p"]), st.lists(_word, max_size=3)),
    st.one_of(st.just("call"), st.sampled_from(["object", "op", "calls", ""])),
    st.lists(_word, max_size=3),
)


@given(ref_like)
def test_is_call_ref_agrees_with_parse_ref(ref: str) -> None:
    parsed = parse_ref(ref)
    assert is_call_ref(ref) is (parsed is not None and parsed.kind == "call")


@pytest.mark.parametrize(
    "ref",
    ["weave:///e/p/call/c1", "weave:///e/p/call/c1/extra", "weave:///e/p/call/c1/a/b/c/d"],
)
def test_is_call_ref(ref: str) -> None:
    assert is_call_ref(ref)
    for bad in ("weave:///e/p/call/", "weave:///e//call/c1", "weave:///e/p/op/c1", "e/p/call/c"):
        assert not is_call_ref(bad)
