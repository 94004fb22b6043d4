"""The supervision logic: what the host does with each message. Reloaded in place when edited.

``host.serve`` calls ``start`` once, then for every message (or timeout) ``handle``, looking
each function up on this module afresh, so the next message after a reload of this file is
handled by the new code. Nothing here keeps state of its own: everything lives in the
``Host`` and ``Worker`` records, which outlive a reload, and a deadline is stored there when
it is decided, never recomputed from a constant of this file. Keep it that way when editing.
The loop calls only the functions ``host.CORE_API`` names; ``corereload`` reloads this file,
and checks the new code before the loop runs on it.

The records it works on, and the messages it handles, are ``hotreload.records``; a worker's
states and their transitions are ``hotreload.states``.
"""
from __future__ import annotations

import heapq
import importlib
import os
import signal
import sys
import threading
import time
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable, Iterable

from hotreload import backoff, cpu, events, importer, keep, loader, order, ownership, program, readiness, safe
from hotreload import settings, upgrade
from hotreload import guardian as guardian_process
from hotreload.log import format_error, logger, restore_sinks, sinks_removed_by, wake_on_removal
from hotreload.log import bridge_removed, restore_bridge
from hotreload.records import (
    Carry, Changes, Command, Exited, Host, Job, Loaded, Message, Ready, Reloaded, Signal, SinksRemoved, Swap,
    Worker,
)
from hotreload.states import BACKOFF, EXITED, FATAL, RESTARTABLE, RUNNING, STARTING, STOPPED, STOPPING, WAITING
from hotreload.worker import Execution, Interrupted, call_problem

if TYPE_CHECKING:
    from loguru import Logger

__all__ = ["exit_status", "finished", "format_error", "handle", "helpers", "load", "logger", "start", "wakeup"]

# How long a worker that was interrupted past its stop timeout gets to unwind before the
# host reports its stack and stops waiting for it.
INTERRUPT_GRACE = 1.0
JOIN_TIMEOUT = 1.0
STARTUP_JOBS = ("start", "entry point")  # the purposes of the importer's jobs at start-up
# Changed files up to this size in all are read and parsed in the loop (a few ms), sparing
# the usual save a trip through the importer thread; bigger batches are checked there.
CHECK_IN_LOOP_BYTES = 256 * 1024
# How often a worker with READY = "tcp:PORT" is probed, until that port accepts.
PROBE_EVERY = 0.1


# --- the entry points host.serve calls ------------------------------------------------------


def start(host: Host) -> None:
    """Import every worker in the importer thread, one after the other; once all are loaded,
    log one summary of what was found and launch them (``_started``)."""
    host.log.debug(f"supervising with {host.core_file}")
    wake_on_removal(host.inbox.put)
    host.startup = _startup_jobs(host)
    _next_startup_job(host)


def _started(host: Host) -> None:
    _sync_graph(host)
    _restore_logging(host)  # a module just imported may have removed the host's sinks
    _sync_procfile(host, launch=False)
    _summary(host)
    _warn_if_writable(host)
    # Ready before the first worker runs: one that kills the process at once (os._exit) is
    # then a crash for the guardian to restart after, not a start-up failure.
    guardian_process.notify_ready()
    for worker in host.workers.values():
        if worker.target is not None and worker.state == STOPPED and not host.stop_requested:
            _launch(host, worker)
    _after_swap(host)  # the changes saved while the workers were importing


def load(host: Host) -> None:
    """Import every worker of the folder and of the entry points, recording each (with its
    error, if it does not load) in ``host.workers``. Nothing is started: ``hotreload list``.
    The same jobs as at start, run here in this thread."""
    for job in _startup_jobs(host):
        _on_startup_job(host, importer.run(job))
    _sync_graph(host)
    _restore_logging(host)
    _sync_procfile(host, launch=False)
    for worker in host.workers.values():
        worker.order_error = _order_problem(host, worker) if worker.target is not None else None
        if worker.order_error is not None:
            worker.last_error = worker.order_error
            worker.log.error(f"cannot start: {worker.order_error}")


def _startup_jobs(host: Host) -> list[Job]:
    found, skipped = loader.discover(host.files)
    for entry, why in skipped.items():
        host.log.warning(f"skipping {host.options.folder / entry}: {why}")
    jobs = [_import_worker(host, name, path) for name, path in found.items()]
    if host.options.entry_points:
        jobs += _load_entry_points(host, set(found))
    return jobs


def _next_startup_job(host: Host) -> None:
    """Submit the next start-up import; once none is left, the host has started."""
    if host.startup:
        _submit(host, host.startup.pop(0))
    else:
        _started(host)


def _on_startup_job(host: Host, job: Job) -> None:
    if job.purpose == "entry point":
        _entry_point_loaded(host, job)
    else:
        _worker_imported(host, job)


def handle(host: Host, message: Message) -> None:
    """Act on one message from the inbox (None when the wait timed out), then on due timers."""
    if isinstance(message, Exited):
        _on_exit(host, message)
    elif isinstance(message, Changes):
        _on_changes(host, set(message.paths))
    elif isinstance(message, Signal):
        _shutdown(host, message.signum)
    elif isinstance(message, Command) and message.take():  # not once expired: "not done" was said
        message.answer(_on_command(host, message))
    elif isinstance(message, SinksRemoved):
        _restore_logging(host)
    elif isinstance(message, Loaded):
        _on_loaded(host, message.job)
    elif isinstance(message, Ready):
        _on_ready(host, message.execution)
    if host.stop_queue:
        _stop_in_order(host)
    _on_timers(host, time.monotonic())
    _on_slow_job(host, time.monotonic())
    _on_closing(host, time.monotonic())


def _on_closing(host: Host, now: float) -> None:
    """Forget the closes that ended; say so of those past their deadline, left to go on."""
    for closing in list(host.closing):
        if not closing.thread.is_alive():
            closing.thread.join(JOIN_TIMEOUT)  # ended: returns at once
            host.closing.remove(closing)
        elif now >= closing.deadline:
            keep.overdue(closing)
            host.closing.remove(closing)


def wakeup(host: Host) -> float | None:
    """Seconds until the next timer is due (a backoff restart, a stop timeout, a readiness
    probe, a heartbeat check, a report of a slow import), or None."""
    timers = host.timers
    while timers and _due(host, *timers[0]) is None:
        heapq.heappop(timers)  # settled since it was set: the worker restarted, stopped…
    due = timers[0][0] - time.monotonic() if timers else None
    job = host.job
    if job is not None:
        report = job.submitted + importer.next_report(job.reported) - time.monotonic()
        due = report if due is None else min(due, report)
    for closing in host.closing:
        left = closing.deadline - time.monotonic()
        due = left if due is None else min(due, left)
    return due


def finished(host: Host) -> bool:
    """True once a shutdown has begun and no worker thread, nor close of what one kept, is
    left to wait for."""
    return host.stopping and not host.closing and all(
        w.execution is None or w.execution.abandoned for w in host.workers.values()
    )


def exit_status(host: Host) -> int:
    """0 when every worker stopped when asked; 1 when one had to be interrupted or abandoned,
    or a module was still importing."""
    abandoned = any(w.execution is not None and w.execution.abandoned for w in host.workers.values())
    importing = host.importer is not None and host.importer.thread.is_alive()
    return 1 if host.forced or abandoned or importing else 0


# --- worker lifecycle ----------------------------------------------------------------------


def _set_state(host: Host, worker: Worker, state: str, note: str = "") -> None:
    """Record, log and journal a state change; logged inside a swap at DEBUG, as the swap
    logs one line."""
    if state == worker.state and not note:
        return
    previous, worker.state = worker.state, state
    host.journal.add_event(events.state_changed(worker.name, state, previous, note))
    swap = host.swap  # a removed worker's stop is its last word: logged as it is
    level = "DEBUG" if swap is not None and worker.name in swap.before and worker.name not in swap.removed else "INFO"
    worker.log.log(level, f"{state}{': ' + note if note else ''}")


