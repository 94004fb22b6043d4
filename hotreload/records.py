"""Everything that crosses a reload of ``core.py``: the records the host keeps, and the
messages its loop hands to ``core.handle``.

``core`` is code that may be replaced at any moment; these are the data it reads and
updates, created once and never reloaded. So a reload keeps every worker, thread, timer and
backoff counter as it was, and a newcomer finds here what the host knows. Rules for them:
plain data with no logic beyond keeping themselves consistent; a deadline is decided once and
stored (``Worker.restart_at``, ``Execution.stop_deadline``), never recomputed from a constant
of ``core``, which a reload may change.

Messages come from several producers, all through one ``Inbox``: worker threads
(``Exited``), the watcher (``Changes``), signal handlers (``Signal``), the control socket
(``Command``), the importer thread (``Loaded``) and the log (``SinksRemoved``); a worker
that says it is ready (``ctx.ready()``) posts ``Ready``.
"""
from __future__ import annotations

import bisect
import math
import os
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Union

from loguru import logger

from hotreload import safe, states
from hotreload.cpu import Account, Sample
from hotreload.debounce import Windows
from hotreload.filters import SourceFilter
from hotreload.inbox import Inbox
from hotreload.keep import Closing, Kept
from hotreload.journal import Journal
from hotreload.settings import Settings

if TYPE_CHECKING:
    from loguru import Logger

    from hotreload.control import Server
    from hotreload.importer import Importer
    from hotreload.loader import HotFinder
    from hotreload.program import Process, Program
    from hotreload.signals import Delivery
    from hotreload.upgrade import Report
    from hotreload.watcher import Watcher
    from hotreload.web import WebServer
    from hotreload.worker import Execution

__all__ = [
    "CORE_FILE", "Carry", "Changes", "Command", "Durations", "Exited", "Graph", "Host", "Job", "Loaded", "Message", "Options",
    "Ready", "Reloaded", "Signal", "SinksRemoved", "Swap", "Worker",
]

CORE_FILE = Path(__file__).with_name("core.py").resolve()
# The upper bounds, in seconds, of the reload durations /metrics counts (a few ms is usual).
RELOAD_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


# --- records --------------------------------------------------------------------------------


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


@dataclass
class Durations:
    """Durations counted by upper bound, as a Prometheus histogram counts them; the bounds are
    decided once, with the record."""

    bounds: tuple[float, ...] = RELOAD_BUCKETS
    counts: list[int] = field(default_factory=list)  # per bound, then above the last; not cumulative
    total: float = 0.0  # seconds, all added up

    def add(self, seconds: float) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.bounds) + 1)
        self.counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self.total += seconds


@dataclass(eq=False)
class Worker:
    """What the host knows of one worker, for the life of the host."""

    name: str
    source: str  # shown to users: a file path, or "entry point NAME = VALUE"
    log: Logger  # bound to the worker's name
    settings: Settings
    module: str | None = None  # its module's name in sys.modules; None for entry points
    path: Path | None = None  # its file (the Procfile for a line of it); None for entry points
    target: Callable[..., Any] | Program | None = None  # its run(ctx) or COMMAND; None until its module loads
    state: str = states.STOPPED  # where it is in its lifecycle: one of ``states.STATES``
    user_state: dict[str, Any] = field(default_factory=dict)  # ctx.state: survives restarts and reloads
    state_version: int | None = None  # the STATE_VERSION user_state is in; None until its module loads
    kept: Kept = field(default_factory=Kept)  # ctx.keep: closed when the worker is removed or the host stops
    generation: int = 0  # how many times its code was swapped
    failures: int = 0  # consecutive failed runs, for the backoff
    restarts: int = 0
    execution: Execution | Process | None = None  # its thread or process, from start until the host saw it end
    restart_at: float | None = None  # when its backoff ends, while in BACKOFF
    last_error: str | None = None
    # A start was refused while its abandoned thread still runs (a save came): it happens
    # when that thread ends.
    start_pending: bool = False
    # Start order: ready for the workers AFTER it, by its READY rule, since its last start;
    # false again once a stop is decided.
    ready: bool = False
    probe_at: float | None = None  # when its READY = "tcp:PORT" is probed next, while not ready
    order_error: str | None = None  # its AFTER names no worker, or is on a cycle: it cannot start
    # Its WATCH files, by path: the digest of the bytes its current run started with (None:
    # no such file). A change of one restarts it.
    watched: dict[str, str | None] = field(default_factory=dict)
    held: bool = False  # stopped on request (`hotreload stop`): not expected to run, for /readyz
    # For /metrics: runs that crashed or hung (not while stopping), swaps of its code by
    # result ("ok", "failed"), and how long the good ones took.
    crashes: int = 0
    reloads: dict[str, int] = field(default_factory=dict)
    reload_seconds: Durations = field(default_factory=Durations)
    cpu: Account = field(default_factory=Account, repr=False)  # the CPU time of its ended threads


