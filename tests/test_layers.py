"""The package's layering: the core never loads the command-line toolkit, and no module
imports one of a higher layer than its own (the map is the package docstring's)."""

from __future__ import annotations

import ast
import json
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import medimeta_cli

PACKAGE = Path(medimeta_cli.__file__).resolve().parent
TOOLKIT = ("typer", "rich", "click")


def _modules() -> list[str]:
    """Every module of the package, by its dotted name."""
    return sorted(
        info.name
        for info in pkgutil.walk_packages([str(PACKAGE)], prefix="medimeta_cli.")
        if info.name != "medimeta_cli.__main__"
    )


def _core_modules() -> list[str]:
    return [name for name in _modules() if not name.startswith("medimeta_cli.cli")]


def _layers() -> dict[str, int]:
    """Top-level module or package name -> its layer, read from the package docstring:
    each line ``N  name name ...`` of its layer map."""
    doc = medimeta_cli.__doc__ or ""
    block = doc.split("Layers", 1)[1]
    layers: dict[str, int] = {}
    for line in block.splitlines():
        match = re.fullmatch(r"\s*(\d+)\s+(.+?)\s*", line)
        if match:
            for name in match.group(2).split():
                layers[name] = int(match.group(1))
    return layers


def _top(module: str) -> str:
    """``medimeta_cli.export.npy`` -> ``export``."""
    return module.split(".")[1] if module.count(".") else ""


def _imports(path: Path) -> set[str]:
    """The ``medimeta_cli`` modules a source file imports, at any depth in its code."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.startswith("medimeta_cli."):
                found.add(node.module)
            elif node.module == "medimeta_cli":  # modules, not names such as __version__
                found.update(
                    f"medimeta_cli.{alias.name}"
                    for alias in node.names
                    if (PACKAGE / f"{alias.name}.py").is_file() or (PACKAGE / alias.name).is_dir()
                )
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("medimeta_cli."))
    return found


def test_importing_the_core_loads_no_command_line_toolkit() -> None:
    # httpx imports its own command line (click, rich) when click happens to be installed;
    # that is httpx's doing, not ours, so a stand-in for it keeps the check about our code.
    code = (
        "import importlib, json, sys, types\n"
        "stand_in = types.ModuleType('httpx._main')\n"
        "stand_in.main = lambda: None\n"
        "sys.modules['httpx._main'] = stand_in\n"
        f"for name in {_core_modules()!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & {set(TOOLKIT)!r})))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert json.loads(result.stdout) == []


def test_the_layer_map_names_every_module() -> None:
    layers = _layers()
    tops = {_top(name) for name in _modules()} - {"", "__main__"}
    assert tops - set(layers) == set(), "modules missing from the layer map"
    assert set(layers) - tops == set(), "the layer map names modules that do not exist"


def test_no_module_imports_a_higher_layer() -> None:
    layers = _layers()
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        module = ".".join(relative.parts).removesuffix(".__init__")
        if _top(module) in ("", "__main__"):
            continue
        own = layers[_top(module)]
        for imported in _imports(path):
            if _top(imported) and layers[_top(imported)] > own:
                wrong.append(f"{module} (layer {own}) imports {imported}")
    assert wrong == []
