"""What a plain (non-editable) install gets: every package, and the case catalogue
as package data, built from spec/ (the one source)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = (ROOT / "pyproject.toml").read_text(encoding="utf-8")


def listed_packages() -> list[str]:
    match = re.search(r"^packages = \[(.*?)\]", PYPROJECT, flags=re.M | re.S)
    assert match, "pyproject.toml lists its packages under [tool.setuptools]"
    return re.findall(r'"([^"]+)"', match.group(1))


def test_every_package_directory_is_listed() -> None:
    # The list is explicit (refengine.spec is mapped from spec/), so a new
    # subpackage must be added to it or a wheel would silently lack it.
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "refengine").rglob("__init__.py")
    }
    assert found | {"refengine.spec"} == set(listed_packages())


def test_license_is_an_spdx_expression() -> None:
    assert re.search(r'^license = "Apache-2.0"$', PYPROJECT, flags=re.M)


def test_the_wheel_ships_the_catalogue(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    # A copy, so that the build leaves nothing in the checkout and no stale
    # build/ directory of an earlier build can leak files into the wheel.
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "refengine", source / "refengine", ignore=ignore)
    shutil.copytree(ROOT / "spec", source / "spec", ignore=ignore)
    out = tmp_path / "dist"
    res = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    [wheel] = out.glob("refengine-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    spec_files = [
        "refengine/spec/SEMANTICS.md",
        "refengine/spec/cases.schema.json",
        "refengine/spec/cases/INDEX.md",
        *(f"refengine/spec/cases/{p.name}" for p in (ROOT / "spec" / "cases").glob("*.json")),
        *(f"refengine/spec/skips/{p.name}" for p in (ROOT / "spec" / "skips").glob("*.json")),
    ]
    assert set(spec_files) <= names
    assert not any(name.startswith("spec/") for name in names)
    assert {"refengine/py.typed", "refengine/__main__.py", "refengine/demo.py"} <= names
    metadata = zipfile.ZipFile(wheel).read(
        next(n for n in names if n.endswith(".dist-info/METADATA"))
    )
    assert b"License-Expression: Apache-2.0" in metadata
