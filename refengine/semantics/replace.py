"""``POST /feedback/replace``: a create request plus the id of the row it replaces.

spec/SEMANTICS.md, "Replace". The engine runs the whole create chain on
:func:`create_request` before it removes anything. ``O(size of the request)``.
"""

from __future__ import annotations

from ..models import FeedbackCreateReq, FeedbackReplaceReq


def create_request(request: FeedbackReplaceReq) -> FeedbackCreateReq:
    """The create part of a replace request (every field but ``feedback_id``)."""
    fields = {name: getattr(request, name) for name in FeedbackCreateReq.model_fields}
    return FeedbackCreateReq.model_validate(fields)