# Why a worker whose abandoned thread still runs is not started: at most one version runs.
STUCK = "its abandoned thread still runs (it ignored its stop)"
STUCK_WAY_OUT = "`hotreload restart --host` replaces the process"


def _launch(host: Host, worker: Worker) -> bool:
    """Start the worker's ``run`` in a new thread once the workers in its AFTER are ready
    (until then it is WAITING), unless a thread of it still runs (an abandoned one): then it
    starts when that thread ends. True if it was started, or waits to be."""
    if worker.execution is not None:
        worker.start_pending = True
        worker.log.warning(f"not started: {STUCK}; it starts when that thread ends, or {STUCK_WAY_OUT}")
        return False
    worker.start_pending = False
    worker.held = False
    worker.restart_at = None
    worker.order_error = _order_problem(host, worker)
    if worker.order_error is not None:  # a load error: it is not started until that is fixed
        worker.last_error = worker.order_error
        worker.log.error(f"cannot start: {worker.order_error}")
        _set_state(host, worker, FATAL, "fix the file and save it to start the worker")
        return False
    waits = order.waiting_for(worker.settings.after, _ready_names(host))
    if waits:
        _set_state(host, worker, WAITING, f"for {', '.join(waits)}")
        return True
    _restore_logging(host)  # a module just imported may have removed them: before it runs
    _set_state(host, worker, STARTING)
    run = program.Process if isinstance(worker.target, program.Program) else Execution
    worker.execution = run(worker, host.inbox)
    worker.execution.start()
    _set_state(host, worker, RUNNING, f"generation {worker.generation}" if worker.generation else "")
    _on_started(host, worker, worker.execution)
    return True


def _restore_logging(host: Host) -> None:
    """Add the host's log sinks back if a worker's ``logger.remove()`` took them, and the
    ``logging`` bridge if a worker's logging set-up replaced the root logger's handlers."""
    if bridge_removed():
        restore_bridge()
        host.log.warning(
            "a worker replaced the root logger's handlers (logging.basicConfig(force=True) or "
            "logging.config.dictConfig): the handler that routes logging records into this log is added back"
        )
    remover = sinks_removed_by()
    if remover is None:
        return
    restore_sinks()
    path, _, line = remover.rpartition(":")
    host.log.warning(
        f"{_shown(host, Path(path))}:{line} removed the host's log sinks (loguru's logger.remove() removes every "
        "handler); they are restored. Log with ctx.log, and leave the host's sinks to the host"
    )


def _stop(host: Host, worker: Worker) -> None:
    """Ask a running worker to stop (its ``Exited`` follows); a waiting one just stops."""
    execution = worker.execution
    if execution is not None and execution.abandoned:  # given up on: it is fatal already
        return
    worker.ready = False
    if execution is not None:
        execution.request_stop(worker.settings.stop_timeout)
        if execution.stop_deadline is not None:
            _set_timer(host, worker, execution.stop_deadline)
        _set_state(host, worker, STOPPING)
    elif worker.state in (BACKOFF, WAITING):
        worker.restart_at = None
        _set_state(host, worker, STOPPED)


def _on_exit(host: Host, message: Exited) -> None:
    execution, error = message.execution, message.error
    worker = execution.worker
    if execution.abandoned:  # the host gave up waiting for it; its state was settled then
        worker.log.warning("its abandoned thread has ended at last")
        if worker.execution is execution:
            worker.execution = None
            known = host.workers.get(worker.name) is worker  # not removed meanwhile
            if not known or host.stopping:
                _close_kept(host, worker)
            if worker.start_pending and known and worker.target is not None and not host.stopping:
                worker.failures = 0
                _launch(host, worker)
        return
    worker.execution = None
    execution.thread.join(JOIN_TIMEOUT)  # posting Exited was its last act: this returns at once
    if host.stopping:
        _close_kept(host, worker)
    now = time.monotonic()
    ran_for = now - execution.started_at
    if execution.stop_event.is_set():  # it was asked to stop
        if error is not None and not isinstance(error, Interrupted):
            worker.log.warning(f"raised while stopping:\n{_described(message)[1]}")
        _set_state(host, worker, STOPPED)
        swap = host.swap
        if swap is not None and worker.name in swap.waiting:
            swap.waiting.discard(worker.name)
            _apply_swap_when_ready(host)
        elif worker.name in host.restarting:
            host.restarting.discard(worker.name)
            if not host.stopping:
                worker.restarts += 1
                _launch(host, worker)
        elif worker.start_pending and not host.stopping:  # a program stopped to run its new command
            _launch(host, worker)
        return
    how = "hung" if execution.hung else "returned" if error is None else "crashed"
    if how != "returned":
        worker.crashes += 1
    if execution.hung:  # interrupted by the heartbeat check, which logged its stack
        worker.last_error = f"hung: no sign of life for {execution.heartbeat:g} s (HEARTBEAT)"
        worker.log.error(f"{worker.last_error}; it ended when interrupted")
        ran_for = execution.beat - execution.started_at  # alive that long: what counts for backoff
    elif error is not None:
        worker.last_error, report = _described(message)
        worker.log.error(f"crashed after {ran_for:.1f} s:\n{report}")
        host.journal.add_event(events.crashed(worker.name, safe.type_name(error), worker.last_error,
                                              *events.where(error, host.options.folder)))
    policy = worker.settings.restart
    if policy == "never" or (policy == "on-failure" and how == "returned"):
        _set_state(host, worker, EXITED, f"{how}; RESTART={policy!r}, not restarting")
        return
    if host.stopping:
        _set_state(host, worker, STOPPED)
        return
    _schedule_restart(host, worker, ran_for, now, how)


def _described(message: Exited) -> tuple[str, str]:
    """The error's one line and traceback, as the worker's thread made them."""
    if message.described is not None:
        return message.described
    return _one_line(message.error), format_error(message.error)  # type: ignore[arg-type]


def _schedule_restart(host: Host, worker: Worker, ran_for: float, now: float, why: str) -> None:
    policy = worker.settings.backoff
    worker.failures = backoff.count_failure(worker.failures, ran_for, stable_after=policy.max)
    if worker.failures >= policy.fatal_after:
        _set_state(
            host, worker, FATAL,
            f"{why} {worker.failures} times in a row; not restarting until its source changes",
        )
        return
    wait = backoff.delay(
        worker.failures, policy.initial, policy.factor, policy.max, policy.jitter, host.rng.random
    )
    worker.restart_at = now + wait
    _set_timer(host, worker, worker.restart_at)
    _set_state(host, worker, BACKOFF, f"{why}; restarting in {wait:.2f} s (attempt {worker.failures})")


def _set_timer(host: Host, worker: Worker, when: float) -> None:
    heapq.heappush(host.timers, (when, worker.name))


def _due(host: Host, when: float, name: str) -> str | None:
    """What the worker ``name`` still has to do at ``when`` — "restart", "probe", "beat" or
    "stop" — or None. Compares with the deadlines stored on the records only, never with
    core's constants, which a reload changes."""
    worker = host.workers.get(name)
    if worker is None:
        return None
    if worker.state == BACKOFF and worker.restart_at == when:
        return "restart"
    if worker.state == RUNNING and not worker.ready and worker.probe_at == when:
        return "probe"
    execution = worker.execution
    if execution is None or execution.abandoned:
        return None
    if execution.abandon_at is not None or execution.stop_deadline is not None:
        return "stop" if when == (execution.abandon_at or execution.stop_deadline) else None
    return "beat" if when == execution.hang_at else None


def _on_timers(host: Host, now: float) -> None:
    """Act on every timer due by ``now``: only those workers are looked at."""
    timers = host.timers
    while timers and timers[0][0] <= now:
        when, name = heapq.heappop(timers)
        due = _due(host, when, name)
        if due == "probe":
            _probe(host, host.workers[name], now)
        elif due == "beat":
            _check_beat(host, host.workers[name], now)
        elif due is not None:
            _on_timer(host, host.workers[name], now)


