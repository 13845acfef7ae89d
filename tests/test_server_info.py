"""GET /server_info (refengine/semantics/server_info.py)."""

from __future__ import annotations

import refengine
from refengine import Engine


def test_server_info_names_no_minimum_and_its_version() -> None:
    info = Engine().server_info()
    assert info.min_required_weave_python_version == "0.0.0"
    assert info.trace_server_version == refengine.__version__
