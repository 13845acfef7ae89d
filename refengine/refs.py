"""The internal ref grammar (``weave:///...``) and the names derived from refs.

Grammar, as production parses it for feedback validation::

    weave:///<entity>/<project>/object/<name>:<digest>[/<extra>...]
    weave:///<entity>/<project>/op/<name>:<digest>[/<extra>...]
    weave:///<entity>/<project>/call/<call_id>[/<extra>...]

A ref without a digest (``object/name``) or with an empty part is invalid. The
feedback ``project_id`` is ``<entity>/<project>``. Agent targets (for
``weave_ref`` only) are ``.../agent_turn/<trace_id>`` and
``.../agent_conversation/<url-quoted conversation_id>``.

All functions here are pure and run in time linear in the ref's length.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal, NamedTuple
from urllib.parse import unquote

PREFIX = "weave:///"

RefKind = Literal["object", "op", "call"]


class ParsedRef(NamedTuple):
    """A parsed internal ref. ``name`` is the object/op name or the call id."""

    kind: RefKind
    entity: str
    project: str
    name: str
    digest: str | None  # None for call refs

    @property
    def project_id(self) -> str:
        return f"{self.entity}/{self.project}"


@lru_cache(maxsize=4096)
def parse_ref(ref: str) -> ParsedRef | None:
    """Parse ``ref``; return None when it is not a valid object, op or call ref.

    Cached (refs such as scorer and monitor refs repeat across many rows); the
    result is immutable, so sharing it is safe.

    Object and op refs need ``<name>:<digest>`` with exactly one ``:`` and both sides
    non-empty; anything after it must be ``<edge>/<value>`` pairs with the edge one
    of ``key``, ``index``, ``attr``, ``id`` (and an integer after ``index``), as in
    the production ref parser. A call ref needs a non-empty call id.
    """
    if not ref.startswith(PREFIX):
        return None
    parts = ref[len(PREFIX) :].split("/")
    if len(parts) < 4 or not parts[0] or not parts[1]:
        return None
    entity, project, kind, head = parts[0], parts[1], parts[2], parts[3]
    extra = parts[4:]
    if kind == "call":
        if not head:
            return None
        return ParsedRef("call", entity, project, head, None)
    if kind not in ("object", "op"):
        return None
    pieces = head.split(":")
    if len(pieces) != 2 or not pieces[0] or not pieces[1] or not _valid_extra(extra):
        return None
    return ParsedRef(kind, entity, project, pieces[0], pieces[1])  # type: ignore[arg-type]


def is_call_ref(ref: str) -> bool:
    """Whether ``parse_ref(ref)`` is a call ref, without caching or building it.

    Call refs are usually unique per row: through :func:`parse_ref`'s cache they
    would only evict the refs that do repeat. ``weave:///`` has three slashes, so
    the split below yields ``weave:``, ``''``, ``''``, entity, project, kind and the
    call id (then the rest, unchecked for call refs).
    """
    parts = ref.split("/", 7)
    return (
        ref.startswith(PREFIX)
        and len(parts) >= 7
        and parts[3] != ""
        and parts[4] != ""
        and parts[5] == "call"
        and parts[6] != ""
    )


_EDGE_NAMES = frozenset({"key", "index", "attr", "id"})


def _valid_extra(extra: list[str]) -> bool:
    if len(extra) % 2:
        return False
    for edge, value in zip(extra[::2], extra[1::2], strict=True):
        if edge not in _EDGE_NAMES:
            return False
        if edge == "index":
            try:
                int(value)
            except ValueError:
                return False
    return True


class AgentTarget(NamedTuple):
    """A weave_ref that names an agent turn or an agent conversation."""

    kind: Literal["agent_turn", "agent_conversation"]
    entity: str
    project: str
    ident: str  # trace id for a turn, unquoted conversation id for a conversation


def parse_agent_ref(ref: str) -> AgentTarget | None:
    """Parse ``weave:///<e>/<p>/agent_turn/<id>`` or ``.../agent_conversation/<id>``.

    Exactly four non-empty segments after the prefix; the conversation id is
    URL-unquoted. Anything else is not an agent target (None).
    """
    if not ref.startswith(PREFIX):
        return None
    parts = ref[len(PREFIX) :].split("/")
    if len(parts) != 4 or not all(parts):
        return None
    entity, project, kind, ident = parts
    if kind == "agent_turn":
        return AgentTarget("agent_turn", entity, project, ident)
    if kind == "agent_conversation":
        return AgentTarget("agent_conversation", entity, project, unquote(ident))
    return None


def object_name(ref: str | None) -> str:
    """The derived id of a ref: its last ``/`` segment up to the first ``:``.

    This is how production derives ``scorer_id`` (from ``runnable_ref``) and
    ``monitor_id`` (from ``trigger_ref``); a null ref gives ``''``. Any string is
    accepted — no grammar check — exactly as the SQL expression does.

    >>> object_name("weave:///e/p/object/scorer_a:abc")
    'scorer_a'
    >>> object_name(None)
    ''
    """
    if ref is None:
        return ""
    return ref.rpartition("/")[2].partition(":")[0]


def span_type(weave_ref: str) -> str:
    """The second-to-last ``/`` segment of ``weave_ref``; ``''`` with fewer than two.

    >>> span_type("weave:///e/p/agent_turn/t1")
    'agent_turn'
    >>> span_type("plain")
    ''
    """
    end = weave_ref.rfind("/")
    if end < 0:
        return ""
    return weave_ref[weave_ref.rfind("/", 0, end) + 1 : end]  # rfind gives -1: from 0