@dataclass
class Graph:
    """Who imports whom among the folder's modules, kept up to date as they are (re)loaded."""

    deps: dict[str, frozenset[str]] = field(default_factory=dict)
    rdeps: dict[str, set[str]] = field(default_factory=dict)

    def set(self, module: str, imports: frozenset[str]) -> None:
        self.drop(module)
        self.deps[module] = imports
        for dep in imports:
            self.rdeps.setdefault(dep, set()).add(module)

    def drop(self, module: str) -> None:
        for dep in self.deps.pop(module, ()):
            self.rdeps.get(dep, set()).discard(module)


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
    restarts: dict[str, str] = field(default_factory=dict)  # workers a watched file restarts: name -> that file
    # The namespace each module of ``order`` had before this swap reloaded it (a copy of its
    # dict): how the class upgrade of ctx.state tells a class the new code dropped.
    namespaces: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class Carry:
    """A worker's ctx.state on its way to the worker's new code, as a swap's job gets it."""

    state: dict[str, Any]
    version: int | None  # its STATE_VERSION (``Worker.state_version``)
    quiescent: bool  # no thread of the worker runs: false while an abandoned one lives on
    namespaces: dict[str, dict[str, Any]]  # ``Swap.namespaces`` when the job was made
    package: str  # the folder's package: the modules whose classes are upgraded


@dataclass(frozen=True)
class Reloaded:
    """What a swap's job made of one module, in the importer thread."""

    namespace_before: dict[str, Any] | None  # a copy of its namespace before the reload; None if newly imported
    target: Callable[..., Any] | Program | None = None  # a worker's run(ctx) or COMMAND; None for a helper
    settings: Settings | None = None
    user_state: dict[str, Any] | None = None  # the state its new version starts on: migrated, upgraded
    migrated_from: int | None = None  # the STATE_VERSION migrate took it from, if migrate ran
    upgrade: Report | None = None  # what the class upgrade did; None if it was not done


@dataclass(eq=False)
class Job:
    """One step of loading, run in the importer thread."""

    purpose: str  # which step of core's continues with the result
    doing: str  # what it does, for the log and status: "importing workers/x.py"
    fn: Callable[[], Any]
    subject: Any = None  # what core needs to continue: the worker, module or paths concerned
    submitted: float = field(default_factory=time.monotonic)
    reported: float = 0.0  # seconds after ``submitted`` of the last "still ..." line
    result: Any = None
    error: BaseException | None = None  # what ``fn`` raised, the user's SystemExit included


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
    states_of_removed: dict[str, dict[str, Any]] = field(default_factory=dict)
    state_versions_of_removed: dict[str, int | None] = field(default_factory=dict)  # their STATE_VERSION
    graph: Graph = field(default_factory=Graph)
    finder: HotFinder | None = None
    watcher: Watcher | None = None  # while reload is on
    rng: random.Random = field(default_factory=random.Random)
    stop_requested: bool = False  # set by the signal handler itself
    stopping: bool = False  # set once core has begun the shutdown
    swap: Swap | None = None
    backlog: set[str] = field(default_factory=set)  # changes that arrived during a swap
    broken: set[str] = field(default_factory=set)  # modules whose latest source failed to load
    core_file: Path = CORE_FILE
    files: SourceFilter = field(init=False)  # which files count: the workers folder's, and hotreload's own
    own_digests: dict[Path, str] = field(default_factory=dict)  # hotreload's files, as running
    core_generation: int = 0
    # The core's namespace before its last reload (a copy of the module's dict): put back
    # if the new core raises an internal error. None before any reload, and after a rollback.
    previous_core: dict[str, Any] | None = None
    own_changes: set[str] = field(default_factory=set)  # hotreload's files saved during a swap
    forced: set[str] = field(default_factory=set)  # workers that had to be interrupted
    # Heap of (when, worker name): backoff restarts, stop deadlines, probes of READY = "tcp:PORT"
    # and heartbeat checks (only for workers that set HEARTBEAT). An entry whose worker
    # no longer has that time due is skipped when it comes up, so none is ever removed early.
    timers: list[tuple[float, str]] = field(default_factory=list)
    restarting: set[str] = field(default_factory=set)  # stopping, to start again: `hotreload restart`
    closing: list[Closing] = field(default_factory=list)  # what workers kept, being closed (core._on_closing)
    # To stop once no worker AFTER them runs (at shutdown, `restart --with-dependents`).
    stop_queue: set[str] = field(default_factory=set)
    control: Server | None = None  # the control socket's server, once it holds the folder's lock
    pid: int = field(default_factory=os.getpid)  # a worker's forked child is not the host
    cwd: str | None = field(default_factory=_current_folder)  # where a SIGHUP restart runs again
    last_signal: Delivery | None = None  # the last stop or restart signal that counted
    reexec: bool = False  # SIGHUP without a guardian: once stopped, replace the process
    importer: Importer | None = None  # the thread that imports modules, while serving
    job: Job | None = None  # the importer's job in flight: at most one at a time
    startup: list[Job] = field(default_factory=list)  # start-up imports not yet submitted
    journal: Journal = field(default_factory=Journal)  # the last log records and events, by name
    http: WebServer | None = None  # the --http server, bound: started and stopped with the loop
    started: float = field(default_factory=time.monotonic)
    # CPU figures of earlier status requests, from which the next one's CPU% is measured.
    cpu_samples: list[Sample] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.files = SourceFilter([self.options.folder, self.core_file.parent])

    @property
    def log(self) -> Logger:
        return logger.bind(worker="host")


