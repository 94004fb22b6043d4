"""The supervision logic: what the host does with each message. Reloaded in place when edited.

``host.serve`` calls ``start`` once, then for every message (or timeout) ``handle``, looking
each function up on this module afresh, so the next message after a reload of this file is
handled by the new code. Nothing here keeps state of its own: everything lives in the
``Host`` and ``Worker`` records, which outlive a reload. Keep it that way when editing.

A worker's states: ``starting`` -> ``running`` -> (``stopping`` ->) ``stopped`` | ``exited``
| ``backoff`` -> ``starting`` ... | ``fatal`` (given up on until its source changes).
"""
from __future__ import annotations

import ast
import heapq
import importlib
import os
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from hotreload import backoff, loader, settings
from hotreload import guardian as guardian_process
from hotreload.control import Command
from hotreload.debounce import Changes
from hotreload import host as hosting
from hotreload.log import format_error, logger
from hotreload.worker import Exited, Interrupted, Run, Worker

if TYPE_CHECKING:
    from hotreload.host import Host, Swap

__all__ = ["exit_status", "finished", "format_error", "handle", "helpers", "load", "logger", "start", "wakeup"]

# How long a worker that was interrupted past its stop timeout gets to unwind before the
# host reports its stack and stops waiting for it.
INTERRUPT_GRACE = 1.0
JOIN_TIMEOUT = 1.0


# --- the entry points host.serve calls ------------------------------------------------------


def start(host: Host) -> None:
    """Import every worker, log one summary of what was found, and launch them."""
    host.log.debug(f"supervising with {host.core_file}")
    load(host)
    _summary(host)
    _warn_if_writable(host)
    # Ready before the first worker runs: one that kills the process at once (os._exit) is
    # then a crash for the guardian to restart after, not a start-up failure.
    guardian_process.notify_ready()
    for worker in host.workers.values():
        if worker.run is not None and worker.state == "stopped" and not host.stop_requested:
            _launch(host, worker)


def load(host: Host) -> None:
    """Import every worker of the folder and of the entry points, recording each (with its
    error, if it does not load) in ``host.workers``. Nothing is started: ``hotreload list``."""
    found, skipped = loader.discover(host.options.folder)
    for entry, why in skipped.items():
        host.log.warning(f"skipping {host.options.folder / entry}: {why}")
    for name, path in found.items():
        _import_worker(host, name, path)
    if host.options.entry_points:
        _load_entry_points(host, set(found))
    _sync_graph(host)


def handle(host: Host, message: Any) -> None:
    """Act on one message from the inbox (None when the wait timed out), then on due timers."""
    if isinstance(message, Exited):
        _on_exit(host, message)
    elif isinstance(message, Changes):
        _on_changes(host, set(message.paths))
    elif isinstance(message, hosting.Signal):
        _shutdown(host, message.signum)
    elif isinstance(message, Command):
        message.answer(_on_command(host, message))
    _on_timers(host, time.monotonic())


def wakeup(host: Host) -> float | None:
    """Seconds until the next timer is due (a backoff restart, a stop timeout), or None."""
    timers = host.timers
    while timers and not _is_due_time(host, *timers[0]):
        heapq.heappop(timers)  # settled since it was set: the worker restarted, stopped…
    return timers[0][0] - time.monotonic() if timers else None


def finished(host: Host) -> bool:
    """True once a shutdown has begun and no worker thread is left to wait for."""
    return host.stopping and all(w.current is None or w.current.abandoned for w in host.workers.values())


def exit_status(host: Host) -> int:
    """0 when every worker stopped when asked; 1 when one had to be interrupted or abandoned."""
    abandoned = any(w.current is not None and w.current.abandoned for w in host.workers.values())
    return 1 if host.forced or abandoned else 0


# --- worker lifecycle ----------------------------------------------------------------------


