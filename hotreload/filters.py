"""Which files count: one rule, asked by the watcher, the loader and core alike.

An editor saving ``w.py`` also writes swap files, backups and temp files beside it (vim's
``4913``, ``.w.py.swp`` and ``w.py~``; emacs' ``.#w.py`` and ``#w.py#``; JetBrains'
``w.py___jb_tmp___``), git works in ``.git``, and Python in ``__pycache__``. None of them is
code the host runs: an event on one must not reload anything, and a scan must not list it.

Besides its Python sources, a few files directly in the workers folder count though they are
no modules (``folder_files``: the ``Procfile``, whose lines are program workers), and a worker
may watch other files of the folder (``WATCH``: its templates, its YAML): they count too, for
the worker whose globs match them, under the same rules for editors' files.
"""
from __future__ import annotations

import keyword
import os
import re
from pathlib import Path, PurePath
from typing import ClassVar, Iterable, Pattern

__all__ = ["SourceFilter"]


class SourceFilter:
    """The Python source files under ``roots``: a ``.py`` file is one unless a part of its
    path below its root is hidden (``.``), an emacs lock or autosave (``#``), a byte-code
    cache, or its name carries an editor's temp marker. The first root is the workers folder,
    whose files are also modules of its package (``module_name``) and, directly in it,
    workers (``worker_name``). The ``folder_files`` directly in the workers folder count too,
    as files that are not modules.

    ``watched`` holds each worker's ``WATCH`` globs, compiled: a file of the workers folder
    that one of them matches counts too (``watchers``). It is replaced, never changed in place,
    so the watcher's thread always reads a whole version of it."""

    ignore_dirs: ClassVar[tuple[str, ...]] = ("__pycache__",)
    ignore_prefixes: ClassVar[tuple[str, ...]] = (".", "#")
    temp_markers: ClassVar[tuple[str, ...]] = ("___jb_tmp___", "___jb_old___")
    folder_files: ClassVar[tuple[str, ...]] = ("Procfile",)
    # Names a worker cannot have: the host's own, in every log line, status and event.
    reserved: ClassVar[tuple[str, ...]] = ("host",)
    ignore_suffixes: ClassVar[tuple[str, ...]] = ("~",)  # backups: w.py~, index.html~

    def __init__(self, roots: Iterable[Path]) -> None:
        self.roots = tuple(roots)
        self.folder = self.roots[0]
        self.watched: dict[str, tuple[Pattern[str], ...]] = {}  # worker name -> its WATCH globs

    def __call__(self, path: PurePath, root: PurePath | None = None) -> bool:
        """True for a file that counts: a source file under ``root`` (by default: under any of
        the roots), one of the ``folder_files`` directly in the workers folder, or a file some
        worker watches."""
        if root in (None, self.folder) and self.is_folder_file(path):
            return True
        return self.is_python(path, root) or (root in (None, self.folder) and bool(self.watchers(path)))

    def is_folder_file(self, path: PurePath) -> bool:
        """True for one of the ``folder_files`` directly in the workers folder."""
        return path.parent == self.folder and path.name in self.folder_files

    def is_python(self, path: PurePath, root: PurePath | None = None) -> bool:
        """True for a Python source file under ``root`` (by default: under any of the roots)."""
        parts = self.parts(path, root)
        return parts is not None and bool(parts) and parts[-1].endswith(".py") and not self._temporary(parts[-1])

    def _temporary(self, name: str) -> bool:
        return any(m in name for m in self.temp_markers) or name.endswith(self.ignore_suffixes)

    def watch(self, name: str, globs: Iterable[str]) -> None:
        """Set worker ``name``'s WATCH globs (relative to the workers folder); none forgets it."""
        watched = dict(self.watched)
        watched[name] = tuple(map(_glob_pattern, globs))
        if not watched[name]:
            del watched[name]
        self.watched = watched

    def watchers(self, path: PurePath) -> list[str]:
        """The workers whose WATCH globs match ``path``, a file of the workers folder."""
        watched = self.watched
        if not watched:
            return []
        parts = self.parts(path, self.folder)
        if not parts or self._temporary(parts[-1]):
            return []
        relative = "/".join(parts)
        return sorted(name for name, patterns in watched.items() if any(p.match(relative) for p in patterns))

    def watched_files(self, name: str) -> list[Path]:
        """The files worker ``name`` watches now, found by walking the workers folder."""
        patterns = self.watched.get(name, ())
        found = []
        for top, dirs, files in os.walk(self.folder) if patterns else ():
            dirs[:] = [d for d in dirs if not d.startswith(self.ignore_prefixes) and d not in self.ignore_dirs]
            found += [Path(top, f) for f in files if name in self.watchers(Path(top, f))]
        return sorted(found)

    def parts(self, path: PurePath, root: PurePath | None = None) -> tuple[str, ...] | None:
        """``path``'s parts below ``root`` (or below the root it is under), or None if it is
        under none, or in a place that never counts (a hidden folder, a cache)."""
        base = self.root_of(path) if root is None else root
        if base is None or not _is_under(path, base):
            return None
        parts = path.relative_to(base).parts
        if any(p.startswith(self.ignore_prefixes) or p in self.ignore_dirs for p in parts):
            return None
        return parts

    def root_of(self, path: PurePath) -> PurePath | None:
        """The root ``path`` is under, whether or not it counts: the deepest, where one root
        holds another (hotreload's own files in a workers folder ``.``)."""
        under = [root for root in self.roots if _is_under(path, root)]
        return max(under, key=lambda root: len(root.parts), default=None)

    def module_name(self, package: str, path: PurePath) -> str | None:
        """The module a file of the workers folder is imported as (``package.x.y`` for
        ``x/y.py``, ``package.x`` for ``x/__init__.py``), or None if it cannot be one."""
        parts = self.parts(path, self.folder) if self.is_python(path, self.folder) else None
        if parts is None:
            return None
        names = [*parts[:-1], parts[-1][:-3]]
        if names[-1] == "__init__":
            names.pop()
        if not all(_importable(n) for n in names):
            return None
        return ".".join([package, *names])

    def worker_name(self, path: PurePath) -> str | None:
        """The worker a file is: ``name`` for ``name.py`` or ``name/__init__.py`` directly in
        the workers folder, a name that can be imported and does not start with ``_``."""
        parts = self.parts(path, self.folder) if self.is_python(path, self.folder) else None
        if parts is None:
            return None
        if len(parts) == 1:
            name = parts[0][:-3]
        elif len(parts) == 2 and parts[1] == "__init__.py":
            name = parts[0]
        else:
            return None
        return name if _importable(name) and not name.startswith("_") and name not in self.reserved else None

    def walk(self) -> list[Path]:
        """The workers folder itself, every source file under it and its ``folder_files`` (code
        too: a Procfile's commands run with the host's rights); symlinked folders are not
        followed."""
        found = [Path(self.folder)]
        for top, dirs, files in os.walk(self.folder):
            dirs[:] = sorted(d for d in dirs if not d.startswith(self.ignore_prefixes) and d not in self.ignore_dirs)
            found += [Path(top, f) for f in sorted(files)
                      if self.is_python(Path(top, f), self.folder) or self.is_folder_file(Path(top, f))]
        return found


