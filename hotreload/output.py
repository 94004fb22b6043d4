"""A worker's output is its log: ``sys.stdout`` and ``sys.stderr`` while hosting.

``install`` puts a ``Capture`` in place of each. A write from a thread that belongs to a
worker (``ownership``) becomes log lines of that worker — stdout at INFO, stderr at WARNING
— which go to every sink like any other record: the terminal, ``--log-file``, ``--log-json``.
A line is logged when its newline comes; a partial line is held, per thread, until then, a
``flush()``, or the end of the worker's run (``finish``). A write from any other thread, the
host's own or a library's, goes to the real stream unchanged, and so does everything else
(``isatty()``, ``encoding``, ``fileno()``, ``buffer``…).

Writes made by a loguru sink or a ``logging`` handler (one a worker added on ``sys.stderr``)
go to the real stream too: they are log lines already, and logging them again would loop
(an ``enqueue=True`` sink, writing from its own thread, forever).
"""
from __future__ import annotations

import logging
import os
import sys
import threading
from threading import current_thread
from typing import Any

import loguru
from loguru import logger

from hotreload import ownership

__all__ = ["LINE_MAX", "Capture", "finish", "flush_all", "install", "lines_of", "real"]

# A line longer than this (in characters) is logged in pieces: one record stays bounded
# whatever a worker writes, and so does the text held for a line without a newline.
LINE_MAX = 16 * 1024
# Held lines of threads that ended are logged when this many are held (and at every run's end).
SWEEP_AT = 64
# Writes from code in these folders are log lines already.
_LOG_MACHINERY = (os.path.dirname(loguru.__file__) + os.sep, os.path.dirname(logging.__file__) + os.sep)


def lines_of(held: str, text: str, limit: int = LINE_MAX) -> tuple[list[str], str]:
    """The lines ``held + text`` completes, and what is left of a line not ended yet. A line
    ends at ``\\n`` (a ``\\r`` before it is dropped); one longer than ``limit`` is cut in
    pieces of ``limit``, and so is what is left."""
    *ended, rest = (held + text).split("\n")
    lines: list[str] = []
    for line in ended:
        if line.endswith("\r"):
            line = line[:-1]
        lines += [line[i:i + limit] for i in range(0, len(line), limit)] or [""]
    while len(rest) >= limit:
        lines.append(rest[:limit])
        rest = rest[limit:]
    return lines, rest


class _Held:
    """A thread's line so far: its parts, joined when the line ends."""

    __slots__ = ("worker", "parts", "size")

    def __init__(self, worker: str) -> None:
        self.worker = worker
        self.parts: list[str] = []
        self.size = 0


class _Emitting(threading.local):
    active = False  # this thread is inside a log call made by a Capture


_emitting = _Emitting()
_loggers: dict[str, Any] = {}  # a logger bound to each worker's name


def _log(worker: str, level: str, line: str) -> None:
    bound = _loggers.get(worker)
    if bound is None:
        bound = _loggers[worker] = logger.bind(worker=worker)
    _emitting.active = True
    try:
        bound.log(level, line)  # no arguments: loguru does not format the message
    finally:
        _emitting.active = False


def _whose(thread: threading.Thread) -> str | None:
    """The worker whose line a write or flush of ``thread`` is (the caller's caller is the
    writer); None when it goes to the real stream: the thread is nobody's, or the writer is a
    log sink or handler, or our own log call (a sink the worker added on this stream)."""
    worker = ownership.of(thread)
    if worker is None or _emitting.active:
        return None
    try:
        writer = sys._getframe(2).f_code.co_filename
    except ValueError:  # called from C with no Python frame above
        return worker
    return None if writer.startswith(_LOG_MACHINERY) else worker


class Capture:
    """Stands in for ``sys.stdout`` or ``sys.stderr`` (``stream``): what a worker's thread
    writes is logged at ``level``, the rest written to ``stream``."""

    def __init__(self, stream: Any, level: str) -> None:
        self.stream = stream
        self.level = level
        self._held: dict[threading.Thread, _Held] = {}

    def write(self, text: str) -> int:
        # The hot path: print() makes a write for each argument, separator and end.
        if text.__class__ is not str and not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        thread = current_thread()
        held = self._held.get(thread)
        ends = "\n" in text
        if held is not None and not ends and not _emitting.active:
            # More of a line under way in a worker's thread: log sinks and handlers write
            # whole lines, so who writes need not be asked.
            worker = held.worker
        else:
            whose = _whose(thread)
            if whose is None:
                return self.stream.write(text)
            worker = whose
            if held is None and not ends:
                if not text:
                    return 0
                held = self._hold(thread, worker)
        if not ends:
            assert held is not None
            size = held.size + len(text)
            if size < LINE_MAX:
                held.parts.append(text)
                held.size = size
                return len(text)
        before = ""
        if held is not None:
            self._held.pop(thread, None)  # None: flush_all, at the host's end, took it meanwhile
            before = "".join(held.parts)
        lines, rest = lines_of(before, text)
        for line in lines:
            _log(worker, self.level, line)
        if rest:
            held = self._hold(thread, worker)
            held.parts.append(rest)
            held.size = len(rest)
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        thread = current_thread()
        if _whose(thread) is None:
            self.stream.flush()
        else:
            self._log_held(thread)

    def _hold(self, thread: threading.Thread, worker: str) -> _Held:
        if len(self._held) >= SWEEP_AT:
            self.log_ended()
        held = self._held[thread] = _Held(worker)
        return held

    def _log_held(self, thread: threading.Thread) -> None:
        held = self._held.pop(thread, None)
        if held is not None:
            _log(held.worker, self.level, "".join(held.parts))

    def log_ended(self) -> None:
        """Log what threads that have ended left held."""
        for thread in [t for t in list(self._held) if not t.is_alive()]:
            self._log_held(thread)

    def log_current(self) -> None:
        """Log what the calling thread holds."""
        self._log_held(threading.current_thread())

    def log_all(self) -> None:
        for thread in list(self._held):
            self._log_held(thread)

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding, errors, buffer, closed, close…
        # Not its own attributes before __init__ (copy.copy makes an instance without it), nor
        # the stream's protocol of copy and pickle (``__getstate__``…): those are the Capture's.
        if name in ("stream", "_held") or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.stream, name)

    def __repr__(self) -> str:
        return f"<hotreload.output.Capture of {self.stream!r}>"


_captures: list[Capture] = []


def install() -> None:
    """Capture workers' writes to ``sys.stdout`` and ``sys.stderr`` (once per process; a
    missing stream, None, stays missing)."""
    if _captures:
        return
    ownership.install()
    for name, level in (("stdout", "INFO"), ("stderr", "WARNING")):
        stream = getattr(sys, name)
        if stream is not None:
            capture = Capture(stream, level)
            _captures.append(capture)
            setattr(sys, name, capture)


def real(stream: Any) -> Any:
    """The stream behind ``stream`` if it is a ``Capture``: where a log sink writes."""
    return stream.stream if isinstance(stream, Capture) else stream


def finish() -> None:
    """At the end of a worker's run, in its thread: log the line it left unfinished, and
    those of its threads (any worker's) that have ended."""
    for capture in _captures:
        capture.log_current()
        capture.log_ended()


def flush_all() -> None:
    """Log every line still held, of every thread: when the host stops."""
    for capture in _captures:
        capture.log_all()
