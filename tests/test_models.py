"""The wire models against the published contract (spec/published/*.json).

Field names, required sets, types, formats, bounds, enums, defaults and
``additionalProperties: false`` must match; titles, descriptions and examples are
prose and are not compared.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from refengine import models

PUBLISHED = Path(__file__).resolve().parent.parent / "spec" / "published"

_KEPT = ("type", "format", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")


def _shape(schema: dict[str, Any], defs: dict[str, Any]) -> Any:
    """A canonical form of a JSON schema node: types and constraints only."""
    if "$ref" in schema:
        return _shape(defs[schema["$ref"].rsplit("/", 1)[1]], defs)
    if "anyOf" in schema:
        return {"anyOf": sorted((_shape(s, defs) for s in schema["anyOf"]), key=repr)}
    out: dict[str, Any] = {k: schema[k] for k in _KEPT if k in schema}
    if "enum" in schema:
        out["enum"] = sorted(schema["enum"])
    if "items" in schema:
        out["items"] = _shape(schema["items"], defs)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict) and extra:
        out["additionalProperties"] = _shape(extra, defs)
    return out


def _fields(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    return {name: _shape(prop, defs) for name, prop in schema["properties"].items()}


def _defaults(schema: dict[str, Any]) -> dict[str, Any]:
    # A null default is implied by an optional type; the published pages omit it.
    return {
        n: p["default"] for n, p in schema["properties"].items() if p.get("default") is not None
    }


def _published(page: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((PUBLISHED / f"feedback-{page}.json").read_text())
    return data["schemas"]


def _ours(model: type[BaseModel], mode: str) -> tuple[dict[str, Any], dict[str, Any]]:
    schema = model.model_json_schema(mode=mode)  # type: ignore[arg-type]
    return schema, schema.get("$defs", {})


CASES = [
    ("aggregate", "FeedbackAggregateReq", models.FeedbackAggregateReq, "validation"),
    ("aggregate", "FeedbackAggregateRes", models.FeedbackAggregateRes, "serialization"),
    ("aggregate", "FeedbackAggregateBucket", models.FeedbackAggregateBucket, "serialization"),
    ("stats", "FeedbackStatsReq", models.FeedbackStatsReq, "validation"),
    ("stats", "FeedbackStatsRes", models.FeedbackStatsRes, "serialization"),
    ("stats", "FeedbackMetricSpec", models.FeedbackMetricSpec, "validation"),
    ("create", "FeedbackCreateRes", models.FeedbackCreateRes, "serialization"),
]


@pytest.mark.parametrize(("page", "name", "model", "mode"), CASES, ids=[c[1] for c in CASES])
def test_model_matches_published_schema(
    page: str, name: str, model: type[BaseModel], mode: str
) -> None:
    published_defs = _published(page)
    published = published_defs[name]
    ours, our_defs = _ours(model, mode)
    assert _fields(ours, our_defs) == _fields(published, published_defs)
    assert set(ours.get("required", [])) == set(published.get("required", []))
    assert _defaults(ours) == _defaults(published)
    if published.get("additionalProperties") is False:
        assert ours.get("additionalProperties") is False


def test_create_request_is_published_page_plus_production_fields() -> None:
    page = json.loads((PUBLISHED / "feedback-create.json").read_text())
    published = page["schemas"]["FeedbackCreateReq"]
    extra = page["production_extra_create_fields"]["properties"]
    ours, defs = _ours(models.FeedbackCreateReq, "validation")
    expected = _fields(published, {}) | {k: {"type": "string"} for k in extra}
    assert _fields(ours, defs) == expected
    assert set(ours["required"]) == set(published["required"])
    assert _defaults(ours) == {k: v["default"] for k, v in extra.items()}
    assert ours["additionalProperties"] is False


def test_batch_models_wrap_items() -> None:
    req = models.FeedbackCreateBatchReq.model_validate(
        {"batch": [{"project_id": "e/p", "weave_ref": "r", "feedback_type": "t", "payload": {}}]}
    )
    assert len(req.batch) == 1
    with pytest.raises(ValidationError):
        models.FeedbackCreateBatchReq.model_validate({"batch": [], "extra": 1})


@pytest.mark.parametrize(
    "model",
    [models.FeedbackCreateReq, models.FeedbackAggregateReq, models.FeedbackStatsReq],
)
def test_requests_reject_unknown_fields(model: type[BaseModel]) -> None:
    with pytest.raises(ValidationError) as info:
        model.model_validate({"surprise": 1})
    assert any(e["type"] == "extra_forbidden" for e in info.value.errors())


def test_integral_floats_accepted_for_integer_fields() -> None:
    req = models.FeedbackAggregateReq.model_validate(
        {"project_id": "e/p", "after_ms": 0.0, "before_ms": 86400000.0}
    )
    assert req.before_ms == 86_400_000
    with pytest.raises(ValidationError):
        models.FeedbackAggregateReq.model_validate(
            {"project_id": "e/p", "after_ms": 0, "before_ms": 1.5}
        )


def test_metric_defaults_follow_value_type() -> None:
    def aggs(value_type: str) -> list[str]:
        spec = models.FeedbackMetricSpec(json_path="x", value_type=value_type)  # type: ignore[arg-type]
        return list(spec.aggregations)

    assert aggs("numeric") == ["avg", "min", "max"]
    assert aggs("boolean") == ["count_true", "count_false"]
    assert aggs("categorical") == ["count"]
    explicit = models.FeedbackMetricSpec(json_path="x", aggregations=["sum"])
    assert explicit.aggregations == ["sum"]


def test_stats_naive_datetimes_are_utc() -> None:
    req = models.FeedbackStatsReq.model_validate(
        {"project_id": "e/p", "start": "2024-01-01T00:00:00", "end": "2024-01-01T01:00:00-05:00"}
    )
    assert req.start == datetime(2024, 1, 1, tzinfo=timezone.utc)
    assert req.start.tzinfo == timezone.utc
    assert req.end == datetime(2024, 1, 1, 6, tzinfo=timezone.utc)
