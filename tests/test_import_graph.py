"""The packages' imports run one way: no module of ``zotheory`` imports another inside a function (a lazy import
that hides a cycle), and the module-level imports between its modules form no cycle. The same for ``llm``, whose
one deliberate lazy import is ``llm.finetune`` loading the training loop (and torch) only after parsing."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "zotheory"
LLM = PACKAGE.parent / "llm"
LLM_LAZY = {"llm/finetune.py"}  # --help and bad flags answer without loading torch


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(node: ast.Import | ast.ImportFrom, modules: set[str]) -> set[str]:
    """The package's modules one import statement loads (``from a import b`` counts ``a.b`` if it is a module)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        names = [base] + [f"{base}.{alias.name}" for alias in node.names]
    return {n for n in names if n in modules}


def import_graph(package: Path = PACKAGE) -> tuple[dict[str, set[str]], list[str]]:
    """``module -> modules of package it imports at module level`` and the function-level imports of the package's
    or zotheory's modules, as ``file:line``."""
    files = {module_name(p): p for p in sorted(package.rglob("*.py"))}
    modules = set(files)
    project = modules | {module_name(p) for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    nested: list[str] = []
    for name, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for stmt in tree.body:
            if isinstance(stmt, (ast.Import, ast.ImportFrom)):
                graph[name] |= imported_modules(stmt, modules) - {name}
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for inner in ast.walk(fn):
                    if isinstance(inner, (ast.Import, ast.ImportFrom)) and imported_modules(inner, project):
                        nested.append(f"{path.relative_to(PACKAGE.parent)}:{inner.lineno}")
    return graph, nested


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of modules (first = last), or ``None``."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return stack[stack.index(n) :] + [n]
            if n not in state and (found := visit(n)) is not None:
                return found
        state[m] = 2
        stack.pop()
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)) is not None:
            return found
    return None


def test_no_function_level_imports_of_the_package() -> None:
    _, nested = import_graph()
    assert nested == []


def test_module_imports_form_no_cycle() -> None:
    graph, _ = import_graph()
    assert "zotheory.optim.registry" in graph["zotheory.optim"]  # the graph is read (a guard on the reader itself)
    assert find_cycle(graph) is None


def test_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_llm_imports_its_modules_at_module_level_except_the_cli_parse() -> None:
    _, nested = import_graph(LLM)
    assert nested  # finetune's deliberate lazy import is seen (a guard on the reader)
    assert {n.split(":")[0] for n in nested} == LLM_LAZY


def test_llm_module_imports_form_no_cycle() -> None:
    graph, _ = import_graph(LLM)
    assert "llm.methods" in graph["llm.run"]  # the graph is read (a guard on the reader itself)
    assert find_cycle(graph) is None


#: The arrows ``docs/CONTRIBUTING.md`` forbids: package -> packages it must never import (at any level).
FORBIDDEN = {
    "zotheory": {"problems", "validation", "llm"},
    "problems": {"validation", "llm"},
    "validation": {"llm"},
}


def forbidden_imports(root: Path = PACKAGE.parent) -> list[str]:
    """``file:line -> package`` for every import (module or function level) of a package its layer must not see."""
    found = []
    for package, banned in FORBIDDEN.items():
        for path in sorted((root / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    tops = {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    tops = {node.module.split(".")[0]}
                else:
                    continue
                found += [f"{path.relative_to(root)}:{node.lineno} -> {top}" for top in sorted(tops & banned)]
    return found


def test_package_arrows_point_one_way() -> None:
    assert forbidden_imports() == []


def test_forbidden_import_finder_sees_a_bad_arrow(tmp_path: Path) -> None:
    for package in FORBIDDEN:
        (tmp_path / package).mkdir()
    (tmp_path / "problems" / "bad.py").write_text("def f():\n    from validation.core import claim\n")
    assert forbidden_imports(tmp_path) == ["problems/bad.py:2 -> validation"]