def _set_state(host: Host, worker: Worker, state: str, note: str = "") -> None:
    """Record and log a state change; inside a swap at DEBUG, as the swap logs one line."""
    if state == worker.state and not note:
        return
    worker.state = state
    level = "DEBUG" if host.swap is not None and worker.name in host.swap.before else "INFO"
    worker.log.log(level, f"{state}{': ' + note if note else ''}")


def _launch(host: Host, worker: Worker) -> None:
    worker.restart_at = None
    _set_state(host, worker, "starting")
    worker.current = Run(worker, host.inbox)
    worker.current.start()
    _set_state(host, worker, "running", f"generation {worker.generation}" if worker.generation else "")


def _stop(host: Host, worker: Worker) -> None:
    """Ask a running worker to stop (its ``Exited`` follows); a waiting one just stops."""
    run = worker.current
    if run is not None:
        run.request_stop(worker.settings.stop_timeout)
        if run.stop_deadline is not None:
            _set_timer(host, worker, run.stop_deadline)
        _set_state(host, worker, "stopping")
    elif worker.state == "backoff":
        worker.restart_at = None
        _set_state(host, worker, "stopped")


def _on_exit(host: Host, message: Exited) -> None:
    run, error = message.run, message.error
    worker = run.worker
    if run.abandoned:  # the host gave up waiting for it; its state was settled then
        worker.log.warning("its abandoned thread has ended at last")
        if worker.current is run:
            worker.current = None
        return
    worker.current = None
    run.thread.join(JOIN_TIMEOUT)  # posting Exited was its last act: this returns at once
    now = time.monotonic()
    ran_for = now - run.started_at
    if run.stop_event.is_set():  # it was asked to stop
        if error is not None and not isinstance(error, Interrupted):
            worker.log.warning(f"raised while stopping:\n{format_error(error)}")
        _set_state(host, worker, "stopped")
        swap = host.swap
        if swap is not None and worker.name in swap.waiting:
            swap.waiting.discard(worker.name)
            _apply_swap_when_ready(host)
        elif worker.name in host.restarting:
            host.restarting.discard(worker.name)
            if not host.stopping:
                worker.restarts += 1
                _launch(host, worker)
        return
    if error is not None:
        worker.last_error = _one_line(error)
        worker.log.error(f"crashed after {ran_for:.1f} s:\n{format_error(error)}")
    policy = worker.settings.restart
    if policy == "never" or (policy == "on-failure" and error is None):
        how = "returned" if error is None else "crashed"
        _set_state(host, worker, "exited", f"{how}; RESTART={policy!r}, not restarting")
        return
    if host.stopping:
        _set_state(host, worker, "stopped")
        return
    _schedule_restart(host, worker, ran_for, now, "returned" if error is None else "crashed")


def _schedule_restart(host: Host, worker: Worker, ran_for: float, now: float, why: str) -> None:
    policy = worker.settings.backoff
    worker.failures = backoff.count_failure(worker.failures, ran_for, stable_after=policy.max)
    if worker.failures >= policy.fatal_after:
        _set_state(
            host, worker, "fatal",
            f"{why} {worker.failures} times in a row; not restarting until its source changes",
        )
        return
    wait = backoff.delay(
        worker.failures, policy.initial, policy.factor, policy.max, policy.jitter, host.rng.random
    )
    worker.restart_at = now + wait
    _set_timer(host, worker, worker.restart_at)
    _set_state(host, worker, "backoff", f"{why}; restarting in {wait:.2f} s (attempt {worker.failures})")


def _set_timer(host: Host, worker: Worker, when: float) -> None:
    heapq.heappush(host.timers, (when, worker.name))


def _is_due_time(host: Host, when: float, name: str) -> bool:
    """True if the worker ``name`` still has something to do at ``when``."""
    worker = host.workers.get(name)
    if worker is None:
        return False
    if worker.state == "backoff" and worker.restart_at == when:
        return True
    run = worker.current
    if run is None or run.stop_deadline is None or run.abandoned:
        return False
    return when == run.stop_deadline + (INTERRUPT_GRACE if run.interrupted else 0.0)


