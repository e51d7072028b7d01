"""The package's shape, checked: floors that import only downwards, no import cycle (imports
inside functions count), modules a newcomer reads in one sitting, pytest only in the glue.

docs/ARCHITECTURE.md describes the floors; this test is what keeps that description true.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest_llmperf

PACKAGE = Path(pytest_llmperf.__file__).parent
ROOT = "pytest_llmperf"

#: the floors, bottom up: a module may import its own floor and those below
FLOORS: tuple[tuple[str, ...], ...] = (
    ("errors", "paths", "fileio", "options", "signals"),
    ("native",),
    ("model", "api"),
    ("verdict", "baseline"),
    ("machine", "sweep"),
    ("backends",),
    ("session",),
    ("outputs",),
    ("plugin", "cli"),
)
#: the largest module, in lines
MAX_LINES = 700


def _modules() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = _modules()


def _resolve(name: str) -> str:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    """Every module of the package that ``path`` imports, anywhere in it."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] != ROOT:
                continue
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                yield node.lineno, full if full in MODULES else _resolve(node.module)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == ROOT:
                    yield node.lineno, _resolve(alias.name)


def _graph() -> dict[str, set[str]]:
    return {
        name: {target for _line, target in _imports(path) if target != name}
        for name, path in MODULES.items()
    }


def _floor(module: str) -> int | None:
    parts = module.split(".")
    if len(parts) < 2:
        return None  # the package itself: the public API, re-exports
    for level, names in enumerate(FLOORS):
        if parts[1] in names:
            return level
    raise AssertionError(f"{module}: on no floor; add it to FLOORS and docs/ARCHITECTURE.md")


def test_every_module_is_on_a_floor_and_imports_only_downwards() -> None:
    wrong = []
    for name, path in sorted(MODULES.items()):
        mine = _floor(name)
        if mine is None:
            continue
        for line, target in _imports(path):
            theirs = _floor(target)
            if theirs is not None and theirs > mine:
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {target}")
    assert not wrong, "imports that point up a floor:\n" + "\n".join(wrong)


def test_no_import_cycle() -> None:
    graph = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_modules_are_read_in_one_sitting() -> None:
    long = {
        str(p.relative_to(PACKAGE.parent)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_only_the_glue_imports_pytest() -> None:
    """The core is pure: pytest appears only in plugin/ (and lazily in api.configs, which
    returns pytest.param values)."""
    allowed = {"pytest_llmperf.api"}
    found = []
    for name, path in MODULES.items():
        if name.startswith(f"{ROOT}.plugin") or name in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import) and any(a.name == "pytest" for a in node.names):
                found.append(name)
            if isinstance(node, ast.ImportFrom) and node.module == "pytest":
                found.append(name)
    assert not found, f"modules outside the glue importing pytest: {sorted(set(found))}"
