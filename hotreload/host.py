"""The host loop: it feeds the inbox's messages to ``core``, which may be reloaded under it.

Everything the host must remember across a reload of ``core`` lives in the records of
``hotreload.records``. The loop looks ``core``'s functions up on the module for every
message, so after a reload of core.py the very next message is handled by the new code. It
calls only the functions ``CORE_API`` names, each guarded: an error in a reloaded core is
logged and rolls it back (``corereload``), and never ends the host. Saves of hotreload's own
files are taken here, before core sees the message: the reload of core.py does not depend on
core.py working.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, NoReturn

from hotreload import core, corereload, guardian, loader, program, safe, signals
from hotreload.debounce import Windows
from hotreload.importer import Importer
from hotreload.journal import Journal
from hotreload.log import format_error, logger
from hotreload.records import Changes, Host, Options, Signal

__all__ = ["CORE_API", "create", "exit_now", "leftover_threads", "replace_process", "serve"]

# What the loop calls on the core module: what a reload of core.py clears, checks and guards.
CORE_API = ("start", "handle", "wakeup", "finished", "exit_status")
# A core whose ``wakeup`` failed is asked again this soon: a due timer is late by that at most.
WAKEUP_AFTER_ERROR = 1.0
# A save reaches the new code through six threads (watchdog's three, the watcher, the host,
# the worker). Next to a worker that never blocks, each hand-over waits out the interpreter's
# switch interval (5 ms by default); at 1 ms a save lands ~2.5x sooner. Only while watching.
SWITCH_INTERVAL = 0.001
HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# How long a stopping host waits for a module still importing once its workers have stopped.
IMPORT_GRACE = 2.0


def _on_signal(host: Host, signum: int, frame: Any) -> None:
    """SIGINT, SIGTERM: a graceful stop, final (the guardian is told); a second one exits at
    once. SIGHUP: a graceful restart, by the guardian if there is one, else in place
    (``replace_process``). A duplicate delivery counts once (``hotreload.signals``)."""
    if os.getpid() != host.pid:  # a worker's forked child: what the signal would do to it
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    now = time.monotonic()
    under_way = None if not host.stop_requested else signals.RESTART if host.reexec else signals.STOP
    action = signals.react(under_way, host.last_signal, signum, now)
    if action == signals.IGNORE:
        return
    host.last_signal = signals.Delivery(signum, now)
    if action == signals.EXIT_NOW:
        os.write(2, f"hotreload: {signal.Signals(signum).name} again: exiting now\n".encode())
        program.kill_groups(w.execution for w in host.workers.values())  # with what they started
        os._exit(128 + signum)
    if action == signals.RESTART:
        keeper = guardian.guardian_pid()
        if keeper is not None and keeper == os.getppid():  # the guardian restarts hosts:
            os.kill(keeper, signal.SIGHUP)  # it will ask this one to stop
            return
        host.reexec = True
    else:
        guardian.notify_stopping()
        if under_way == signals.RESTART:  # the stop under way becomes final
            host.reexec = False
            return
    host.stop_requested = True
    host.inbox.put(Signal(signum))


def serve(host: Host) -> int:
    """Run the host until it is stopped; returns the exit status.

    Signal handlers go in first, so that a signal at any moment leads to the same clean
    shutdown; then the watcher is armed, so that an edit made while workers start is seen.
    Modules are imported in the importer thread, so that a slow one delays nothing else; a
    stopping host waits ``IMPORT_GRACE`` for one still importing, then leaves it behind.
    """
    host.inbox.wake_on_signals()
    for signum in HANDLED_SIGNALS:
        signal.signal(signum, lambda s, f: _on_signal(host, s, f))
    if host.options.reload:
        from hotreload.watcher import Watcher  # watchdog is imported only where it is used

        sys.setswitchinterval(SWITCH_INTERVAL)
        host.watcher = Watcher(host.files, host.inbox, Windows(coalesce=host.options.debounce))
        host.watcher.start()
        if host.finder is not None:
            host.finder.read = host.watcher.read_source
            host.finder.known = host.watcher.exists
    if host.control is not None:
        host.control.start()
    if host.http is not None:
        host.http.start()
    host.importer = Importer(host.inbox)
    host.importer.start()
    try:
        _call_core(host, "start", host)
        while not _call_core(host, "finished", host, default=False):
            timeout = _call_core(host, "wakeup", host, default=WAKEUP_AFTER_ERROR)
            message = host.inbox.get(None if timeout is None else max(0.0, timeout))
            if isinstance(message, Changes):
                message = _take_own_changes(host, message)
            _call_core(host, "handle", host, message)
            if host.own_changes and host.swap is None and host.job is None and not host.stopping:
                own, host.own_changes = host.own_changes, set()
                corereload.on_own_changes(host, core, CORE_API, own)
    finally:
        program.kill_groups(w.execution for w in host.workers.values())  # none is left when all went well
        if host.watcher is not None:
            host.watcher.stop()
        if host.control is not None:
            host.control.stop()
        if host.http is not None:
            host.http.stop()
        if not host.importer.stop(IMPORT_GRACE):
            doing = host.job.doing if host.job is not None else "importing"
            host.log.warning(f"still {doing} after {IMPORT_GRACE:g} s more; exiting without it")
    return _call_core(host, "exit_status", host, default=1)


def _call_core(host: Host, name: str, *args: Any, default: Any = None) -> Any:
    """``core.<name>(*args)``, for a name of ``CORE_API``. A bug in (a reloaded) core must not
    end the host: the error is logged, a reloaded core is rolled back, ``default`` returned."""
    try:
        return getattr(core, name)(*args)
    except Exception as exc:
        on = f" on {safe.shown(args[1])}" if name == "handle" else ""  # the message: its repr may be the user's
        host.log.error(f"internal error in core.{name}{on}:\n{format_error(exc)}")
        if corereload.roll_back(host, core) and name == "handle" and corereload.unconsumed(host, args[1]):
            host.log.warning(f"{safe.shown(args[1])} is handed again to the previous core")
            host.inbox.put(args[1])
        return default


def _take_own_changes(host: Host, message: Changes) -> Changes | None:
    """Keep the saves of hotreload's own files for ``corereload`` (they wait while a swap
    runs, as it reads one frozen version of the files); the rest is core's."""
    own = {p for p in message.paths if host.files.root_of(Path(p)) == host.core_file.parent}
    if not own:
        return message
    if not host.stopping:
        host.own_changes |= own
    rest = message.paths - own
    return Changes(rest) if rest else None


