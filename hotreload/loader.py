"""Finding, importing and reloading worker modules, and knowing who imports whom.

The workers folder is imported as a package named after the folder, created here and put
in ``sys.modules`` directly, so that a same-named package elsewhere on ``sys.path`` can
neither shadow it nor merge with it. Its modules are loaded by ``HotLoader``, which
compiles the exact bytes it read (never a cached ``.pyc``: its mtime+size check misses an
edit of the same size within the same second) and records their digest and imports.
"""
from __future__ import annotations

import ast
import grp
import hashlib
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import pwd
import sys
import types
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, NamedTuple

from hotreload import order
from hotreload import program as program_mod
from hotreload import settings as settings_mod
from hotreload.filters import SourceFilter
from hotreload.worker import call_problem

__all__ = [
    "CONTRACT_NAMES", "ENTRY_POINT_GROUP", "Checked", "HotFinder", "NotAWorker", "Source", "WorkerError",
    "check_source", "check_sources", "dependents", "digest", "discover", "entry_points", "forget", "imports_of",
    "inside", "install", "line_of", "loaded_digest", "migrate_of", "migration", "read_bytes", "reload",
    "reload_order", "worker_parts",
    "writable_by_others",
]

ENTRY_POINT_GROUP = "hotreload.workers"
# Names the worker contract reads: cleared before a worker's reload (see ``reload``).
CONTRACT_NAMES = ("run", "migrate", *settings_mod.NAMES, *program_mod.NAMES)


class Source(NamedTuple):
    """What ``HotLoader`` compiled: the digest of its bytes and the modules it imports."""

    digest: str
    imports: frozenset[str]


class WorkerError(Exception):
    """A module that does not meet the worker contract, with the file and line at fault."""

    def __init__(self, path: str | None, line: int | None, message: str) -> None:
        where = f"{path}:{line}" if line else str(path)
        super().__init__(f"{where}: {message}")
        self.path = path
        self.line = line


def digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


class Checked(NamedTuple):
    """A changed file as read before a reload: the digest of its bytes, and why they do not
    parse (None if they do, or if they were not parsed: the bytes already running), or the
    tree they parse to, which the reload compiles instead of parsing them again."""

    digest: str
    error: Exception | None
    tree: ast.Module | None = None


def check_source(path: Path, running: str | None = None, read: Callable[[str], bytes] | None = None) -> Checked | None:
    """Read and parse ``path``; None if it cannot be read. Bytes whose digest is ``running``
    are not parsed again. Any failure of the parser is returned, not raised: besides
    ``SyntaxError``, a deeply nested expression raises ``RecursionError``, a huge one
    ``MemoryError``, null bytes ``ValueError`` before Python 3.12."""
    try:
        data = (read or read_bytes)(str(path))
    except OSError:
        return None
    found = digest(data)
    if found == running:
        return Checked(found, None)
    try:
        tree = ast.parse(data, str(path))
    except Exception as exc:  # noqa: BLE001 - whatever the parser raises is this file's fault
        return Checked(found, exc)
    return Checked(found, None, tree)


def check_sources(
    paths: dict[str, str | None], read: Callable[[str], bytes] | None = None
) -> dict[str, Checked | None]:
    """``check_source`` for each path, given with the digest of the code it runs, each read
    with ``read`` (the finder's: while watching, only what a complete save left)."""
    return {raw: check_source(Path(raw), running, read) for raw, running in paths.items()}


