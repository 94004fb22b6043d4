"""Watching folders: watchdog events in, debounced ``Changes`` batches out to the host.

The watchdog handler only puts events on a queue (an exception inside a handler would kill
watchdog's dispatch thread without a word); a thread of our own debounces them. If the
inotify watch limit is hit or the observer dies, the watcher says so with the fix and goes
on with a polling observer, rather than silently stop seeing saves.
"""
from __future__ import annotations

import errno
import logging
import os
import queue
import threading
import time
from pathlib import Path
from typing import Any

from loguru import logger
from watchdog.events import (
    DirDeletedEvent, DirMovedEvent, FileClosedEvent, FileCreatedEvent, FileDeletedEvent,
    FileModifiedEvent, FileMovedEvent, FileSystemEvent, FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserver

from hotreload.debounce import Changes, Debouncer, Windows, is_source

__all__ = ["Changes", "Watcher"]

JOIN_TIMEOUT = 2.0
WATCHDOG_LOGGER = "watchdog.observers"
POLL_INTERVAL = 0.5
LIMIT_HINT = (
    "raise the limit with: sudo sysctl fs.inotify.max_user_watches=524288 "
    "(and add it to /etc/sysctl.conf to keep it)"
)

# The events that can change what a module is. Asking the kernel for these alone leaves out
# the opened/closed-no-write pair that every read makes (the host's own reads during a
# reload among them) and the folder's own modified events: fewer wake-ups of watchdog's
# threads, which compete with the reload for the GIL.
EVENTS = [
    FileClosedEvent, FileCreatedEvent, FileDeletedEvent, FileModifiedEvent, FileMovedEvent,
    DirDeletedEvent, DirMovedEvent,
]

_STOP = object()
_DIED = object()
_RESCAN = object()


class _Handler(FileSystemEventHandler):
    """A watchdog handler that only queues events: nothing in it can raise."""

    def __init__(self, events: queue.SimpleQueue) -> None:
        super().__init__()
        self.events = events

    def dispatch(self, event: FileSystemEvent) -> None:
        try:
            self.events.put((time.monotonic(), event))
        except BaseException:  # noqa: B036 - must never reach watchdog's dispatch thread
            pass


class _OverflowAlarm(logging.Handler):
    """watchdog reports a kernel queue overflow, where events were lost, only as a log
    record: turn that record into a rescan of every source file."""

    def __init__(self, events: queue.SimpleQueue) -> None:
        super().__init__(logging.WARNING)
        self.events = events

    def emit(self, record: logging.LogRecord) -> None:
        if "overflow" in record.getMessage():
            self.events.put(_RESCAN)


class _Reporting:
    """Mixin for an observer: tells the watcher when its thread ends without being asked."""

    events: queue.SimpleQueue

    def run(self) -> None:
        try:
            super().run()  # type: ignore[misc]
        finally:
            if self.should_keep_running():  # type: ignore[attr-defined]
                self.events.put(_DIED)


class _NativeObserver(_Reporting, Observer):  # type: ignore[valid-type,misc]
    pass


class _PollingObserver(_Reporting, PollingObserver):
    pass


def _inotify_watches() -> int | None:
    """How many inotify watches this process holds, from /proc (None where unknown)."""
    count = None
    try:
        for fd in os.listdir("/proc/self/fd"):
            try:
                if os.readlink(f"/proc/self/fd/{fd}") != "anon_inode:inotify":
                    continue
                with open(f"/proc/self/fdinfo/{fd}") as info:
                    count = (count or 0) + sum(line.startswith("inotify wd:") for line in info)
            except OSError:
                continue
    except OSError:
        return None
    return count


def _folders(roots: list[Path]) -> int:
    return sum(1 + sum(len(dirs) for _, dirs, _ in os.walk(root)) for root in roots)


class Watcher:
    """Watches ``roots`` recursively and posts ``Changes`` to ``inbox``."""

    def __init__(self, roots: list[Path], inbox: Any, windows: Windows = Windows()) -> None:
        self.roots = roots
        self.inbox = inbox
        self.debouncer = Debouncer(windows)
        self.events: queue.SimpleQueue = queue.SimpleQueue()
        self.observer: Any = None
        self.polling = False
        self.thread = threading.Thread(target=self._main, name="hotreload:watcher", daemon=True)
        self.alarm = _OverflowAlarm(self.events)

    def start(self) -> None:
        logging.getLogger(WATCHDOG_LOGGER).addHandler(self.alarm)
        try:
            self.observer = self._observe(_NativeObserver)
        except OSError as exc:
            why = "the inotify watch limit is reached" if exc.errno == errno.ENOSPC else str(exc)
            self._fall_back(f"cannot watch for changes natively: {why}; {LIMIT_HINT}")
        else:
            watches, folders = _inotify_watches(), _folders(self.roots)
            if watches is not None and watches < folders:
                self._fall_back(
                    f"only {watches} of {folders} folders could be watched: "
                    f"the inotify watch limit is reached; {LIMIT_HINT}"
                )
        self.thread.start()

    def stop(self) -> None:
        self.events.put(_STOP)
        self.thread.join(JOIN_TIMEOUT)
        self._stop_observer()
        logging.getLogger(WATCHDOG_LOGGER).removeHandler(self.alarm)

    def _observe(self, cls: type) -> Any:
        observer = cls(timeout=POLL_INTERVAL) if cls is _PollingObserver else cls()
        observer.events = self.events
        handler = _Handler(self.events)
        for root in self.roots:
            observer.schedule(handler, str(root), recursive=True, event_filter=EVENTS)
        observer.start()
        return observer

    def _stop_observer(self) -> None:
        if self.observer is not None:
            self.observer.stop()
            self.observer.join(JOIN_TIMEOUT)
            self.observer = None

    def _fall_back(self, why: str) -> None:
        logger.error(f"{why}. Falling back to polling every {POLL_INTERVAL} s: saves are seen later.")
        self._stop_observer()
        self.polling = True
        self.observer = self._observe(_PollingObserver)

    def _main(self) -> None:
        while True:
            due = self.debouncer.due()
            timeout = None if due is None else max(0.0, due - time.monotonic())
            try:
                items = [self.events.get(timeout=timeout)]
            except queue.Empty:
                items = []
            while not self.events.empty():  # a burst: take it all before looking at the clock
                items.append(self.events.get_nowait())
            for item in items:
                if item is _STOP:
                    return
                try:
                    self._handle(item)
                except Exception:  # noqa: BLE001 - this thread must outlive any one event
                    logger.exception(f"file watcher: cannot handle {item!r}")
            batch = self.debouncer.take(time.monotonic())
            if batch:
                self.inbox.put(Changes(batch))

    def _handle(self, item: Any) -> None:
        if item is _DIED:
            self._fall_back("the file watcher thread died")
        elif item is _RESCAN:
            self._rescan()
        else:
            self._note(*item)

    def _rescan(self) -> None:
        """Treat every source file as saved; the host reloads only those whose bytes changed."""
        now = time.monotonic()
        for root in self.roots:
            for path in root.rglob("*.py"):
                if is_source(path, root):
                    self.debouncer.add(str(path), "closed", now)

    def _note(self, when: float, event: FileSystemEvent) -> None:
        if event.event_type == "moved":
            sides = [(event.src_path, "moved_from"), (event.dest_path, "moved_to")]
        else:
            sides = [(event.src_path, event.event_type)]
        for raw, kind in sides:
            path = Path(os.fsdecode(raw))
            if event.is_directory:
                # A folder that went away takes its modules with it; folders that appear
                # bring events for their own files.
                if kind in ("deleted", "moved_from") and self._inside(path):
                    self.debouncer.add(str(path), "deleted", when)
            elif any(is_source(path, root) for root in self.roots):
                self.debouncer.add(str(path), kind, when)

    def _inside(self, path: Path) -> bool:
        for root in self.roots:
            try:
                parts = path.relative_to(root).parts
            except ValueError:
                continue
            return bool(parts) and not any(p.startswith(".") or p == "__pycache__" for p in parts)
        return False
