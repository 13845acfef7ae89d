"""Shared pytest setup: Hypothesis profiles that keep CI inside its time budget.

``--executor reference`` (or ``fast``) runs every test on that executor.

Profiles: ``dev`` (default, quick), ``ci`` (more examples, still well under the
15-minute budget), ``thorough`` (for a deliberate long run). Pick one with
``HYPOTHESIS_PROFILE=ci``; ``.ci/run`` sets ``ci``.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

import refengine.engine

settings.register_profile(
    "dev", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "ci",
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("thorough", max_examples=2000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--executor",
        choices=sorted(refengine.engine.EXECUTORS),
        default=None,
        help="the executor of every Engine built without one (default: the engine's own)",
    )


def pytest_configure(config: pytest.Config) -> None:
    # Set for the whole session, doctests of spec/SEMANTICS.md included.
    executor = config.getoption("--executor")
    if executor is not None:
        refengine.engine.DEFAULT_EXECUTOR = executor
