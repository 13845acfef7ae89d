"""``POST /feedback/stats`` (being written)."""

from __future__ import annotations

from collections.abc import Callable

from .models import FeedbackStatsReq, FeedbackStatsRes
from .rows import FeedbackRow

WindowFn = Callable[[str, "int | None", "int | None"], list[FeedbackRow]]


def feedback_stats(req: FeedbackStatsReq, window: WindowFn) -> FeedbackStatsRes:
    """Answer ``req`` (``end`` already resolved) from ``window(project, after_ms, before_ms)``."""
    raise NotImplementedError
