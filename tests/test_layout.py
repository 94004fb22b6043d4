"""The package's shape: data flows one way, so no module imports another that imports it back."""
import ast
from pathlib import Path

import hotreload

PACKAGE = Path(hotreload.__file__).parent


def _imports(path: Path) -> set[str]:
    """The package's modules that ``path`` imports, at its top or inside a function; imports
    under ``if TYPE_CHECKING:`` are for type checkers only and never run."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.ImportFrom) and child.module == "hotreload":
                found.update(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and (child.module or "").startswith("hotreload."):
                found.add(child.module.split(".")[1])
            elif isinstance(child, ast.Import):
                found.update(a.name.split(".")[1] for a in child.names if a.name.startswith("hotreload."))
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    return found - {path.stem}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One import loop per module that is on one, as the modules along it."""
    found = []
    for start in sorted(graph):
        paths = [[start]]
        seen = set()
        while paths:
            path = paths.pop()
            for nxt in sorted(graph.get(path[-1], ())):
                if nxt == start:
                    found.append(path + [start])
                    paths = []
                    break
                if nxt not in seen:
                    seen.add(nxt)
                    paths.append(path + [nxt])
    return found


def test_the_cycle_finder_finds_a_loop_and_only_a_loop():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
    assert _cycles({"a": {"b"}, "b": {"a"}}) == [["a", "b", "a"], ["b", "a", "b"]]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}})[0] == ["a", "b", "c", "a"]


def test_no_two_modules_of_the_package_import_each_other_directly_or_in_a_loop():
    graph = {path.stem: _imports(path) for path in PACKAGE.glob("*.py")}
    assert "records" in graph["core"] and "core" not in graph["records"]  # the walk sees imports
    assert _cycles(graph) == []


def test_the_seam_modules_import_nothing_that_core_reloads_or_that_imports_core():
    graph = {path.stem: _imports(path) for path in PACKAGE.glob("*.py")}
    assert graph["states"] == set()
    assert "core" not in graph["records"] and "host" not in graph["records"]


def test_every_file_of_the_package_that_is_not_python_is_installed_with_it():
    """An editable install reads the source tree, so a file missing from ``package_data``
    would pass every test here and be absent from a real install (the Dockerfile's)."""
    import configparser

    setup = configparser.ConfigParser()
    setup.read(PACKAGE.parent / "setup.cfg")
    declared = set(setup["options.package_data"]["hotreload"].split())
    data = {p.name for p in PACKAGE.iterdir() if p.is_file() and p.suffix not in (".py", ".pyc")}
    assert data and data <= declared
