"""The reference executor's answers as plain dicts, for tests that compare with it.

Each folds the project's *every* row (the reference fold skips the rows outside
the window itself), so the comparison also checks the engine's window snapshot.
"""

from __future__ import annotations

from typing import Any

from refengine import Engine
from refengine.models import FeedbackAggregateReq, FeedbackStatsReq
from refengine.semantics import aggregate, stats


def reference_aggregate(engine: Engine, req: dict[str, Any]) -> dict[str, Any]:
    """``FeedbackAggregateRes.model_dump()`` of the reference fold of ``req``."""
    plan = aggregate.plan(FeedbackAggregateReq.model_validate(req))
    return aggregate.fold(plan, engine.rows(plan.project_id)).model_dump()


def reference_stats(engine: Engine, req: dict[str, Any]) -> dict[str, Any]:
    """``FeedbackStatsRes.model_dump()`` of the reference fold of ``req``."""
    plan = stats.plan(FeedbackStatsReq.model_validate(req), engine.clock())
    return stats.fold(plan, engine.rows(plan.project_id)).model_dump()
