"""Reloading hotreload's own ``core.py`` in place: the loop's side of the seam.

The host loop calls the functions ``host.CORE_API`` names on the core module. When core.py
is saved, this module — never core itself, so that a broken core cannot keep its own fix
out — reloads it, and accepts the new code only if it still offers those functions and every
global name its functions use is defined (``problems``); else the previous core stays. The
namespace the reload replaced is kept on the ``Host``: an internal error raised by the new
core puts it back (``roll_back``), and the message it failed on is handed to the previous
core again if it was not consumed (``unconsumed``): a worker's crash is not lost with it.
"""
from __future__ import annotations

import builtins
import dis
import sys
import time
import types
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from hotreload import loader
from hotreload.log import format_error

from hotreload.records import Changes, Exited, Loaded, Ready, Signal, SinksRemoved

if TYPE_CHECKING:
    from hotreload.records import Host, Message

__all__ = ["CoreRejected", "on_own_changes", "problems", "roll_back", "unconsumed", "undefined_globals"]


class CoreRejected(Exception):
    """A new core that compiles and runs, but that the loop cannot run on."""


def problems(module: types.ModuleType, api: Iterable[str]) -> list[str]:
    """Why the loop cannot run on ``module``, one line each: a function of ``api`` it does not
    define, a global name one of its functions uses that it does not define."""
    found = [f"core.py no longer defines {name}()" for name in api if not callable(getattr(module, name, None))]
    return found + undefined_globals(module)


def undefined_globals(module: types.ModuleType) -> list[str]:
    """Each global name that a function of ``module`` (nested ones, methods and lambdas
    included) loads and that neither the module nor the builtins define: "file:line:
    function() uses name, which core.py does not define". Only true global loads count (the
    ``LOAD_GLOBAL`` instruction), not attribute names: ``host.swap`` is no global ``swap``."""
    namespace = vars(module)
    codes = list(_code_objects(module))
    assigned = {ins.argval for code in codes for ins in dis.get_instructions(code) if ins.opname == "STORE_GLOBAL"}
    known = namespace.keys() | vars(builtins).keys() | assigned
    found = []
    for code in codes:
        for ins, line in _with_lines(code):
            if ins.opname == "LOAD_GLOBAL" and ins.argval not in known:
                name = getattr(code, "co_qualname", code.co_name)
                found.append(f"{code.co_filename}:{line}: {name}() uses {ins.argval}, "
                             f"which {Path(code.co_filename).name} does not define")
    return found


def _code_objects(module: types.ModuleType) -> Iterator[types.CodeType]:
    """The code of every function whose globals are ``module``'s (not those it imported),
    found in its namespace and its classes, and every code object nested in them."""
    namespace = vars(module)
    seen: set[int] = set()
    pending: list[Any] = list(namespace.values())
    while pending:
        value = pending.pop()
        if id(value) in seen:
            continue
        seen.add(id(value))
        if isinstance(value, (staticmethod, classmethod)):
            pending.append(value.__func__)
        elif isinstance(value, property):
            pending += [value.fget, value.fset, value.fdel]
        elif isinstance(value, type) and value.__module__ == module.__name__:
            pending += list(vars(value).values())
        elif isinstance(value, types.FunctionType):
            pending.append(getattr(value, "__wrapped__", None))  # under a decorator's wrapper
            if value.__globals__ is namespace:
                yield from _nested(value.__code__)


def _nested(code: types.CodeType) -> Iterator[types.CodeType]:
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _nested(const)


def _with_lines(code: types.CodeType) -> Iterator[tuple[dis.Instruction, int]]:
    """Each instruction of ``code`` with its line in the file."""
    line = code.co_firstlineno
    for ins in dis.get_instructions(code):
        if sys.version_info >= (3, 13):
            line = ins.line_number if ins.line_number is not None else line
        elif ins.starts_line is not None:
            line = ins.starts_line
        yield ins, line


def on_own_changes(host: Host, core: types.ModuleType, api: Iterable[str], paths: Iterable[str]) -> None:
    """Saved files of hotreload's own package: core.py is reloaded; a change to another
    module that this process runs is reported, as it takes a restart."""
    started = time.monotonic()
    for path in map(Path, sorted(paths)):
        try:
            new_digest = loader.digest(path.read_bytes())
        except OSError:
            continue
        if new_digest == host.own_digests.get(path):
            continue
        if path == host.core_file:
            _reload_core(host, core, api, new_digest, started)
        else:
            host.own_digests[path] = new_digest
            if _imported(path):  # the client's modules (status.py...) are read afresh by each command
                host.log.warning(f"{path} changed: only core.py reloads in place; restart hotreload to use it")


def _reload_core(host: Host, core: types.ModuleType, api: Iterable[str], new_digest: str, started: float) -> None:
    api = tuple(api)
    previous = dict(vars(core))
    try:
        loader.reload(core, check=partial(_check, api=api), clear=api)
    except CoreRejected as exc:
        host.log.error(f"the edit of core.py was not applied; the host runs on the previous core:\n{exc}")
        return
    except BaseException as exc:  # noqa: B036 - a broken core must never end the host
        host.log.error(f"the edit of core.py was not applied; the host runs on the previous core:\n"
                       f"{format_error(exc)}")
        return
    host.previous_core = previous
    host.own_digests[host.core_file] = new_digest
    host.core_generation += 1
    host.log.info(f"core reloaded (generation {host.core_generation}) in "
                  f"{(time.monotonic() - started) * 1000:.1f} ms; workers untouched")


def _check(core: types.ModuleType, api: tuple[str, ...]) -> None:
    found = problems(core, api)
    if found:
        raise CoreRejected("\n".join(found))


def roll_back(host: Host, core: types.ModuleType) -> bool:
    """After an internal error: put the core that ran before the last reload back in place,
    once. False if there is none (no reload since start, or rolled back already). The file's
    digest stays: the same bytes saved again are not tried again, an edit of them is."""
    previous = host.previous_core
    if previous is None:
        return False
    host.previous_core = None
    namespace = vars(core)
    namespace.clear()
    namespace.update(previous)
    host.core_generation -= 1
    host.log.error(f"core.py generation {host.core_generation + 1} failed: rolled back to the previous core "
                   f"(generation {host.core_generation}); fix core.py and save it")
    return True


def unconsumed(host: Host, message: Message) -> bool:
    """Whether a message a failing core was handed is still to be acted on, so that the
    core rolled back to can be handed it again: a worker's end the host has not recorded, the
    importer's result for the job still in flight, a stop not begun, changes while no reload
    runs (checking them again is harmless: files whose code runs already are left alone), a
    ``ctx.ready()`` of the current run not recorded yet.
    A command was taken: its client is told it was not answered."""
    if isinstance(message, Exited):
        return message.execution.worker.execution is message.execution
    if isinstance(message, Loaded):
        return message.job is host.job
    if isinstance(message, Signal):
        return not host.stopping
    if isinstance(message, Changes):
        return host.swap is None and host.job is None and not host.stopping
    if isinstance(message, Ready):  # a ctx.ready() not yet recorded: the workers after it wait for it
        return message.execution.worker.execution is message.execution and not message.execution.worker.ready
    return isinstance(message, SinksRemoved)


def _imported(path: Path) -> bool:
    """True if this process has run ``path`` as a module (``python -m`` ran __main__.py too)."""
    path = path.resolve()
    return any(getattr(m, "__file__", None) and Path(m.__file__).resolve() == path
               for m in list(sys.modules.values()))
