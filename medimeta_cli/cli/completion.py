"""Shell completion scripts for ``medimeta``, generated from the app.

Regenerate the shipped copies with ``python -m medimeta_cli.cli.completion completions``.
"""

from __future__ import annotations

import sys
from pathlib import Path

# typer.completion re-exports this without listing it in __all__.
from typer.completion import get_completion_script  # type: ignore[attr-defined]

PROG_NAME = "medimeta"
COMPLETE_VAR = "_MEDIMETA_COMPLETE"

#: Shell -> file name, as each shell's completion loader expects it.
FILES: dict[str, str] = {"bash": "medimeta.bash", "zsh": "_medimeta", "fish": "medimeta.fish"}


def completion_script(shell: str) -> str:
    """The completion script for one shell (bash, zsh or fish)."""
    return get_completion_script(prog_name=PROG_NAME, complete_var=COMPLETE_VAR, shell=shell) + "\n"


def write_scripts(folder: Path) -> list[Path]:
    """Write every shell's script into ``folder``; return the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for shell, name in FILES.items():
        path = folder / name
        path.write_text(completion_script(shell), encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    write_scripts(Path(sys.argv[1] if len(sys.argv) > 1 else "completions"))
