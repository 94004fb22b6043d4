"""A worker's thread: the ctx handed to ``run(ctx)``, and one ``Execution`` of it.

Nothing here decides anything: the thread runs the user's ``run(ctx)`` and posts ``Exited``
to the host's inbox; ``core`` decides what happens next. The worker's record, which outlives
its threads, is ``records.Worker``.
"""
from __future__ import annotations

import asyncio
import ctypes
import inspect
import queue
import sys
import threading
import time
import traceback
from typing import TYPE_CHECKING, Any, Callable, Hashable

from hotreload import output, ownership, safe
from hotreload.keep import Kept
from hotreload.log import THREAD_PREFIX, format_error
from hotreload.records import Exited, Ready

if TYPE_CHECKING:
    from loguru import Logger

    from hotreload.inbox import Inbox
    from hotreload.records import Worker

__all__ = ["Context", "Execution", "Interrupted", "call_problem"]


class Interrupted(BaseException):
    """Raised into a worker thread that ignored a stop request past its stop timeout.

    A BaseException, so that a worker's ``except Exception`` does not swallow it.
    """


def call_problem(
    fn: Callable[..., Any], name: str = "run", parameters: tuple[str, ...] = ("ctx",)
) -> tuple[str, str | None, int | None] | None:
    """Why ``fn`` cannot be called as ``run(ctx)`` (or as ``name(*parameters)``), with the
    file and line of its ``def`` (None where unknown); None if it can, or if its signature
    cannot be read (some builtins: they are tried when they run)."""
    try:
        signature = inspect.signature(fn)
    except Exception:  # noqa: BLE001 - no signature, or a __signature__ of the user's that raises
        return None
    try:
        signature.bind(*(object() for _ in parameters))
    except TypeError as exc:
        try:
            code = inspect.unwrap(fn).__code__
            path, line = code.co_filename, code.co_firstlineno
        except Exception:  # noqa: BLE001 - not a plain function (a callable object, a partial)
            path, line = None, None
        call = f"{name}({', '.join(parameters)})"
        return f"{name}{signature} cannot be called as {call}: {safe.text(exc)}", path, line
    return None


class Context:
    """What ``run(ctx)`` receives: the worker's name, logger, state, kept objects and stop
    signal. Reading ``stopping``, entering ``sleep`` and calling ``heartbeat()`` are signs of
    life, for ``HEARTBEAT``; the whole time inside ``sleep`` counts as alive."""

    __slots__ = ("name", "log", "state", "_stop", "_kept", "_execution")

    def __init__(self, name: str, log: Logger, state: dict[str, Any], stop: threading.Event, kept: Kept,
                 execution: Execution) -> None:
        self.name = name
        self.log = log
        self.state = state
        self._stop = stop
        self._kept = kept
        self._execution = execution

    @property
    def stopping(self) -> bool:
        """True once the host has asked this worker to stop."""
        self._execution.beat = time.monotonic()
        return self._stop.is_set()

    def sleep(self, seconds: float) -> bool:
        """Wait up to ``seconds``; return True at once if a stop is requested, so that
        ``while not ctx.sleep(1): ...`` loops until the worker should stop.
        ``ctx.sleep(float("inf"))`` waits for the stop request alone."""
        execution = self._execution
        execution.beat = time.monotonic()
        execution.sleepers.append(None)  # list.append and .pop are atomic: threads may sleep at once
        try:
            return self._stop.wait(min(seconds, threading.TIMEOUT_MAX))
        finally:
            execution.sleepers.pop()
            execution.beat = time.monotonic()

    def heartbeat(self) -> None:
        """Say the worker is alive: for a worker with ``HEARTBEAT`` whose work neither sleeps
        with ``ctx.sleep`` nor reads ``ctx.stopping`` that often."""
        self._execution.beat = time.monotonic()

    def ready(self) -> None:
        """Say the worker is ready: with ``READY = "signal"``, the workers whose ``AFTER``
        names it start now. Once per run; later calls do nothing."""
        self._execution.announce_ready()

    def keep(self, key: Hashable, create: Callable[[], Any], close: Callable[[Any], Any] | None = None) -> Any:
        """The object kept under ``key`` for this worker, made by ``create()`` the first time in
        the life of the host and handed to every later run (reloads, restarts, crashes). It is
        closed with ``close(obj)``, else its own ``close()``, when the worker is removed or the
        host stops, after ``run`` has ended. If ``create()`` raises, so does this: a crash."""
        return self._kept.get(key, create, close)

    def __repr__(self) -> str:
        return f"<Context {self.name!r} stopping={self.stopping}>"