def imports_of(tree: ast.AST, module: str, is_package: bool, root: str) -> frozenset[str]:
    """Modules under package ``root`` that the code in ``tree`` imports, anywhere in it.

    ``from .x import y`` yields both ``root.x`` and ``root.x.y``, since ``y`` may be a
    submodule; a name that is not a module is harmless, as nothing changes under it.
    Imports made with ``importlib.import_module`` are not seen.
    """
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in _statements(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                if node.level - 1 >= len(parts):
                    continue
                base = ".".join(parts[: len(parts) - (node.level - 1)])
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
    return frozenset(n for n in found if n == root or n.startswith(root + "."))


def _statements(tree: ast.AST) -> Iterator[ast.AST]:
    """Every statement in ``tree``, nested ones included. Imports are statements, so this
    finds them all while skipping the expressions that make up most of a module."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        for block in ("body", "orelse", "finalbody", "handlers", "cases"):
            children = getattr(node, block, None)
            if isinstance(children, list):
                todo.extend(children)


def dependents(rdeps: dict[str, set[str]], roots: Iterable[str]) -> set[str]:
    """``roots`` and every module that imports one of them, directly or through others.

    Work is proportional to the modules found, not to the size of the graph.
    """
    seen = set(roots)
    todo = list(seen)
    while todo:
        for importer in rdeps.get(todo.pop(), ()):
            if importer not in seen:
                seen.add(importer)
                todo.append(importer)
    return seen


def reload_order(deps: dict[str, frozenset[str]], modules: Iterable[str]) -> list[str]:
    """``modules`` with each one after the modules it imports (helpers before importers);
    an import cycle is broken at a stable point."""
    return order.dependencies_first(modules, deps)


def discover(files: SourceFilter) -> tuple[dict[str, Path], dict[str, str]]:
    """The workers directly in the workers folder (``name.py`` or ``name/__init__.py``; see
    ``SourceFilter.worker_name``), by name, and the entries skipped, with why: a name that
    cannot be imported, a folder named like a module file, or a symlink out of the folder."""
    folder = Path(files.folder)
    found: dict[str, Path] = {}
    skipped: dict[str, str] = {}
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.name.startswith((*files.ignore_prefixes, "_")):
            continue
        if entry.is_file() and entry.name.endswith(".py"):
            path = Path(entry.path)
        elif entry.is_dir() and os.path.isfile(os.path.join(entry.path, "__init__.py")):
            path = Path(entry.path, "__init__.py")
        elif entry.is_dir() and entry.name.endswith(".py"):
            skipped[entry.name] = "a folder, not a module file"
            continue
        else:
            continue
        name = files.worker_name(path)
        if entry.is_symlink() and not inside(folder, path):
            skipped[entry.name] = f"a symlink to {Path(entry.path).resolve()}, outside the folder"
        elif name is not None:
            found[name] = path
        elif Path(entry.name).stem in files.reserved:
            skipped[entry.name] = (f"{Path(entry.name).stem!r} is the host's own name in logs, status and events: "
                                   "rename the file")
        elif files(path, folder):
            skipped[entry.name] = "not a valid module name"
    return found, skipped


def writable_by_others(path: Path) -> str | None:
    """Who besides the owner may write ``path`` ("everyone", "group NAME"), or None.
    A group-writable file whose group is the owner's own private group is not counted."""
    try:
        info = path.stat()
    except OSError:
        return None
    if info.st_mode & 0o002:
        return "everyone"
    if not info.st_mode & 0o020:
        return None
    try:
        group, owner = grp.getgrgid(info.st_gid), pwd.getpwuid(info.st_uid)
        private = info.st_gid == owner.pw_gid and not set(group.gr_mem) - {owner.pw_name}
    except KeyError:
        return f"group {info.st_gid}"
    return None if private else f"group {group.gr_name}"


def inside(folder: Path, path: Path) -> bool:
    """True if ``path``, symlinks resolved, is in ``folder`` (resolved too)."""
    try:
        Path(path).resolve().relative_to(Path(folder).resolve())
    except ValueError:
        return False
    return True


class HotLoader(importlib.machinery.SourceFileLoader):
    """Compiles the bytes it reads, never a ``.pyc``, and records what it compiled."""

    def __init__(self, fullname: str, path: str, finder: HotFinder) -> None:
        super().__init__(fullname, path)
        self.finder = finder

    def exec_module(self, module: types.ModuleType) -> None:
        path = self.get_filename(module.__name__)
        data = self.finder.read(path)
        found = digest(data)
        parsed = self.finder.parsed.pop(path, None)
        tree = parsed[1] if parsed is not None and parsed[0] == found else ast.parse(data, path)
        imports = imports_of(tree, module.__name__, self.is_package(module.__name__), self.finder.package)
        code = compile(tree, path, "exec", dont_inherit=True)
        source = Source(found, imports)
        module.__spec__.loader_state = source  # type: ignore[union-attr] # a loader's module has a spec
        self.finder.executed.append((module.__name__, source))
        exec(code, module.__dict__)


class HotFinder(importlib.abc.MetaPathFinder):
    """Gives the folder's package and modules (and any name in ``extra``) a ``HotLoader``."""

    def __init__(self, folder: Path, package: str, extra: Iterable[str] = ()) -> None:
        self.folder = folder
        self.package = package
        self.extra = frozenset(extra)
        # Modules executed since the host last looked, with their imports: failed ones too,
        # so that fixing a helper retries the worker that could not import it.
        self.executed: list[tuple[str, Source]] = []
        # How source files are read: while watching, the watcher's ``read_source``, which
        # returns only what a complete save left.
        self.read: Callable[[str], bytes] = read_bytes
        # Whether a file exists for ``read``, though not on disk right now (a git checkout
        # deleting and rewriting it while a reload reads the version before).
        self.known: Callable[[str], bool | None] = lambda path: None
        # Files a reload checked, by path: the digest of the bytes parsed and their tree, so
        # that each changed file is parsed once (``HotLoader`` compiles the tree if the
        # digest still matches). Set by core for the length of one swap.
        self.parsed: dict[str, tuple[str, ast.Module]] = {}

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname == self.package:
            init = self.folder / "__init__.py"
            if not init.is_file():
                return None
            return importlib.util.spec_from_file_location(
                fullname, init, loader=HotLoader(fullname, str(init), self),
                submodule_search_locations=[str(self.folder)],
            )
        if not fullname.startswith(self.package + ".") and fullname not in self.extra:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None and fullname not in self.extra:
            spec = self._spec_from_known(fullname, path)
        if spec is not None and isinstance(spec.loader, importlib.machinery.SourceFileLoader):
            if fullname not in self.extra and not inside(self.folder, Path(spec.loader.path)):
                raise ImportError(f"{fullname} is {spec.loader.path}, a symlink to "
                                  f"{Path(spec.loader.path).resolve()}, outside the workers folder: "
                                  f"not imported", name=fullname)
            spec.loader = HotLoader(fullname, spec.loader.path, self)
        return spec

    def _spec_from_known(self, fullname: str, path: Any) -> Any:
        name = fullname.rpartition(".")[2]
        for folder in path or [str(self.folder)]:
            module, package = Path(folder, name + ".py"), Path(folder, name, "__init__.py")
            if self.known(str(package)):
                return importlib.util.spec_from_file_location(
                    fullname, package, loader=HotLoader(fullname, str(package), self),
                    submodule_search_locations=[str(package.parent)])
            if self.known(str(module)):
                return importlib.util.spec_from_file_location(
                    fullname, module, loader=HotLoader(fullname, str(module), self))
        return None


def read_bytes(path: str) -> bytes:
    with open(path, "rb") as file:
        return file.read()


def install(folder: Path, package: str, extra: Iterable[str] = ()) -> HotFinder:
    """Create package ``package`` from ``folder`` in ``sys.modules`` and put a ``HotFinder``
    first on ``sys.meta_path``. Runs the folder's ``__init__.py``, if any."""
    finder = HotFinder(folder, package, extra)
    sys.meta_path.insert(0, finder)
    spec = finder.find_spec(package)
    if spec is None:
        spec = importlib.machinery.ModuleSpec(package, None, is_package=True)
        spec.submodule_search_locations = [str(folder)]
    module = importlib.util.module_from_spec(spec)
    sys.modules[package] = module
    if spec.loader is not None:
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[package]
            raise
    return finder


def loaded_digest(module: types.ModuleType) -> str | None:
    """The digest of the source ``module`` runs, if ``HotLoader`` loaded it."""
    state = getattr(getattr(module, "__spec__", None), "loader_state", None)
    return state.digest if isinstance(state, Source) else None


def reload(
    module: types.ModuleType,
    check: Callable[[types.ModuleType], Any] | None = None,
    clear: Iterable[str] = (),
) -> Any:
    """``importlib.reload`` the module and run ``check`` on it; on any failure put the
    module's namespace back as it was (reload mutates it in place) and re-raise.

    Names in ``clear`` are removed first: ``importlib.reload`` keeps names the new source
    no longer defines, which would hide a deleted ``run``. Returns what ``check`` returned.
    """
    saved = dict(module.__dict__)
    for name in clear:
        module.__dict__.pop(name, None)
    try:
        importlib.reload(module)
        return check(module) if check else None
    except BaseException:
        module.__dict__.clear()
        module.__dict__.update(saved)
        raise


def forget(name: str) -> None:
    """Remove a module and its submodules from ``sys.modules`` and from its parent package."""
    for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
        del sys.modules[key]
    parent, _, child = name.rpartition(".")
    if parent in sys.modules:
        sys.modules[parent].__dict__.pop(child, None)


def line_of(path: str | None, name: str) -> int | None:
    """The line where ``name`` is last bound at module level in the file, if it can be read."""
    try:
        tree = ast.parse(Path(path or "").read_bytes())
    except (OSError, SyntaxError, ValueError):
        return None
    line = None
    for node in tree.body:
        targets: list[Any] = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            targets = [node]
        elif isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
            targets = [node.target]
        for target in targets:
            if getattr(target, "id", getattr(target, "name", None)) == name:
                line = node.lineno
    return line


class NotAWorker(Exception):
    """The module defines no ``run``: it is a helper."""


def worker_parts(
    module: types.ModuleType,
    defaults: settings_mod.Settings,
    order_problem: Callable[[tuple[str, ...]], str | None] | None = None,
) -> tuple[Callable[..., Any] | program_mod.Program, settings_mod.Settings]:
    """The target and validated settings of a worker module: its ``run`` callable, or the
    ``Program`` that its ``COMMAND`` (and ``ENV``, ``CWD``, ``STOP_SIGNAL``) define.
    ``order_problem`` says what is wrong with its AFTER among the other workers
    (``order.problem``), if anything: that is a load error too."""
    path = getattr(module, "__file__", None)
    target: Callable[..., Any] | program_mod.Program
    if "COMMAND" in module.__dict__:
        if "run" in module.__dict__:
            raise WorkerError(path, line_of(path, "COMMAND"), "defines both run(ctx) and COMMAND: a worker "
                                                               "is a thread or a program, not both")
        target = _checked(path, lambda: program_mod.parse(module.__dict__, _folder_of(module)))
    elif "run" not in module.__dict__:
        raise NotAWorker(f"{path}: defines no run(ctx)")
    else:
        target = module.__dict__["run"]
        if not callable(target):
            raise WorkerError(path, line_of(path, "run"), f"run must be callable, not {type(target).__name__}")
        problem = call_problem(target)
        if problem is not None:  # else each start would fail with a TypeError inside hotreload
            message, where, line = problem
            raise WorkerError(where or path, line if where else line_of(path, "run"), message)
    settings = _checked(path, lambda: settings_mod.parse(module.__dict__, defaults))
    if isinstance(target, program_mod.Program):
        for name, problem in program_mod.unfit_settings(settings):
            raise WorkerError(path, line_of(path, name), f"{name}: {problem}")
    why = order_problem(settings.after) if order_problem is not None else None
    if why is not None:
        raise WorkerError(path, line_of(path, "AFTER"), f"AFTER: {why}")
    migrate_of(module)
    return target, settings


def _checked(path: str | None, parse: Callable[[], Any]) -> Any:
    """``parse()``, a setting's error reported at the line that sets it."""
    try:
        return parse()
    except settings_mod.SettingsError as exc:
        raise WorkerError(path, line_of(path, exc.name.partition("[")[0]), str(exc)) from None


def migrate_of(module: types.ModuleType) -> Callable[..., Any] | None:
    """The module's ``migrate(state, old_version)``, checked like ``run``; None if it has none."""
    if "migrate" not in module.__dict__:
        return None
    path = getattr(module, "__file__", None)
    migrate = module.__dict__["migrate"]
    if not callable(migrate):
        raise WorkerError(path, line_of(path, "migrate"), f"migrate must be callable, not {type(migrate).__name__}")
    problem = call_problem(migrate, "migrate", ("state", "old_version"))
    if problem is not None:
        message, where, line = problem
        raise WorkerError(where or path, line if where else line_of(path, "migrate"), message)
    return migrate


def migration(module: types.ModuleType, old_version: int, new_version: int) -> Callable[..., Any] | None:
    """The ``migrate`` to run when a reload takes a worker's state from ``old_version`` to
    ``new_version`` (the module's STATE_VERSION): None when the version did not change. A
    change without a ``migrate`` is an error, as the state would reach code that expects
    another shape: a migrate that returns the state as it is says so explicitly."""
    if old_version == new_version:
        return None
    migrate = migrate_of(module)
    if migrate is None:
        path = getattr(module, "__file__", None)
        raise WorkerError(
            path, line_of(path, "STATE_VERSION"),
            f"STATE_VERSION changed from {old_version} to {new_version}, and no migrate(state, old_version) is "
            "defined to carry ctx.state over (one that returns the state unchanged will do)",
        )
    return migrate


def _folder_of(module: types.ModuleType) -> Path:
    """The workers folder a module belongs to: its top package's folder (a relative CWD is
    taken from there), or the module's own folder for one outside any."""
    top = sys.modules.get(module.__name__.partition(".")[0])
    locations = list(getattr(top, "__path__", None) or ())
    return Path(locations[0]) if locations else Path(getattr(module, "__file__", None) or ".").parent


def entry_points() -> list[Any]:
    """Installed entry points in group ``hotreload.workers``."""
    import importlib_metadata

    return list(importlib_metadata.entry_points(group=ENTRY_POINT_GROUP))