def _on_timer(host: Host, worker: Worker, now: float) -> None:
    if worker.state == BACKOFF:
        if not host.stopping:
            worker.restarts += 1
            _launch(host, worker)
        return
    execution = worker.execution
    assert execution is not None
    if not execution.interrupted:
        if host.stopping:
            host.forced.add(worker.name)
        how = "killing its process group (SIGKILL)" if isinstance(execution, program.Process) else "interrupting it"
        worker.log.warning(f"did not stop within {worker.settings.stop_timeout:g} s; {how}")
        execution.abandon_at = execution.stop_deadline + INTERRUPT_GRACE  # decided once: a reload may change the constant
        execution.interrupt()
        _set_timer(host, worker, execution.abandon_at)
        return
    if not execution.thread.is_alive():  # interrupted as it was posting its Exited: it ended
        _on_exit(host, Exited(execution, None))
        return
    execution.abandoned = True
    worker.last_error = "hung, and did not end when interrupted" if execution.hung else "did not stop when asked"
    worker.log.error(f"still running after being interrupted; giving up on it. It is at:\n{execution.stack()}")
    _set_state(host, worker, FATAL, f"did not stop; its thread is left running, and the worker is not started "
                                      f"again until it ends; {STUCK_WAY_OUT}")
    if worker.name in host.restarting:  # `hotreload restart`: done when the thread ends
        host.restarting.discard(worker.name)
        worker.start_pending = True
    if host.stopping:
        _close_kept(host, worker)
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
    host.startup.clear()
    running = [w for w in host.workers.values() if w.execution is not None]
    host.log.info(f"stopping on {signal.Signals(signum).name}: {len(running)} worker(s) running")
    host.stop_queue = set(host.workers)  # each stops once the workers AFTER it have stopped
    _stop_in_order(host)
    for worker in host.workers.values():  # what those not running kept: closed now
        if worker.execution is None or worker.execution.abandoned:
            _close_kept(host, worker)


def _close_kept(host: Host, worker: Worker) -> None:
    """Close what the worker kept (``ctx.keep``), as it is removed or the host stops; never
    under a thread of it that still runs (an abandoned one): then when that thread ends."""
    if worker.execution is None:  # waited for beside the others, never in this loop (``_on_closing``)
        closing = keep.start_closing(worker.kept, worker.name, worker.log, worker.settings.stop_timeout, format_error,
                                     done=lambda: host.inbox.put(None))
        if closing is not None:
            host.closing.append(closing)
    elif len(worker.kept):
        worker.log.warning("what it kept stays open, as its abandoned thread may still use them; "
                           "they are closed if that thread ends")


def _stop_in_order(host: Host) -> None:
    """Ask the workers of the stop queue to stop, each once no worker whose AFTER names it
    still runs: at shutdown and for ``restart --with-dependents``, dependents stop first."""
    host.stop_queue &= set(host.workers)
    running = {name for name, worker in host.workers.items() if _running(worker)}
    for name in order.stoppable(host.stop_queue, _afters(host), running):
        host.stop_queue.discard(name)
        worker = host.workers[name]
        if worker.execution is None and name in host.restarting:  # it ended by itself meanwhile
            host.restarting.discard(name)
            if not host.stopping:
                worker.restarts += 1
                _launch(host, worker)
        else:
            _stop(host, worker)


# --- commands from the control socket ---------------------------------------------------


def _on_command(host: Host, command: Command) -> dict[str, Any]:
    if command.cmd == "status":  # asked for often (status --watch), and changes nothing: no event
        return {"ok": True, **_status(host)}
    if command.cmd == "ping":  # the HTTP probes': as often, and cheaper still
        return {"ok": True, **_ping(host)}
    names = sorted(host.workers) if command.all_workers else command.names  # --all: those of now
    host.journal.add_event(events.command(command.cmd, names))
    if command.cmd == "restart-host":
        return _restart_host(host)
    if host.stopping:
        return {"ok": False, "error": "the host is stopping"}
    if host.swap is not None or host.job is not None:
        starting = host.job is not None and host.job.purpose in STARTUP_JOBS
        what = "the workers are still being imported" if starting else "a reload is in progress"
        return {"ok": False, "error": f"{what}; try again"}
    unknown = [name for name in names if name not in host.workers]
    if unknown:
        return {"ok": False, "error": f"no worker named {', '.join(unknown)}; "
                                      f"the workers are: {', '.join(sorted(host.workers)) or 'none'}"}
    if command.cmd == "restart-with-dependents":
        return {"ok": True, "results": _restart_with_dependents(host, names)}
    act = {"restart": _restart_one, "stop": _stop_one, "start": _start_one}[command.cmd]
    return {"ok": True, "results": {name: act(host, host.workers[name]) for name in names}}


def _stop_one(host: Host, worker: Worker) -> str:
    if worker.execution is not None and worker.execution.abandoned:
        worker.start_pending = False
        return f"not running ({worker.state}): {STUCK}; {STUCK_WAY_OUT}"
    if worker.execution is None and worker.state not in (BACKOFF, WAITING):
        return f"not running ({worker.state})"
    host.restarting.discard(worker.name)
    worker.held = True
    worker.start_pending = False  # a program's relaunch after a save: stopped is what was asked
    worker.log.info("stop requested from the control socket")
    _stop(host, worker)
    return STOPPING if worker.execution is not None else STOPPED


def _start_one(host: Host, worker: Worker) -> str:
    if worker.execution is not None and worker.execution.abandoned:
        return f"cannot start: {STUCK}; {STUCK_WAY_OUT}"
    if worker.execution is not None or worker.state == WAITING:
        return f"already {worker.state}"
    if worker.target is None:
        return f"cannot start: {worker.last_error or 'its module did not load'}; fix the file and save it"
    worker.failures = 0
    worker.log.info("start requested from the control socket")
    _launch(host, worker)
    return "started"


def _restart_one(host: Host, worker: Worker) -> str:
    if worker.execution is None or worker.execution.abandoned:
        return _start_one(host, worker)
    host.restarting.add(worker.name)
    worker.log.info("restart requested from the control socket")
    _stop(host, worker)
    return "restarting"


def _restart_with_dependents(host: Host, names: list[str]) -> dict[str, str]:
    """``restart NAME --with-dependents``: the named workers and the running workers after them
    stop, those after first (as at shutdown), and start again in order, each once its AFTER is
    ready again."""
    afters = _afters(host)
    after_them = [name for name in order.dependents(afters, names) if _running(host.workers[name])]
    chosen = list(dict.fromkeys([*names, *order.dependencies_first(after_them, afters)]))
    for name in chosen:
        host.workers[name].ready = False  # the workers after it wait for its new run
    results = {}
    for name in chosen:
        worker = host.workers[name]
        if not _running(worker):
            results[name] = _start_one(host, worker)
            continue
        worker.log.info("restart requested from the control socket"
                        + (", with the workers after it" if name in names else ": a worker it is after restarts"))
        host.restarting.add(name)
        host.stop_queue.add(name)
        results[name] = "restarting"
    _stop_in_order(host)
    return results


def _restart_host(host: Host) -> dict[str, Any]:
    guardian = guardian_process.guardian_pid()
    if guardian is None:
        return {"ok": False, "error": "this host runs without a guardian (--no-guard): "
                                      "restart it the way it was started"}
    host.log.info("host restart requested from the control socket")
    os.kill(guardian, signal.SIGHUP)
    return {"ok": True, "results": {"host": f"restarting (guardian pid {guardian})"}}


def _ping(host: Host) -> dict[str, Any]:
    """What ``/healthz`` and ``/readyz`` need, and no more: unlike ``_status`` it reads no
    CPU and keeps no sample, so probes every few seconds neither cost a read of every
    thread's /proc file nor shift the CPU% window ``status --watch`` shows."""
    return {
        "starting": _starting(host),
        "stopping": host.stopping,
        "workers": [{"name": w.name, "state": w.state, "held": w.held}
                    for w in sorted(host.workers.values(), key=lambda w: w.name)],
    }


def _starting(host: Host) -> bool:
    return bool(host.startup) or host.job is not None and host.job.purpose in STARTUP_JOBS


