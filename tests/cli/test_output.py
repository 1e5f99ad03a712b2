"""Output rules: results on stdout, status on stderr, colour only on terminals."""

from __future__ import annotations

import io
import json
import logging

import pytest

from medimeta_cli.cli._logs import log_to_stderr
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


# Names and messages can come from data (a task name, a server's text): what reaches the
# terminal or a log shows their control characters escaped, never raw.
HOSTILE = "task\x1b[2J\x1b]0;owned\x07\rforged\nerror: fake\u202e"


def _no_raw_control(text: str) -> None:
    for char in ("\x1b", "\r", "\x07", "\u202e"):
        assert char not in text, repr(text)


def test_errors_status_and_warnings_escape_control_characters() -> None:
    err = io.StringIO()
    out = _output(stderr=err, environ={})
    out.error(IntegrityError(f"refusing {HOSTILE}", hint=f"see {HOSTILE}"))
    out.status(f"crc: {HOSTILE}")
    out.warn(f"crc: {HOSTILE}")
    text = err.getvalue()
    _no_raw_control(text)
    assert "task\\x1b[2J" in text and "\\x0dforged" in text
    # Each message stays on its own line: a newline from data forges none.
    assert len(text.splitlines()) == 2 + 1 + 1
    assert not any(line.startswith("error: fake") for line in text.splitlines())


def test_warnings_keep_their_colour_on_a_terminal() -> None:
    err = TTY()
    _output(stderr=err, environ={}).warn("crc: \x1b[31m")
    assert err.getvalue() == "\x1b[33mwarning:\x1b[0m crc: \\x1b[31m\n"


def test_results_escape_control_characters() -> None:
    stdout = io.StringIO()
    out = _output(stdout=stdout, environ={})
    out.emit_table(["task", "classes"], [[HOSTILE, "2"]])
    out.emit_text(f"line one\n{HOSTILE}")
    text = stdout.getvalue()
    _no_raw_control(text)
    assert text.splitlines()[0].startswith("task")
    assert "line one" in text.splitlines()  # the tool's own newlines stay


def test_log_records_escape_control_characters(capsys: pytest.CaptureFixture[str]) -> None:
    with log_to_stderr(debug=False):
        logging.getLogger("medimeta_cli.dataset").warning("task %s refused", HOSTILE)
    err = capsys.readouterr().err
    _no_raw_control(err)
    assert len(err.splitlines()) == 1 and "task\\x1b[2J" in err