def _on_timers(host: Host, now: float) -> None:
    """Act on every timer due by ``now``: only those workers are looked at."""
    timers = host.timers
    while timers and timers[0][0] <= now:
        when, name = heapq.heappop(timers)
        if _is_due_time(host, when, name):
            _on_timer(host, host.workers[name], now)


def _on_timer(host: Host, worker: Worker, now: float) -> None:
    if worker.state == "backoff":
        if not host.stopping:
            worker.restarts += 1
            _launch(host, worker)
        return
    run = worker.current
    assert run is not None and run.stop_deadline is not None
    if not run.interrupted:
        if host.stopping:
            host.forced.add(worker.name)
        worker.log.warning(f"did not stop within {worker.settings.stop_timeout:g} s; interrupting it")
        run.interrupt()
        _set_timer(host, worker, run.stop_deadline + INTERRUPT_GRACE)
        return
    if not run.thread.is_alive():  # interrupted as it was posting its Exited: it ended
        _on_exit(host, Exited(run, None))
        return
    run.abandoned = True
    worker.last_error = "did not stop when asked"
    worker.log.error(f"still running after being interrupted; giving up on it. It is at:\n{run.stack()}")
    _set_state(host, worker, "fatal", "did not stop; its thread is left running")
    swap = host.swap
    if swap is not None and worker.name in swap.waiting:
        swap.waiting.discard(worker.name)
        _apply_swap_when_ready(host)


def _shutdown(host: Host, signum: int) -> None:
    if host.stopping:
        return
    host.stopping = True
    host.swap = None
    host.backlog.clear()
    running = [w for w in host.workers.values() if w.current is not None]
    host.log.info(f"stopping on {signal.Signals(signum).name}: {len(running)} worker(s) running")
    for worker in host.workers.values():
        _stop(host, worker)


# --- commands from the control socket ---------------------------------------------------


def _on_command(host: Host, command: Command) -> dict[str, Any]:
    if command.cmd == "status":
        return {"ok": True, **_status(host)}
    if command.cmd == "restart-host":
        return _restart_host(host)
    if host.stopping:
        return {"ok": False, "error": "the host is stopping"}
    if host.swap is not None:
        return {"ok": False, "error": "a reload is in progress; try again"}
    unknown = [name for name in command.names if name not in host.workers]
    if unknown:
        return {"ok": False, "error": f"no worker named {', '.join(unknown)}; "
                                      f"the workers are: {', '.join(sorted(host.workers)) or 'none'}"}
    act = {"restart": _restart_one, "stop": _stop_one, "start": _start_one}[command.cmd]
    return {"ok": True, "results": {name: act(host, host.workers[name]) for name in command.names}}


def _stop_one(host: Host, worker: Worker) -> str:
    if worker.current is None and worker.state != "backoff":
        return f"not running ({worker.state})"
    host.restarting.discard(worker.name)
    worker.log.info("stop requested from the control socket")
    _stop(host, worker)
    return "stopping" if worker.current is not None else "stopped"


def _start_one(host: Host, worker: Worker) -> str:
    if worker.current is not None:
        return f"already {worker.state}"
    if worker.run is None:
        return f"cannot start: {worker.last_error or 'its module did not load'}; fix the file and save it"
    worker.failures = 0
    worker.log.info("start requested from the control socket")
    _launch(host, worker)
    return "started"


def _restart_one(host: Host, worker: Worker) -> str:
    if worker.current is None or worker.current.abandoned:
        return _start_one(host, worker)
    host.restarting.add(worker.name)
    worker.log.info("restart requested from the control socket")
    _stop(host, worker)
    return "restarting"


def _restart_host(host: Host) -> dict[str, Any]:
    guardian = os.environ.get(guardian_process.GUARDIAN_ENV)
    if not guardian or not guardian.isdigit():
        return {"ok": False, "error": "this host runs without a guardian (--no-guard): "
                                      "restart it the way it was started"}
    host.log.info("host restart requested from the control socket")
    os.kill(int(guardian), signal.SIGHUP)
    return {"ok": True, "results": {"host": f"restarting (guardian pid {guardian})"}}


