"""Executes every worked example in spec/SEMANTICS.md (the doc cannot drift).

Examples are doctest blocks (``>>>``) inside the Markdown; they share one namespace
in document order, so a section may build on the engine of the one before.
"""

from __future__ import annotations

import doctest
from pathlib import Path

SPEC = Path(__file__).resolve().parent.parent / "spec" / "SEMANTICS.md"


def test_semantics_examples_run() -> None:
    result = doctest.testfile(
        str(SPEC),
        module_relative=False,
        optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS,
        raise_on_error=False,
        verbose=False,
    )
    assert result.attempted > 0, "spec/SEMANTICS.md has no executable examples"
    assert result.failed == 0, f"{result.failed} of {result.attempted} spec examples failed"


def test_every_rule_heading_is_cited_by_the_code_that_implements_it() -> None:
    """Grepping ``<Section> / <Heading>`` of a ``###`` rule finds its code (a docstring
    of ``refengine/``; whitespace, line breaks and backquotes do not matter)."""
    package = SPEC.parent.parent / "refengine"
    code = " ".join(
        " ".join(path.read_text(encoding="utf-8").split()) for path in package.rglob("*.py")
    ).replace("`", "")
    section = ""
    uncited = []
    for line in SPEC.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            section = line[3:].strip()
        elif line.startswith("### "):
            rule = f"{section} / {line[4:].strip()}".replace("`", "")
            if rule not in code:
                uncited.append(rule)
    assert uncited == []
