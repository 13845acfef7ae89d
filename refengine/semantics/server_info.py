"""``GET /server_info``: what ``weave.init`` asks first (SEMANTICS "Server info")."""

from __future__ import annotations

from ..models import ServerInfoRes

MIN_REQUIRED_WEAVE_PYTHON_VERSION = "0.0.0"
"""A fake requires no particular client version."""


def server_info(version: str) -> ServerInfoRes:
    """``{"min_required_weave_python_version": "0.0.0", "trace_server_version": version}``."""
    return ServerInfoRes(
        min_required_weave_python_version=MIN_REQUIRED_WEAVE_PYTHON_VERSION,
        trace_server_version=version,
    )