# --- messages -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Signal:
    """A stop or restart signal the handler let through (``host._on_signal``)."""

    signum: int


@dataclass(frozen=True)
class Changes:
    """A batch: files (and deleted folders) whose content may have changed, complete and quiet.
    The watcher posts it to the host."""

    paths: frozenset[str]


@dataclass(frozen=True, repr=False)
class Exited:
    """Posted by a worker thread as its last act."""

    execution: Execution | Process
    error: BaseException | None  # None when run() returned (or was cancelled on request), or a program exited 0
    # The error's one line and traceback, made in the worker's thread (see ``worker``).
    described: tuple[str, str] | None = None

    def __repr__(self) -> str:  # the error is the user's object: its own repr may raise
        return f"Exited(worker={self.execution.worker.name!r}, error={safe.shown(self.error)})"


@dataclass(frozen=True, repr=False)
class Ready:
    """Posted by a worker with ``READY = "signal"`` when it calls ``ctx.ready()``."""

    execution: Execution

    def __repr__(self) -> str:
        return f"Ready(worker={self.execution.worker.name!r})"


@dataclass(frozen=True)
class Loaded:
    """Posted by the importer thread when a job is done."""

    job: Job


@dataclass(frozen=True)
class SinksRemoved:
    """Posted when the host's log sinks were removed by someone else: loguru's common
    boilerplate ``logger.remove(); logger.add(sys.stderr)`` in a worker module removes every
    handler, the host's among them (``--log-file``, ``--log-json`` and the worker tags)."""

    by: str  # the file and line that called logger.remove()


@dataclass(eq=False)
class Command:
    """A checked request from the control socket, waiting in the inbox for the loop to answer.

    Its fate is decided once, under a lock: the host loop ``take``s it before acting, or the
    control thread ``expire``s it when the loop was too busy to take it in time. An expired
    command is never acted on, so a client told "not done" was told the truth.
    """

    cmd: str
    names: list[str] = field(default_factory=list)
    all_workers: bool = False  # restart, stop or start every worker (``"all": true``), not ``names``
    expires: float = math.inf  # time.monotonic() after which the host loop must not act on it
    reply: dict[str, Any] | None = None
    done: threading.Event = field(default_factory=threading.Event, repr=False)
    notify: Callable[[], None] | None = field(default=None, repr=False)  # wakes the control thread
    fate: str = "pending"  # then "taken" or "expired"
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def take(self) -> bool:
        """For the host loop, before it acts: True if it may; False once the command expired."""
        with self._lock:
            if self.fate == "pending":
                self.fate = "taken" if time.monotonic() <= self.expires else "expired"
            return self.fate == "taken"

    def expire(self) -> bool:
        """For the control thread, at the deadline: True if the command will never be acted on."""
        with self._lock:
            if self.fate == "pending":
                self.fate = "expired"
            return self.fate == "expired"

    def answer(self, reply: dict[str, Any]) -> None:
        self.reply = reply
        self.done.set()
        if self.notify is not None:
            self.notify()


# What ``core.handle`` is given: a message, or None when the wait for one timed out.
Message = Union[Signal, Changes, Exited, Command, Loaded, SinksRemoved, Ready, None]