def _status(host: Host) -> dict[str, Any]:
    process, sample, usage = _cpu_usage(host)
    now = time.monotonic()
    rows = []
    ready = _ready_names(host)
    for worker in sorted(host.workers.values(), key=lambda w: w.name):
        execution = worker.execution
        rows.append({
            "name": worker.name,
            "state": worker.state,
            "pid": program.pid_of(execution),
            "waiting_for": order.waiting_for(worker.settings.after, ready) if worker.state == WAITING else None,
            # seconds since its last sign of life, for a worker with HEARTBEAT (inside ctx.sleep: 0)
            "beat": None if execution is None or execution.heartbeat is None
            else 0.0 if execution.sleeping else round(now - execution.beat, 1),
            "uptime": round(now - execution.started_at, 1) if execution is not None and worker.state == RUNNING else None,
            "restarts": worker.restarts,
            "crashes": worker.crashes,
            "reloads": dict(worker.reloads),
            "reload_seconds": {"bounds": list(worker.reload_seconds.bounds), "counts": list(worker.reload_seconds.counts),
                               "total": worker.reload_seconds.total},
            "held": worker.held,
            "generation": worker.generation,
            "last_error": worker.last_error,
            "source": worker.source,
            "cpu_percent": usage.workers.get(worker.name),
            "cpu_seconds": round(sample.workers[worker.name], 2),
        })
    return {
        "pid": os.getpid(),
        "guardian": guardian_process.guardian_pid(),
        "folder": str(host.options.folder),
        "config": host.options.config,
        "reload": host.options.reload,
        "core_generation": host.core_generation,
        "uptime": round(now - host.started, 3),
        "starting": _starting(host),
        "stopping": host.stopping,
        "rss_bytes": process.rss_bytes,
        "threads": process.threads,
        "cpu_seconds": round(process.cpu_seconds, 2),
        "cpu_percent": usage.host_percent,
        "cpu_window": None if usage.window is None else round(usage.window, 2),
        "workers": rows,
        "importing": None if host.job is None else {
            "doing": host.job.doing, "seconds": round(now - host.job.submitted, 1),
        },
    }


def _cpu_usage(host: Host) -> tuple[cpu.Usage, cpu.Sample, cpu.Window]:
    """The host's and each worker's CPU so far, read now, and CPU% since a kept sample;
    this sample is kept (on the host record) for the next request."""
    threads = cpu.threads_by_owner(threading.enumerate(), ownership.of)  # its run's, and those it started
    workers = {
        name: program.worker_seconds(worker.execution, partial(cpu.worker_seconds, worker.cpu, threads.get(name, ())))
        for name, worker in host.workers.items()
    }
    process = cpu.process_usage()  # after the workers': it holds what they have used, give or take a tick
    sample = cpu.Sample(time.monotonic(), process.cpu_seconds, workers)
    usage = cpu.usage(cpu.base_for(host.cpu_samples, sample.at), sample)
    host.cpu_samples = cpu.keep(host.cpu_samples, sample)
    return process, sample, usage


# --- start-up ------------------------------------------------------------------------------


def _import_worker(host: Host, name: str, path: Path) -> Job:
    """The job that imports a worker module; ``_worker_imported`` records its outcome."""
    module_name = f"{host.package}.{name}"
    worker = Worker(name, _shown(host, path), logger.bind(worker=name), host.defaults, module_name, path)
    fn = partial(_import_parts, module_name, host.defaults)
    return Job("start", f"importing {worker.source}", fn, worker)


def _import_parts(module_name: str, defaults: settings.Settings) -> Any:
    """In the importer thread: import a worker module, return its run and settings."""
    return loader.worker_parts(importlib.import_module(module_name), defaults)


def _worker_imported(host: Host, job: Job) -> None:
    """Record a worker imported at start; a module without ``run`` is a helper.

    A module that fails to import is recorded as ``fatal`` with its error, so that the next
    good save of it (or of what it imports) starts it.
    """
    worker: Worker = job.subject
    name = worker.name
    module_name = f"{host.package}.{name}"
    try:
        if job.error is not None:
            raise job.error
        worker.target, worker.settings = job.result
        worker.state_version = worker.settings.state_version
        _watch(host, worker)
    except loader.NotAWorker:
        _helper_warning(host, module_name)
        return
    except BaseException as exc:  # noqa: B036 - even sys.exit() at import time is the user's to see
        worker.last_error = _one_line(exc)
        worker.log.error(f"cannot load {worker.source}:\n{format_error(exc)}")
        loader.forget(module_name)
        _set_state(host, worker, FATAL, "fix the file and save it to start the worker")
    host.workers[name] = worker


def _load_entry_points(host: Host, folder_names: set[str]) -> list[Job]:
    """The jobs that load the entry points' workers; ``_entry_point_loaded`` records each."""
    jobs = []
    for entry in loader.entry_points():
        source = f"entry point {entry.name} = {entry.value}"
        if entry.name in folder_names:
            host.log.warning(f"{source} ignored: the folder has a worker of that name")
            continue
        worker = Worker(entry.name, source, logger.bind(worker=entry.name), host.defaults)
        jobs.append(Job("entry point", f"loading {source}",
                                 partial(_entry_point_parts, entry, host.defaults), worker))
    return jobs


def _entry_point_parts(entry: Any, defaults: settings.Settings) -> Any:
    """In the importer thread: an entry point's run(ctx) and its module's settings."""
    target = entry.load()
    if not callable(target):
        raise TypeError(f"{entry.value} is {type(target).__name__}, not a callable run(ctx)")
    problem = call_problem(target)
    if problem is not None:
        raise loader.WorkerError(problem[1], problem[2], problem[0])
    return target, settings.parse(vars(importlib.import_module(entry.module)), defaults)


def _entry_point_loaded(host: Host, job: Job) -> None:
    worker: Worker = job.subject
    source = worker.source
    host.workers[worker.name] = worker
    try:
        if job.error is not None:
            raise job.error
        worker.target, worker.settings = job.result
        _watch(host, worker)
    except BaseException as exc:  # noqa: B036
        worker.last_error = _one_line(exc)
        worker.log.error(f"cannot load {source}:\n{format_error(exc)}")
        _set_state(host, worker, FATAL, "entry point broken")


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
        if isinstance(worker.target, program.Program):
            extra = f"$ {worker.target.shown()}  {extra}"
        broken = f"  BROKEN: {worker.last_error}" if worker.target is None else ""
        lines.append(f"  {worker.name:<{width}}  {worker.source}  {extra}{broken}".rstrip())
    if loaded_helpers:
        lines.append(f"  helpers: {', '.join(loaded_helpers)}")
    if host.options.config:
        lines.append(f"  defaults from {host.options.config}")
    host.log.info("\n".join(lines))


