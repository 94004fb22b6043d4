"""Discovery, the import graph, and importing/reloading with rollback, in-process."""
import ast
import importlib
import sys
import uuid
from pathlib import Path

import pytest

from hotreload import loader
from hotreload.filters import SourceFilter
from hotreload.log import format_error
from hotreload.settings import Settings


def imports(source: str, module: str = "pkg.w", is_package: bool = False) -> set:
    return set(loader.imports_of(ast.parse(source), module, is_package, "pkg"))


def test_imports_of_sees_relative_absolute_and_nested_imports():
    source = """
from . import _a
from ._b import thing
import pkg._c
import json
from pkg import _d as d
def later():
    from .sub import e
"""
    assert imports(source) == {
        "pkg", "pkg._a", "pkg._b", "pkg._b.thing", "pkg._c", "pkg._d", "pkg.sub", "pkg.sub.e",
    }


def test_imports_of_finds_imports_in_every_kind_of_block():
    source = """
class K:
    import pkg.a
try:
    import pkg.b
except ImportError:
    import pkg.c
else:
    import pkg.d
finally:
    import pkg.e
for _ in ():
    pass
else:
    import pkg.f
with open(__file__):
    while True:
        if True:
            import pkg.g
        else:
            import pkg.h
async def run(ctx):
    import pkg.i
"""
    expected = {f"pkg.{name}" for name in "abcdefghi"}
    if sys.version_info >= (3, 10):
        source += "match 1:\n    case 1:\n        import pkg.j\n"
        expected.add("pkg.j")
    assert imports(source) == expected


def test_imports_of_resolves_relative_imports_inside_a_sub_package():
    assert imports("from . import x\nfrom .. import _h", "pkg.w", is_package=True) == {
        "pkg.w", "pkg.w.x", "pkg", "pkg._h",
    }
    assert imports("from .... import too_far") == set()


def test_dependents_follow_importers_transitively_and_only_them():
    rdeps = {"p._h2": {"p._h1"}, "p._h1": {"p.a"}, "p._x": {"p.b"}}
    assert loader.dependents(rdeps, ["p._h2"]) == {"p._h2", "p._h1", "p.a"}
    assert loader.dependents(rdeps, ["p.a"]) == {"p.a"}


def test_reload_order_puts_helpers_before_their_importers():
    deps = {"p.a": frozenset({"p._h1"}), "p._h1": frozenset({"p._h2"}), "p.b": frozenset({"p._h2"})}
    order = loader.reload_order(deps, ["p.a", "p.b", "p._h1", "p._h2"])
    assert order.index("p._h2") < order.index("p._h1") < order.index("p.a")
    assert order.index("p._h2") < order.index("p.b")
    assert sorted(order) == ["p._h1", "p._h2", "p.a", "p.b"]


def test_reload_order_survives_an_import_cycle():
    deps = {"p.a": frozenset({"p.b"}), "p.b": frozenset({"p.a"})}
    assert sorted(loader.reload_order(deps, ["p.a", "p.b"])) == ["p.a", "p.b"]


def test_discover_finds_modules_and_packages_and_skips_helpers_and_bad_names(tmp_path):
    for name in ["a.py", "_helper.py", "my-worker.py", "notes.txt", "class.py"]:
        (tmp_path / name).write_text("")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "not_a_package").mkdir()
    (tmp_path / "_private").mkdir()
    (tmp_path / "_private" / "__init__.py").write_text("")
    outside = tmp_path.parent / f"{tmp_path.name}-outside.py"
    outside.write_text("")
    (tmp_path / "escape.py").symlink_to(outside)
    (tmp_path / "alias.py").symlink_to(tmp_path / "a.py")  # a symlink within the folder is fine
    found, skipped = loader.discover(SourceFilter([tmp_path]))
    assert found == {"a": tmp_path / "a.py", "alias": tmp_path / "alias.py", "pkg": tmp_path / "pkg" / "__init__.py"}
    assert skipped == {"class.py": "not a valid module name", "my-worker.py": "not a valid module name",
                       "escape.py": f"a symlink to {outside}, outside the folder"}
    outside.unlink()