def _is_under(path: PurePath, root: PurePath) -> bool:
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return True


def _glob_pattern(glob: str) -> Pattern[str]:
    """A glob relative to the folder as a regular expression over ``/``-joined parts: ``*``
    and ``?`` stay within one folder, ``[...]`` is a set of characters (``[!...]`` its
    complement), and a part that is ``**`` matches any number of folders (at the end:
    everything below)."""
    parts = glob.split("/")
    regex = ""
    for number, part in enumerate(parts):
        last = number == len(parts) - 1
        if part == "**":
            regex += ".*" if last else "(?:[^/]+/)*"
        else:
            regex += _part_regex(part) + ("" if last else "/")
    return re.compile(regex + r"\Z")


def _part_regex(part: str) -> str:
    regex, i = "", 0
    while i < len(part):
        char = part[i]
        end = part.find("]", i + 2) if char == "[" else -1
        if char == "*":
            regex += "[^/]*"
        elif char == "?":
            regex += "[^/]"
        elif end > 0:
            inside = part[i + 1:end]
            negate = inside.startswith("!")
            members = re.escape(inside[1:] if negate else inside).replace("\\-", "-")
            regex += f"[{'^/' if negate else ''}{members}]"
            i = end
        else:
            regex += re.escape(char)
        i += 1
    return regex


def _importable(name: str) -> bool:
    return name.isidentifier() and not keyword.iskeyword(name)
