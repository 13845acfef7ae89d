"""The ``refengine`` command line: demo tables, dump/load, one-line errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from refengine.cli import bar, build_parser, main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        status = main(list(argv))
    except SystemExit as exc:  # argparse: --help and usage errors
        status = int(exc.code or 0)
    out, err = capsys.readouterr()
    return status, out, err


def test_demo_is_deterministic_and_has_the_tables(capsys: pytest.CaptureFixture[str]) -> None:
    status, first, err = run(capsys, "demo", "--seed", "3", "--rows", "400")
    assert status == 0
    assert err == ""
    assert run(capsys, "demo", "--seed", "3", "--rows", "400")[1] == first
    assert run(capsys, "demo", "--seed", "4", "--rows", "400")[1] != first
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


def test_demo_numbers_match_the_engine(capsys: pytest.CaptureFixture[str]) -> None:
    from refengine.cli import DEMO_PROJECT, build_demo

    engine = build_demo(5, 300)
    assert len(engine) == 300
    _, out, _ = run(capsys, "demo", "--seed", "5", "--rows", "300")
    toxicity = [r for r in engine.rows(DEMO_PROJECT) if r.scorer_id == "toxicity"]
    line = next(line for line in out.splitlines() if line.startswith("toxicity"))
    assert int(line.split()[1]) == len(toxicity)


def test_bar() -> None:
    assert bar(1.0, 1.0, width=4) == "████"
    assert bar(0.5, 1.0, width=3) == "█▌"
    assert bar(0.0, 1.0) == ""


def test_dump_and_load_round_trip(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "demo.jsonl"
    status, _, err = run(capsys, "dump", "--demo", "--seed", "2", "--rows", "120", str(out))
    assert status == 0
    assert "wrote 120 rows" in err
    again = tmp_path / "again.jsonl"
    run(capsys, "dump", "--demo", "--seed", "2", "--rows", "120", str(again))
    assert out.read_bytes() == again.read_bytes()  # reproducible byte for byte
    assert len(out.read_text().splitlines()) == 120
    status, text, _ = run(capsys, "load", str(out))
    assert status == 0
    assert "valid, 120 rows in 1 project(s)" in text
    assert "acme/agent-demo" in text
    status, text, _ = run(capsys, "dump", "--data", str(out), "--project", "nope", "-")
    assert status == 0
    assert text == ""
    status, text, _ = run(capsys, "dump", "--data", str(out), "-")
    assert text == out.read_text()


def test_errors_are_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1}\n')
    cases = [
        (["load", str(tmp_path / "missing.jsonl")], 1, "No such file"),
        (["load", str(bad)], 1, f"{bad}:1: not a feedback row"),
        (["serve", "--clock", "yesterday"], 2, "not an ISO 8601 date-time"),
        (["serve", "--api-key", "=bob"], 2, "expected KEY or KEY=USER_ID"),
        (["demo", "--rows", "-3"], 2, "must be >= 0"),
        (["dump", "out.jsonl"], 1, "nothing to dump"),
        (["nope"], 2, "invalid choice"),
        ([], 2, "required"),
    ]
    for argv, code, needle in cases:
        status, out, err = run(capsys, *argv)
        assert status == code, argv
        assert out == ""
        assert err.count("\n") == 1, (argv, err)
        assert needle in err, (argv, err)
        assert "Traceback" not in err


def test_bad_json_line_names_the_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    good = tmp_path / "good.jsonl"
    run(capsys, "dump", "--demo", "--rows", "3", str(good))
    lines = good.read_text().splitlines()
    broken = tmp_path / "broken.jsonl"
    broken.write_text("\n".join([lines[0], "{not json", lines[1]]) + "\n")
    status, _, err = run(capsys, "load", str(broken))
    assert status == 1
    assert err.startswith(f"refengine: error: {broken}:2: not valid JSON")
    json.loads(lines[0])


def test_every_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in ([], ["demo"], ["serve"], ["dump"], ["load"]):
        status, out, _ = run(capsys, *argv, "--help")
        assert status == 0
        assert out.startswith("usage: refengine")
    serve_help = run(capsys, "serve", "--help")[1]
    assert "--api-key KEY[=USER_ID]" in serve_help
    assert "--clock ISO8601" in serve_help
    assert build_parser().prog == "refengine"


def test_console_script_subprocess(tmp_path: Path) -> None:
    exe = shutil.which("refengine") or str(Path(sys.executable).parent / "refengine")
    res = subprocess.run(
        [exe, "demo", "--rows", "200", "--seed", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    assert "Per scorer" in res.stdout
    res = subprocess.run(
        [exe, "load", str(tmp_path / "missing.jsonl")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert res.returncode == 1
    assert res.stderr.startswith("refengine: error: cannot read")
    assert res.stderr.count("\n") == 1


def test_demo_piped_to_a_closed_reader_exits_quietly() -> None:
    code = "import sys; from refengine.cli import main; sys.exit(main(['demo', '--rows', '300']))"
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None
    proc.stdout.readline()
    proc.stdout.close()  # like `| head -1`
    _, err = proc.communicate(timeout=120)
    assert b"Traceback" not in err
    assert proc.returncode in (0, 141)


def test_serve_without_the_server_extra(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # import uvicorn -> ImportError
    status, out, err = run(capsys, "serve", "--port", "0")
    assert status == 1
    assert out == ""
    assert err.count("\n") == 1
    assert "pip install 'refengine[server]'" in err


def test_progress_counter_only_on_a_terminal() -> None:
    import io

    from refengine.cli import Progress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    quiet = io.StringIO()
    assert list(Progress("x", 3, stream=quiet).track(range(3))) == [0, 1, 2]
    assert quiet.getvalue() == ""
    tty = Terminal()
    progress = Progress("creating", 10, stream=tty)
    progress.started -= 5  # pretend the work has run for a while
    progress.update(4)
    progress.close()
    assert "creating: 4/10" in tty.getvalue()
    assert tty.getvalue().endswith("\r\x1b[K")
