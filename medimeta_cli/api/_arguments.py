"""What every API function does with its arguments: checks them (a wrong type is a
:class:`~medimeta_cli.errors.UsageError` naming the argument, not a traceback deep in the
engine) and resolves the settings as the command line does."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from medimeta_cli.errors import UsageError

if TYPE_CHECKING:
    from medimeta_cli.catalog.datasets import Catalog
    from medimeta_cli.dataset.layouts import ArchiveLayout
    from medimeta_cli.settings import Settings


PathLike = str | os.PathLike[str]


def _settings(root: PathLike | None, **flags: Any) -> tuple[Settings, Catalog]:
    """The settings (flags given here win over the variables) and the catalog in use."""
    from medimeta_cli.catalog.file import load_catalog
    from medimeta_cli.settings import resolve_settings

    settings = resolve_settings({"root": root, **flags})
    return settings, load_catalog(settings.catalog)


def _misuse(name: str, value: object, wanted: str) -> UsageError:
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return UsageError(
        f"{name} must be {wanted}, not {type(value).__name__} {shown}",
        hint="See help(medimeta_cli.api) for the arguments each function takes.",
    )


def _check(name: str, value: object, kinds: tuple[type, ...], wanted: str) -> None:
    """Refuse an argument of the wrong type with a :class:`UsageError` (never a plain
    TypeError or AttributeError from deep inside); ``bool`` is no number here."""
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise _misuse(name, value, wanted)


def _count(name: str, value: object, *, optional: bool = False) -> None:
    """A positive whole number (or None when ``optional``)."""
    if optional and value is None:
        return
    _check(name, value, (int,), "a whole number of at least 1")
    assert isinstance(value, int)
    if value < 1:
        raise _misuse(name, value, "a whole number of at least 1")


def _flag(name: str, value: object, *, optional: bool = False) -> None:
    if not (optional and value is None):
        _check(name, value, (bool,), "True or False" + (" (or None)" if optional else ""))


def _root(root: object) -> None:
    if root is not None:
        _check("root", root, (str, os.PathLike), "a path (str or os.PathLike) or None")


def _ids(ids: str | Iterable[str] | None, name: str = "ids") -> list[str]:
    if ids is None:
        return []
    if isinstance(ids, str):
        return [ids]
    if isinstance(ids, bytes | bytearray) or not isinstance(ids, Iterable):
        raise _misuse(name, ids, "a dataset id (str) or several (a list of str)")
    found = list(ids)
    for item in found:
        if not isinstance(item, str):
            raise _misuse(name, item, "a dataset id (str) or several (a list of str)")
    return found


def _layout(layout: str | ArchiveLayout) -> ArchiveLayout:
    from medimeta_cli.dataset.layouts import ArchiveLayout

    if not isinstance(layout, str):  # an ArchiveLayout is a str too
        raise _misuse("layout", layout, "'full' or 'hdf5'")
    try:
        return ArchiveLayout(str(getattr(layout, "value", layout)).lower())
    except ValueError:
        choices = " or ".join(repr(choice.value) for choice in ArchiveLayout)
        raise UsageError(f"unknown layout {layout!r}", hint=f"Use {choices}.") from None
