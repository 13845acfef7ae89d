"""The demo dataset and its report (refengine/demo.py)."""

from __future__ import annotations

import pytest

from refengine.demo import DEMO_PROJECT, bar, build_demo, demo_report, number, table


def report(seed: int, rows: int) -> str:
    return "\n".join(demo_report(build_demo(seed, rows), seed)) + "\n"


def test_demo_is_deterministic_and_has_the_tables() -> None:
    first = report(3, 400)
    assert report(3, 400) == first
    assert report(4, 400) != first
    lines = first.splitlines()
    assert lines[0].startswith("refengine demo: 400 feedback rows in acme/agent-demo")
    assert any(
        line.split()[:5] == ["scorer_id", "total", "scored", "avg", "_rating_"] for line in lines
    )
    for scorer in ("toxicity", "helpfulness", "relevance", "pii_leak"):
        assert any(line.startswith(scorer) for line in lines)
    day_rows = [line for line in lines if line.startswith("2024-05-0")]
    assert len(day_rows) == 7
    assert sum(int(line.split()[1]) for line in day_rows) == int(
        next(line for line in lines if line.startswith("whole week")).split()[2].replace(",", "")
    )
    chart = [line for line in lines if "█" in line]
    assert len(chart) == 14


def test_demo_numbers_match_the_engine() -> None:
    engine = build_demo(5, 300)
    assert len(engine) == 300
    out = report(5, 300)
    toxicity = [r for r in engine.rows(DEMO_PROJECT) if r.scorer_id == "toxicity"]
    line = next(line for line in out.splitlines() if line.startswith("toxicity"))
    assert int(line.split()[1]) == len(toxicity)


def test_bar() -> None:
    assert bar(1.0, 1.0, width=4) == "████"
    assert bar(0.5, 1.0, width=3) == "█▌"
    assert bar(0.0, 1.0) == ""


@pytest.mark.parametrize("rows", [0, 1])
def test_demo_of_almost_nothing_still_reports(rows: int) -> None:
    lines = report(11, rows).splitlines()
    assert lines[0].startswith(f"refengine demo: {rows} feedback rows")
    whole = next(line for line in lines if line.startswith("whole week"))
    assert int(whole.split()[2]) <= rows  # monitor rows only; a user row is not counted
    assert lines[-1].strip() == "0                   0.5                 1"


def test_table_and_number() -> None:
    assert table(["a", "bb"], [], {1}) == ["a  bb", "-  --"]
    assert table(["n"], [["1,000"]], {0}) == ["    n", "-----", "1,000"]
    assert (number(None), number(1234), number(0.12345)) == ("-", "1,234", "0.123")
