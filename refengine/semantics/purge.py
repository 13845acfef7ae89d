"""``POST /feedback/purge``: the accepted query shapes, turned into a set of ids.

spec/SEMANTICS.md, "Purge". Production deletes feedback only by id: the query must
be ``$eq [$getField "id", $literal "<id>"]`` or an ``$or`` of such comparisons.

Runtime complexity: ``O(q)`` for a query of ``q`` nodes.
"""

from __future__ import annotations

from .. import errors
from ..errors import InvalidRequest, format_message
from ..models import EqOperation, FeedbackPurgeReq, GetFieldOperator, LiteralOperation, OrOperation

MAX_PURGE_IDS = 10_000
"""Bounded work: ids in one purge request."""


def _id_of(eq: EqOperation, message: str) -> str:
    field, value = eq.eq_
    if (
        isinstance(field, GetFieldOperator)
        and field.get_field_ == "id"
        and isinstance(value, LiteralOperation)
        and isinstance(value.literal_, str)
    ):
        return value.literal_
    raise InvalidRequest(message)


def purge_ids(request: FeedbackPurgeReq) -> frozenset[str]:
    """The ids a purge request names (SEMANTICS "Purge / Accepted queries").

    Raises ``InvalidRequest`` for any other shape: production's top-level message,
    or inside an ``$or`` its per-item ones; ``$or: []`` is ``Empty OR operation``.
    """
    expr = request.query.expr_
    if isinstance(expr, EqOperation):
        return frozenset([_id_of(expr, errors.PURGE_BY_IDS)])
    if not isinstance(expr, OrOperation):
        raise InvalidRequest(errors.PURGE_BY_IDS)
    if not expr.or_:
        raise InvalidRequest(errors.EMPTY_OR)
    if len(expr.or_) > MAX_PURGE_IDS:
        raise InvalidRequest(
            format_message(errors.PURGE_TOO_MANY_IDS, limit=MAX_PURGE_IDS, count=len(expr.or_))
        )
    ids = []
    for item in expr.or_:
        if not isinstance(item, EqOperation):
            got = next(iter(type(item).model_fields))
            raise InvalidRequest(format_message(errors.PURGE_EXPECTED_EQ, got=got))
        ids.append(_id_of(item, errors.PURGE_ITEM_BY_IDS))
    return frozenset(ids)