def test_writable_by_others_names_who(tmp_path):
    path = tmp_path / "w.py"
    path.write_text("")
    path.chmod(0o644)
    assert loader.writable_by_others(path) is None
    path.chmod(0o646)
    assert loader.writable_by_others(path) == "everyone"


@pytest.fixture
def package(tmp_path):
    """A fresh folder installed as a uniquely named package; uninstalled afterwards."""
    name = f"wk_{uuid.uuid4().hex[:8]}"
    folder = tmp_path / name
    folder.mkdir()
    finders = []

    def install():
        finders.append(loader.install(folder, name))
        return finders[-1]

    yield folder, name, install
    for finder in finders:
        sys.meta_path.remove(finder)
    for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
        del sys.modules[key]


def test_a_same_named_package_on_sys_path_neither_shadows_nor_merges(package, tmp_path, monkeypatch):
    folder, name, install = package
    (folder / "ours.py").write_text("WHO = 'folder'")
    other = tmp_path / "elsewhere" / name
    other.mkdir(parents=True)
    (other / "__init__.py").write_text("")
    (other / "ours.py").write_text("WHO = 'elsewhere'")
    (other / "theirs.py").write_text("WHO = 'elsewhere'")
    monkeypatch.syspath_prepend(str(other.parent))
    install()
    assert __import__(f"{name}.ours", fromlist=["x"]).WHO == "folder"
    with pytest.raises(ModuleNotFoundError):
        __import__(f"{name}.theirs")
    assert sys.modules[name].__path__ == [str(folder)]


def test_modules_are_compiled_from_the_bytes_read_and_record_their_imports(package):
    folder, name, install = package
    (folder / "_h.py").write_text("X = 1")
    (folder / "w.py").write_text("from . import _h\nY = _h.X + 0")
    finder = install()
    module = __import__(f"{name}.w", fromlist=["x"])
    executed = dict(finder.executed)
    assert executed[f"{name}.w"].imports == {name, f"{name}._h"}
    assert loader.loaded_digest(module) == loader.digest((folder / "w.py").read_bytes())
    # same size, same second: a .pyc-based reload would run the old code
    assert module.Y == 1
    (folder / "w.py").write_text("from . import _h\nY = _h.X + 1")
    loader.reload(module)
    assert module.Y == 2


def worker_module(package, source):
    folder, name, install = package
    (folder / "w.py").write_text(source)
    install()
    return __import__(f"{name}.w", fromlist=["x"])


def check(module):
    return loader.worker_parts(module, Settings())


@pytest.mark.parametrize(
    "new_source, error, line",
    [
        ("def run(ctx)\n    pass", SyntaxError, 1),
        ("X = 1\nraise RuntimeError('at import')\ndef run(ctx): pass", RuntimeError, 2),
        ("X = 2", loader.NotAWorker, None),
        ("X = 2\nrun = 5", loader.WorkerError, 2),
        ("def run(ctx): pass\n\nRESTART = 'sometimes'", loader.WorkerError, 3),
    ],
)
def test_a_failed_reload_restores_the_previous_namespace(package, new_source, error, line):
    module = worker_module(package, "X = 1\ndef run(ctx):\n    return 'old'\n")
    old_run = module.run
    (Path(module.__file__)).write_text(new_source)
    with pytest.raises(error) as caught:
        loader.reload(module, check=check, clear=loader.CONTRACT_NAMES)
    assert module.run is old_run and module.X == 1
    assert "RESTART" not in vars(module)
    if line is not None:
        text = format_error(caught.value)
        assert f"line {line}" in text or f"w.py:{line}:" in text, text


def test_worker_parts_returns_run_and_settings(package):
    module = worker_module(package, "RESTART = 'never'\ndef run(ctx): pass\n")
    run, settings = check(module)
    assert run is module.run and settings.restart == "never"


