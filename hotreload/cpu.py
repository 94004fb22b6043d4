"""CPU and memory for ``status``: the kernel's per-thread accounting, read when asked.

Linux keeps each thread's CPU time in ``/proc/self/task/TID/stat`` (utime + stime, in clock
ticks) and the process's, with its thread count and resident pages, in ``/proc/self/stat``.
Nothing here runs on its own: a ``status`` request takes a ``Sample``, and CPU% is the
difference from a sample kept from an earlier request, so an idle host wakes no thread.

The window: CPU% is over the time since the newest kept sample at least ``MIN_WINDOW`` old,
if that one is at most ``MAX_WINDOW`` old; otherwise there is none (``usage`` gives None),
and the client measures by asking again ``MIN_WINDOW`` later. Two samples kept are enough
for that (``keep``). 100 % is one core busy, as in ``top``.

A thread's CPU time goes with it when it ends, so a worker's threads record their own final
figure as their last act (``Account.thread_ended``): a worker's total is what its ended
threads recorded plus what its live threads have used so far.
"""
from __future__ import annotations

import os
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

__all__ = [
    "MAX_WINDOW", "MIN_WINDOW", "Account", "Sample", "Usage", "Window", "base_for", "keep", "parse_process_stat",
    "parse_thread_stat", "process_usage", "thread_seconds", "threads_by_owner", "usage", "worker_seconds",
]

MIN_WINDOW = 0.5  # seconds: shorter, a 10 ms clock tick is more than 2 % of a core
MAX_WINDOW = 10.0  # seconds: CPU% says what the workers do now, not what they did a while ago

TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")

# In the fields after the name's closing parenthesis, the first is the state (field 3 of
# proc(5)): field N is at index N - 3.
_UTIME, _STIME, _THREADS, _RSS = 14 - 3, 15 - 3, 20 - 3, 24 - 3


@dataclass(frozen=True)
class Usage:
    """The host process as a whole."""

    cpu_seconds: float  # every thread's, the ended ones' included
    threads: int
    rss_bytes: int


def _fields(text: str) -> list[str]:
    """The fields after the thread's name, which may itself hold spaces and parentheses:
    it ends at the last ``)`` of the line."""
    end = text.rfind(")")
    if end < 0:
        raise ValueError("not a /proc stat line: no ')' after the name")
    fields = text[end + 1:].split()
    if len(fields) <= _RSS:
        raise ValueError(f"not a /proc stat line: {len(fields)} fields after the name")
    return fields


def parse_thread_stat(text: str, ticks_per_second: int = TICKS_PER_SECOND) -> float:
    """The CPU seconds (user + system) of a ``/proc/.../stat`` line."""
    fields = _fields(text)
    return (int(fields[_UTIME]) + int(fields[_STIME])) / ticks_per_second


def parse_process_stat(text: str, ticks_per_second: int = TICKS_PER_SECOND, page_size: int = PAGE_SIZE) -> Usage:
    """CPU seconds, thread count and resident bytes of a ``/proc/PID/stat`` line."""
    fields = _fields(text)
    return Usage(
        cpu_seconds=(int(fields[_UTIME]) + int(fields[_STIME])) / ticks_per_second,
        threads=int(fields[_THREADS]),
        rss_bytes=int(fields[_RSS]) * page_size,
    )


def _read(path: str) -> str:
    """A /proc file's text, with plain system calls: a third of the time of ``open()``'s
    buffered text file, which counts with one read per worker. Latin-1 decodes any bytes
    (a thread's name may be any)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, 4096).decode("latin-1")
    finally:
        os.close(fd)


def thread_seconds(native_id: int) -> float | None:
    """The CPU seconds of this process's thread ``native_id``, or None once it has ended."""
    try:
        return parse_thread_stat(_read(f"/proc/self/task/{native_id}/stat"))
    except (FileNotFoundError, ProcessLookupError):
        return None


def process_usage() -> Usage:
    return parse_process_stat(_read("/proc/self/stat"))


class Account:
    """The CPU time of a worker's ended threads: kept on its record for the life of the host.

    A thread records its final figure as its last act (``thread_ended``), once, and is
    remembered as ended (weakly: a thread object that is gone needs no remembering), so that
    a reading never counts it twice, as ended and as live.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seconds = 0.0
        self._ended: weakref.WeakSet[Any] = weakref.WeakSet()

    def thread_ended(self) -> None:
        """Record the calling thread's CPU time: call it from the thread, as it ends."""
        self.ended(threading.current_thread(), time.thread_time())

    def ended(self, thread: Any, seconds: float) -> None:
        with self._lock:
            self._ended.add(thread)
            self._seconds += seconds

    def seconds(self) -> float:
        with self._lock:
            return self._seconds

    def has_ended(self, thread: Any) -> bool:
        with self._lock:
            return thread in self._ended


def worker_seconds(
    account: Account, threads: Iterable[Any], read: Callable[[int], float | None] = thread_seconds
) -> float:
    """A worker's CPU seconds: its ended threads' and its live ``threads``' so far.

    The ended figure is read first: a thread that ends meanwhile is then either counted live
    (with less than its final figure) or not at all, and its final figure shows in the next
    reading; never twice, so a worker's total never goes down.
    """
    total = account.seconds()
    for thread in threads:
        native_id = thread.native_id
        if native_id is None or account.has_ended(thread):
            continue
        total += read(native_id) or 0.0
    return total


def threads_by_owner(threads: Iterable[Any], owner: Callable[[Any], str | None]) -> dict[str, list[Any]]:
    """``threads`` grouped by the worker ``owner(thread)`` names; threads of no worker left out."""
    grouped: dict[str, list[Any]] = {}
    for thread in threads:
        name = owner(thread)
        if name is not None:
            grouped.setdefault(name, []).append(thread)
    return grouped


@dataclass(frozen=True)
class Sample:
    """CPU seconds so far, of the host and of each worker, at ``at`` (``time.monotonic()``)."""

    at: float
    host_seconds: float
    workers: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Window:
    """CPU% over ``window`` seconds (None, and no figures, without a base sample)."""

    window: float | None
    host_percent: float | None
    workers: dict[str, float]


def base_for(kept: Sequence[Sample], now: float) -> Sample | None:
    """The sample CPU% at ``now`` is measured from: the newest kept one at least
    ``MIN_WINDOW`` old, if it is at most ``MAX_WINDOW`` old."""
    for sample in reversed(kept):
        if now - sample.at >= MIN_WINDOW:
            return sample if now - sample.at <= MAX_WINDOW else None
    return None


def keep(kept: Sequence[Sample], new: Sample) -> list[Sample]:
    """The samples to keep once ``new`` is taken: at most two, ``MIN_WINDOW`` apart, so that
    a request at any time later has a base in the older or the newer."""
    if kept and new.at - kept[-1].at < MIN_WINDOW:
        return list(kept[-2:])
    return [*kept[-1:], new]


def _percent(seconds: float, window: float) -> float:
    return round(max(0.0, 100.0 * seconds / window), 1)


def usage(base: Sample | None, now: Sample) -> Window:
    """CPU% of one core, of the host and of each worker of ``now``, from ``base`` to ``now``.
    A worker absent from ``base``, or whose total went down (a new record of that name),
    counts from zero."""
    if base is None or now.at <= base.at:
        return Window(None, None, {})
    window = now.at - base.at
    workers = {}
    for name, seconds in now.workers.items():
        before = base.workers.get(name, 0.0)
        workers[name] = _percent(seconds - before if seconds >= before else seconds, window)
    return Window(window, _percent(now.host_seconds - base.host_seconds, window), workers)
