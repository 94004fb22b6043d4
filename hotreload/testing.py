"""Run one worker in-process for a test: a real ctx, a real thread, a clean stop.

As a context manager::

    from hotreload.testing import run_worker

    def test_the_clock_ticks():
        with run_worker("workers/clock.py") as worker:
            worker.wait_for(lambda: worker.state.get("ticks", 0) >= 2)
        assert worker.error is None

As a pytest fixture (installing hotreload registers the plugin, ``pytest_plugin.py``)::

    def test_the_clock_ticks(hotreload_worker):
        worker = hotreload_worker("workers/clock.py")
        worker.wait_for(lambda: worker.state.get("ticks", 0) >= 2)

The worker runs exactly as under ``hotreload run``: the same ``ctx`` (``ctx.sleep``,
``ctx.stopping``, ``ctx.log``, ``ctx.state``), its settings checked, sync or async ``run``,
the module imported from its folder as a package so that ``from . import _helper`` works.
Leaving the block asks it to stop and waits ``STOP_TIMEOUT``; a worker that does not stop
fails the test. Then what it kept (``ctx.keep``) is closed, as when the host stops. The
module and its helpers are removed from ``sys.modules`` afterwards.
"""
from __future__ import annotations

import contextlib
import queue
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterator

from hotreload import keep, loader
from hotreload.log import format_error, logger
from hotreload.settings import Settings
from hotreload.records import Exited, Worker
from hotreload.worker import Execution

__all__ = ["WorkerUnderTest", "run_worker"]


class WorkerUnderTest:
    """A worker started by ``run_worker``: its ctx state, and how its run ended."""

    def __init__(self, record: Worker, execution: Execution, exits: queue.SimpleQueue) -> None:
        self.name = record.name
        self.settings = record.settings
        self.state: dict[str, Any] = record.user_state
        self.ctx = execution.ctx
        self._execution = execution
        self._exits = exits  # the run posts its Exited here, as it would to the host's inbox
        self.ended = False
        self.error: BaseException | None = None  # what run raised, once it has ended

    @property
    def running(self) -> bool:
        return self._execution.thread.is_alive()

    def wait_for(self, condition: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Poll ``condition`` until it is truthy; TimeoutError after ``timeout`` seconds,
        or at once if the worker ends first (its error attached)."""
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            if not self.running:
                self._collect_exit()
                how = f"raised {_describe(self.error)}" if self.error is not None else "returned"
                raise AssertionError(f"worker {self.name} ended before the condition held: run {how}") from self.error
            if time.monotonic() > deadline:
                raise TimeoutError(f"worker {self.name}: condition not met within {timeout} s")
            time.sleep(0.01)

    def _collect_exit(self) -> None:
        """Record how a run that ended by itself ended: posting its Exited was its last act."""
        if self.ended:
            return
        exited = self._next_exit(1.0)
        if exited is None:
            return
        self._execution.thread.join()
        self.ended, self.error = True, exited.error

    def stop(self) -> None:
        """Ask the worker to stop and wait for it, up to its ``STOP_TIMEOUT``."""
        self._execution.request_stop(self.settings.stop_timeout)
        exited = self._next_exit(self.settings.stop_timeout)
        if exited is None:
            raise AssertionError(
                f"worker {self.name} did not stop within {self.settings.stop_timeout:g} s; it is at:\n"
                f"{self._execution.stack()}"
            )
        self._execution.thread.join()
        self.ended, self.error = True, exited.error

    def _next_exit(self, timeout: float) -> Exited | None:
        """The run's ``Exited``, within ``timeout`` seconds; what else it posts (``ctx.ready()``'s
        ``Ready``) is for a host, and there is none here."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                message = self._exits.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return None
            if isinstance(message, Exited):
                return message


def _describe(error: BaseException | None) -> str:
    """``ValueError: bad input``, even for an exception whose ``str()`` fails."""
    try:
        text = str(error)
    except Exception:  # noqa: BLE001 - the user's __str__
        text = "<str() failed>"
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _load(target: str | Path | ModuleType) -> tuple[ModuleType, Callable[[], None]]:
    """The worker module, and how to undo its import."""
    if isinstance(target, ModuleType):
        return target, lambda: None
    path = Path(target).resolve()
    if path.name == "__init__.py":
        folder, name = path.parent.parent, path.parent.name
    else:
        folder, name = path.parent, path.stem
    package = folder.name
    if package in sys.modules:
        raise RuntimeError(f"a module named {package!r} is already imported; cannot load {path} as {package}.{name}")
    finder = loader.install(folder, package)

    def undo() -> None:
        sys.meta_path.remove(finder)
        loader.forget(package)

    try:
        return __import__(f"{package}.{name}", fromlist=["run"]), undo
    except BaseException:
        undo()
        raise


@contextlib.contextmanager
def run_worker(target: str | Path | ModuleType, state: dict[str, Any] | None = None) -> Iterator[WorkerUnderTest]:
    """Start the worker in ``target`` (a file, or an imported module) in a thread with a real
    ctx; ``state`` is its initial ``ctx.state``. Stops it when the block ends, then closes
    what it kept."""
    module, undo = _load(target)
    try:
        main, settings = loader.worker_parts(module, Settings())
        name = module.__name__.rsplit(".", 1)[-1]
        record = Worker(name, str(getattr(module, "__file__", name)), logger.bind(worker=name), settings,
                        module.__name__, target=main, user_state=state if state is not None else {})
        exits: queue.SimpleQueue = queue.SimpleQueue()
        worker = WorkerUnderTest(record, Execution(record, exits), exits)
        worker._execution.start()
        try:
            yield worker
        finally:
            if not worker.ended:
                worker.stop()  # raises if it does not stop: then nothing is closed under it
            keep.close_all(record.kept, name, record.log, settings.stop_timeout, format_error)
    finally:
        undo()