def _status(host: Host) -> dict[str, Any]:
    now = time.monotonic()
    rows = []
    for worker in sorted(host.workers.values(), key=lambda w: w.name):
        run = worker.current
        rows.append({
            "name": worker.name,
            "state": worker.state,
            "uptime": round(now - run.started_at, 1) if run is not None and worker.state == "running" else None,
            "restarts": worker.restarts,
            "generation": worker.generation,
            "last_error": worker.last_error,
            "source": worker.source,
        })
    return {
        "pid": os.getpid(),
        "guardian": os.environ.get(guardian_process.GUARDIAN_ENV),
        "folder": str(host.options.folder),
        "config": host.options.config,
        "reload": host.options.reload,
        "core_generation": host.core_generation,
        "workers": rows,
    }


# --- start-up ------------------------------------------------------------------------------


def _import_worker(host: Host, name: str, path: Path) -> None:
    """Import a worker module and record it; a module without ``run`` is a helper.

    A module that fails to import is recorded as ``fatal`` with its error, so that the next
    good save of it (or of what it imports) starts it.
    """
    module_name = f"{host.package}.{name}"
    worker = Worker(name, _shown(host, path), logger.bind(worker=name), host.defaults, module_name, path)
    try:
        module = importlib.import_module(module_name)
        worker.run, worker.settings = loader.worker_parts(module, host.defaults)
    except loader.NotAWorker:
        _helper_warning(host, module_name)
        return
    except BaseException as exc:  # noqa: B036 - even sys.exit() at import time is the user's to see
        worker.last_error = _one_line(exc)
        worker.log.error(f"cannot load {worker.source}:\n{format_error(exc)}")
        loader.forget(module_name)
        _set_state(host, worker, "fatal", "fix the file and save it to start the worker")
    host.workers[name] = worker


def _load_entry_points(host: Host, folder_names: set[str]) -> None:
    for entry in loader.entry_points():
        source = f"entry point {entry.name} = {entry.value}"
        if entry.name in folder_names:
            host.log.warning(f"{source} ignored: the folder has a worker of that name")
            continue
        worker = Worker(entry.name, source, logger.bind(worker=entry.name), host.defaults)
        host.workers[entry.name] = worker
        try:
            run = entry.load()
            if not callable(run):
                raise TypeError(f"{entry.value} is {type(run).__name__}, not a callable run(ctx)")
            worker.run = run
            worker.settings = settings.parse(vars(importlib.import_module(entry.module)), host.defaults)
        except BaseException as exc:  # noqa: B036
            worker.last_error = _one_line(exc)
            worker.log.error(f"cannot load {source}:\n{format_error(exc)}")
            _set_state(host, worker, "fatal", "entry point broken")


def helpers(host: Host) -> list[str]:
    """The folder's modules that are loaded and are not workers, by name within the folder
    (``_util``, ``_shared.impl``)."""
    prefix = host.package + "."
    return sorted(
        name[len(prefix):] for name in sys.modules
        if name.startswith(prefix) and name.split(".")[1] not in host.workers
    )


def _summary(host: Host) -> None:
    workers = sorted(host.workers.values(), key=lambda w: w.name)
    loaded_helpers = helpers(host)
    lines = [f"{len(workers)} worker(s) in {host.options.folder}"
             f" (reload {'on' if host.options.reload else 'off'}):"]
    width = max((len(w.name) for w in workers), default=0)
    for worker in workers:
        extra = settings.describe(worker.settings, host.defaults)
        broken = f"  BROKEN: {worker.last_error}" if worker.run is None else ""
        lines.append(f"  {worker.name:<{width}}  {worker.source}  {extra}{broken}".rstrip())
    if loaded_helpers:
        lines.append(f"  helpers: {', '.join(loaded_helpers)}")
    if host.options.config:
        lines.append(f"  defaults from {host.options.config}")
    host.log.info("\n".join(lines))