def _warn_if_writable(host: Host) -> None:
    """Workers are code: a folder or file that other users can write lets them run theirs."""
    exposed = [f"{path} ({who})" for path in host.files.walk()
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
    if host.swap is not None or host.job is not None:  # applied once the current swap is done
        host.backlog.update(paths)
        return
    procfile = str(_procfile(host))
    if procfile in paths:
        paths.discard(procfile)
        _sync_procfile(host)
        if host.swap is not None:  # workers of lines gone are stopping: the rest after that
            host.backlog.update(paths)
            return
    if paths:  # hotreload's own files are the loop's (host.serve), never seen here
        _check_changes(host, paths, time.monotonic())


# --- the Procfile --------------------------------------------------------------------------


def _procfile(host: Host) -> Path:
    return host.options.folder / program.PROCFILE


def _from_procfile(host: Host, worker: Worker) -> bool:
    return worker.module is None and worker.path == _procfile(host)


def _sync_procfile(host: Host, launch: bool = True) -> None:
    """Make the Procfile's workers what the folder's Procfile says: a new line adds a worker,
    a changed one restarts it, a line gone removes it once stopped (as a swap), the others
    run on. A worker of the same name elsewhere (a module) wins over a line."""
    path = _procfile(host)
    entries = _procfile_entries(host, path)
    if entries is None:
        return
    for name, (line, spec) in entries.items():
        worker = host.workers.get(name)
        if worker is None:
            worker = Worker(name, _shown(host, path), logger.bind(worker=name), host.defaults, path=path, target=spec)
            worker.user_state = host.states_of_removed.pop(name, worker.user_state)
            host.state_versions_of_removed.pop(name, None)
            host.workers[name] = worker
            if launch:
                _launch(host, worker)
        elif not _from_procfile(host, worker):
            host.log.warning(f"{_shown(host, path)}:{line}: {name} is also {worker.source}, which wins")
        elif (worker.target, worker.settings) != (spec, host.defaults):
            _relaunch(host, worker, (spec, host.defaults))
            worker.log.info(f"its line in {worker.source} changed; restarting it (generation {worker.generation})")
    gone = [w for name, w in host.workers.items() if _from_procfile(host, w) and name not in entries]
    if gone:
        swap = host.swap = Swap(started=time.monotonic(), order=[], gone=set(), added=set(),
                                removed={w.name for w in gone})
        _stop_for_swap(host, swap, gone)


def _procfile_entries(host: Host, path: Path) -> dict[str, tuple[int, program.Program]] | None:
    """The Procfile's lines by name ({} without a Procfile; None if it cannot be read), its
    faulty lines reported."""
    if not _exists(host, path) or path.is_dir():
        return {}
    read = host.finder.read if host.finder is not None else loader.read_bytes
    try:
        text = read(str(path)).decode("utf-8", "replace")
    except OSError as exc:
        host.log.error(f"cannot read {_shown(host, path)}: {exc.strerror or exc}; its workers are left as they are")
        return None
    entries, problems = program.read_procfile(text, host.options.folder, host.files.reserved)
    for line, problem in problems:
        host.log.warning(f"{_shown(host, path)}:{line}: {problem}")
    return entries


def _check_changes(host: Host, paths: set[str], started: float) -> None:
    """Read and parse the changed files, in the importer thread if they are big (a 20 MB
    file takes seconds); ``_begin_swap`` goes on with what was found."""
    _freeze(host, True)  # one version of the folder for the whole swap, as the watcher certified it
    to_check = _to_check(host, paths)
    read = host.finder.read if host.finder is not None else loader.read_bytes
    if sum(map(_size, to_check)) <= CHECK_IN_LOOP_BYTES:
        _begin_swap(host, paths, started, loader.check_sources(to_check, read))
        return
    shown = sorted(_shown(host, Path(raw)) for raw in to_check)
    doing = f"checking {', '.join(shown[:3])}" + (f" and {len(shown) - 3} more" if len(shown) > 3 else "")
    _submit(host, Job("check", doing, partial(loader.check_sources, to_check, read), (paths, started)))


def _to_check(host: Host, paths: Iterable[str]) -> dict[str, str | None]:
    """The changed paths that can be modules of the folder, each with the digest of the code
    its module runs (None if not loaded): what ``loader.check_sources`` reads and parses."""
    found: dict[str, str | None] = {}
    for raw in paths:
        name = host.files.module_name(host.package, Path(raw))
        if name is not None:
            module = sys.modules.get(name)
            found[raw] = loader.loaded_digest(module) if module is not None else None
    return found


def _parse_error(host: Host, path: Path, exc: Exception) -> str:
    """A file that does not parse, in a line or three: a syntax error with its line and caret,
    anything else (RecursionError, MemoryError...) after the file's name."""
    if isinstance(exc, SyntaxError):
        return format_error(exc)
    return f"{_shown(host, path)}: {type(exc).__name__}: {exc}"


def _plan(
    host: Host, paths: Iterable[str], started: float, checked: dict[str, loader.Checked | None]
) -> Swap | None:
    """What a batch of changed paths means: modules to reload in order, workers added/removed.
    ``checked``: the files as ``loader.check_sources`` read them."""
    package = host.package
    roots: set[str] = set()
    gone: set[str] = set()
    added: set[str] = set()
    removed: set[str] = set()
    known: set[str] | None = None  # the folder's modules, listed once a deletion needs them
    for raw in paths:
        path = Path(raw)
        name = host.files.module_name(package, path)
        if name is not None and path.is_dir():  # b.py/: its module is gone, whatever is inside
            _log_for(host, name).warning(f"{_shown(host, path)} is a folder, not a module file: not loaded")
        if not _exists(host, path) or (name is not None and path.is_dir()):
            prefix = name or host.files.module_name(package, path / "__init__.py")
            if prefix is None or prefix == package:  # the folder's own package stays
                continue
            if known is None:
                known = _known_modules(host)
            gone |= {m for m in known if m == prefix or m.startswith(prefix + ".")}
            worker = host.workers.get(_top(prefix))
            if worker is not None and worker.path is not None and (
                not _exists(host, worker.path) or worker.path.is_dir()
            ):
                removed.add(worker.name)
            continue
        if name is None:
            continue
        module = sys.modules.get(name)
        source = checked.get(raw)
        if source is None:  # unreadable: gone again, or not ours to read
            continue
        if module is not None and loader.loaded_digest(module) == source.digest:
            if name in host.broken:  # a bad edit undone
                host.broken.discard(name)
                _log_for(host, name).info(f"{_shown(host, path)} is back to the code that runs")
                _set_last_error(host, name, None)
            continue  # touched, or saved unchanged
        if source.error is not None:  # reported before anything is stopped
            host.broken.add(name)
            keeps = "; the previous version keeps running" if module is not None else ""
            _log_for(host, name).error(f"not loaded{keeps}:\n{_parse_error(host, path, source.error)}")
            _set_last_error(host, name, _one_line(source.error))
            owner = _worker_of(host, name)
            _failed_event(host, owner.name if owner is not None else None, source.error, str(path))
            if owner is not None:
                owner.reloads["failed"] = owner.reloads.get("failed", 0) + 1
            continue
        roots.add(name)
        new_worker = host.files.worker_name(path)
        holder = host.workers.get(new_worker) if new_worker is not None else None
        if new_worker is not None and (holder is None or _from_procfile(host, holder)):
            added.add(new_worker)
            if holder is not None:  # the module wins: the Procfile's worker goes
                removed.add(new_worker)
    gone |= {module for name in removed if (module := host.workers[name].module) is not None}
    restarts = _watched_changes(host, paths)
    if not roots and not gone and not restarts:
        return None
    reborn = _reborn(host, removed)
    added |= reborn
    affected = loader.dependents(host.graph.rdeps, roots | gone) - (gone - {f"{package}.{n}" for n in reborn})
    modules = loader.reload_order(host.graph.deps, affected)
    return Swap(started=started, order=modules, gone=gone, added=added, removed=removed, restarts=restarts)


def _begin_swap(
    host: Host, paths: set[str], started: float, checked: dict[str, loader.Checked | None]
) -> None:
    swap = _plan(host, paths, started, checked)
    if host.finder is not None:  # the trees are compiled as they are (``HotLoader``)
        host.finder.parsed = {raw: (c.digest, c.tree) for raw, c in checked.items() if c is not None and c.tree}
    if swap is None:
        _after_swap(host)  # changes that arrived while the files were read
        return
    host.swap = swap
    affected = [_worker_of(host, module) for module in (*swap.order, *swap.gone)]
    affected += [host.workers[name] for name in (*swap.removed, *swap.restarts)]
    _stop_for_swap(host, swap, filter(None, affected))


def _stop_for_swap(host: Host, swap: Swap, workers: Iterable[Worker]) -> None:
    """Stop the workers a swap affects; it goes on once they have all stopped. A running
    program whose module is reloaded runs on meanwhile: whether it restarts depends on what
    its new code says (``_program_reloaded``)."""
    for worker in workers:
        if worker.name in swap.before:
            continue
        swap.before[worker.name] = worker.state
        if _running_program(worker) and worker.name not in (*swap.removed, *swap.restarts) \
                and worker.module not in swap.gone:
            continue
        if worker.execution is not None and not worker.execution.abandoned:
            swap.waiting.add(worker.name)
        _stop(host, worker)
    _apply_swap_when_ready(host)


def _running_program(worker: Worker) -> bool:
    return isinstance(worker.execution, program.Process) and not worker.execution.stop_event.is_set()


def _apply_swap_when_ready(host: Host) -> None:
    swap = host.swap
    if swap is None or swap.waiting or swap.next is not None:
        return
    swap.next = 0
    try:
        _apply(host, swap)
    except BaseException:
        if host.job is None:  # an error of core's own must not leave every later save waiting
            host.swap = None
            _freeze(host, False)
        raise


def _after_swap(host: Host) -> None:
    """The swap (or the start) is done: the changes that arrived meanwhile go back to the
    inbox, as one batch, and are handled as the next message."""
    host.swap = None
    _freeze(host, False)
    if host.finder is not None:
        host.finder.parsed = {}
    _start_unblocked(host)
    if host.backlog and not host.stopping:
        backlog, host.backlog = frozenset(host.backlog), set()
        host.inbox.put(Changes(backlog))


def _apply(host: Host, swap: Swap) -> None:
    for name in swap.removed:
        removed = host.workers.pop(name)
        host.files.watch(name, ())
        host.states_of_removed[name] = removed.user_state
        host.state_versions_of_removed[name] = removed.state_version
        _set_state(host, removed, STOPPED)
        if removed.module is None:  # a Procfile line
            taken = name in swap.added
            removed.log.info("removed: a module of the folder takes its name" if taken
                             else f"removed: no longer in {removed.source}")
        else:
            removed.log.info("removed: its file is gone" if name not in swap.added else "its file moved")
            if _exists(host, _procfile(host)):  # the Procfile may have a line of that name
                host.backlog.add(str(_procfile(host)))
        _close_kept(host, removed)
    for module in swap.gone:
        loader.forget(module)
        host.graph.drop(module)
    _apply_next(host, swap)


def _apply_next(host: Host, swap: Swap) -> None:
    """Submit the swap's next module to the importer (``_on_module_loaded`` goes on); when
    none is left, the swap is done."""
    assert swap.next is not None
    while swap.next < len(swap.order):
        module = swap.order[swap.next]
        swap.next += 1
        top = _top(module)
        worker = _worker_of(host, module)
        deps = host.graph.deps.get(module, frozenset())
        blocked = [f"{m} (its file is gone)" for m in sorted(deps & swap.gone)]
        blocked += [f"{m} (it failed to load)" for m in sorted(deps & swap.failed)]
        if blocked:
            swap.failed.add(module)
            if worker is not None:
                _not_swapped(host, swap, worker, f"it imports {', '.join(blocked)}")
            continue
        new_worker = top in swap.added and module == f"{host.package}.{top}"
        if module not in sys.modules and worker is None and not new_worker:
            continue  # a helper nobody imports (yet)
        _submit(host, _load_job(host, module, worker, new_worker))
        return
    _restart_watching(host, swap)
    _after_swap(host)


def _load_job(host: Host, module: str, worker: Worker | None, new_worker: bool) -> Job:
    is_worker = worker is not None or new_worker
    carry = _carry(host, _top(module), worker) if is_worker else None
    # A worker's AFTER is checked against the others' as they are now: a name that is no
    # worker, or a cycle, is a load error like a bad setting.
    problem = partial(order.problem, _top(module), afters=_afters(host), known=_known(host))
    # An existing worker's new code must define run, else the reload is rolled back and the
    # old version kept; a new file without run is simply a helper, loaded as it is. Its
    # migrate runs in that check too: if it raises, the rollback is the same.
    check = partial(_worker_check, host.defaults, carry, problem) if worker is not None else None
    fn = partial(_import_or_reload, module, check, loader.CONTRACT_NAMES if is_worker else (),
                 host.defaults if is_worker else None, carry, problem)
    doing = f"importing {_shown(host, _file_of(host, module))}"
    return Job("swap", doing, fn, (module, worker, new_worker))


def _carry(host: Host, name: str, worker: Worker | None) -> Carry:
    """The ctx.state a worker's new code is to start on: its own, or that of a removed
    worker of its name that comes back."""
    swap = host.swap
    namespaces = dict(swap.namespaces) if swap is not None else {}
    if worker is not None:
        # Else an abandoned thread still runs on that state; a program's process never sees it.
        quiescent = worker.execution is None or isinstance(worker.execution, program.Process)
        return Carry(worker.user_state, worker.state_version, quiescent, namespaces, host.package)
    state = host.states_of_removed.get(name)
    if state is None:
        return Carry({}, None, True, namespaces, host.package)
    return Carry(state, host.state_versions_of_removed.get(name), True, namespaces, host.package)


def _worker_check(
    defaults: settings.Settings, carry: Carry, order_problem: Any, module: ModuleType
) -> tuple[Callable[..., Any], settings.Settings, dict[str, Any], int | None]:
    """In the importer thread, on a worker's new code: its run and settings, and the state
    it starts on — migrated (from a copy: the live state is never given to migrate) if its
    STATE_VERSION changed — with the version migrate took it from. What fails here rolls the
    reload back (``loader.reload``), a fault of its AFTER among the other workers
    (``order_problem``) included."""
    target, parsed = loader.worker_parts(module, defaults, order_problem)
    if carry.version is None:  # the worker's first load: its state is the version its code says
        return target, parsed, carry.state, None
    migrate = loader.migration(module, carry.version, parsed.state_version)
    if migrate is None:
        return target, parsed, carry.state, None
    if not carry.quiescent:
        raise upgrade.MigrateError(
            "ctx.state cannot be migrated while the abandoned thread of the previous version still runs on it; "
            "`hotreload restart --host` replaces the process"
        )
    return target, parsed, upgrade.migrated(migrate, carry.state, carry.version), carry.version


def _import_or_reload(
    module: str, check: Any, clear: Iterable[str], defaults: settings.Settings | None, carry: Carry | None,
    order_problem: Any = None,
) -> Reloaded:
    """In the importer thread: import ``module``, or reload it if it is loaded. For a worker
    (``defaults`` given), its run and settings, and the state it starts on, migrated if its
    STATE_VERSION changed and with its objects moved to their new classes."""
    loaded = sys.modules.get(module)
    before = None
    if loaded is None:
        loaded, parts = importlib.import_module(module), None
    else:
        before = dict(loaded.__dict__)
        parts = loader.reload(loaded, check=check, clear=clear)
    if defaults is None or carry is None:
        return Reloaded(before)
    if parts is None:
        parts = _worker_check(defaults, carry, order_problem, loaded)
    target, parsed, state, migrated_from = parts
    report = None
    if carry.quiescent:
        namespaces = {**carry.namespaces, module: before} if before is not None else carry.namespaces
        report = upgrade.classes(state, _folder_namespaces(carry.package, namespaces))
    return Reloaded(before, target, parsed, state, migrated_from, report)


def _folder_namespaces(package: str, before: dict[str, dict[str, Any]]) -> dict[str, upgrade.Namespaces]:
    """Every loaded module of the folder: its namespace now, and before this swap reloaded it."""
    prefix = package + "."
    return {
        name: upgrade.Namespaces(module.__dict__, before.get(name))
        for name, module in list(sys.modules.items())
        if (name == package or name.startswith(prefix)) and module is not None
    }


def _on_module_loaded(host: Host, job: Job) -> None:
    swap = host.swap
    if swap is None:
        return
    module, worker, new_worker = job.subject
    if _load(host, swap, module, worker, new_worker, job):
        host.broken.discard(module)
    else:
        swap.failed.add(module)
        host.broken.add(module)
    _sync_graph(host)
    _apply_next(host, swap)


def _load(
    host: Host, swap: Swap, module: str, worker: Worker | None, new_worker: bool, job: Job
) -> bool:
    """Record one module of a swap as ``job`` (re)loaded it, and start its worker on the new
    code; False if it failed."""
    is_worker = worker is not None or new_worker
    top = _top(module)
    try:
        if job.error is not None:
            raise job.error
        loaded: Reloaded = job.result
    except loader.NotAWorker:
        if worker is None or worker.target is None:  # new, or never loaded: a helper after all
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
            _not_swapped(host, swap, worker, f"its new code failed:\n{format_error(exc)}", _one_line(exc),
                         events.where(exc, host.options.folder))
        elif is_worker:
            logger.bind(worker=top).error(f"cannot start this new worker:\n{format_error(exc)}")
            _failed_event(host, top, exc, str(_file_of(host, module)))
        else:
            host.log.error(f"{module} not reloaded:\n{format_error(exc)}")
            _failed_event(host, None, exc, str(_file_of(host, module)))
        return False
    if loaded.namespace_before is not None:
        swap.namespaces[module] = loaded.namespace_before
    if loaded.target is None:
        helper = module[len(host.package) + 1:] or "__init__"
        host.log.info(f"reloaded helper {helper} in {_ms(swap.started)}")
        host.journal.add_event(events.reloaded(None, str(_file_of(host, module)), None, _elapsed_ms(swap.started)))
        return True
    if worker is None:
        path = Path(sys.modules[module].__file__ or "")
        worker = Worker(top, _shown(host, path), logger.bind(worker=top), host.defaults, module, path)
        host.states_of_removed.pop(top, None)  # a worker that went and came back: its state is carried
        host.state_versions_of_removed.pop(top, None)
        host.workers[top] = worker
    elif _running_program(worker):
        _carried(worker, loaded)
        _program_reloaded(host, swap, worker, (loaded.target, loaded.settings))
        return True
    fresh = worker.target is None
    if not fresh:
        worker.generation += 1
    worker.target, worker.settings = loaded.target, loaded.settings
    _carried(worker, loaded)
    _watch(host, worker)
    worker.failures = 0
    worker.last_error = None
    launched = not host.stopping and _launch(host, worker)
    action = "started" if fresh else f"reloaded (generation {worker.generation})"
    worker.log.info(f"{action} in {_ms(swap.started)}{'' if launched or host.stopping else ', not started'}")
    if not fresh:
        host.journal.add_event(events.reloaded(worker.name, str(_file_of(host, module)), worker.generation,
                                               _elapsed_ms(swap.started)))
        worker.reloads["ok"] = worker.reloads.get("ok", 0) + 1
        worker.reload_seconds.add(time.monotonic() - swap.started)
    return True


def _carried(worker: Worker, loaded: Reloaded) -> None:
    """The worker's state as its new code starts on it; say what migrate and the class
    upgrade did, and which objects keep their old class."""
    assert loaded.user_state is not None and loaded.settings is not None
    worker.user_state = loaded.user_state
    worker.state_version = loaded.settings.state_version
    if loaded.migrated_from is not None:
        worker.log.info(f"migrated ctx.state from STATE_VERSION {loaded.migrated_from} to {worker.state_version}")
    report = loaded.upgrade
    if report is None:
        if worker.execution is not None:
            worker.log.warning("ctx.state not upgraded to the new classes: the abandoned thread of the previous "
                               "version still runs on it")
        return
    if report.error is not None:
        worker.log.warning(f"ctx.state not upgraded to the new classes: {report.error}")
    if report.moved:
        worker.log.debug(f"ctx.state: {report.moved} object(s) moved to their new class ({report.visited} looked at)")
    for left in report.left:
        worker.log.warning(f"ctx.state: {left.message()}")


def _program_reloaded(host: Host, swap: Swap, worker: Worker, parts: tuple[Any, settings.Settings]) -> None:
    """A running program's module was reloaded under it: it restarts if what it runs changed
    (its command, environment, folder, stop signal or settings), else it runs on."""
    worker.last_error = None
    if (worker.target, worker.settings) == tuple(parts):
        pid = worker.execution.pid  # type: ignore[union-attr] # a running program's
        worker.log.info(f"reloaded in {_ms(swap.started)}, unchanged: pid {pid} runs on")
        return
    _relaunch(host, worker, parts)
    worker.log.info(f"reloaded (generation {worker.generation}): what it runs changed; restarting it")


def _relaunch(host: Host, worker: Worker, parts: tuple[Any, settings.Settings]) -> None:
    """Give a worker its new target and settings, and start it on them: once its current
    run has stopped, if it has one (``_on_exit``), else now."""
    worker.target, worker.settings = parts
    worker.generation += 1
    worker.failures = 0
    worker.last_error = None
    if worker.execution is not None:
        worker.start_pending = True
        _stop(host, worker)
        return
    _stop(host, worker)  # one in backoff waits no longer
    _launch(host, worker)


def _not_swapped(
    host: Host, swap: Swap, worker: Worker, why: str, error: str | None = None,
    where: tuple[str | None, int | None] | None = None,
) -> None:
    """A worker whose new code failed: report, and put it back as it was before the swap.
    ``error`` (default: ``why``) becomes its last error, shown by ``status`` while it lasts;
    ``where``, the file and line at fault (default: the worker's file)."""
    worker.last_error = error or why
    worker.reloads["failed"] = worker.reloads.get("failed", 0) + 1
    before = swap.before.get(worker.name, worker.state)
    keeps = worker.target is not None and before in RESTARTABLE
    worker.log.error(f"not reloaded: {why}")
    file, line = where or (str(worker.path) if worker.path is not None else None, None)
    host.journal.add_event(events.reload_failed(worker.name, file, line, worker.last_error))
    if _running_program(worker):  # the swap left it running
        worker.log.info(f"the previous version (generation {worker.generation}) keeps running")
        return
    if not keeps:  # it was not running before either: it stays as it was
        if worker.target is None:
            _set_state(host, worker, FATAL, "fix the file and save it to start the worker")
        return
    if before == BACKOFF:
        _schedule_restart(host, worker, 0.0, time.monotonic(), "previous version crashed")
    else:
        worker.log.info(f"the previous version (generation {worker.generation}) keeps running")
        _launch(host, worker)


# --- start order, readiness, heartbeats and watched files ---------------------------------


def _running(worker: Worker) -> bool:
    return worker.execution is not None and not worker.execution.abandoned


def _afters(host: Host) -> dict[str, tuple[str, ...]]:
    return {name: worker.settings.after for name, worker in host.workers.items()}


def _known(host: Host) -> set[str]:
    """The names an AFTER may give: the host's workers, and those a swap is adding."""
    return set(host.workers) | (host.swap.added if host.swap is not None else set())


def _ready_names(host: Host) -> set[str]:
    return {name for name, worker in host.workers.items() if worker.ready and worker.state == RUNNING}


def _order_problem(host: Host, worker: Worker) -> str | None:
    """Why the worker's AFTER can never be met (``order.problem``), after the file and line
    of its AFTER; None if it can."""
    why = order.problem(worker.name, worker.settings.after, _afters(host), _known(host))
    if why is None:
        return None
    line = loader.line_of(str(worker.path), "AFTER") if worker.path is not None else None
    return f"{worker.source}{f':{line}' if line else ''}: AFTER: {why}"


def _on_started(host: Host, worker: Worker, execution: Execution) -> None:
    """A run has started: it is ready now, or once it says so or its port accepts (READY);
    its heartbeat is looked at once HEARTBEAT seconds have passed. Only workers that set
    these get timers."""
    rule = worker.settings.ready
    worker.ready = rule == "started"
    if settings.tcp_port(rule) is not None:
        worker.probe_at = execution.started_at + PROBE_EVERY
        _set_timer(host, worker, worker.probe_at)
    if execution.heartbeat is not None:
        execution.hang_at = execution.started_at + execution.heartbeat
        _set_timer(host, worker, execution.hang_at)
    if worker.ready:
        _start_waiting(host)


def _became_ready(host: Host, worker: Worker, how: str) -> None:
    worker.ready = True
    worker.probe_at = None
    worker.log.info(f"ready: {how}")
    _start_waiting(host)


def _on_ready(host: Host, execution: Execution) -> None:
    """``ctx.ready()``, from a run that is still the worker's current one."""
    worker = execution.worker
    if worker.execution is execution and worker.state == RUNNING and not worker.ready:
        _became_ready(host, worker, "it called ctx.ready()")


def _probe(host: Host, worker: Worker, now: float) -> None:
    port = settings.tcp_port(worker.settings.ready)
    if port is not None and readiness.accepts(port):
        _became_ready(host, worker, f"port {port} accepts connections")
        return
    worker.probe_at = now + PROBE_EVERY
    _set_timer(host, worker, worker.probe_at)


def _start_waiting(host: Host) -> None:
    """Start the waiting workers whose AFTER is all ready now."""
    if host.stopping:
        return
    ready = _ready_names(host)
    for worker in list(host.workers.values()):
        if worker.state == WAITING and not order.waiting_for(worker.settings.after, ready):
            _launch(host, worker)


def _start_unblocked(host: Host) -> None:
    """Start the workers that could not start for their AFTER, once another file fixed it
    (a cycle broken, a worker of that name added)."""
    for worker in list(host.workers.values()):
        if (worker.order_error is not None and worker.state == FATAL and worker.execution is None
                and not host.stopping and _order_problem(host, worker) is None):
            worker.failures = 0
            worker.last_error = None
            _launch(host, worker)


def _check_beat(host: Host, worker: Worker, now: float) -> None:
    """HEARTBEAT: a run silent that long is hung. Its stack is logged and it is interrupted,
    as after a stop timeout (``_on_timer`` gives up on it if it survives); its end counts as
    a crash. Otherwise the next look is due HEARTBEAT seconds after its last beat."""
    execution = worker.execution
    assert execution is not None and execution.heartbeat is not None
    silent = 0.0 if execution.sleeping else now - execution.beat
    if silent < execution.heartbeat:
        execution.hang_at = now - silent + execution.heartbeat
        _set_timer(host, worker, execution.hang_at)
        return
    execution.hung = True
    worker.log.error(f"hung: no sign of life for {silent:.1f} s (HEARTBEAT = {execution.heartbeat:g}); "
                     f"interrupting it. It is at:\n{execution.stack()}")
    execution.abandon_at = now + INTERRUPT_GRACE  # decided once: a reload may change the constant
    execution.interrupt()
    _set_timer(host, worker, execution.abandon_at)


def _watch(host: Host, worker: Worker) -> None:
    """Take the worker's WATCH globs into the filter, and note the digest of each file they
    match now: a later save that leaves a file's bytes as they were restarts nothing."""
    host.files.watch(worker.name, worker.settings.watch)
    found = host.files.watched_files(worker.name) if host.options.reload else []
    worker.watched = {str(path): _digest(host, str(path)) for path in found}


def _digest(host: Host, path: str) -> str | None:
    """The digest of a file as the watcher certified it (complete); None if it is gone."""
    read = host.finder.read if host.finder is not None else loader.read_bytes
    try:
        return loader.digest(read(path))
    except OSError:
        return None


def _watched_changes(host: Host, paths: Iterable[str]) -> dict[str, str]:
    """The workers a watched file in ``paths`` restarts — new, deleted (alone or with its
    folder), or with other bytes — each with the first such file. Their digests are updated."""
    changed: dict[str, str] = {}
    for worker in host.workers.values():
        if not worker.settings.watch:
            continue
        for raw in sorted(paths):
            below = [path for path in worker.watched if path.startswith(raw + os.sep)]
            for path in ([raw] if worker.name in host.files.watchers(Path(raw)) else []) + below:
                digest = _digest(host, path)
                if worker.watched.get(path) != digest:
                    worker.watched[path] = digest
                    changed.setdefault(worker.name, _shown(host, Path(path)))
    return changed


def _restart_watching(host: Host, swap: Swap) -> None:
    """Start again the workers stopped for a watched file, each with one line, as a reload
    logs; those whose module was reloaded in this swap were started by it."""
    for name, path in swap.restarts.items():
        worker = host.workers.get(name)
        if worker is None or worker.target is None or worker.module in swap.order or host.stopping:
            continue
        worker.failures = 0
        launched = _launch(host, worker)
        worker.log.info(f"restarted ({path} changed) in {_ms(swap.started)}{'' if launched else ', not started'}")


# --- the importer's jobs ------------------------------------------------------------------


def _submit(host: Host, job: Job) -> None:
    """Hand ``job`` to the importer thread; its ``Loaded`` comes back through the inbox."""
    host.job = job
    job.submitted = time.monotonic()
    if host.importer is not None:
        host.importer.submit(job)
    else:  # no thread (not serving): run it here, and go on the same way
        host.inbox.put(Loaded(importer.run(job)))


def _on_loaded(host: Host, job: Job) -> None:
    if job is not host.job:
        return
    host.job = None
    if host.stopping:
        return
    try:
        if job.purpose in STARTUP_JOBS:
            try:
                _on_startup_job(host, job)
            finally:  # a failure to record one worker must not keep the others from starting
                _next_startup_job(host)
        elif job.purpose == "check":
            if job.error is not None:
                raise job.error
            paths, started = job.subject
            _begin_swap(host, paths, started, job.result)
        else:
            _on_module_loaded(host, job)
    except BaseException:
        if host.job is None:  # an error of core's own must not leave every later save waiting
            host.swap = None
        raise


def _on_slow_job(host: Host, now: float) -> None:
    """Say so when the importer's job has been running for a while, and where it is."""
    job = host.job
    if job is None:
        return
    due = importer.next_report(job.reported)
    if now - job.submitted >= due:
        job.reported = due
        host.log.warning(f"still {job.doing}: {due:.0f} s{_importing_at(host)}")


def _importing_at(host: Host) -> str:
    """Where the importer thread is in the folder's code: " (at workers/x.py:12)", or ""."""
    thread = host.importer.thread if host.importer is not None else None
    frame = sys._current_frames().get(thread.ident or -1) if thread is not None else None
    while frame is not None:
        path = Path(frame.f_code.co_filename)
        if loader.inside(host.options.folder, path):
            return f" (at {_shown(host, path)}:{frame.f_lineno})"
        frame = frame.f_back
    return ""


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def _file_of(host: Host, module: str) -> Path:
    """The file of one of the folder's modules, loaded or not."""
    loaded = getattr(sys.modules.get(module), "__file__", None)
    if loaded:
        return Path(loaded)
    base = host.options.folder.joinpath(*module.split(".")[1:])
    if "." in module and base.with_suffix(".py").exists():
        return base.with_suffix(".py")
    return base / "__init__.py"


# --- small pieces --------------------------------------------------------------------------


def _set_last_error(host: Host, module: str, error: str | None) -> None:
    """The last error of the workers that run ``module`` (theirs, or a helper they import):
    a saved edit that does not load, or None once that edit is undone."""
    for name in loader.dependents(host.graph.rdeps, {module}):
        worker = _worker_of(host, name)
        if worker is not None:
            worker.last_error = error


def _reborn(host: Host, removed: set[str]) -> set[str]:
    """The removed workers whose name has a worker file again — ``w.py`` renamed to
    ``w/__init__.py`` or back: the same worker, started from its new file."""
    folder = host.options.folder
    return {name for name in removed
            if (folder / f"{name}.py").is_file() or (folder / name / "__init__.py").is_file()}


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


def _log_for(host: Host, module: str) -> Logger:
    """The logger of the worker ``module`` is, or the host's."""
    worker = _worker_of(host, module)
    return worker.log if worker is not None else host.log


def _top(module: str) -> str:
    """The name under the folder's package that ``module`` belongs to ('' for the package)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _shown(host: Host, path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _one_line(exc: BaseException) -> str:
    return safe.one_line(exc)  # never raises, whatever the exception's __str__ does


def _ms(started: float) -> str:
    return f"{_elapsed_ms(started):.1f} ms"


def _elapsed_ms(started: float) -> float:
    return (time.monotonic() - started) * 1000


def _failed_event(host: Host, worker: str | None, exc: BaseException, path: str | None = None) -> None:
    """Journal a module of the folder that failed to load — ``worker``'s, or a helper
    (None) — pointing at the file and line at fault (``path`` when the error has none)."""
    file, line = events.where(exc, host.options.folder)
    host.journal.add_event(events.reload_failed(worker, file or path, line, _one_line(exc)))


