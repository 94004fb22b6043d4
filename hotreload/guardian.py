"""The guardian: a small parent process that starts the host and starts it again when it dies.

``hotreload run`` is this process unless ``--no-guard`` is given. It runs the same command
line with ``--no-guard`` as its child, the host, and then only waits. Standard library only,
and no threads: it costs a few MB and wakes only for a signal or the host's exit.

- The host died abnormally (a signal such as SIGSEGV or the OOM killer's SIGKILL, or an exit
  nobody asked for, e.g. ``os._exit`` in a worker) after it was ready: log why, wait the
  jittered backoff, start it again.
- SIGINT / SIGTERM: forwarded to the host (each time: a second Ctrl-C exits at once); when it exits, the guardian exits with its
  status. A host that exits by itself with status 0, or fails before it is ready (a usage
  error, a second host refused), is not started again either.
- SIGHUP: a graceful restart. The host is asked to stop (SIGTERM) and a fresh one started at
  once, which picks up changes that cannot be reloaded in place.
"""
from __future__ import annotations

import ctypes
import json
import os
import select
import signal
import subprocess
import sys
import time
from datetime import datetime
from typing import Sequence

from hotreload import backoff
from hotreload.settings import Backoff

__all__ = ["GUARDIAN_ENV", "READY_FD_ENV", "guard", "notify_ready"]

READY_FD_ENV = "HOTRELOAD_READY_FD"
GUARDIAN_ENV = "HOTRELOAD_GUARDIAN_PID"
PR_SET_PDEATHSIG = 1
POLICY = Backoff()


def notify_ready() -> None:
    """Called by the host when its workers are about to start: tells the guardian, if any."""
    fd = os.environ.pop(READY_FD_ENV, None)
    if fd is not None:
        try:
            os.write(int(fd), b"1")
            os.close(int(fd))
        except OSError:
            pass


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
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _describe(status: int) -> str:
    if status < 0:
        try:
            return f"killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"killed by signal {-status}"
    return f"exited with status {status}"


class _Guardian:
    def __init__(self, argv: Sequence[str], as_json: bool) -> None:
        self.argv = list(argv)
        self.as_json = as_json
        self.child: subprocess.Popen | None = None
        self.stop_signal: int | None = None  # SIGINT/SIGTERM received: stop for good
        self.restart = False  # SIGHUP received: a graceful restart
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)

    def on_signal(self, signum: int, frame: object) -> None:
        if signum == signal.SIGHUP:
            self.restart = True
            signum = signal.SIGTERM
        elif self.restart and self.stop_signal is None:
            self.stop_signal = signum  # the host is already stopping for the restart: let it,
            return  # and start no new one
        else:  # forwarded every time: the host has its own process group, so a Ctrl-C at the
            self.stop_signal = signum  # terminal reaches it only this way; a second one exits at once
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
            child, ready_r = self.start()
            started = time.monotonic()
            status = child.wait()
            ready = bool(_read_all(ready_r))
            if self.stop_signal is not None:
                return _exit_status(status)
            if self.restart:
                self.restart = False
                _say("INFO", f"host restarted on SIGHUP ({_describe(status)})", self.as_json)
                failures = 0
                continue
            if status == 0 or not ready:
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
    try:
        os.set_blocking(fd, False)
        return os.read(fd, 16)
    except BlockingIOError:
        return b""
    finally:
        os.close(fd)


def _exit_status(status: int) -> int:
    return 128 - status if status < 0 else status


def guard(argv: Sequence[str], as_json: bool = False) -> int:
    """Run ``argv`` (the host's command line) under the guardian; returns the exit status.
    ``as_json``: its own log lines as JSON, like the host's with ``--log-json``."""
    return _Guardian(argv, as_json).run()
