"""Program workers: a worker module that defines ``COMMAND`` instead of ``run``, a line of the
folder's ``Procfile``, and ``Process``, one run of its command as a child process.

``parse`` and ``read_procfile`` are pure: a module's namespace (or a Procfile's text) in, a
frozen ``Program`` out, or a ``SettingsError`` naming the setting. Two programs compare equal
when they would run the same way, which is how a save that changes nothing is told apart.

``Process`` is to a program what ``worker.Execution`` is to ``run(ctx)``, with the same
attributes and methods, so that ``core`` supervises both alike: ``start``, ``request_stop``
(``STOP_SIGNAL`` to the process group), ``interrupt`` (SIGKILL to the group), ``stack``, and
an ``Exited`` posted to the inbox once the child has ended and been reaped.
"""
from __future__ import annotations

import ctypes
import os
import re
import selectors
import shlex
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

from hotreload import cpu, ownership, safe
from hotreload.guardian import GUARDIAN_ENV
from hotreload.log import THREAD_PREFIX
from hotreload.records import Exited
from hotreload.settings import Settings, SettingsError

if TYPE_CHECKING:
    from hotreload.inbox import Inbox
    from hotreload.records import Worker

__all__ = ["NAMES", "PROCFILE", "Process", "Program", "ProgramFailed", "kill_groups", "parse", "pid_of",
           "read_procfile", "unfit_settings", "worker_seconds"]

NAMES = ("COMMAND", "ENV", "CWD", "STOP_SIGNAL")
PROCFILE = "Procfile"
# foreman's and honcho's rule for a Procfile line.
PROCFILE_LINE = re.compile(r"^([A-Za-z0-9_-]+):\s*(.*)$")
MAX_LINE = 64 * 1024  # bytes: a longer line of output is logged in pieces of this size
DRAIN = 0.5  # seconds the output of an ended program is read for, at most
POLL = 0.2  # seconds between looks at the child, where the kernel has no pidfd (before Linux 5.3)
PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class Program:
    """How a program worker runs: its argv, the environment it adds, its folder (absolute)
    and the signal that asks it to stop."""

    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()  # sorted (name, value) pairs, merged into the host's
    cwd: str = "."
    stop_signal: int = signal.SIGTERM

    def shown(self, limit: int = 100) -> str:
        """The command as one line for the log, cut to ``limit`` characters."""
        line = shlex.join(self.argv).replace("\n", "\\n")
        return line if len(line) <= limit else line[:limit - 1] + "…"


class ProgramFailed(Exception):
    """A program that ended without being asked to (nonzero status or a signal), or could not start."""


# --- the spec (pure) ------------------------------------------------------------------------


def parse(namespace: Mapping[str, Any], folder: Path) -> Program | None:
    """The program a module's namespace defines, or None without ``COMMAND`` (``ENV``, ``CWD``
    and ``STOP_SIGNAL`` are then the module's own business). A relative ``CWD`` is taken from
    ``folder``, the workers folder, which is also the default."""
    if "COMMAND" not in namespace:
        return None
    return Program(
        argv=_command(namespace["COMMAND"]),
        env=_env(namespace.get("ENV", {})),
        cwd=_cwd(namespace.get("CWD", "."), folder),
        stop_signal=_stop_signal(namespace.get("STOP_SIGNAL", signal.SIGTERM)),
    )


