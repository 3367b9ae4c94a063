"""The packages depend one way (README "Layout", DESIGN.md "Layers"): every import under src/tagfer,
at module level or inside a function, points to a lower layer or stays inside its own package, and no
modules or packages import each other in a circle. Zero exceptions."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

#: Layer of each unit, bottom (0) to top. A unit is a package, except that the command-line modules
#: (cli.py, cli_common.py, demo.py and every <package>/commands.py) form the one ``cli`` unit on top.
LAYERS = {
    "core": 0,
    "data": 1,
    "metrics": 1,
    "au": 2,
    "models": 3,
    "pipeline": 3,
    "reasoning": 4,
    "training": 4,
    "evaluation": 4,
    "cli": 5,
}

#: au knows no dataset reader: the AU cache is built from records handed to it.
FORBIDDEN = {
    "au": (
        "tagfer.data.readers",
        "tagfer.data.reader_base",
        "tagfer.data.rafdb",
        "tagfer.data.ferplus",
        "tagfer.data.affectnet",
        "tagfer.data.imagefolder",
        "tagfer.data.synthetic",
    )
}


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def unit(module: str) -> str:
    """The layer unit of a ``tagfer`` module (see :data:`LAYERS`)."""
    parts = module.split(".")
    if module == "tagfer":
        return "core"  # the package's own __init__: the version string only
    if parts[1] in ("cli", "cli_common", "demo") or parts[-1] == "commands":
        return "cli"
    return parts[1]


def imports(path: Path, module: str, known: set[str]) -> list[tuple[int, str]]:
    """``(line, imported tagfer module)`` of every import statement in ``path`` (any depth)."""
    found = []
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # ``from pkg import submodule`` imports the submodule; ``from mod import name`` the module
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        found += [(node.lineno, name) for name in dict.fromkeys(names) if name == "tagfer" or name.startswith("tagfer.")]
    return found


def import_graph() -> tuple[dict[str, Path], dict[str, list[tuple[int, str]]]]:
    files = {module_name(path): path for path in sorted((SRC / "tagfer").rglob("*.py"))}
    known = set(files)
    graph = {}
    for module, path in files.items():
        edges = []
        for line, name in imports(path, module, known):
            target = name
            while target not in known:  # ``tagfer.core.config.ConfigError`` style names → their module
                target = target.rpartition(".")[0]
            edges.append((line, target))
        graph[module] = edges
    return files, graph


def cycles(nodes: list[str], edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node, or a node importing itself (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in edges.get(node, ()):
                found.append(sorted(component))

    for node in nodes:
        if node not in index:
            visit(node)
    return found


def test_every_module_has_a_layer():
    files, _ = import_graph()
    unknown = sorted(f"{files[m].relative_to(SRC)} (unit {unit(m)!r})" for m in files if unit(m) not in LAYERS)
    assert not unknown, "modules outside every layer; place their package in tests/test_layers.py LAYERS:\n" + "\n".join(unknown)


def test_imports_point_down():
    files, graph = import_graph()
    wrong = []
    for module, edges in graph.items():
        source = unit(module)
        for line, target in edges:
            to = unit(target)
            where = f"{files[module].relative_to(SRC)}:{line} imports {target}"
            if target in FORBIDDEN.get(source, ()):
                wrong.append(f"{where} ({source} knows no dataset reader)")
            elif to != source and LAYERS[to] >= LAYERS[source]:
                kind = "a sibling" if LAYERS[to] == LAYERS[source] else "an upper"
                wrong.append(f"{where} ({source}, layer {LAYERS[source]}, imports {kind} layer: {to}, layer {LAYERS[to]})")
    assert not wrong, "imports that do not point down:\n" + "\n".join(wrong)


def test_no_circles_between_modules_or_packages():
    files, graph = import_graph()
    module_edges = {m: {t for _, t in edges if t != m} for m, edges in graph.items()}
    units = defaultdict(set)
    for module, targets in module_edges.items():
        units[unit(module)] |= {unit(t) for t in targets} - {unit(module)}
    circles = [" → ".join(c) for c in cycles(sorted(module_edges), module_edges)]
    circles += ["packages " + " → ".join(c) for c in cycles(sorted(units), units)]
    assert not circles, "import circles:\n" + "\n".join(circles)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from tagfer.core.config import ConfigError\n", [(1, "tagfer.core.config")]),
        ("def f():\n    from tagfer.au import build\n", [(2, "tagfer.au.build")]),
        ("import tagfer\n", [(1, "tagfer")]),
        ("from .build import build_split\n", [(1, "tagfer.au.build")]),
        ("import numpy\n", []),
    ],
)
def test_imports_reads_module_and_function_level_imports(tmp_path, source, expected):
    path = tmp_path / "x.py"
    path.write_text(source)
    assert imports(path, "tagfer.au.cache", {"tagfer", "tagfer.au", "tagfer.au.build", "tagfer.au.cache"}) == expected


def test_cycles_finds_a_circle_and_only_it():
    assert cycles(["a", "b", "c"], {"a": {"b"}, "b": {"a", "c"}, "c": set()}) == [["a", "b"]]
    assert cycles(["a", "b"], {"a": {"b"}}) == []
