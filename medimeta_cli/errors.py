"""The one exception tree of medimeta-cli.

Every error the core raises derives from :class:`MedimetaError` and carries a
``hint``: one sentence telling the user what to do next. The CLI maps each class
to an exit code in one place (``medimeta_cli.cli.exit_codes``); the core never
decides how an error is shown.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from typing import TypeVar


class MedimetaError(Exception):
    """Base of every error raised by medimeta-cli."""

    default_hint: str = "Run again with --debug for details."

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint if hint is not None else self.default_hint

    def __str__(self) -> str:
        return self.message


class UsageError(MedimetaError):
    """The user asked for something that does not exist or cannot be combined."""

    default_hint = "Run with --help to see the valid options."


class UnknownNameError(UsageError):
    """A name (dataset, task, domain, ...) is not one of the valid choices."""

    kind: str = "name"
    kinds: str = "names"

    def __init__(
        self,
        name: str,
        choices: Iterable[str],
        *,
        suggestion: str | None = None,
        context: str = "",
    ) -> None:
        self.name = name
        self.choices = tuple(choices)
        self.suggestion = suggestion
        where = f" {context}" if context else ""
        message = f"unknown {self.kind} {name!r}{where}"
        if suggestion is not None:
            message += f"; did you mean {suggestion!r}?"
        super().__init__(message, hint=f"Valid {self.kinds}: {', '.join(self.choices)}.")

    @classmethod
    def ambiguous(
        cls: type[_Name], name: str, candidates: Sequence[str], *, context: str, hint: str
    ) -> _Name:
        """A beginning that fits several names: the error lists them (``choices``)."""
        error = cls(name, candidates, context=context)
        error.message = (
            f"{cls.kind} {name!r} {context} is ambiguous: "
            + ", ".join(repr(candidate) for candidate in candidates)
            + " begin with it"
        )
        error.args = (error.message,)
        error.hint = hint
        return error


_Name = TypeVar("_Name", bound=UnknownNameError)


class UnknownDatasetError(UnknownNameError):
    """No dataset of MedIMeta has this id."""

    kind = "dataset"
    kinds = "datasets"


class UnknownDomainError(UnknownNameError):
    """The name is neither a domain, a domain alias nor a dataset id."""

    kind = "domain"
    kinds = "domains"


class UnknownTaskError(UnknownNameError):
    """The dataset has no task of this name."""

    kind = "task"
    kinds = "tasks"


class UnknownClassError(UnknownNameError):
    """The task has no label of this name or key."""

    kind = "class"
    kinds = "classes"


class UnknownSplitError(UnknownNameError):
    """Not one of train, val, test."""

    kind = "split"
    kinds = "splits"


class ConfigError(UsageError):
    """A setting (flag or ``MEDIMETA_*`` variable) has a value that cannot be used."""

    default_hint = "Run `medimeta paths` to see every setting and where it comes from."


class CatalogError(MedimetaError):
    """A catalog file does not match the catalog model."""

    default_hint = "Reinstall medimeta-cli, or fix the catalog file named above."


class NetworkError(MedimetaError):
    """The server could not be reached or kept failing after all retries."""

    default_hint = (
        "Check your connection (or proxy) and try again; downloads resume where they stopped."
    )


class RemoteDataError(NetworkError):
    """The server answered, but not with what was asked for (an HTML page, a bad record)."""

    default_hint = "The server may be in maintenance; try again later."


class NotInRecordError(RemoteDataError):
    """The record lists no archive for a dataset the catalog knows: that dataset cannot be
    fetched, the others still are."""

    def __init__(self, record_id: int, key: str, *, held: Iterable[str] = ()) -> None:
        super().__init__(
            f"record {record_id} has no file {key!r}",
            hint="The record may have changed; check MEDIMETA_RECORD and MEDIMETA_BASE_URL, "
            "or install the archive fetched elsewhere with `medimeta download --from PATH`.",
        )
        self.record_id = record_id
        self.key = key
        self.keys: tuple[str, ...] = (key,)
        #: The files the record does hold (as many as were known when it was raised).
        self.held = tuple(held)

    @classmethod
    def together(
        cls, errors: Sequence[NotInRecordError], expected: Collection[str]
    ) -> NotInRecordError:
        """The archives of several datasets missing from one record, said once with their
        ids; when the record holds none of the ``expected`` archives, what it holds instead
        (a few keys): that is rather the wrong record than a changed one."""
        first = errors[0]
        keys = tuple(dict.fromkeys(key for error in errors for key in error.keys))
        held = first.held
        merged = cls(first.record_id, keys[0], held=held)
        merged.keys = keys
        if len(keys) > 1:
            ids = ", ".join(key.removesuffix(".zip") for key in keys)
            merged.message = (
                f"record {first.record_id} has no archive of {len(keys)} datasets: {ids}"
            )
        if expected and not set(expected) & set(held):
            shown = ", ".join(repr(key) for key in held[:_HELD_SHOWN])
            more = f" and {len(held) - _HELD_SHOWN} more" if len(held) > _HELD_SHOWN else ""
            merged.message += (
                f"; it holds none of MedIMeta's archives, only {shown}{more}"
                if held
                else "; it holds no files at all"
            )
            merged.hint = (
                f"Record {first.record_id} is likely not MedIMeta's: check MEDIMETA_RECORD "
                "(unset, it is MedIMeta's record) and MEDIMETA_BASE_URL."
            )
        merged.args = (merged.message,)
        return merged


#: How many of a wrong record's files an error names.
_HELD_SHOWN = 3


def said_once(
    failures: Sequence[tuple[str, MedimetaError]], *, expected: Collection[str] = ()
) -> list[MedimetaError]:
    """The errors of several datasets (``(dataset id, error)``), each one said once: errors of
    one kind with one hint whose messages differ only in the dataset's id become the first
    of them, naming the other ids; the archives a record lacks become one
    :class:`NotInRecordError` (:meth:`NotInRecordError.together` with the ``expected``
    archives)."""
    groups: dict[tuple[type, str, str], list[tuple[str, MedimetaError]]] = {}
    for dataset_id, error in failures:
        shape: tuple[type, str, str]
        if isinstance(error, NotInRecordError):
            shape = (type(error), error.hint, f"record {error.record_id}")
        else:
            shape = (
                type(error),
                error.hint.replace(dataset_id, "\0"),
                error.message.replace(dataset_id, "\0"),
            )
        groups.setdefault(shape, []).append((dataset_id, error))
    said: list[MedimetaError] = []
    for group in groups.values():
        first = group[0][1]
        if isinstance(first, NotInRecordError):
            errors = [e for _, e in group if isinstance(e, NotInRecordError)]
            said.append(NotInRecordError.together(errors, expected))
        elif len(group) == 1:
            said.append(first)
        else:
            # The same class (the same exit code), with every attribute of the first error.
            alike = type(first).__new__(type(first))
            alike.__dict__.update(first.__dict__)
            others = ", ".join(dataset_id for dataset_id, _ in group[1:])
            alike.message = f"{first.message} (and likewise {others})"
            alike.args = (alike.message,)
            # A hint naming the first id (`medimeta download crc`) names them all.
            alike.hint = first.hint.replace(group[0][0], " ".join(i for i, _ in group))
            said.append(alike)
    return said


class IntegrityError(MedimetaError):
    """Data on disk or on the wire does not match its checksum, size or structure."""

    default_hint = "Run `medimeta download --force ID` to fetch a fresh copy."


class LinkRefusedError(IntegrityError):
    """A path the tool keeps inside a data root is a symbolic link (or not the kind of entry
    it should be): it is never followed, so nothing outside the root is read or changed."""

    default_hint = (
        "Move it aside or delete it (deleting a link never touches what it points to), "
        "then run the command again."
    )


class DiskSpaceError(MedimetaError):
    """There is not enough free space for the operation."""

    default_hint = "Free some space, or point --root / MEDIMETA_HOME at a larger file system."


class LockTimeoutError(MedimetaError):
    """Another process held a lock for longer than we were willing to wait."""

    default_hint = "Wait for the other job to finish, or raise --lock-timeout."


class OfflineError(MedimetaError):
    """Offline mode is on and the request needs data that is not available locally."""

    default_hint = (
        "Run the command on a machine with internet access (or unset MEDIMETA_OFFLINE), "
        "or install archives fetched elsewhere with `medimeta download --from PATH`."
    )


class NotInstalledError(MedimetaError):
    """The command needs a dataset that is not installed in any data root."""

    def __init__(self, dataset_id: str, root: str) -> None:
        super().__init__(
            f"dataset {dataset_id!r} is not installed in {root}",
            hint=f"Run `medimeta download {dataset_id}` first.",
        )
        self.dataset_id = dataset_id


class PermissionDeniedError(MedimetaError):
    """The data root (or an output folder) cannot be written."""

    default_hint = "Choose a writable folder with --root or MEDIMETA_HOME."


class OutputExistsError(UsageError):
    """An output location already exists and would be overwritten."""

    default_hint = "Pass --overwrite to replace it, or choose another --out."


class MissingDependencyError(UsageError):
    """What was asked for needs an optional dependency that is not installed (an extra)."""

    default_hint = "Install the extra the message names."