def _command(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        try:
            argv = shlex.split(value)
        except ValueError as exc:
            why = f"cannot be split like a shell would: {exc} in {safe.shown(value)}"
            raise SettingsError("COMMAND", why) from None
    elif isinstance(value, (list, tuple)):
        argv = []
        for number, item in enumerate(value):
            text = os.fspath(item) if isinstance(item, os.PathLike) else item
            if not isinstance(text, str):
                raise SettingsError("COMMAND", f"must be a list of strings or a string; item {number} is "
                                               f"{type(item).__name__} {safe.shown(item)}")
            argv.append(text)
    else:
        raise SettingsError("COMMAND", f"must be a list of strings or a string, not {type(value).__name__} "
                                       f"{safe.shown(value)}")
    if not argv or not argv[0]:
        raise SettingsError("COMMAND", f"must name a program to run, got {safe.shown(value)}")
    if any("\0" in arg for arg in argv):
        raise SettingsError("COMMAND", "must not contain a NUL character")
    return tuple(argv)


def _env(value: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, Mapping):
        raise SettingsError("ENV", f"must be a dict of strings, not {type(value).__name__} {safe.shown(value)}")
    pairs = []
    for key, text in value.items():
        if not isinstance(key, str) or not key or "=" in key or "\0" in key:
            raise SettingsError("ENV", f"a name must be a non-empty string without '=' or NUL, got {safe.shown(key)}")
        if not isinstance(text, str) or "\0" in text:
            raise SettingsError(f"ENV[{key!r}]", f"must be a string, not {type(text).__name__} {safe.shown(text)}")
        pairs.append((str.__str__(key), str.__str__(text)))
    return tuple(sorted(pairs))


def _cwd(value: Any, folder: Path) -> str:
    if not isinstance(value, (str, os.PathLike)) or not isinstance(os.fspath(value), str):
        raise SettingsError("CWD", f"must be a folder's path (a string), not {type(value).__name__} "
                                   f"{safe.shown(value)}")
    return os.path.normpath(os.path.join(folder, os.fspath(value)))


def _stop_signal(value: Any) -> int:
    found: int | None = None
    if isinstance(value, str):
        name = value.upper() if value.upper().startswith("SIG") else "SIG" + value.upper()
        found = getattr(signal.Signals, name, None)
    elif isinstance(value, int) and not isinstance(value, bool):
        found = value if value in {int(s) for s in signal.Signals} else None
    if not found:
        raise SettingsError("STOP_SIGNAL", f"must be a signal such as 'SIGTERM', 'SIGINT' or signal.SIGHUP, "
                                           f"got {safe.shown(value)}")
    return int(found)


def unfit_settings(settings: Settings) -> list[tuple[str, str]]:
    """The settings a program worker cannot have, with why: those that need a ``ctx``."""
    unfit = []
    if settings.heartbeat is not None:
        unfit.append(("HEARTBEAT", "a program has no ctx.heartbeat(); it applies to run(ctx) workers"))
    if settings.ready == "signal":
        unfit.append(("READY", "'signal' needs ctx.ready(), which a program has not: use 'started' or 'tcp:PORT'"))
    return unfit


def read_procfile(
    text: str, folder: Path, reserved: Iterable[str] = ()
) -> tuple[dict[str, tuple[int, Program]], list[tuple[int, str]]]:
    """The programs of a Procfile (``name: command`` a line, foreman's format; blank lines and
    ``#`` comments skipped), by name with their line number, and the lines that are not
    understood, or take a ``reserved`` name, with why. Each command is split as a ``COMMAND``
    string is, with the defaults."""
    entries: dict[str, tuple[int, Program]] = {}
    problems: list[tuple[int, str]] = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = PROCFILE_LINE.match(line)
        if match is None:
            problems.append((number, f"not `name: command` (a name of letters, digits, '_' and '-'): {line!r}"))
            continue
        name, command = match.groups()
        if name in reserved:
            problems.append((number, f"{name!r} is the host's own name in logs, status and events: rename the line"))
            continue
        if name in entries:
            problems.append((number, f"{name} is listed on line {entries[name][0]} already: this line is ignored"))
            continue
        try:
            program = parse({"COMMAND": command}, folder)
        except SettingsError as exc:
            problems.append((number, f"{name}: {exc}"))
            continue
        assert program is not None
        entries[name] = (number, program)
    return entries, problems


# --- one run of a program -------------------------------------------------------------------


def _prctl() -> Callable[..., int] | None:
    try:
        return ctypes.CDLL(None, use_errno=True).prctl  # type: ignore[no-any-return]
    except (OSError, AttributeError):  # not Linux
        return None


_PRCTL = _prctl()  # looked up here, not in a forked child, where loading a library may deadlock


def _in_child(parent: int) -> Callable[[], None]:
    """What the child does between fork and exec: a process group of its own (its stop signal
    reaches whatever it starts), SIGKILL when the thread that forked it ends (the host's death
    included, even by SIGKILL), and no signal blocked. Only system calls prepared in the
    parent: in a child forked from a process with threads, little else is safe."""

    def setup() -> None:
        os.setpgid(0, 0)
        if _PRCTL is not None:
            _PRCTL(PR_SET_PDEATHSIG, signal.SIGKILL)
            if os.getppid() != parent:  # the host died before the line above: no one would kill it
                os._exit(1)
        signal.pthread_sigmask(signal.SIG_SETMASK, ())

    return setup


def _environment(program: Program) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != GUARDIAN_ENV}  # the host's guardian is not theirs
    env.setdefault("PYTHONUNBUFFERED", "1")  # a Python program's lines reach the log as it prints them
    env.update(program.env)
    return env


