"""Which worker a thread belongs to, for its output, its CPU time and its logs.

A worker's own thread is adopted by it before it starts (``adopt``). Every thread started
from a thread that belongs to a worker belongs to that worker too: decided once, at
``Thread.start``, from the starting thread (``install`` wraps ``threading.Thread.start``).
That covers the threads a worker starts itself, the pools it creates
(``concurrent.futures``, ``asyncio.to_thread``, ``loop.run_in_executor``) and their
descendants; its event loop's tasks run in its own thread. A thread started by anyone else —
the host, a library's thread made at import, ``_thread.start_new_thread`` — belongs to
nobody, and so does a pool a worker did not create, even when it runs the worker's code.

The owner is kept on the thread object itself, so it outlives a reload of ``core`` and is
forgotten with the thread: there is no table to keep in step with threads that end.

So is the owner's CPU account (``cpu.Account``), when the adopter gives one: a thread started
from the worker's records its CPU time there as it ends, since the kernel's figure goes with
the thread. (The worker's own thread records its own, as its ``Execution`` ends.)
"""
from __future__ import annotations

import functools
import threading
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from hotreload.cpu import Account

__all__ = ["adopt", "current", "install", "of", "owner"]

_ATTRIBUTE = "_hotreload_worker"  # the owner's name, on the Thread object
_ACCOUNT = "_hotreload_cpu"  # the owner's cpu.Account, on the Thread object


def adopt(thread: threading.Thread, worker: str, account: Account | None = None) -> None:
    """Make ``thread`` (not started yet) belong to ``worker``, whose CPU time is kept in
    ``account``."""
    setattr(thread, _ATTRIBUTE, worker)
    if account is not None:
        setattr(thread, _ACCOUNT, account)


def of(thread: threading.Thread) -> str | None:
    """The worker ``thread`` belongs to, or None."""
    return getattr(thread, _ATTRIBUTE, None)


def current() -> str | None:
    """The worker the calling thread belongs to, or None."""
    return getattr(threading.current_thread(), _ATTRIBUTE, None)


def owner(ident: int) -> str | None:
    """The worker the running thread ``ident`` (``Thread.ident``, ``threading.get_ident()``)
    belongs to; None for a thread of nobody's, or one that has ended. Read from threading's
    own table of running threads, which ``threading.current_thread()`` reads too."""
    thread = threading._active.get(ident)  # type: ignore[attr-defined]
    return None if thread is None else of(thread)


def install() -> None:
    """Wrap ``threading.Thread.start`` (once per process) so that a thread started from a
    worker's thread belongs to that worker."""
    if getattr(threading.Thread.start, "_hotreload_inherits", False):
        return
    threading.Thread.start = _inheriting(threading.Thread.start)  # type: ignore[method-assign,assignment]


def _inheriting(start: Callable[[threading.Thread], None]) -> Callable[[threading.Thread], None]:
    @functools.wraps(start)
    def inheriting_start(self: threading.Thread) -> None:
        # Before the thread runs: its first write may come before start() returns here.
        if of(self) is None:
            starter = threading.current_thread()
            worker = of(starter)
            if worker is not None:
                adopt(self, worker, getattr(starter, _ACCOUNT, None))
                _count_cpu_at_end(self)
        start(self)

    wrapper: Any = inheriting_start
    wrapper._hotreload_inherits = True
    return inheriting_start


def _count_cpu_at_end(thread: threading.Thread) -> None:
    """Have ``thread`` record its CPU time in its owner's account as its last act."""
    account: Account | None = getattr(thread, _ACCOUNT, None)
    if account is None:
        return
    run = thread.run

    @functools.wraps(run)
    def counted_run() -> None:
        try:
            run()
        finally:
            account.thread_ended()

    thread.run = counted_run  # type: ignore[method-assign]
