"""The commit rule: nothing becomes visible unless every installed byte derives from checked bytes.

Every install (a downloaded archive, a members folder, a ``--from`` archive or folder)
ends in the same commit (:meth:`Installer.install_folder`), and the commit takes a
:class:`Proof`: what the check of its mode covered. Code that did not check cannot make
one of its own kind, and without one nothing commits.

- ``md5``: the archive's md5 matches the record, over every byte the install read:
  members, local headers and the central directory extraction used. For an archive file
  that is the file itself; for a streamed install, the directory read ahead by range
  requests was compared with the same bytes of the hashed stream, and each local header
  in the stream with the directory entry it belongs to. The md5 may still be being
  computed when extraction ends: the commit waits for it (:meth:`Proof.confirm`).
- ``members``: the hdf5 layout (no md5 possible): every member's size and CRC-32 match
  the central directory, and so does its local header (name, method, sizes, CRC-32).
- ``local``: a ``--from`` archive the record does not list, hashed as it was installed.
- ``folder``: a ``--from`` dataset folder, every file hashed as it was copied.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from medimeta_cli.store.records import ArchiveCheck


class InstallResult(str, Enum):
    """How an install ended when it did not fail."""

    INSTALLED = "installed"
    BY_ANOTHER_JOB = "installed by another job"  # possible only where locks do not work


class _Once:
    """A check run at most once (from any thread); later calls raise what it raised."""

    def __init__(self, check: Callable[[], object]) -> None:
        self._check = check
        self._lock = threading.Lock()
        self._outcome: list[BaseException | None] = []

    def __call__(self) -> None:
        with self._lock:
            if not self._outcome:
                try:
                    self._check()
                    self._outcome.append(None)
                except BaseException as exc:  # raised again to every caller
                    self._outcome.append(exc)
        if self._outcome[0] is not None:
            raise self._outcome[0]


def _nothing() -> None:
    """A check already done."""


@dataclass(frozen=True)
class Proof:
    """What the check of an install's mode covered; the commit requires one.

    Made only by the class methods below, each naming what was checked.
    """

    check: ArchiveCheck
    #: What the check covered, in words (for logs and errors).
    covers: str
    _confirm: Callable[[], None] = field(default=_nothing, repr=False)

    @classmethod
    def md5(cls, covers: str, pending: Callable[[], object] | None = None) -> Proof:
        """The archive's md5 matched the record; ``pending`` (run once, whoever asks
        first) when it is still being computed and raises if it does not match."""
        return cls(ArchiveCheck.MD5, covers, _Once(pending) if pending else _nothing)

    @classmethod
    def members(cls, covers: str) -> Proof:
        """Every member and its local header agree with the central directory."""
        return cls(ArchiveCheck.MEMBERS, covers)

    @classmethod
    def local_archive(cls, covers: str) -> Proof:
        """A local archive the record does not list, hashed as it was installed."""
        return cls(ArchiveCheck.LOCAL, covers)

    @classmethod
    def folder(cls, covers: str) -> Proof:
        """A dataset folder, every file hashed as it was copied."""
        return cls(ArchiveCheck.FOLDER, covers)

    def confirm(self) -> None:
        """Return once the check holds; :class:`~medimeta_cli.errors.IntegrityError` if it
        does not (a pending md5 that does not match)."""
        self._confirm()


def commit_rule(proof: Proof) -> ArchiveCheck:
    """The one rule before anything becomes visible: the proof of the install's mode must
    hold. Waits for a pending md5; raises what its check raises; returns what was checked
    (for the install record)."""
    if not isinstance(proof, Proof):  # a code path without a check cannot commit
        raise TypeError(f"an install commits only with a Proof, not {type(proof).__name__}")
    proof.confirm()
    return proof.check