class Process:
    """One run of a program worker: from its start until the host has seen it end
    (``Worker.execution``), like ``worker.Execution`` for a thread.

    Its thread starts the child, logs each line it writes (stdout at INFO, stderr at WARNING),
    sees it end, kills what it left in its process group, reaps it and posts ``Exited``. The
    child is forked by that thread because ``PR_SET_PDEATHSIG`` fires when the *thread* that
    forked it ends, and this one outlives the child by construction: the child dies with the
    host, whatever kills the host. Daemon, like a worker's thread: a child stuck in the kernel
    must not keep the host from exiting.
    """

    def __init__(self, worker: Worker, inbox: Inbox) -> None:
        self.worker = worker
        self.program: Program = worker.target  # type: ignore[assignment] # a program worker's
        self.stop_event = threading.Event()
        self.started_at = time.monotonic()
        # A thread's heartbeat, never set here: HEARTBEAT is a load error for a program, which
        # has no ctx to beat with (``loader.worker_parts``).
        self.heartbeat: float | None = None
        self.beat = self.started_at
        self.sleeping = False
        self.hang_at: float | None = None
        self.hung = False
        self.stop_deadline: float | None = None  # when the stop signal's time is up
        self.interrupted = False  # its group was sent SIGKILL
        self.abandon_at: float | None = None
        self.abandoned = False
        self.pid: int | None = None  # once the child runs (and its process group's id)
        self._inbox = inbox
        self._lock = threading.Lock()  # pid, _pending and _reaped change together
        self._pending: int | None = None  # a signal asked for before the child existed
        self._reaped = False  # its pid may belong to someone else now: never signal it again
        self._counted = False  # the child's CPU time is in the worker's account (see ``_reap``)
        self.thread = threading.Thread(target=self._main, name=THREAD_PREFIX + worker.name, daemon=True)
        # The worker's, as a thread worker's thread is: what it writes, and its CPU time.
        ownership.adopt(self.thread, worker.name, worker.cpu)

    def start(self) -> None:
        self.started_at = time.monotonic()
        self.thread.start()

    def request_stop(self, timeout: float) -> None:
        """STOP_SIGNAL to the process group; ``interrupt`` follows if it outlives ``timeout``."""
        if self.stop_deadline is None:
            self.stop_deadline = time.monotonic() + timeout
        self.stop_event.set()
        self._signal(self.program.stop_signal)

    def interrupt(self) -> None:
        """SIGKILL to the process group."""
        self.interrupted = True
        self._signal(signal.SIGKILL)

    def stack(self) -> str:
        """Where the child is, for a report that it would not die: its state in the kernel."""
        try:
            with open(f"/proc/{self.pid}/stat") as stat:
                state = stat.read().rpartition(")")[2].split()[0]
        except (OSError, IndexError):
            state = "unknown"
        why = " (an uninterruptible wait in the kernel: it dies when that ends)" if state == "D" else ""
        return f"pid {self.pid}, kernel state {state}{why}\n"

    def _child_seconds(self) -> float:
        """The CPU time of the child so far; 0 once it is in the worker's account."""
        if self.pid is None or self._counted:
            return 0.0
        try:
            with open(f"/proc/{self.pid}/stat") as stat:
                return cpu.parse_thread_stat(stat.read())
        except (OSError, ValueError):
            return 0.0

    def _signal(self, signum: int) -> None:
        with self._lock:
            if self.pid is None:
                self._pending = signum  # sent by the thread as soon as the child exists
            elif not self._reaped:
                _killpg(self.pid, signum)

    def _main(self) -> None:
        error: ProgramFailed | None = None
        try:
            if not self.stop_event.is_set():  # asked to stop before it began: nothing to run
                error = self._run()
        except BaseException as exc:  # noqa: B036 - posting Exited is this thread's last act, always
            error = ProgramFailed(f"hotreload could not run it: {safe.one_line(exc)}")
        finally:
            if self.stop_event.is_set():  # any end after a stop request is the stop
                error = None
            text = None if error is None else str(error)
            self.worker.cpu.thread_ended()  # its CPU time would go with the thread
            self._inbox.put(Exited(self, error, None if text is None else (text, text)))

    def _run(self) -> ProgramFailed | None:
        program = self.program
        if not os.path.isdir(program.cwd):
            return ProgramFailed(f"cannot start: CWD {program.cwd} is not a folder")
        try:
            child = subprocess.Popen(
                program.argv, cwd=program.cwd, env=_environment(program), stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=_in_child(os.getpid()),
            )
        except OSError as exc:
            return ProgramFailed(f"cannot start {program.argv[0]}: {exc.strerror or exc}")
        with self._lock:
            self.pid = child.pid
            if self._pending is not None:
                _killpg(child.pid, self._pending)
        try:
            self.worker.log.debug(f"pid {child.pid}: {program.shown()}")
            self._follow(child)
        finally:
            status = self._reap(child)
        if status == 0:
            return None
        if status < 0:
            try:
                return ProgramFailed(f"killed by {signal.Signals(-status).name}")
            except ValueError:
                return ProgramFailed(f"killed by signal {-status}")
        return ProgramFailed(f"exited with status {status}")

    def _follow(self, child: subprocess.Popen) -> None:
        """Log the child's lines until it has ended and its pipes are drained (for ``DRAIN``
        seconds at most: a process that left its group may hold them open for ever)."""
        assert child.stdout is not None and child.stderr is not None
        log = self.worker.log
        streams = {child.stdout.fileno(): _Lines(lambda line: log.info(line)),
                   child.stderr.fileno(): _Lines(lambda line: log.warning(line))}
        with selectors.DefaultSelector() as selector:
            for fd in streams:
                selector.register(fd, selectors.EVENT_READ)
            pidfd = _pidfd(child.pid)
            if pidfd is not None:
                selector.register(pidfd, selectors.EVENT_READ)
            try:
                ended_at: float | None = None
                while streams:
                    if ended_at is None:
                        timeout = None if pidfd is not None else POLL
                    else:
                        timeout = ended_at + DRAIN - time.monotonic()
                        if timeout <= 0:
                            break
                    for key, _ in selector.select(timeout):
                        if key.fd == pidfd:
                            selector.unregister(pidfd)
                        elif not streams[key.fd].feed(os.read(key.fd, MAX_LINE)):
                            selector.unregister(key.fd)
                            streams.pop(key.fd).close()
                    if ended_at is None and _has_ended(child.pid):
                        ended_at = time.monotonic()
                        self._kill_leftovers(child.pid)
            finally:
                for lines in streams.values():
                    lines.close()
                if pidfd is not None:
                    os.close(pidfd)

    def _kill_leftovers(self, pid: int) -> None:
        """What the ended child left in its group dies with it: until it is reaped, the group's
        id is still its own, so this reaches no one else."""
        with self._lock:
            if not self._reaped:
                _killpg(pid, signal.SIGKILL)

    def _reap(self, child: subprocess.Popen) -> int:
        """Reap the child, its CPU time first put in the worker's account (a child that has
        ended keeps its figures until it is reaped)."""
        self._kill_leftovers(child.pid)  # the child too, if this thread is leaving early
        with self._lock:
            self.worker.cpu.ended(self, self._child_seconds())
            self._counted = True
        status = child.wait()
        with self._lock:
            self._reaped = True
        for stream in (child.stdout, child.stderr):
            if stream is not None:
                stream.close()
        return status


