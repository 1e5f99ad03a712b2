"""The one place where errors become exit codes.

Scripts rely on these numbers; they are documented in the README (in brief) and in
docs/commands.md (in full), and never reused.
"""

from __future__ import annotations

from enum import IntEnum

from medimeta_cli import errors


class ExitCode(IntEnum):
    """Exit codes of ``medimeta``."""

    OK = 0
    FAILURE = 1
    USAGE = 2
    NETWORK = 3
    INTEGRITY = 4
    DISK_SPACE = 5
    LOCK_TIMEOUT = 6
    OFFLINE = 7
    NOT_INSTALLED = 8
    PERMISSION = 9
    NOT_IN_RECORD = 10
    INCOMPLETE = 11
    INTERRUPTED = 130


# Most specific first: the first class an error is an instance of decides.
_BY_ERROR: tuple[tuple[type[Exception], ExitCode], ...] = (
    (errors.UsageError, ExitCode.USAGE),
    # A catalog file that does not validate is a bad setting (MEDIMETA_CATALOG) to fix.
    (errors.CatalogError, ExitCode.USAGE),
    # Before NetworkError: a record without the archive is no network trouble to retry.
    (errors.NotInRecordError, ExitCode.NOT_IN_RECORD),
    (errors.NetworkError, ExitCode.NETWORK),
    (errors.IntegrityError, ExitCode.INTEGRITY),
    (errors.DiskSpaceError, ExitCode.DISK_SPACE),
    (errors.LockTimeoutError, ExitCode.LOCK_TIMEOUT),
    (errors.OfflineError, ExitCode.OFFLINE),
    (errors.NotInstalledError, ExitCode.NOT_INSTALLED),
    (errors.PermissionDeniedError, ExitCode.PERMISSION),
    (PermissionError, ExitCode.PERMISSION),
)

DESCRIPTIONS: dict[ExitCode, str] = {
    ExitCode.OK: "success",
    ExitCode.FAILURE: "failure (anything not listed below)",
    ExitCode.USAGE: "usage error: unknown dataset, task, domain, option, bad setting or catalog",
    ExitCode.NETWORK: "network error: server unreachable or failing after retries",
    ExitCode.INTEGRITY: "integrity error: checksum, size or structure mismatch",
    ExitCode.DISK_SPACE: "not enough disk space",
    ExitCode.LOCK_TIMEOUT: "timed out waiting for another job's lock",
    ExitCode.OFFLINE: "offline mode, and the data is not available locally",
    ExitCode.NOT_INSTALLED: "the dataset is not installed",
    ExitCode.PERMISSION: "the data root or output folder is not writable",
    ExitCode.NOT_IN_RECORD: "not in the record: the record has no archive for a dataset",
    ExitCode.INCOMPLETE: "incomplete: some requested files could not be made (the summary "
    "says which and why)",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C)",
}


def exit_code_for(error: BaseException) -> ExitCode:
    """The exit code for an error raised while running a command."""
    if isinstance(error, KeyboardInterrupt):
        return ExitCode.INTERRUPTED
    for error_class, code in _BY_ERROR:
        if isinstance(error, error_class):
            return code
    return ExitCode.FAILURE
