"""The ``refengine`` command line: demo tables, dump/load, one-line errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from refengine.cli import build_parser, main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        status = main(list(argv))
    except SystemExit as exc:  # argparse: --help and usage errors
        status = int(exc.code or 0)
    out, err = capsys.readouterr()
    return status, out, err


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
    status, text, err = run(capsys, "dump", "--data", str(out), "--project", "nope", "-")
    assert status == 0
    assert text == ""
    assert err == (
        "refengine: warning: no rows for --project nope (projects in the data: acme/agent-demo)\n"
    )
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
        (["conformance"], 2, "the following arguments are required: --target"),
        (["conformance", "--target", "inprocess", "--wait", "x"], 2, "invalid float value"),
        (["conformance", "--target", "ftp://x"], 2, "--target must be 'inprocess' or"),
        # a password in a target that is not understood is never echoed
        (["conformance", "--target", "mysql://me:s3cret@db/x"], 2, "'mysql://me:***@db/x'"),
        (["cases", "--cases-dir", "/nonexistent/cases"], 2, "no case directory"),
        ([], 2, "required"),
    ]
    for argv, code, needle in cases:
        status, out, err = run(capsys, *argv)
        assert status == code, argv
        assert out == ""
        assert err.count("\n") == 1, (argv, err)
        assert needle in err, (argv, err)
        assert err.startswith("refengine: error: "), (argv, err)
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


def test_demo_of_no_rows(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "demo", "--rows", "0")
    assert (status, err) == (0, "")
    assert out.startswith("refengine demo: 0 feedback rows")


def _dump_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    good = tmp_path / "good.jsonl"
    run(capsys, "dump", "--demo", "--rows", "2", str(good))
    record: dict[str, object] = json.loads(good.read_text().splitlines()[0])
    return record


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"scorer_ratings": {"_rating_": 10**400}}, "column scorer_ratings must be a map"),
        ({"created_at": "0001-01-01T00:00:00+01:00"}, "out of range once converted to UTC"),
    ],
)
def test_unloadable_rows_are_refused_with_file_and_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, change: dict[str, object], reason: str
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n" + json.dumps({**_dump_line(tmp_path, capsys), **change}) + "\n")
    for argv in (["load", str(bad)], ["dump", "--data", str(bad), "-"]):
        status, out, err = run(capsys, *argv)
        assert (status, out) == (1, "")
        assert err.startswith(f"refengine: error: {bad}:2: not a feedback row: ")
        assert reason in err and err.count("\n") == 1 and "Traceback" not in err


def test_repeated_ids_are_counted_and_kept(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    one = tmp_path / "one.jsonl"
    run(capsys, "dump", "--demo", "--rows", "3", str(one))
    two = tmp_path / "two.jsonl"
    two.write_text(one.read_text().splitlines()[0] + "\n")
    status, out, _ = run(capsys, "load", str(one), str(two))
    assert status == 0
    assert "valid, 4 rows in 1 project(s)" in out
    assert "1 row(s) repeat an earlier id (kept" in out
    status, out, err = run(capsys, "dump", "--data", str(one), "--data", str(two), "-")
    assert len(out.splitlines()) == 4
    assert err.startswith("refengine: note: 1 row(s) repeat an earlier id")


def test_python_dash_m_refengine() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "refengine", "demo", "--rows", "5"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("refengine demo: 5 feedback rows")


def test_serve_data_counts_repeated_ids(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from refengine import Engine
    from refengine.cli import _load_into

    one = tmp_path / "one.jsonl"
    run(capsys, "dump", "--demo", "--rows", "3", str(one))
    engine = Engine()
    assert _load_into(engine, [str(one), str(one)]) == 3  # what `serve --data` reports
    assert len(engine) == 6


def test_conformance_without_its_extra_names_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "jsonschema", None)  # import jsonschema -> ImportError
    for argv in (["conformance", "--target", "inprocess"], ["cases", "--check"]):
        status, out, err = run(capsys, *argv)
        assert (status, out) == (1, "")
        assert err == (
            "refengine: error: jsonschema is not installed: pip install 'refengine[conformance]'\n"
        )