def _warn_if_writable(host: Host) -> None:
    """Workers are code: a folder or file that other users can write lets them run theirs."""
    exposed = [f"{path} ({who})" for path in loader.sources(host.options.folder)
               if (who := loader.writable_by_others(path))]
    if exposed:
        host.log.warning(
            "SECURITY: writable by other users, who could run their code in this process:\n  "
            + "\n  ".join(exposed[:20]) + (f"\n  … and {len(exposed) - 20} more" if len(exposed) > 20 else "")
            + f"\nFix: chmod -R go-w {host.options.folder}"
        )


# --- reloading -----------------------------------------------------------------------------


def _on_changes(host: Host, paths: set[str]) -> None:
    if host.stopping:
        return
    if host.swap is not None:  # applied once the current swap is done
        host.backlog.update(paths)
        return
    started = time.monotonic()
    package_dir = host.core_file.parent
    own = {p for p in paths if Path(p).parent == package_dir}
    if own:
        _on_own_changes(host, own, started)
    folder_paths = paths - own
    if folder_paths:
        _begin_swap(host, folder_paths, started)


def _on_own_changes(host: Host, paths: set[str], started: float) -> None:
    for path in map(Path, sorted(paths)):
        try:
            new_digest = loader.digest(path.read_bytes())
        except OSError:
            continue
        if new_digest == host.own_digests.get(path):
            continue
        if path == host.core_file:
            _reload_core(host, new_digest, started)
        else:
            host.own_digests[path] = new_digest
            host.log.warning(f"{path} changed: only core.py reloads in place; restart hotreload to use it")


def _reload_core(host: Host, new_digest: str, started: float) -> None:
    module = sys.modules[__name__]
    try:
        loader.reload(module, check=_check_core, clear=__all__)
    except BaseException as exc:  # noqa: B036 - a broken core must never end the host
        host.log.error(f"the edit of core.py was not applied; the host runs on the previous core:\n"
                       f"{format_error(exc)}")
        return
    host.own_digests[host.core_file] = new_digest
    host.core_generation += 1
    host.log.info(f"core reloaded (generation {host.core_generation}) in {_ms(started)}; workers untouched")


def _check_core(module: Any) -> None:
    """A new core must still offer what ``host.serve`` calls."""
    for name in __all__:
        if not callable(getattr(module, name, None)) and name != "logger":
            raise AttributeError(f"core.py no longer defines {name}()")


def _plan(host: Host, paths: Iterable[str], started: float) -> Swap | None:
    """What a batch of changed paths means: modules to reload in order, workers added/removed."""
    folder, package = host.options.folder, host.package
    roots: set[str] = set()
    gone: set[str] = set()
    added: set[str] = set()
    removed: set[str] = set()
    known: set[str] | None = None  # the folder's modules, listed once a deletion needs them
    for raw in paths:
        path = Path(raw)
        name = loader.module_name(folder, package, path)
        if not _exists(host, path):
            prefix = name or loader.module_name(folder, package, path / "__init__.py")
            if prefix is None or prefix == package:  # the folder's own package stays
                continue
            if known is None:
                known = _known_modules(host)
            gone |= {m for m in known if m == prefix or m.startswith(prefix + ".")}
            worker = host.workers.get(_top(prefix))
            if worker is not None and worker.path is not None and not _exists(host, worker.path):
                removed.add(worker.name)
            continue
        if name is None:
            continue
        module = sys.modules.get(name)
        try:
            data = host.finder.read(raw) if host.finder is not None else path.read_bytes()
        except OSError:
            continue
        if module is not None and loader.loaded_digest(module) == loader.digest(data):
            if name in host.broken:  # a bad edit undone
                host.broken.discard(name)
                _log_for(host, name).info(f"{_shown(host, path)} is back to the code that runs")
            continue  # touched, or saved unchanged
        try:
            ast.parse(data, str(path))
        except SyntaxError as exc:  # reported before anything is stopped
            host.broken.add(name)
            keeps = "; the previous version keeps running" if module is not None else ""
            _log_for(host, name).error(f"not loaded{keeps}:\n{format_error(exc)}")
            continue
        roots.add(name)
        top = _top(name)
        if top and top not in host.workers and _is_worker_file(folder, path) and not top.startswith("_"):
            added.add(top)
    gone |= {host.workers[name].module for name in removed}  # type: ignore[misc]
    if not roots and not gone:
        return None
    affected = loader.dependents(host.graph.rdeps, roots | gone) - gone
    order = loader.reload_order(host.graph.deps, affected)
    return hosting.Swap(started=started, order=order, gone=gone, added=added, removed=removed)


