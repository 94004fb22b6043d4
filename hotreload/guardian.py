"""The guardian: a small parent process that starts the host and starts it again when it dies.

``hotreload run`` is this process unless ``--no-guard`` is given. It runs the same command
line with ``--no-guard`` as its child, the host, and then only waits. Standard library only,
and no threads: it costs a few MB and wakes only for a signal or the host's exit.

The host talks to it through a pipe (``HOTRELOAD_READY_FD``), one byte per announcement:
stopping (a stop was asked of it: a signal, whoever sent it), failed (it is leaving, by a
Python-level exit, before it was ready: a usage error, a second host refused). The guardian
reads them once the host has exited, never waits for the pipe to close (a worker's forked
child may hold it open), and:

- a host that announced a stop or a start-up failure is final: the guardian exits with its
  status, whatever that is.
- any other end is a crash — a signal such as SIGSEGV or the OOM killer's SIGKILL, an exit
  nobody asked for (``os._exit`` in a worker, whatever its status): log why, wait the
  jittered backoff, start it again.
- SIGINT / SIGTERM: forwarded to the host, which stops; the guardian exits with its status.
  A second one exits the host at once, unless it is the first delivered again (see
  ``hotreload.signals``).
- SIGHUP: a graceful restart. The host is asked to stop (SIGTERM) and a fresh one started at
  once, which picks up changes that cannot be reloaded in place. Another SIGHUP meanwhile is
  merged into it.

The guardian never dies of its own output: a log line it cannot write (a closed pipe or
terminal) is dropped.
"""
from __future__ import annotations

import atexit
import ctypes
import json
import os
import select
import signal
import subprocess
import time
from datetime import datetime
from typing import Sequence

from hotreload import backoff, signals
from hotreload.settings import Backoff

__all__ = ["GUARDIAN_ENV", "READY_FD_ENV", "connect", "guard", "guardian_pid", "handle_signals_while_starting",
           "notify_ready", "notify_stopping"]

READY_FD_ENV = "HOTRELOAD_READY_FD"
GUARDIAN_ENV = "HOTRELOAD_GUARDIAN_PID"
PR_SET_PDEATHSIG = 1
POLICY = Backoff()
# The host's announcements, one byte each.
STOPPING = b"s"
FAILED = b"f"


# --- the host's end of the pipe ---------------------------------------------------------------


class _Link:
    """The host's end of the pipe to its guardian. Only the process that took it from the
    environment writes to it: a worker's forked child inherits the object, not the role."""

    def __init__(self, fd: int | None) -> None:
        self.fd = fd
        self.pid = os.getpid()
        self.ready = False

    def tell(self, what: bytes) -> None:
        if self.fd is None or self.pid != os.getpid():
            return
        try:
            os.write(self.fd, what)
        except OSError:  # the guardian is gone
            pass


_link: _Link | None = None


def connect() -> None:
    """In the host, first thing: take the pipe to the guardian, if any, out of the
    environment (no subprocess of a worker inherits it), and make a Python-level exit
    before the host is ready an announced start-up failure."""
    global _link
    if _link is not None:
        return
    raw = os.environ.pop(READY_FD_ENV, None)
    fd = int(raw) if raw is not None and raw.isdigit() else None
    if fd is not None:
        try:
            os.set_inheritable(fd, False)
        except OSError:
            fd = None
    _link = _Link(fd)
    atexit.register(_at_exit, _link)


def handle_signals_while_starting() -> None:
    """In the host's main thread, before its slow imports (seconds on a busy machine): until
    ``host.serve`` installs the real handlers, SIGINT or SIGTERM ends the host quietly, as
    an announced stop with status 0 like any graceful stop (no worker has started, so none
    failed to stop; no ``KeyboardInterrupt`` traceback), and SIGHUP is ignored (the host that
    is starting reads the code as it is now)."""

    def leave(signum: int, frame: object) -> None:
        notify_stopping()
        raise SystemExit(0)

    signal.signal(signal.SIGINT, leave)
    signal.signal(signal.SIGTERM, leave)
    signal.signal(signal.SIGHUP, lambda signum, frame: None)
    # Held across the exec of a restart in place (host.replace_process): handled from now on.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, (signal.SIGINT, signal.SIGTERM, signal.SIGHUP))


def _at_exit(link: _Link) -> None:
    if not link.ready:
        link.tell(FAILED)


def notify_ready() -> None:
    """Called by the host when its workers are about to start: from now on, an end it does
    not announce is a crash, which the guardian answers with a new host."""
    connect()
    assert _link is not None
    _link.ready = True


def guardian_pid() -> int | None:
    """In the host: its guardian's pid, or None for a bare host (``--no-guard``)."""
    pid = os.environ.get(GUARDIAN_ENV, "")
    return int(pid) if pid.isdigit() else None


def notify_stopping() -> None:
    """Called by the host when a stop was asked of it: its exit, whatever its status, is final."""
    connect()
    assert _link is not None
    _link.tell(STOPPING)


# --- the guardian -------------------------------------------------------------------------------


