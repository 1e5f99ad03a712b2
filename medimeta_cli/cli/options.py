"""Options shared by several commands, declared once.

Every command accepts the common options after its name (``medimeta list --json
--root DIR``), which is how shell scripts write them, and before it (``medimeta --root
DIR list``), where the root callback (:func:`with_global_options`) takes them. Commands
do not declare them one by one: :func:`with_common_options` adds them to a command's
signature and hands the command their values as one :class:`CommonOptions`, which the
command opens its session with::

    @with_common_options()
    def paths_command(common: CommonOptions) -> None:
        with session(common) as s:
            ...

The values are merged in one place (:func:`with_common_options`): the root callback
stores the options given before the command in the click context, and the command's own
values (after its name) win over them.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Annotated, Any, Concatenate, ParamSpec, cast

import typer

from medimeta_cli.catalog.datasets import TaskTarget

P = ParamSpec("P")

#: Key of the click context's ``meta`` under which the root callback stores the common
#: options given before the command name.
GIVEN_BEFORE_COMMAND = "medimeta_cli.common_options"


def complete_dataset_id(incomplete: str) -> list[str]:
    """Shell completion for dataset ids."""
    from medimeta_cli.catalog.file import load_catalog

    return [i for i in load_catalog().ids if i.startswith(incomplete.lower())]


def complete_domain(incomplete: str) -> list[str]:
    """Shell completion for --domain: aliases and dataset ids (domains contain spaces)."""
    from medimeta_cli.catalog.datasets import DOMAIN_ALIASES
    from medimeta_cli.catalog.file import load_catalog

    names = [*DOMAIN_ALIASES, *(d.lower().replace(" ", "-") for d in load_catalog().domains)]
    return [name for name in names if name.startswith(incomplete.lower())]


def split_commas(values: list[str] | None) -> list[str] | None:
    """``["a,b", "c"]`` -> ``["a", "b", "c"]``: a list option's values, repeated or
    comma-separated (``--domain a,b`` as ``--split a,b``); None stays None."""
    if values is None:
        return None
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


RootOption = Annotated[
    Path | None,
    typer.Option(
        "--root",
        help="Data root [env: MEDIMETA_HOME; default: the user cache folder].",
        show_default=False,
        file_okay=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]
QuietOption = Annotated[
    bool, typer.Option("--quiet", "-q", help="Print nothing on stderr but errors.")
]
DebugOption = Annotated[
    bool,
    typer.Option("--debug", help="Show tracebacks and debug logs [env: MEDIMETA_DEBUG]."),
]
OfflineOption = Annotated[
    bool,
    typer.Option(
        "--offline",
        help="Never touch the network [env: MEDIMETA_OFFLINE] (no effect on commands "
        "that never do).",
    ),
]
DomainOption = Annotated[
    list[str] | None,
    typer.Option(
        "--domain",
        "-d",
        help="Domain, alias (ophthalmology, radiology, dermatology, pathology, ...) or "
        "dataset id; repeat or comma-separate for several.",
        autocompletion=complete_domain,
        callback=split_commas,
        show_default=False,
    ),
]
TaskTypeOption = Annotated[
    list[TaskTarget] | None,
    typer.Option(
        "--task-type",
        "-t",
        help="Only datasets with a task of this type; repeat for several.",
        case_sensitive=False,
        show_default=False,
    ),
]
DatasetArgument = Annotated[
    str, typer.Argument(help="Dataset id, e.g. crc.", autocompletion=complete_dataset_id)
]
DatasetIdsArgument = Annotated[
    list[str] | None,
    typer.Argument(
        help="Dataset ids, e.g. crc cxr.", autocompletion=complete_dataset_id, show_default=False
    ),
]
AllOption = Annotated[bool, typer.Option("--all", help="Every dataset of MedIMeta.")]
SourcesForOption = Annotated[
    str | None,
    typer.Option(
        "--sources-for",
        metavar="TARGET",
        help="The meta-training sources of a cross-domain target: the first task of every "
        "dataset except TARGET and the datasets its info.yaml names as overlapping.",
        autocompletion=complete_dataset_id,
        show_default=False,
    ),
]
AllTasksOption = Annotated[
    bool,
    typer.Option("--all-tasks", help="With --sources-for: every task of each source dataset."),
]
JobsOption = Annotated[
    int,
    typer.Option("--jobs", "-j", min=1, max=16, help="Datasets to download at once."),
]
LockTimeoutOption = Annotated[
    float | None,
    typer.Option(
        "--lock-timeout",
        min=0,
        help="Seconds to wait for another job holding a dataset "
        "[env: MEDIMETA_LOCK_TIMEOUT; default: 21600, 6 hours] (no effect on commands "
        "that take no lock).",
        show_default=False,
    ),
]
TaskOption = Annotated[
    str | None,
    typer.Option(
        "--task",
        help="Task name (case-insensitive, or a unique beginning); needed when the dataset "
        "has several.",
        show_default=False,
    ),
]
OriginalSplitOption = Annotated[
    bool,
    typer.Option(
        "--original-split",
        help="Use the source datasets' own splits (original_splits/) instead of MedIMeta's.",
    ),
]
ClassesOption = Annotated[
    list[str] | None,
    typer.Option(
        "--classes",
        help="Only these classes: label names or keys, repeated or comma-separated.",
        show_default=False,
    ),
]
SeedOption = Annotated[int, typer.Option("--seed", help="Seed of every random choice.")]


@dataclass(frozen=True)
class CommonOptions:
    """The common options as given on one command line.

    Off and None mean "not given", so the matching ``MEDIMETA_*`` variable can still
    turn a setting on.
    """

    root: Path | None = None
    json: bool = False
    quiet: bool = False
    debug: bool = False
    offline: bool = False
    lock_timeout: float | None = None

    def setting_flags(self) -> dict[str, Any]:
        """The flags :func:`medimeta_cli.settings.resolve_settings` takes (None: not given)."""
        return {
            "root": self.root,
            "offline": self.offline or None,
            "debug": self.debug or None,
            "lock_timeout": self.lock_timeout,
        }


#: The common options, declared once: the :class:`CommonOptions` field each fills, its
#: option, and its value when not given. Every command and the root take every one of
#: them, in this order (the order ``--help`` lists them).
COMMON_OPTIONS: tuple[tuple[str, Any, Any], ...] = (
    ("lock_timeout", LockTimeoutOption, None),
    ("offline", OfflineOption, False),
    ("root", RootOption, None),
    ("json", JsonOption, False),
    ("quiet", QuietOption, False),
    ("debug", DebugOption, False),
)


def common_parameters() -> list[inspect.Parameter]:
    """The common options (:data:`COMMON_OPTIONS`) as function parameters.

    Every command takes every common option, after its name as before it, so a script
    can put them anywhere. One that a command has no use for is accepted and changes
    nothing (``list --offline`` never touches the network anyway; ``--lock-timeout``
    waits only where a command takes a dataset's lock): the rule is the same for every
    command and option, and no command line fails for where it put an option.
    """
    return [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=kind)
        for name, kind, default in COMMON_OPTIONS
    ]


def merge_common(before: CommonOptions | None, after: CommonOptions) -> CommonOptions:
    """The options given before the command name, overridden by those given after it.

    Off and None are "not given" (no common option has an ``--no-`` form), so a value
    given after the command wins and one given only before it is kept.
    """
    if before is None:
        return after
    values = {
        name: before_value if after_value is None or after_value is False else after_value
        for name, before_value, after_value in (
            (field.name, getattr(before, field.name), getattr(after, field.name))
            for field in fields(CommonOptions)
        )
    }
    return CommonOptions(**values)


def _given_before_command(context: typer.Context | None) -> CommonOptions | None:
    """The common options the root callback stored for this command line, if any."""
    if context is None:  # called as a plain function (tests, embedding)
        return None
    found = context.meta.get(GIVEN_BEFORE_COMMAND)
    return found if isinstance(found, CommonOptions) else None


#: The parameter through which Typer hands a command its click context (a parameter
#: annotated with ``typer.Context`` is filled in, never parsed from the command line).
_CONTEXT = inspect.Parameter(
    "medimeta_context", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=typer.Context
)


def with_global_options(function: Callable[..., None]) -> Callable[..., None]:
    """Add every common option to the root callback ``function(ctx, **own)``.

    The returned callback stores their values in the click context (shared with the
    command's context) for :func:`with_common_options` to merge, then calls ``function``
    with its own parameters.
    """
    added = common_parameters()
    names = [parameter.name for parameter in added]
    own = list(inspect.signature(function, eval_str=True).parameters.values())

    @functools.wraps(function)
    def callback(ctx: typer.Context, **values: Any) -> None:
        ctx.meta[GIVEN_BEFORE_COMMAND] = CommonOptions(**{n: values.pop(n) for n in names})
        function(ctx, **values)

    signature = inspect.Signature([*own, *added], return_annotation=None)
    callback.__signature__ = signature  # type: ignore[attr-defined]
    callback.__annotations__ = {p.name: p.annotation for p in signature.parameters.values()}
    return callback


def with_common_options(
    *,
    always_json: bool = False,
) -> Callable[[Callable[Concatenate[CommonOptions, P], None]], Callable[..., None]]:
    """Add the common options to a command whose first parameter takes a :class:`CommonOptions`.

    The returned command has the function's own parameters followed by the common
    options (that is what Typer reads for ``--help`` and parsing); it collects their
    values, merges those given before the command name (:func:`merge_common`), and calls
    the function with them first. ``always_json`` is for a command whose result is JSON
    whatever ``--json`` says.
    """
    added = common_parameters()
    names = [parameter.name for parameter in added]
    unset = {name: default for name, _, default in COMMON_OPTIONS}

    def decorate(function: Callable[Concatenate[CommonOptions, P], None]) -> Callable[..., None]:
        # Typer reads the signature with its annotations evaluated; the command modules
        # postpone annotations, so they are evaluated here, in the command's own module.
        first, *own = inspect.signature(function, eval_str=True).parameters.values()
        if first.annotation is not CommonOptions:
            raise TypeError(f"{function.__name__}: the first parameter must take CommonOptions")
        clash = sorted({parameter.name for parameter in own} & set(names))
        if clash:
            raise TypeError(f"{function.__name__} declares common options itself: {clash}")
        body = cast(Callable[..., None], function)

        @functools.wraps(function)
        def command(medimeta_context: typer.Context | None = None, **values: Any) -> None:
            # A plain call (tests, embedding) may leave options out: not given.
            after = CommonOptions(**{name: values.pop(name, unset[name]) for name in names})
            common = merge_common(_given_before_command(medimeta_context), after)
            body(replace(common, json=True) if always_json else common, **values)

        signature = inspect.Signature([*own, *added, _CONTEXT], return_annotation=None)
        command.__signature__ = signature  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in signature.parameters.values()}
        return command

    return decorate
