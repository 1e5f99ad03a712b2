"""The package's architecture: the core never loads the command-line toolkit, no module
imports one of a higher layer than its own (the map is the package docstring's), and no
modules import each other in a cycle, not even through imports inside functions."""

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
#: The package itself (its lazy ``ensure``) and ``python -m``: above every layer.
OUTSIDE_THE_MAP = ("medimeta_cli", "medimeta_cli.__main__")


def _modules() -> dict[str, Path]:
    """Every module of the package, by its dotted name, and its source file."""
    found: dict[str, Path] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        found[".".join(relative.parts).removesuffix(".__init__")] = path
    return found


def _core_modules() -> list[str]:
    return sorted(
        info.name
        for info in pkgutil.walk_packages([str(PACKAGE)], prefix="medimeta_cli.")
        if info.name != "medimeta_cli.__main__" and not info.name.startswith("medimeta_cli.cli")
    )


def _layer_map() -> dict[str, int]:
    """Name below the package (``store``, ``store.prune``) -> its layer, read from the
    package docstring: each line ``N  name name ...`` of its layer map, and the indented
    lines of names that continue it."""
    doc = medimeta_cli.__doc__ or ""
    block = doc.split("Layers, top to bottom.", 1)[1].split("::", 1)[1]
    layers: dict[str, int] = {}
    layer = None
    for line in block.splitlines():
        match = re.fullmatch(r"\s*(\d+)?\s+([a-z_. ]+?)\s*", line)
        if match is None:
            continue
        if match.group(1) is not None:
            layer = int(match.group(1))
        assert layer is not None, f"names before the first layer: {line!r}"
        for name in match.group(2).split():
            assert name not in layers, f"{name} is named twice in the layer map"
            layers[name] = layer
    return layers


def _entry(module: str, layers: dict[str, int]) -> str | None:
    """The longest name of the map that ``module`` is or lies below."""
    relative = module.removeprefix("medimeta_cli.")
    parts = relative.split(".")
    for end in range(len(parts), 0, -1):
        name = ".".join(parts[:end])
        if name in layers:
            return name
    return None


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules a source file imports, at any depth of its code (inside
    functions and ``TYPE_CHECKING`` blocks too). ``from a import b`` imports module
    ``a.b`` when there is one, else module ``a``."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] != "medimeta_cli":
                continue
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if submodule in modules else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "medimeta_cli")
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {
        name: {m for m in _imports(path, modules) if m in modules and m != name}
        for name, path in modules.items()
    }


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm,
    iterative: no recursion limit to think about)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
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


def test_the_layer_map_places_every_module_and_names_only_real_ones() -> None:
    layers = _layer_map()
    modules = [m for m in _modules() if m not in OUTSIDE_THE_MAP]
    unplaced = [m for m in modules if _entry(m, layers) is None]
    assert unplaced == [], "modules missing from the layer map"
    used = {_entry(m, layers) for m in modules}
    assert set(layers) - used == set(), "the layer map names modules that do not exist"


def test_no_module_imports_a_higher_layer() -> None:
    layers = _layer_map()
    wrong = []
    for module, imported in sorted(_graph().items()):
        if module in OUTSIDE_THE_MAP:
            continue
        own = layers[_entry(module, layers) or ""]
        for other in sorted(imported):
            if other in OUTSIDE_THE_MAP:
                wrong.append(f"{module} imports the package root {other}")
                continue
            theirs = layers[_entry(other, layers) or ""]
            if theirs > own:
                wrong.append(f"{module} (layer {own}) imports {other} (layer {theirs})")
    assert wrong == []


def test_no_modules_import_each_other_in_a_cycle() -> None:
    assert _cycles(_graph()) == []


def test_the_cycle_check_finds_a_cycle_through_a_function_level_import(
    tmp_path: Path,
) -> None:
    """The check itself: a cycle hidden in a function body is still a cycle."""
    first = tmp_path / "first.py"
    first.write_text("from medimeta_cli.second import x\n", encoding="utf-8")
    second = tmp_path / "second.py"
    second.write_text("def f():\n    from medimeta_cli.first import y\n", encoding="utf-8")
    third = tmp_path / "third.py"
    third.write_text("import medimeta_cli.first\n", encoding="utf-8")
    modules = {f"medimeta_cli.{p.stem}": p for p in (first, second, third)}
    graph = {name: _imports(path, modules) - {name} for name, path in modules.items()}
    assert _cycles(graph) == [["medimeta_cli.first", "medimeta_cli.second"]]
