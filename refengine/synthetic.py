"""Deterministic synthetic feedback: a realistic scorer-heavy project for demos and
benchmarks.

The data look like a production agent project: several monitors run several scorers
over agent turns and conversations of a few agents; each scorer row carries tags,
``_rating_`` and other ratings, and a payload ``output`` with a numeric ``score``,
a boolean ``passed`` and a categorical ``label``. Some user feedback, notes and
reactions are mixed in. Everything is a function of ``seed``.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from .rows import FeedbackRow, datetime_to_us, make_row
from .semantics.create import resolve_agent_target

SCORERS = ("toxicity", "helpfulness", "relevance", "pii_leak")
MONITORS = ("prod-monitor", "canary-monitor", "nightly-eval")
AGENTS = (("planner", "v3"), ("planner", "v4"), ("coder", "v1"), ("support-bot", "2024.5"))
STATUSES = ("UNSET", "OK", "OK", "OK", "ERROR")
TAGS = ("helpful", "off_topic", "hallucination", "toxic", "pii", "great")
LABELS = ("pass", "fail", "needs_review")


def synthetic_requests(
    project_id: str, count: int, start: datetime, span: timedelta, seed: int = 0
) -> Iterator[tuple[datetime, dict[str, Any]]]:
    """``count`` valid create requests with their creation instants, in time order."""
    rng = random.Random(seed)
    entity_project = project_id
    span_us = int(span.total_seconds() * 1_000_000)
    offsets = sorted(rng.randrange(span_us) for _ in range(count))
    for i, offset in enumerate(offsets):
        moment = start + timedelta(microseconds=offset)
        yield moment, _request(rng, entity_project, i)


def _request(rng: random.Random, project_id: str, i: int) -> dict[str, Any]:
    agent, version = rng.choice(AGENTS)
    kind = rng.random()
    base = f"weave:///{project_id}"
    if kind < 0.03:
        return {
            "project_id": project_id,
            "weave_ref": f"{base}/call/{i:08x}",
            "feedback_type": "wandb.reaction.1",
            "payload": {"emoji": rng.choice(["👍", "👎", "👍🏽", "🎉"])},
        }
    if kind < 0.05:
        return {
            "project_id": project_id,
            "weave_ref": f"{base}/call/{i:08x}",
            "feedback_type": "wandb.note.1",
            "payload": {"note": rng.choice(["looks right", "wrong tool call", "slow"])},
        }
    if kind < 0.10:
        return {
            "project_id": project_id,
            "weave_ref": f"{base}/agent_turn/t{i:08x}",
            "feedback_type": "wandb.agent_user_feedback",
            "payload": {"source": "thumbs"},
            "scorer_tags": [rng.choice(["thumbs_up", "thumbs_down"])],
            "span_agent_name": agent,
            "span_agent_version": version,
        }
    scorer = rng.choice(SCORERS)
    monitor = rng.choice(MONITORS)
    score = round(rng.betavariate(5, 2), 4)
    scored = rng.random() < 0.9  # a monitor sometimes scores nothing
    tags = rng.sample(TAGS, rng.choice((0, 1, 1, 2))) if scored else []
    ratings = {"_rating_": score} if scored else {}
    if scored and rng.random() < 0.3:
        ratings["confidence"] = round(rng.random(), 3)
    target = (
        f"{base}/agent_turn/t{i:08x}"
        if rng.random() < 0.8
        else f"{base}/agent_conversation/conv-{i % 97}"
    )
    return {
        "project_id": project_id,
        "weave_ref": target,
        "feedback_type": "wandb.agent_monitor",
        "runnable_ref": f"{base}/object/{scorer}:v{1 + i % 3}",
        "call_ref": f"{base}/call/s{i:08x}",
        "trigger_ref": f"{base}/object/{monitor}:d{1 + i % 2}",
        "payload": {
            "output": {
                "score": score,
                "passed": score >= 0.5,
                "label": rng.choice(LABELS),
            }
        },
        "scorer_tags": tags,
        "scorer_ratings": ratings,
        "span_agent_name": agent,
        "span_agent_version": version,
        "span_status_code": rng.choice(STATUSES),
    }


def synthetic_rows(
    project_id: str, count: int, start: datetime, span: timedelta, seed: int = 0
) -> list[FeedbackRow]:
    """The same data as :func:`synthetic_requests`, built straight into rows.

    Skips the create validation chain (the requests are valid by construction), so
    a benchmark can build a million rows in seconds. Agent span ids are filled from
    the weave_ref by create's own rule
    (:func:`refengine.semantics.create.resolve_agent_target`).
    """
    rows = []
    for i, (moment, req) in enumerate(synthetic_requests(project_id, count, start, span, seed)):
        fields = dict(req)
        if fields["feedback_type"] == "wandb.reaction.1":
            continue  # reactions need payload processing; not worth it for bulk data
        fields["span_conversation_id"], fields["span_trace_id"] = resolve_agent_target(
            req["feedback_type"],
            req["weave_ref"],
            req.get("span_conversation_id", ""),
            req.get("span_trace_id", ""),
        )
        rows.append(
            make_row(
                id=f"{i:08x}-0000-7000-8000-000000000000",
                wb_user_id="synthetic",
                creator=None,
                created_at_us=datetime_to_us(moment),
                **fields,
            )
        )
    return rows
