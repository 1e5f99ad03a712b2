"""Settings, resolved once per invocation: flag, then ``MEDIMETA_*`` variable, then default.

Nothing here reads the environment or touches the disk at import time; the CLI
calls :func:`resolve_settings` once and passes the result down.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medimeta_cli.catalog.datasets import RECORD_ID
from medimeta_cli.errors import ConfigError

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://zenodo.org"


def _default_root() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("medimeta", appauthor=False))


def _parse_bool(text: str) -> bool:
    folded = text.strip().lower()
    if folded in ("1", "true", "yes", "on"):
        return True
    if folded in ("", "0", "false", "no", "off"):
        return False
    raise ValueError("expected 1/0, true/false, yes/no or on/off")


def _parse_path(text: str) -> Path:
    if not text.strip():
        raise ValueError("expected a path")
    return Path(text).expanduser().absolute()


def _parse_path_list(text: str) -> tuple[Path, ...]:
    return tuple(_parse_path(part) for part in text.split(os.pathsep) if part.strip())


def _parse_url(text: str) -> str:
    url = text.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ValueError("expected an http:// or https:// URL")
    return url


def _positive(kind: Callable[[str], float | int]) -> Callable[[str], Any]:
    def parse(text: str) -> float | int:
        value = kind(text)
        if value <= 0:
            raise ValueError("expected a positive number")
        return value

    return parse


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError("expected a whole number >= 0")
    return value


@dataclass(frozen=True)
class SettingSpec:
    """How one setting is named, parsed and defaulted: the one place each default is written."""

    name: str
    env: str
    flag: str | None
    parse: Callable[[str], Any]
    default: Callable[[], Any]
    help: str


SPECS: tuple[SettingSpec, ...] = (
    SettingSpec(
        "root",
        "MEDIMETA_HOME",
        "--root",
        _parse_path,
        _default_root,
        "data root holding <root>/<id>/ datasets and the .medimeta/ state folder",
    ),
    SettingSpec(
        "shared_roots",
        "MEDIMETA_PATH",
        None,
        _parse_path_list,
        tuple,
        "extra data roots, read-only to the tool, searched after the data root",
    ),
    SettingSpec(
        "base_url",
        "MEDIMETA_BASE_URL",
        None,
        _parse_url,
        lambda: DEFAULT_BASE_URL,
        "Zenodo server (or a mirror speaking its API)",
    ),
    SettingSpec(
        "record_id",
        "MEDIMETA_RECORD",
        None,
        _positive(int),
        lambda: RECORD_ID,
        "Zenodo record holding the archives",
    ),
    SettingSpec(
        "catalog",
        "MEDIMETA_CATALOG",
        None,
        _parse_path,
        lambda: None,
        "catalog file to use instead of the bundled one (another release, a test mirror)",
    ),
    SettingSpec(
        "offline",
        "MEDIMETA_OFFLINE",
        "--offline",
        _parse_bool,
        lambda: False,
        "never touch the network",
    ),
    SettingSpec(
        "debug",
        "MEDIMETA_DEBUG",
        "--debug",
        _parse_bool,
        lambda: False,
        "show tracebacks and debug logs",
    ),
    SettingSpec(
        "timeout",
        "MEDIMETA_TIMEOUT",
        None,
        _positive(float),
        lambda: 30.0,
        "seconds to wait for the server before retrying",
    ),
    SettingSpec(
        "stall_seconds",
        "MEDIMETA_STALL_SECONDS",
        None,
        _positive(float),
        lambda: 60.0,
        "a transfer receiving under 1 KiB/s over this many seconds is cut and resumed",
    ),
    SettingSpec(
        "retries",
        "MEDIMETA_RETRIES",
        None,
        _non_negative_int,
        lambda: 8,
        "retries of a failing request before giving up",
    ),
    SettingSpec(
        "connections",
        "MEDIMETA_CONNECTIONS",
        "--connections",
        _positive(int),
        lambda: 8,
        "HTTP connections of one download run, shared by all datasets (1: one stream each)",
    ),
    SettingSpec(
        "locks",
        "MEDIMETA_LOCKS",
        None,
        _parse_bool,
        lambda: True,
        "use file locks (turn off where flock hangs; installs stay safe)",
    ),
    SettingSpec(
        "lock_timeout",
        "MEDIMETA_LOCK_TIMEOUT",
        "--lock-timeout",
        _positive(float),
        lambda: 6 * 3600.0,
        "seconds to wait for another job holding a dataset's lock",
    ),
    SettingSpec(
        "progress_interval",
        "MEDIMETA_PROGRESS_INTERVAL",
        None,
        _positive(float),
        lambda: 10.0,
        "without a terminal (job logs): seconds at least between progress lines, which also "
        "wait for 10% more progress",
    ),
)

_SPEC_BY_NAME = {spec.name: spec for spec in SPECS}


@dataclass(frozen=True)
class Settings:
    """Every setting of one invocation, and where each value came from.

    Built by :func:`resolve_settings`; the defaults are in :data:`SPECS`.
    """

    root: Path
    shared_roots: tuple[Path, ...]
    base_url: str
    record_id: int
    catalog: Path | None
    offline: bool
    debug: bool
    timeout: float
    stall_seconds: float
    retries: int
    connections: int
    locks: bool
    lock_timeout: float
    progress_interval: float
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)

    def root_origin(self) -> str:
        """Where the data root came from, briefly: ``--root``, ``MEDIMETA_HOME`` or
        ``the default``."""
        source = self.sources.get("root", "default")
        spec = _SPEC_BY_NAME["root"]
        if spec.flag and source.startswith(spec.flag):
            return spec.flag
        return spec.env if source.startswith(spec.env) else "the default"

    def describe(self) -> list[dict[str, Any]]:
        """Each setting with its value, its source and its variable, for ``medimeta paths``."""
        rows = []
        for spec in SPECS:
            value = getattr(self, spec.name)
            rows.append(
                {
                    "name": spec.name,
                    "value": _json_value(value),
                    "source": self.sources.get(spec.name, "default"),
                    "env": spec.env,
                    "help": spec.help,
                }
            )
        return rows


def _json_value(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return [_json_value(item) for item in value]
    return value


def resolve_settings(
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Resolve every setting: a flag given (not None) wins, then its variable, then the default.

    Raises :class:`ConfigError` naming the variable whose value cannot be parsed, and when
    the data root exists but is not a folder.
    """
    flags = flags or {}
    environ = os.environ if environ is None else environ
    unknown = set(flags) - set(_SPEC_BY_NAME)
    if unknown:
        raise ValueError(f"unknown settings: {', '.join(sorted(unknown))}")
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for spec in SPECS:
        flag_value = flags.get(spec.name)
        if flag_value is not None:
            values[spec.name] = _parse_path(str(flag_value)) if spec.name == "root" else flag_value
            sources[spec.name] = f"{spec.flag} flag" if spec.flag else "flag"
        elif environ.get(spec.env) not in (None, ""):
            raw = environ[spec.env]
            try:
                values[spec.name] = spec.parse(raw)
            except ValueError as exc:
                raise ConfigError(
                    f"{spec.env}={raw!r} is not valid: {exc}",
                    hint=f"Fix or unset {spec.env} ({spec.help}).",
                ) from exc
            sources[spec.name] = f"{spec.env} environment variable"
        else:
            values[spec.name] = spec.default()
            sources[spec.name] = "default"
        logger.debug("setting %s = %s (from %s)", spec.name, values[spec.name], sources[spec.name])
    _check_root(values["root"], sources["root"])
    return Settings(**values, sources=sources)


def _check_root(root: Path, source: str) -> None:
    """:class:`ConfigError` when the data root exists but is no folder (a file, a dangling
    link): every command would otherwise fail on it with a raw system message."""
    if os.path.lexists(root) and not os.path.isdir(root):
        what = "a dangling link" if os.path.islink(root) else "not a folder"
        raise ConfigError(
            f"the data root {root} (from the {source}) is {what}",
            hint="Point MEDIMETA_HOME (or --root) at a folder; a missing one is created.",
        )