def _begin_swap(host: Host, paths: set[str], started: float) -> None:
    _freeze(host, True)
    swap = _plan(host, paths, started)
    if swap is None:
        _freeze(host, False)
        return
    host.swap = swap
    affected = [_worker_of(host, module) for module in (*swap.order, *swap.gone)]
    affected += [host.workers[name] for name in swap.removed]
    for worker in filter(None, affected):
        if worker.name in swap.before:
            continue
        swap.before[worker.name] = worker.state
        if worker.current is not None and not worker.current.abandoned:
            swap.waiting.add(worker.name)
        _stop(host, worker)
    _apply_swap_when_ready(host)


def _apply_swap_when_ready(host: Host) -> None:
    swap = host.swap
    if swap is None or swap.waiting:
        return
    try:
        _apply(host, swap)
    finally:
        host.swap = None
        _freeze(host, False)
    if host.backlog and not host.stopping:
        backlog, host.backlog = set(host.backlog), set()
        _on_changes(host, backlog)


def _apply(host: Host, swap: Swap) -> None:
    for name in swap.removed:
        removed = host.workers.pop(name)
        _set_state(host, removed, "stopped")
        removed.log.info("removed: its file is gone")
    for module in swap.gone:
        loader.forget(module)
        host.graph.drop(module)
    failed: set[str] = set()
    for module in swap.order:
        top = _top(module)
        worker = _worker_of(host, module)
        deps = host.graph.deps.get(module, frozenset())
        blocked = [f"{m} (its file is gone)" for m in sorted(deps & swap.gone)]
        blocked += [f"{m} (it failed to load)" for m in sorted(deps & failed)]
        if blocked:
            failed.add(module)
            if worker is not None:
                _not_swapped(host, swap, worker, f"it imports {', '.join(blocked)}")
            continue
        new_worker = top in swap.added and module == f"{host.package}.{top}"
        if module not in sys.modules and worker is None and not new_worker:
            continue  # a helper nobody imports (yet)
        if _load(host, swap, module, worker, new_worker):
            host.broken.discard(module)
        else:
            failed.add(module)
            host.broken.add(module)
        _sync_graph(host)


def _load(host: Host, swap: Swap, module: str, worker: Worker | None, new_worker: bool) -> bool:
    """(Re)load one module of a swap and start its worker on the new code; False if it failed."""
    loaded = sys.modules.get(module)
    is_worker = worker is not None or new_worker
    top = _top(module)
    # An existing worker's new code must define run, else the reload is rolled back and the
    # old version kept; a new file without run is simply a helper, loaded as it is.
    check = (lambda m: loader.worker_parts(m, host.defaults)) if worker is not None else None
    try:
        if loaded is None:
            loaded, parts = importlib.import_module(module), None
        else:
            parts = loader.reload(loaded, check=check, clear=loader.CONTRACT_NAMES if is_worker else ())
        if is_worker and parts is None:
            parts = loader.worker_parts(loaded, host.defaults)
    except loader.NotAWorker:
        if worker is None or worker.run is None:  # new, or never loaded: a helper after all
            host.workers.pop(top, None)
            _helper_warning(host, module)
            return True
        why = f"{worker.source} no longer defines run(ctx) (to make it a helper, rename it to _{top}.py)"
        _not_swapped(host, swap, worker, why)
        return False
    except BaseException as exc:  # noqa: B036 - the user's code: report, keep the old version
        if module not in sys.modules:
            loader.forget(module)
        if worker is not None:
            worker.last_error = _one_line(exc)
            _not_swapped(host, swap, worker, f"its new code failed:\n{format_error(exc)}")
        elif is_worker:
            logger.bind(worker=top).error(f"cannot start this new worker:\n{format_error(exc)}")
        else:
            host.log.error(f"{module} not reloaded:\n{format_error(exc)}")
        return False
    if parts is None:
        helper = module[len(host.package) + 1:] or "__init__"
        host.log.info(f"reloaded helper {helper} in {_ms(swap.started)}")
        return True
    if worker is None:
        path = Path(sys.modules[module].__file__ or "")
        worker = Worker(top, _shown(host, path), logger.bind(worker=top), host.defaults, module, path)
        host.workers[top] = worker
    fresh = worker.run is None
    if not fresh:
        worker.generation += 1
    worker.run, worker.settings = parts
    worker.failures = 0
    worker.last_error = None
    if not host.stopping:
        _launch(host, worker)
    action = "started" if fresh else f"reloaded (generation {worker.generation})"
    worker.log.info(f"{action} in {_ms(swap.started)}")
    return True


