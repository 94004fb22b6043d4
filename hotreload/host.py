"""The host: its state as plain data, and the loop that feeds messages to ``core``.

Everything the host must remember across a reload of ``core`` lives in ``Host`` and the
``Worker`` records. The loop looks ``core``'s functions up on the module for every message,
so after ``importlib.reload(core)`` the very next message is handled by the new code.
The loop calls only the functions ``CORE_API`` names, each guarded: an error in a reloaded
core is logged and rolls it back (``corereload``), and never ends the host. Saves of
hotreload's own files are taken here, before core sees the message: the reload of core.py
does not depend on core.py working.
Messages come from several producers, all through one ``Inbox``: worker threads
(``worker.Exited``), the watcher (``debounce.Changes``), signal handlers (``Signal``), the
control socket (``control.Command``) and the importer thread (``importer.Loaded``).
"""
from __future__ import annotations

import os
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NoReturn

from hotreload import core, corereload, cpu, guardian, loader, safe, signals
from hotreload.debounce import Changes, Windows
from hotreload.importer import Importer, Job
from hotreload.inbox import Inbox
from hotreload.log import format_error, logger
from hotreload.settings import Settings
from hotreload.worker import Worker

__all__ = [
    "CORE_API", "Host", "Options", "Signal", "Swap", "create", "exit_now", "leftover_threads", "replace_process",
    "serve",
]

CORE_FILE = Path(core.__file__).resolve()
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


@dataclass(frozen=True)
class Options:
    """What ``hotreload run`` was asked to do."""

    folder: Path
    stop_timeout: float = 5.0
    reload: bool = True
    entry_points: bool = True
    debounce: float = Windows.coalesce
    config: str | None = None  # the config file the defaults came from, if any
    defaults: Settings = Settings()  # every worker's RESTART / BACKOFF, from the config file


@dataclass(frozen=True)
class Signal:
    signum: int


@dataclass
class Swap:
    """A reload in progress: the workers it stopped are finishing before the code changes."""

    started: float
    order: list[str]  # modules to (re)load, helpers before their importers
    gone: set[str]  # modules whose file is gone
    added: set[str]  # new workers, by name
    removed: set[str]  # workers whose module is gone, by name
    before: dict[str, str] = field(default_factory=dict)  # affected workers: state before the swap
    waiting: set[str] = field(default_factory=set)  # workers still stopping
    next: int | None = None  # once they have stopped: the index in ``order`` to load next
    failed: set[str] = field(default_factory=set)  # modules of ``order`` that did not load


def _current_folder() -> str | None:
    try:
        return os.getcwd()
    except OSError:  # deleted under us
        return None


@dataclass(eq=False)
class Host:
    """Everything the host knows. Created once; ``core`` reads and updates it, and a reload
    of ``core`` leaves it as it is."""

    options: Options
    package: str
    inbox: Inbox = field(default_factory=Inbox)
    defaults: Settings = Settings()
    workers: dict[str, Worker] = field(default_factory=dict)
    # ctx.state of workers whose file went away, by name: given back when a worker of that
    # name comes back (git stash and stash pop, an editor's delete and rewrite, w.py -> w/).
    stores: dict[str, dict[str, Any]] = field(default_factory=dict)
    graph: loader.Graph = field(default_factory=loader.Graph)
    finder: loader.HotFinder | None = None
    watcher: Any = None  # a watcher.Watcher, while reload is on
    rng: random.Random = field(default_factory=random.Random)
    stop_requested: bool = False  # set by the signal handler itself
    stopping: bool = False  # set once core has begun the shutdown
    swap: Swap | None = None
    backlog: set[str] = field(default_factory=set)  # changes that arrived during a swap
    broken: set[str] = field(default_factory=set)  # modules whose latest source failed to load
    core_file: Path = CORE_FILE
    own_digests: dict[Path, str] = field(default_factory=dict)  # hotreload's files, as running
    core_generation: int = 0
    # The core's namespace before its last reload (a copy of the module's dict): put back
    # if the new core raises an internal error. None before any reload, and after a rollback.
    previous_core: dict[str, Any] | None = None
    own_changes: set[str] = field(default_factory=set)  # hotreload's files saved during a swap
    forced: set[str] = field(default_factory=set)  # workers that had to be interrupted
    # Heap of (when, worker name): backoff restarts and stop deadlines. An entry whose worker
    # no longer has that time due is skipped when it comes up, so none is ever removed early.
    timers: list[tuple[float, str]] = field(default_factory=list)
    restarting: set[str] = field(default_factory=set)  # stopping, to start again: `hotreload restart`
    control: Any = None  # the control.Server, once it holds the folder's lock
    pid: int = field(default_factory=os.getpid)  # a worker's forked child is not the host
    cwd: str | None = field(default_factory=_current_folder)  # where a SIGHUP restart runs again
    last_signal: signals.Delivery | None = None  # the last stop or restart signal that counted
    reexec: bool = False  # SIGHUP without a guardian: once stopped, replace the process
    importer: Importer | None = None  # the thread that imports modules, while serving
    job: Job | None = None  # the importer's job in flight: at most one at a time
    startup: list[Job] = field(default_factory=list)  # start-up imports not yet submitted
    # CPU figures of earlier status requests, from which the next one's CPU% is measured.
    cpu_samples: list[cpu.Sample] = field(default_factory=list)

    @property
    def log(self) -> Any:
        return logger.bind(worker="host")


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
        roots = [host.options.folder, host.core_file.parent]
        host.watcher = Watcher(roots, host.inbox, Windows(coalesce=host.options.debounce))
        host.watcher.start()
        if host.finder is not None:
            host.finder.read = host.watcher.read_source
            host.finder.known = host.watcher.exists
    if host.control is not None:
        host.control.start()
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
        if host.watcher is not None:
            host.watcher.stop()
        if host.control is not None:
            host.control.stop()
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
        corereload.roll_back(host, core)
        return default


def _take_own_changes(host: Host, message: Changes) -> Changes | None:
    """Keep the saves of hotreload's own files for ``corereload`` (they wait while a swap
    runs, as it reads one frozen version of the files); the rest is core's."""
    own = {p for p in message.paths if Path(p).parent == host.core_file.parent}
    if not own:
        return message
    if not host.stopping:
        host.own_changes |= own
    rest = message.paths - own
    return Changes(rest) if rest else None


def create(options: Options) -> Host:
    """A host for ``options.folder``: its package installed and ready to import."""
    folder = options.folder.resolve()
    defaults = replace(options.defaults, stop_timeout=options.stop_timeout)
    host = Host(options=options, package=folder.name, defaults=defaults)
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
