"""``POST /feedback/aggregate`` (being written)."""

from __future__ import annotations

from .models import FeedbackAggregateReq, FeedbackAggregateRes
from .rows import FeedbackRow


def feedback_aggregate(req: FeedbackAggregateReq, rows: list[FeedbackRow]) -> FeedbackAggregateRes:
    """Fold ``rows`` (the project's window, in store order) into the answer."""
    raise NotImplementedError