def _not_swapped(host: Host, swap: Swap, worker: Worker, why: str) -> None:
    """A worker whose new code failed: report, and put it back as it was before the swap."""
    before = swap.before.get(worker.name, worker.state)
    keeps = worker.run is not None and before in ("running", "starting", "backoff")
    worker.log.error(f"not reloaded: {why}")
    if not keeps:  # it was not running before either: it stays as it was
        if worker.run is None:
            _set_state(host, worker, "fatal", "fix the file and save it to start the worker")
        return
    if before == "backoff":
        _schedule_restart(host, worker, 0.0, time.monotonic(), "previous version crashed")
    else:
        worker.log.info(f"the previous version (generation {worker.generation}) keeps running")
        _launch(host, worker)


# --- small pieces --------------------------------------------------------------------------


def _exists(host: Host, path: Path) -> bool:
    """Whether ``path`` exists in the version of the folder being loaded (see ``_freeze``)."""
    known = host.watcher.exists(str(path)) if host.watcher is not None else None
    return path.exists() if known is None else known


def _freeze(host: Host, frozen: bool) -> None:
    """While a swap runs, its files are read as one complete version of the folder, however
    long the workers take to stop (see ``Watcher.read_source``)."""
    if host.watcher is None:
        return
    if frozen:
        host.watcher.freeze()
    else:
        host.watcher.thaw()


def _helper_warning(host: Host, module: str) -> None:
    path = Path(getattr(sys.modules.get(module), "__file__", None) or module)
    host.log.warning(f"{_shown(host, path)} defines no run(ctx): treated as a helper, not a worker")


def _sync_graph(host: Host) -> None:
    finder = host.finder
    if finder is None:
        return
    for module, source in finder.executed:
        host.graph.set(module, source.imports)
    finder.executed.clear()


def _known_modules(host: Host) -> set[str]:
    prefix = host.package + "."
    return {m for m in sys.modules if m.startswith(prefix)} | {
        m for m in host.graph.deps if m.startswith(prefix)
    }


def _worker_of(host: Host, module: str) -> Worker | None:
    worker = host.workers.get(_top(module))
    return worker if worker is not None and worker.module == module else None


def _log_for(host: Host, module: str) -> Any:
    """The logger of the worker ``module`` is, or the host's."""
    worker = _worker_of(host, module)
    return worker.log if worker is not None else host.log


def _top(module: str) -> str:
    """The name under the folder's package that ``module`` belongs to ('' for the package)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _is_worker_file(folder: Path, path: Path) -> bool:
    """``name.py`` or ``name/__init__.py`` directly in the folder."""
    rel = path.relative_to(folder).parts
    return (len(rel) == 1 and rel[0].endswith(".py")) or (len(rel) == 2 and rel[1] == "__init__.py")


def _shown(host: Host, path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _ms(started: float) -> str:
    return f"{(time.monotonic() - started) * 1000:.1f} ms"


