"""Shared pytest setup: Hypothesis profiles that keep CI inside its time budget.

Profiles: ``dev`` (default, quick), ``ci`` (more examples, still well under the
15-minute budget), ``thorough`` (for a deliberate long run). Pick one with
``HYPOTHESIS_PROFILE=ci``; ``.ci/run`` sets ``ci``.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

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
