"""Layout rules checked on the file tree: packages hold code only, results live in ``results/``, and the
validation package's imports point one way.

Cheap checks (a directory walk and an AST parse, no imports of the project): they fail when a result file or
a results folder lands inside an importable package again, when a module imports a script of ``results/``, or
when ``validation/`` grows an import circle or a function-level import of a project module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("zotheory", "llm", "validation", "problems")
PROJECT = set(PACKAGES)
#: What a package may hold: Python source (and the PEP 561 marker). Caches are not part of the tree.
CODE_SUFFIXES = {".py", ".pyi"}
CODE_NAMES = {"py.typed"}
RESULT_DIR_NAMES = {"results", "runs", "outputs", "out", "report", "validation_report"}


def non_code_files(package: str, root: Path = ROOT) -> list[str]:
    """Files of ``package`` that are not Python source, relative to ``root`` (caches skipped)."""
    files = [p for p in (root / package).rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    return sorted(
        p.relative_to(root).as_posix() for p in files if p.suffix not in CODE_SUFFIXES and p.name not in CODE_NAMES
    )


def results_like_dirs(package: str, root: Path = ROOT) -> list[str]:
    """Folders of ``package`` whose name says they hold run outputs, relative to ``root``."""
    dirs = [p for p in (root / package).rglob("*") if p.is_dir() and p.name in RESULT_DIR_NAMES]
    return sorted(p.relative_to(root).as_posix() for p in dirs)


@pytest.mark.parametrize("package", PACKAGES)
def test_package_holds_code_only(package):
    assert (ROOT / package / "__init__.py").is_file(), f"{package} is not a package at {ROOT}"
    assert non_code_files(package) == [], f"non-code files inside {package}/: move them under results/"
    assert results_like_dirs(package) == [], f"results folders inside {package}/: move them under results/"


def test_the_checks_see_a_result_file(tmp_path):
    """The two finders flag an artefact in a results folder of a package (so an empty list above means something)."""
    (tmp_path / "pkg" / "results" / "run").mkdir(parents=True)
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "results" / "run" / "curves.png").write_bytes(b"\x89PNG")
    (tmp_path / "pkg" / "results" / "run" / "make.py").write_text("")
    assert non_code_files("pkg", tmp_path) == ["pkg/results/run/curves.png"]
    assert results_like_dirs("pkg", tmp_path) == ["pkg/results"]


def test_results_tree_is_not_a_package_and_nothing_imports_it():
    results = ROOT / "results"
    assert results.is_dir()
    assert not list(results.rglob("__init__.py")), "results/ holds outputs and their scripts, not a package"
    importers = []
    for folder in (*PACKAGES, "tests", "benchmarks", "examples", "scripts", "results"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names = [node.module]
                if any(n == "results" or n.startswith("results.") for n in names):
                    importers.append(str(path.relative_to(ROOT)))
    assert importers == []


def _validation_imports(path: Path) -> tuple[set[str], list[str]]:
    """Top-level imports of ``validation.*`` modules of one file, and every function-level project import."""
    tree = ast.parse(path.read_text(), filename=str(path))
    top: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            top |= {a.name for a in node.names if a.name.split(".")[0] == "validation"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "validation":
            # ``from validation import x`` imports the package (and x, when x is a submodule)
            top |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    nested = []
    for fn in ast.walk(tree):
        if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            for inner in ast.walk(fn):
                if isinstance(inner, ast.Import):
                    names = [a.name for a in inner.names]
                elif isinstance(inner, ast.ImportFrom):
                    names = [inner.module or ""]
                else:
                    continue
                if any(n.split(".")[0] in PROJECT for n in names):
                    nested.append(f"{path.name}:{inner.lineno}")
    return top, nested


def _validation_graph() -> tuple[dict[str, set[str]], list[str]]:
    modules = {p.stem: p for p in (ROOT / "validation").glob("*.py")}
    names = {("validation" if s == "__init__" else f"validation.{s}"): p for s, p in modules.items()}
    graph, nested = {}, []
    for name, path in names.items():
        top, inner = _validation_imports(path)
        graph[name] = {t for t in top if t in names and t != name}
        nested += inner
    return graph, nested


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle of ``graph`` (module -> modules it imports), or [] when it is acyclic."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        path.pop()
        return []

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return []


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_validation_imports_point_one_way():
    graph, nested = _validation_graph()
    assert find_cycle(graph) == []
    assert nested == [], "function-level imports of project modules in validation/*.py"
    # the agreed direction: __main__ -> report -> runner -> plots; plotting never reaches back
    assert "validation.runner" in graph["validation.report"]
    assert "validation.plots" in graph["validation.runner"]
    assert not graph["validation.runner"] & {"validation.report", "validation.__main__"}
    assert not graph["validation.plots"] & {"validation.report", "validation.runner", "validation.__main__"}