def _die_with_parent() -> None:
    """In the host, before exec: get SIGTERM if the guardian itself dies (Linux)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass
    os.setpgid(0, 0)  # its own group: a Ctrl-C reaches the guardian, which forwards it once


def _say(level: str, message: str, as_json: bool) -> None:
    """A line in the host's log format, text or JSON (the guardian has no loguru, by design)."""
    now = datetime.now().astimezone()
    if as_json:
        line = json.dumps({"time": now.isoformat(), "level": level, "worker": "guardian", "message": message})
    else:
        line = f"{now:%H:%M:%S}.{now.microsecond // 1000:03d} | {level:<7} | {'guardian':<10} | {message}"
    _write_all(2, (line + "\n").encode(errors="replace"))


def _write_all(fd: int, data: bytes) -> None:
    """Write ``data``, or as much of it as can be: a closed pipe or terminal (EPIPE, EIO)
    loses the line, never the guardian. Unbuffered, so that nothing is left to fail at exit."""
    try:
        while data:
            data = data[os.write(fd, data):]
    except OSError:
        pass


def _describe(status: int) -> str:
    if status < 0:
        try:
            return f"was killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"was killed by signal {-status}"
    return f"exited with status {status}"


class _Guardian:
    def __init__(self, argv: Sequence[str], as_json: bool) -> None:
        self.argv = list(argv)
        self.as_json = as_json
        self.child: subprocess.Popen | None = None
        self.stop_signal: int | None = None  # SIGINT/SIGTERM received: stop for good
        self.restart = False  # SIGHUP received: a graceful restart
        self.last: signals.Delivery | None = None  # the last signal that counted
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)

    def on_signal(self, signum: int, frame: object) -> None:
        now = time.monotonic()
        under_way = signals.STOP if self.stop_signal is not None else signals.RESTART if self.restart else None
        action = signals.react(under_way, self.last, signum, now)
        if action == signals.IGNORE:
            return
        self.last = signals.Delivery(signum, now)
        if action == signals.RESTART:
            self.restart = True
            signum = signal.SIGTERM
        elif action == signals.STOP:
            self.stop_signal = signum
            if under_way == signals.RESTART:  # the host is already stopping for the restart:
                return  # let it, and start no new one
        # Forwarded: the host has its own process group, so a Ctrl-C at the terminal reaches
        # it only this way; a second one (EXIT_NOW) makes it exit at once.
        child = self.child
        if child is not None and child.returncode is None:
            try:
                os.kill(child.pid, signum)
            except ProcessLookupError:
                pass

    def start(self) -> tuple[subprocess.Popen, int]:
        ready_r, ready_w = os.pipe()
        env = {**os.environ, READY_FD_ENV: str(ready_w), GUARDIAN_ENV: str(os.getpid())}
        child = subprocess.Popen(self.argv, env=env, pass_fds=(ready_w,), preexec_fn=_die_with_parent)
        os.close(ready_w)
        self.child = child
        if self.stop_signal is not None:  # it came while the child was being created
            os.kill(child.pid, self.stop_signal)
        return child, ready_r

    def pause(self, seconds: float) -> None:
        """Sleep, but wake at once for a signal."""
        deadline = time.monotonic() + seconds
        while self.stop_signal is None and not self.restart:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            select.select([self.wake_r], [], [], left)
            try:
                os.read(self.wake_r, 512)
            except BlockingIOError:
                pass

    def run(self) -> int:
        failures = 0
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, self.on_signal)
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        os.set_blocking(self.wake_r, False)
        while True:
            child, link = self.start()
            started = time.monotonic()
            status = child.wait()
            said = _read_all(link)
            if self.stop_signal is not None:
                return _exit_status(status)
            if self.restart:
                self.restart = False
                _say("INFO", f"host restarted on SIGHUP (the old one {_describe(status)})", self.as_json)
                failures = 0
                continue
            if STOPPING in said or FAILED in said:  # announced: final, whatever the status
                return _exit_status(status)
            failures = backoff.count_failure(failures, time.monotonic() - started, stable_after=POLICY.max)
            wait = backoff.delay(failures, POLICY.initial, POLICY.factor, POLICY.max, POLICY.jitter)
            _say("ERROR", f"the host {_describe(status)}; starting it again in {wait:.2f} s (attempt {failures})",
                 self.as_json)
            self.pause(wait)
            if self.stop_signal is not None:
                return _exit_status(status)
            self.restart = False


def _read_all(fd: int) -> bytes:
    """What the host wrote to the pipe, read without waiting: a worker's forked child may
    still hold the pipe open after the host is gone."""
    data = b""
    try:
        os.set_blocking(fd, False)
        while True:
            chunk = os.read(fd, 512)
            if not chunk:
                break
            data += chunk
    except BlockingIOError:
        pass
    finally:
        os.close(fd)
    return data


def _exit_status(status: int) -> int:
    return 128 - status if status < 0 else status


def guard(argv: Sequence[str], as_json: bool = False) -> int:
    """Run ``argv`` (the host's command line) under the guardian; returns the exit status.
    ``as_json``: its own log lines as JSON, like the host's with ``--log-json``."""
    return _Guardian(argv, as_json).run()
