"""Output rules: results on stdout, status on stderr, colour only on terminals."""

from __future__ import annotations

import io
import json

from medimeta_cli.cli.exit_codes import ExitCode
from medimeta_cli.cli.output import Output, plain_table
from medimeta_cli.errors import IntegrityError


class TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def _output(
    stdout: io.StringIO | None = None, stderr: io.StringIO | None = None, **kwargs: object
) -> Output:
    return Output(stdout=stdout or io.StringIO(), stderr=stderr or io.StringIO(), **kwargs)  # type: ignore[arg-type]


def test_colour_only_on_a_terminal_without_no_color() -> None:
    assert _output(stderr=TTY(), environ={}).stderr_color
    assert not _output(stderr=io.StringIO(), environ={}).stderr_color
    assert not _output(stderr=TTY(), environ={"NO_COLOR": ""}).stderr_color
    assert not _output(stderr=TTY(), environ={"TERM": "dumb"}).stderr_color


def test_error_is_two_plain_lines_when_piped() -> None:
    err = io.StringIO()
    _output(stderr=err, environ={}).error(IntegrityError("md5 mismatch for crc.zip"))
    assert err.getvalue().splitlines() == [
        "error: md5 mismatch for crc.zip",
        "hint: Run `medimeta download --force ID` to fetch a fresh copy.",
    ]


def test_error_is_coloured_on_a_terminal() -> None:
    err = TTY()
    _output(stderr=err, environ={}).error(IntegrityError("x"))
    assert "\x1b[31merror:\x1b[0m x" in err.getvalue()


def test_quiet_silences_status_and_warnings_but_not_errors() -> None:
    err = io.StringIO()
    out = _output(stderr=err, quiet=True, environ={})
    out.status("working")
    out.warn("careful")
    assert err.getvalue() == ""
    out.error(IntegrityError("bad"))
    assert "error: bad" in err.getvalue()


def test_os_errors_name_the_file() -> None:
    err = io.StringIO()
    _output(stderr=err, environ={}).error(PermissionError(13, "Permission denied", "/data/x"))
    assert err.getvalue().splitlines()[0] == "error: Permission denied: /data/x"


def test_json_goes_to_stdout_only() -> None:
    out_stream, err_stream = io.StringIO(), io.StringIO()
    _output(out_stream, err_stream, environ={}).emit_json({"a": [1, "é"]})
    assert json.loads(out_stream.getvalue()) == {"a": [1, "é"]}
    assert err_stream.getvalue() == ""


def test_plain_table_aligns_columns() -> None:
    text = plain_table(["A", "LONG"], [["xyz", "1"], ["q", "22"]])
    assert text.splitlines() == ["A    LONG", "xyz  1", "q    22"]


def test_rich_table_on_a_terminal() -> None:
    stdout = TTY()
    _output(stdout, environ={}).emit_table(["ID", "NAME"], [["crc", "Colorectal"]])
    assert "crc" in stdout.getvalue() and "Colorectal" in stdout.getvalue()


def test_fail_in_json_mode_writes_one_error_object_on_stdout() -> None:
    out_stream, err_stream = io.StringIO(), io.StringIO()
    error = IntegrityError("md5 mismatch for crc.zip")
    _output(out_stream, err_stream, json_mode=True, environ={}).fail(error, ExitCode.INTEGRITY)
    assert json.loads(out_stream.getvalue()) == {
        "error": {
            "code": "INTEGRITY",
            "exit_code": 4,
            "message": "md5 mismatch for crc.zip",
            "hint": "Run `medimeta download --force ID` to fetch a fresh copy.",
        }
    }
    assert err_stream.getvalue().splitlines()[0] == "error: md5 mismatch for crc.zip"


def test_fail_without_json_leaves_stdout_empty() -> None:
    out_stream, err_stream = io.StringIO(), io.StringIO()
    _output(out_stream, err_stream, environ={}).fail(IntegrityError("bad"), ExitCode.INTEGRITY)
    assert out_stream.getvalue() == ""
    assert "error: bad" in err_stream.getvalue()


def test_fail_after_a_result_adds_no_second_json_document() -> None:
    out_stream = io.StringIO()
    out = _output(out_stream, json_mode=True, environ={})
    out.emit_json([{"id": "crc", "status": "failed"}])
    out.fail(KeyboardInterrupt(), ExitCode.INTERRUPTED)
    assert json.loads(out_stream.getvalue()) == [{"id": "crc", "status": "failed"}]


def test_every_kind_of_error_has_a_message_and_a_hint() -> None:
    for error in (
        IntegrityError("x"),
        KeyboardInterrupt(),
        PermissionError(13, "Permission denied", "/data/x"),
        RuntimeError("boom"),
    ):
        out_stream = io.StringIO()
        _output(out_stream, json_mode=True, environ={}).fail(error, ExitCode.FAILURE)
        document = json.loads(out_stream.getvalue())["error"]
        assert document["message"] and document["hint"], error
