"""The host's inbox: one queue for every message, which only the main thread reads.

Worker threads (``Exited``), the watcher (``Changes``) and signal handlers (``Signal``)
post to it. The main thread waits with ``select`` on a pipe that each ``put`` writes a
byte to, and that ``signal.set_wakeup_fd`` writes to when a signal arrives, whichever
thread the kernel delivered it to. A lock-based ``queue.SimpleQueue.get`` can sleep
through a signal another thread received (its Python handler only runs once the main
thread wakes), and the host would never hear Ctrl-C.
"""
from __future__ import annotations

import collections
import os
import select
import signal
import threading
from typing import Any

__all__ = ["Inbox"]


class Inbox:
    def __init__(self) -> None:
        self._messages: collections.deque[Any] = collections.deque()
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)

    def put(self, message: Any) -> None:
        """Post a message: safe from any thread and from a signal handler."""
        self._messages.append(message)
        try:
            os.write(self._write, b"\0")
        except BlockingIOError:  # the pipe is full of wake-ups already
            pass

    def get(self, timeout: float | None = None) -> Any:
        """The next message, or None when none came within ``timeout`` seconds (None:
        no limit) or a signal woke the wait; the signal's handler posts its message.
        A timeout beyond what the platform can wait (infinite, NaN, 1e10) waits the longest
        it can: a timer set from a huge setting must not crash the host loop."""
        if not self._messages:
            if timeout is not None and not timeout <= threading.TIMEOUT_MAX:
                timeout = threading.TIMEOUT_MAX
            select.select([self._read], [], [], timeout)
            self._drain()
        return self._messages.popleft() if self._messages else None

    def wake_on_signals(self) -> None:
        """Let a signal, whichever thread receives it, wake ``get``. Main thread only."""
        signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)

    def _drain(self) -> None:
        try:
            while os.read(self._read, 4096):
                pass
        except BlockingIOError:
            pass