class Execution:
    """One execution of a worker's ``run(ctx)`` in a daemon thread: from its start until the
    host has seen it end, ``Worker.execution``.

    Daemon, because a worker that ignores every stop request must not keep the process
    alive: the host reports it and exits anyway.
    """

    def __init__(self, worker: Worker, inbox: Inbox | queue.SimpleQueue[Exited | Ready]) -> None:
        self.worker = worker
        self.stop_event = threading.Event()
        self.ctx = Context(worker.name, worker.log, worker.user_state, self.stop_event, worker.kept, self)
        self.started_at = time.monotonic()
        self.beat = self.started_at  # its last sign of life (see ``Context``); set by its thread
        self.sleepers: list[None] = []  # one item per thread of the worker inside ctx.sleep
        self.heartbeat = worker.settings.heartbeat  # its HEARTBEAT as it started
        self.hang_at: float | None = None  # when the host looks at its beat next
        self.hung = False  # silent past its heartbeat: interrupted
        self.said_ready = False
        self.stop_deadline: float | None = None  # when the cooperative stop times out
        self.interrupted = False  # Interrupted was raised into the thread
        self.abandon_at: float | None = None  # when, once interrupted, the host gives up on it
        self.abandoned = False  # still alive after that: the host gave up waiting for it
        self._target: Callable[..., Any] = worker.target  # type: ignore[assignment] # set before a launch
        self._inbox = inbox
        self._cancel: Callable[[], Any] | None = None
        self.thread = threading.Thread(target=self._main, name=THREAD_PREFIX + worker.name, daemon=True)
        ownership.adopt(self.thread, worker.name, worker.cpu)

    @property
    def sleeping(self) -> bool:
        """A thread of the worker is inside ctx.sleep: alive, waiting for its stop."""
        return bool(self.sleepers)

    def start(self) -> None:
        self.started_at = self.beat = time.monotonic()
        self.thread.start()

    def announce_ready(self) -> None:
        """``ctx.ready()``: tell the host, once."""
        if not self.said_ready:
            self.said_ready = True
            self._inbox.put(Ready(self))

    def request_stop(self, timeout: float) -> None:
        """Ask politely: ``ctx.stopping`` turns true, ``ctx.sleep`` wakes, async work is cancelled."""
        if self.stop_deadline is None:
            self.stop_deadline = time.monotonic() + timeout
        self.stop_event.set()  # before reading _cancel: see _run_async
        cancel = self._cancel
        if cancel is not None:
            try:
                cancel()
            except RuntimeError:  # the loop closed meanwhile: the run is ending anyway
                pass

    def interrupt(self) -> None:
        """Raise ``Interrupted`` inside the thread. Takes effect at its next Python bytecode:
        a thread blocked in a C call (a socket read, ``time.sleep``) is reached only when
        that call returns."""
        self.interrupted = True
        ident = self.thread.ident
        if ident is not None and self.thread.is_alive():
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(Interrupted))

    def stack(self) -> str:
        """Where the thread is now, as a formatted stack."""
        frame = sys._current_frames().get(self.thread.ident or -1)
        return "".join(traceback.format_stack(frame)) if frame else "(no stack: thread not running)\n"

    def _main(self) -> None:
        error: BaseException | None = None
        try:
            result = self._target(self.ctx)
            if inspect.isawaitable(result):
                self._run_async(result)
        except SystemExit as exc:
            if exc.code is not None and not (type(exc.code) in (int, bool) and exc.code == 0):  # not the user's __eq__
                error = exc
        except asyncio.CancelledError as exc:
            if not self.stop_event.is_set():
                error = exc
        except BaseException as exc:  # noqa: B036 - everything a worker raises is reported
            error = exc
        finally:
            self._cancel = None
            output.finish()  # its last words before the host logs its end
            self.worker.cpu.thread_ended()  # its CPU time would go with the thread
            self._inbox.put(Exited(self, error, _described(error)))

    def _run_async(self, awaitable: Any) -> None:
        async def main() -> None:
            loop = asyncio.get_running_loop()
            task = asyncio.ensure_future(awaitable)
            # Publish the canceller first, then look at the stop flag; request_stop does the
            # reverse, so a stop racing this start-up is seen by one side or the other.
            self._cancel = lambda: loop.call_soon_threadsafe(task.cancel)
            if self.stop_event.is_set():
                task.cancel()
            await task

        asyncio.run(main())


def _described(error: BaseException | None) -> tuple[str, str] | None:
    """``error``'s one line and traceback. Made in the worker's own thread, as formatting
    runs the exception's ``__str__``: user code that may be slow or block, which in the host
    loop would freeze the host (no status, no reload, no stop)."""
    if error is None:
        return None
    try:
        return safe.one_line(error), format_error(error)
    except BaseException:  # noqa: B036 - Interrupted by a stop meanwhile: the host loop formats it
        return None