@pytest.mark.parametrize(
    "source, message, line",
    [
        ("def run(ctx): pass\nmigrate = 3\n", "migrate must be callable, not int", 2),
        ("def run(ctx): pass\n\ndef migrate(state):\n    return state\n",
         "migrate(state) cannot be called as migrate(state, old_version)", 3),
        ("def run(ctx): pass\nSTATE_VERSION = '2'\n", "STATE_VERSION: must be a whole number (int)", 2),
    ],
)
def test_a_wrong_migrate_or_state_version_is_a_worker_error(package, source, message, line):
    module = worker_module(package, source)
    with pytest.raises(loader.WorkerError) as caught:
        check(module)
    assert message in str(caught.value) and f"w.py:{line}:" in str(caught.value)


def test_migration_is_the_migrate_to_run_when_the_state_version_changes(package):
    module = worker_module(package, "STATE_VERSION = 2\ndef run(ctx): pass\ndef migrate(state, old): return state\n")
    assert loader.migration(module, 2, 2) is None
    assert loader.migration(module, 1, 2) is module.migrate
    Path(module.__file__).write_text("def run(ctx): pass\n\nSTATE_VERSION = 3\n")
    plain = module
    loader.reload(plain, clear=loader.CONTRACT_NAMES)
    assert loader.migration(plain, 3, 3) is None
    with pytest.raises(loader.WorkerError) as caught:
        loader.migration(plain, 1, 3)
    assert "w.py:3: STATE_VERSION changed from 1 to 3, and no migrate(state, old_version) is defined" in str(caught.value)


def test_forget_removes_a_module_its_submodules_and_the_parent_attribute(package):
    folder, name, install = package
    (folder / "sub").mkdir()
    (folder / "sub" / "__init__.py").write_text("")
    (folder / "sub" / "x.py").write_text("")
    install()
    __import__(f"{name}.sub.x")
    loader.forget(f"{name}.sub")
    assert f"{name}.sub" not in sys.modules and f"{name}.sub.x" not in sys.modules
    assert not hasattr(sys.modules[name], "sub")


def test_format_error_starts_at_the_users_frame():
    namespace = {}
    exec(compile("def boom():\n    raise ValueError('x')\n", "/user/w.py", "exec"), namespace)
    try:
        namespace["boom"]()
    except ValueError as exc:
        text = format_error(exc)
    assert 'File "/user/w.py", line 2, in boom' in text and text.endswith("ValueError: x")


@pytest.mark.parametrize("source, error", [
    pytest.param(b"x = " + b"+".join([b"1"] * 200_000) + b"\n", RecursionError, marks=pytest.mark.skipif(
        sys.version_info < (3, 11), reason="before Python 3.11 the parser overflows the C stack: a crash, no exception")),
    (b"x = 1\0\n", (SyntaxError, ValueError)),  # ValueError before Python 3.12
    (b"def f(:\n", SyntaxError),
])
def test_check_source_returns_any_parse_failure_with_the_digest(tmp_path, source, error):
    path = tmp_path / "m.py"
    path.write_bytes(source)
    checked = loader.check_source(path)
    assert checked.digest == loader.digest(source) and isinstance(checked.error, error)
    assert loader.check_source(path, running=checked.digest).error is None  # the running bytes: not parsed
    assert loader.check_source(tmp_path / "gone.py") is None


def test_a_checked_file_is_compiled_from_the_tree_its_check_parsed_not_parsed_again(package):
    folder, name, install = package
    finder = install()
    path = folder / "w.py"
    path.write_text("WHO = 'file'\n")
    checked = loader.check_source(path)
    assert checked.error is None and isinstance(checked.tree, ast.Module)
    # A tree that differs from the bytes shows which one the loader compiled.
    finder.parsed = {str(path): (checked.digest, ast.parse("WHO = 'checked tree'\n"))}
    assert importlib.import_module(f"{name}.w").WHO == "checked tree"
    assert finder.parsed == {}  # used once


def test_a_checked_tree_is_ignored_when_the_bytes_changed_since(package):
    folder, name, install = package
    finder = install()
    path = folder / "w.py"
    path.write_text("WHO = 'before'\n")
    checked = loader.check_source(path)
    path.write_text("WHO = 'after'\n")
    finder.parsed = {str(path): (checked.digest, checked.tree)}
    assert importlib.import_module(f"{name}.w").WHO == "after"