def create(options: Options, journal: Journal | None = None) -> Host:
    """A host for ``options.folder``: its package installed and ready to import; its log
    records and events kept in ``journal`` (the one the log's sink feeds)."""
    folder = options.folder.resolve()
    defaults = replace(options.defaults, stop_timeout=options.stop_timeout)
    host = Host(options=options, package=folder.name, defaults=defaults, journal=journal or Journal())
    host.finder = loader.install(folder, host.package, extra=["hotreload.core"])
    host.own_digests = {path: loader.digest(path.read_bytes()) for path in host.core_file.parent.glob("*.py")}
    return host


def leftover_threads(timeout: float = 2.0) -> list[threading.Thread]:
    """Non-daemon threads still alive after ``timeout`` seconds: started by workers and
    never stopped, they would keep the interpreter from exiting, forever."""
    deadline = time.monotonic() + timeout
    main = threading.main_thread()
    for thread in threading.enumerate():
        if thread is not main and not thread.daemon:
            thread.join(max(0.0, deadline - time.monotonic()))
    return [t for t in threading.enumerate() if t is not main and not t.daemon and t.is_alive()]


def exit_now(status: int) -> None:
    """Leave at once, for a host that had to abandon worker threads: interpreter shutdown
    could block on a lock such a thread holds."""
    logger.complete()
    sys.stderr.flush()
    os._exit(status)


def replace_process(host: Host) -> NoReturn:
    """After a graceful stop on SIGHUP without a guardian: run the same command line again
    in this process (``os.execv``: same pid, as ``ExecReload=kill -HUP $MAINPID`` needs).

    ``serve`` has stopped the watcher and the control thread, and released the socket and
    the lock, which the new program takes again; threads a worker left running end with the
    old program. The stop and restart signals are blocked until the new program has its
    handlers (``guardian.handle_signals_while_starting``): one that arrives in between waits
    for them instead of killing the process. If the exec fails, says so and exits 1."""
    argv = _command_line()
    host.log.info(f"restarting on SIGHUP: running the same command line again, pid {os.getpid()}")
    logger.remove()  # closes, and so flushes, every sink
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)
    try:
        if host.cwd is not None:
            os.chdir(host.cwd)
        os.execv(sys.executable, argv)
    except OSError as exc:
        os.write(2, f"hotreload: cannot restart: running {' '.join(argv)} failed: {exc}\n".encode())
    os._exit(1)


def _command_line() -> list[str]:
    """This process's command line, to run it again. Before Python 3.10 (no ``sys.orig_argv``)
    it is rebuilt from ``sys.argv``, without the interpreter's own options."""
    if hasattr(sys, "orig_argv"):
        return list(sys.orig_argv)
    script = sys.argv[0]
    head = ["-m", "hotreload"] if script.endswith("__main__.py") else [script]
    return [sys.executable, *head, *sys.argv[1:]]
