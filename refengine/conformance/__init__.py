"""refengine's conformance kit: the case catalogue, targets, comparison and runner.

* :mod:`.backend` — the :class:`Backend` protocol any system under test implements,
  and :class:`TargetUnavailable`, raised when a target cannot run cases at all.
* :mod:`.targets` — the in-process engine target and an HTTP target.
* :mod:`.compare` — path-addressed diffs under per-field comparison rules.
* :mod:`.cases` — load, validate and regenerate ``spec/cases/*.json`` (installed with
  the package as ``refengine/spec/``).
* :mod:`.runner` — run the catalogue and a differential workload, report, JUnit.
"""

from __future__ import annotations

from .backend import Backend, Outcome, TargetUnavailable
from .compare import CompareRules, Difference, diff
from .targets import HttpTarget, InProcessTarget

__all__ = [
    "Backend",
    "CompareRules",
    "Difference",
    "HttpTarget",
    "InProcessTarget",
    "Outcome",
    "TargetUnavailable",
    "diff",
]