class _Lines:
    """Bytes of one stream in, whole lines out (decoded, without their end), a line longer
    than ``MAX_LINE`` in pieces."""

    def __init__(self, emit: Callable[[str], None]) -> None:
        self.emit = emit
        self.buffer = b""

    def feed(self, data: bytes) -> bool:
        """Take what was read; False at the end of the stream."""
        if not data:
            return False
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            self._emit(line)
        while len(self.buffer) >= MAX_LINE:
            self._emit(self.buffer[:MAX_LINE])
            self.buffer = self.buffer[MAX_LINE:]
        return True

    def close(self) -> None:
        if self.buffer:
            self._emit(self.buffer)
            self.buffer = b""

    def _emit(self, line: bytes) -> None:
        self.emit(line.decode("utf-8", "replace").rstrip("\r"))


def _killpg(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):  # the group is gone already
        pass


def _pidfd(pid: int) -> int | None:
    """A descriptor that turns readable when ``pid`` ends, where the kernel has them."""
    try:
        return os.pidfd_open(pid)  # type: ignore[attr-defined,no-any-return]
    except (AttributeError, OSError):
        return None


def _has_ended(pid: int) -> bool:
    """True once the child has ended; it is left to be reaped (its group id stays its own)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


# --- what the rest of the host asks --------------------------------------------------------


def pid_of(execution: object) -> int | None:
    """The pid of a running program; None for a thread worker."""
    return execution.pid if isinstance(execution, Process) else None


def worker_seconds(execution: object, threads: Callable[[], float]) -> float:
    """A worker's CPU seconds: ``threads()`` (its threads', ended and live: ``cpu.worker_seconds``)
    and, for a program, its child's so far. Read under the lock its ``Process`` holds while it
    moves the child's figure into the worker's account, so that it is never counted twice."""
    if not isinstance(execution, Process):
        return threads()
    with execution._lock:
        return threads() + execution._child_seconds()


def kill_groups(executions: Iterable[object]) -> None:
    """SIGKILL the process group of every running program: for a host leaving at once."""
    for execution in executions:
        if isinstance(execution, Process):
            execution.interrupt()
