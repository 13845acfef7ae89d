"""The README's promises: the first commands, CI running its test command, and its
recipes and examples working as printed."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def blocks(language: str, after: str) -> list[str]:
    """The ``language`` code blocks of the README section starting at ``after``."""
    start = README.index(after)
    end = README.find("\n## ", start + len(after))
    section = README[start : end if end != -1 else len(README)]
    return re.findall(rf"^```{language}\n(.*?)^```", section, flags=re.S | re.M)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_the_first_block_is_venv_then_the_two_commands() -> None:
    first = blocks("sh", "# refengine")[0].splitlines()
    assert first[0].startswith("python -m venv .venv && . .venv/bin/activate")
    assert first[1:] == [
        "python -m pip install . && refengine demo",
        "python -m pip install -e '.[test]' && python -m pytest",
    ]


def test_ci_runs_exactly_the_readme_test_command() -> None:
    command = blocks("sh", "# refengine")[0].splitlines()[2]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert command in ci


def test_the_python_example_runs() -> None:
    [example] = blocks("python", "## Using it in Python")
    exec(compile(example, "README.md", "exec"), {})


def test_the_pytest_plugin_example_passes(tmp_path: Path) -> None:
    pytest.importorskip("fastapi")
    [example] = blocks("python", "## pytest plugin")
    (tmp_path / "test_example.py").write_text(example, encoding="utf-8")
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_example.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "3 passed" in res.stdout


def _script_env() -> dict[str, str]:
    # the `refengine` console script of the environment running the tests
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}


def test_the_conformance_recipe_works_pasted_as_a_script(tmp_path: Path) -> None:
    pytest.importorskip("fastapi")
    recipe = next(b for b in blocks("sh", "## Conformance") if "refengine serve" in b)
    # The one change: a free port instead of 6345, which another process may hold.
    port = str(free_port())
    script = tmp_path / "recipe.sh"
    script.write_text(recipe.replace("6345", port), encoding="utf-8")
    res = subprocess.run(
        ["bash", str(script)],
        cwd=tmp_path,  # not a checkout: the catalogue comes with the package
        env=_script_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert re.search(r"^total\s+\d+\s+0\s+0$", res.stdout, flags=re.M), res.stdout[-2000:]
    assert "differential              pass" in res.stdout
    with socket.socket() as sock:  # the trap stopped the server
        assert sock.connect_ex(("127.0.0.1", int(port))) != 0


def test_a_dead_target_fails_in_seconds_with_one_line(tmp_path: Path) -> None:
    res = subprocess.run(
        [
            "refengine",
            "conformance",
            "--target",
            f"http://127.0.0.1:{free_port()}",
            "--api-key",
            "KEY",
            "--wait",
            "1",
        ],
        cwd=tmp_path,
        env=_script_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert res.returncode == 1
    assert res.stdout == ""
    assert res.stderr.count("\n") == 1
    assert res.stderr.startswith("refengine: error: ") and "is not reachable" in res.stderr


def test_the_demo_output_is_as_printed() -> None:
    from refengine.demo import build_demo, demo_report

    [printed] = blocks("text", "## First command: the demo")
    assert printed == "\n".join(demo_report(build_demo(7, 2000), 7)) + "\n"


def test_the_serve_banner_is_as_printed() -> None:
    pytest.importorskip("fastapi")
    [console] = [b for b in blocks("console", "## Serving over HTTP") if "refengine serve" in b][:1]
    command, *banner = console.splitlines()[1:4]
    assert command.startswith("$ refengine serve ")
    argv = [*command[2:].split(), "--port", "0", "--log-level", "warning"]
    proc = subprocess.Popen(argv, env=_script_env(), stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        printed = [proc.stderr.readline().rstrip("\n") for _ in banner]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    # the one difference: the port, free rather than 6345
    assert [re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:6345", line) for line in printed] == banner
