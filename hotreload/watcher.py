"""Watching folders: watchdog events in, debounced ``Changes`` batches out to the host.

The watchdog handler only puts events on a queue (an exception inside a handler would kill
watchdog's dispatch thread without a word); a thread of our own debounces them. A due batch
is posted only once it is known complete: every event sent before its files were stamped has
arrived (a cookie file, as watchman does), and no git command holds the work tree's
``index.lock``. Readers then load only certified content (``Watcher.read_source``).

Watching never stops silently: if the inotify limits are hit, or an observer or one of its
watches ends, the watcher says so and goes on with a polling observer; a watched folder that
is deleted is awaited from its nearest existing parent, watched again when it reappears, and
rescanned.
"""
from __future__ import annotations

import errno
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from loguru import logger
from watchdog.events import (
    DirCreatedEvent, DirDeletedEvent, DirMovedEvent, FileClosedEvent, FileCreatedEvent,
    FileDeletedEvent, FileModifiedEvent, FileMovedEvent, FileOpenedEvent, FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers.inotify import InotifyEmitter, InotifyObserver
from watchdog.observers.polling import PollingEmitter, PollingObserver

from hotreload.debounce import Debouncer, Stamp, Windows, stamp
from hotreload.filters import SourceFilter
from hotreload.records import Changes

if TYPE_CHECKING:
    from hotreload.inbox import Inbox

__all__ = ["Watcher", "git_dir"]

JOIN_TIMEOUT = 2.0
WATCHDOG_LOGGER = "watchdog.observers"
POLL_INTERVAL = 0.5
SYNC_WAIT = 1.0  # at most, for a cookie's event: a watch that broke must not hold batches forever
LOCK_WAIT = 5.0  # at most, for a git command to release the index lock
COOKIE = ".hotreload-sync-"
LIMIT_HINT = (
    "raise the limit with: sudo sysctl fs.inotify.max_user_watches=524288 "
    "(and add it to /etc/sysctl.conf to keep it)"
)

# The events that can change what a module is. ``opened`` too: a file opened again after
# its close may be in the middle of the next save (without it, the 160-save test in
# tests/test_complete_saves.py loads half-written files). The folder's own modified events and ``closed_no_write`` are left out: fewer
# wake-ups of watchdog's threads, which compete with the reload for the GIL.
EVENTS = [
    FileClosedEvent, FileCreatedEvent, FileDeletedEvent, FileModifiedEvent, FileMovedEvent,
    FileOpenedEvent, DirDeletedEvent, DirMovedEvent,
]
GIT_EVENTS = [FileCreatedEvent, FileDeletedEvent, FileMovedEvent]  # index.lock comes and goes
ANCESTOR_EVENTS = [DirCreatedEvent, DirMovedEvent]  # a deleted folder reappears

_STOP = object()
_DIED = object()
_RESCAN = object()
_ENDED = object()  # (_ENDED, watch): a watch's emitter thread ended


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


class _ReportingEmitter:
    """Mixin for an emitter (one watch's thread): tells the watcher when it ends. watchdog's
    own emitters end quietly when their folder is deleted, while the observer lives on."""

    watch: Any

    def __init__(self, *args: Any, report: queue.SimpleQueue, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[call-arg]
        self.report = report

    def run(self) -> None:
        try:
            super().run()  # type: ignore[misc]
        finally:
            self.report.put((_ENDED, self.watch))


class _NativeEmitter(_ReportingEmitter, InotifyEmitter):
    pass


class _NativeObserver(_Reporting, InotifyObserver):
    def __init__(self, events: queue.SimpleQueue) -> None:
        super().__init__()
        self.events = events
        self._emitter_class = partial(_NativeEmitter, report=events)  # watchdog 4 to 7 call it alike


class _PollingObserver(_Reporting, PollingObserver):
    def __init__(self, events: queue.SimpleQueue) -> None:
        super().__init__(timeout=POLL_INTERVAL)
        self.events = events
        self._emitter_class = partial(_PollingEmitter, report=events)


class _PollingEmitter(_ReportingEmitter, PollingEmitter):
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


def _folders(root: Path) -> int:
    """The folders a recursive native watch of ``root`` watches: a symlinked folder is not
    followed (watchdog's inotify observer skips links), so it needs no watch of its own."""
    return 1 + sum(not os.path.islink(os.path.join(top, d)) for top, dirs, _ in os.walk(root) for d in dirs)


class Watcher:
    """Watches the roots of ``files`` recursively and posts ``Changes`` of the files that
    count to ``inbox``.

    Readers of the watched files (the host) use ``read_source``: it returns only content that
    a batch certified complete, read by this watcher as it certified it.
    """

    def __init__(self, files: SourceFilter, inbox: Inbox, windows: Windows = Windows()) -> None:
        self.files = files
        self.roots = [Path(root) for root in files.roots]
        self.inbox = inbox
        self.debouncer = Debouncer(windows)
        self.events: queue.SimpleQueue = queue.SimpleQueue()
        self.observer: Any = None
        self.polling = False
        self.thread = threading.Thread(target=self._main, name="hotreload:watcher", daemon=True)
        self.alarm = _OverflowAlarm(self.events)
        self.handler = _Handler(self.events)
        self.watches: dict[Path, Any] = {}  # root -> its recursive watch, while the root exists
        self.inodes: dict[Path, int] = {}  # root -> the inode of the folder watched
        self.awaited: dict[Path, tuple[Path, Any]] = {}  # a root that is gone -> (ancestor, watch)
        self.dead: dict[Path, Any] = {}  # a root that is gone -> its ended watch
        self.git_dirs = sorted({d for d in map(git_dir, self.roots) if d is not None})
        self.sync: _Sync | None = None
        self.cookies = 0
        self.held_since: float | None = None  # since when git's index.lock holds due batches
        self.lock_warned = False
        # The content of every file as its last batch certified it, shared with readers.
        self.lock = threading.Lock()
        self.contents: dict[str, bytes] = {}
        self.frozen: dict[str, bytes] | None = None
        self.gone: set[str] = set()  # certified as deleted

    def start(self) -> None:
        logging.getLogger(WATCHDOG_LOGGER).addHandler(self.alarm)
        try:
            self.observer = self._observe(_NativeObserver)
        except OSError as exc:
            self._fall_back(f"cannot watch for changes natively: {_why(exc)}")
        else:
            watches, folders = _inotify_watches(), sum(_folders(root) for root in self.watches)
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

    # --- for readers (the host's thread) ---------------------------------------------------

    def read_source(self, path: str) -> bytes:
        """The bytes of ``path`` as its last batch certified them (read by this watcher once
        they were known complete), or as on disk for a file never in a batch. While frozen,
        the certified bytes are those of the moment ``freeze`` was called."""
        with self.lock:
            data = (self.contents if self.frozen is None else self.frozen).get(path)
        if data is not None:
            return data
        with open(path, "rb") as file:
            return file.read()

    def exists(self, path: str) -> bool | None:
        """Whether ``path`` exists as its last batch certified (or as frozen); None for a
        file never in a batch."""
        with self.lock:
            if path in (self.contents if self.frozen is None else self.frozen):
                return True
            return False if path in self.gone else None

    def freeze(self) -> None:
        """Serve one version of the folder until ``thaw``: a reload reads all its files, at
        different moments, as of one batch."""
        with self.lock:
            self.frozen = dict(self.contents)

    def thaw(self) -> None:
        with self.lock:
            self.frozen = None

    # --- the watcher's thread --------------------------------------------------------------

    def _main(self) -> None:
        while True:
            deadline = self._deadline()
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
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
            try:
                self._flush(time.monotonic())
            except Exception:  # noqa: BLE001
                logger.exception("file watcher: cannot flush a batch")

    def _deadline(self) -> float | None:
        """When the loop must look again without an event: the batch's due time, or the end
        of a wait for a sync or for git's lock."""
        if self.sync is not None:
            return self.sync.deadline
        due = self.debouncer.due()
        if due is not None and self.held_since is not None and self._locks():
            return max(due, self.held_since + LOCK_WAIT) if time.monotonic() < self.held_since + LOCK_WAIT else due
        self.held_since = None
        return due

    def _flush(self, now: float) -> None:
        """Post the due batch, once it is known to be complete (see ``_Sync``)."""
        batch = self.debouncer.ready(now)
        if not batch:
            self.sync = None
            return
        if self._git_busy(now):
            return
        sync = self.sync
        if sync is None or not sync.covers(batch, self.debouncer):
            self.sync = self._start_sync(batch, now)
            return self._flush(now) if not self.sync.cookies else None
        if sync.cookies and now < sync.deadline:
            return
        contents = _read_complete(batch, sync.stamps)
        if contents is None:  # written since it was stamped: stamp again
            self.sync = self._start_sync(batch, now)
            return
        self.sync = None
        self.debouncer.take(now)
        with self.lock:
            for path in batch:
                data = contents[path]
                if data is not None:
                    self.contents[path] = data
                else:  # gone, or a folder
                    self.contents.pop(path, None)
                if sync.stamps[path] is None:
                    self.gone.add(path)
                else:
                    self.gone.discard(path)
        self.inbox.put(Changes(batch))

    def _start_sync(self, batch: frozenset[str], now: float) -> _Sync:
        """Stamp the batch, then drop a cookie file in each root it touches: once the cookie's
        event arrives, every event sent before the stamps were taken has arrived too."""
        sync = _Sync(
            stamps={path: stamp(_stat(path)) for path in batch},
            seen={path: self.debouncer.pending[path] for path in batch},
            deadline=now + SYNC_WAIT,
        )
        if self.polling:  # a poll cannot see a file that lives for a microsecond
            return sync
        for root in {root for root in self.watches for path in batch if _under(path, root)}:
            self.cookies += 1
            cookie = root / f"{COOKIE}{os.getpid()}-{self.cookies}"
            try:
                os.close(os.open(cookie, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
                os.unlink(cookie)
            except OSError:  # a read-only folder: the stamps alone must do
                continue
            sync.cookies.add(str(cookie))
        return sync

    def _git_busy(self, now: float) -> bool:
        """True while a git command holds a work tree's index lock (a checkout, merge, rebase
        or stash is rewriting files), for at most ``LOCK_WAIT`` seconds."""
        locks = self._locks()
        if not locks:
            self.held_since, self.lock_warned = None, False
            return False
        if self.held_since is None:
            self.held_since = now
        if now < self.held_since + LOCK_WAIT:
            return True
        if not self.lock_warned:
            self.lock_warned = True
            logger.warning(f"{locks[0]} has existed for {LOCK_WAIT:g} s: applying the changes anyway "
                           f"(if no git command is running, a crashed one left it: remove it)")
        return False

    def _locks(self) -> list[Path]:
        return [d / "index.lock" for d in self.git_dirs if (d / "index.lock").exists()]

    def _handle(self, item: Any) -> None:
        if item is _DIED:
            self._fall_back("the file watcher thread died")
        elif item is _RESCAN:
            self._rescan()
        elif isinstance(item, tuple) and item[0] is _ENDED:
            self._on_ended(item[1])
        else:
            self._note(*item)

    def _rescan(self, roots: Iterable[Path] | None = None) -> None:
        """Treat every file that counts (sources, and files a worker watches) as saved; the
        host acts only on those whose bytes changed."""
        now = time.monotonic()
        for root in self.roots if roots is None else roots:
            watched = self.files.watched and root == self.files.folder
            extra = [root / name for name in self.files.folder_files] if root == self.files.folder else []
            for path in [*root.rglob("*" if watched else "*.py"), *extra]:
                if self.files.is_python(path, root) or (self.files.is_folder_file(path) and path.is_file()) or (
                    watched and self.files.watchers(path) and path.is_file()
                ):
                    self.debouncer.add(str(path), "closed", now)

    def _note(self, when: float, event: FileSystemEvent) -> None:
        if event.event_type == "moved":
            sides = [(event.src_path, "moved_from"), (event.dest_path, "moved_to")]
        else:
            sides = [(event.src_path, event.event_type)]
        for raw, kind in sides:
            path = Path(os.fsdecode(raw))
            if self.sync is not None and str(path) in self.sync.cookies:
                self.sync.cookies.discard(str(path))
                continue
            if event.is_directory and self.awaited and kind in ("created", "moved_to"):
                self._look_for_roots()
            if event.is_directory and path in self.watches and kind in ("deleted", "moved_from"):
                self._root_gone(path)
            elif event.is_directory:
                # A folder that went away takes its modules with it; folders that appear
                # bring events for their own files.
                if kind in ("deleted", "moved_from") and self.files.parts(path):
                    self.debouncer.add(str(path), "deleted", when)
            elif self.files(path):
                self.debouncer.add(str(path), kind, when)

    # --- observers and their watches -------------------------------------------------------

    def _observe(self, cls: type) -> Any:
        """A started observer of ``cls`` with every watch this watcher needs."""
        observer = cls(self.events)
        self.observer, self.watches, self.awaited, self.dead = observer, {}, {}, {}
        try:
            for root in self.roots:
                if root.is_dir():
                    self._arm(root)
                else:
                    self._await(root)
            for folder in self.git_dirs:
                try:
                    observer.schedule(self.handler, str(folder), event_filter=GIT_EVENTS)
                except OSError as exc:  # the lock is still looked at when a batch is due
                    logger.debug(f"cannot watch {folder}: {exc}")
            observer.start()
        except BaseException:
            self.observer = None
            raise
        return observer

    def _arm(self, root: Path) -> None:
        self.watches[root] = self.observer.schedule(self.handler, str(root), recursive=True, event_filter=EVENTS)
        self.inodes[root] = os.stat(root).st_ino

    def _stop_observer(self) -> None:
        if self.observer is not None:
            self.observer.stop()
            if self.observer.is_alive():
                self.observer.join(JOIN_TIMEOUT)
            self.observer = None

    def _fall_back(self, why: str) -> None:
        logger.error(f"{why}. Falling back to polling every {POLL_INTERVAL} s: saves are seen later.")
        self._stop_observer()
        self.polling = True
        self.observer = self._observe(_PollingObserver)
        if self.thread.is_alive():
            self._rescan()  # what changed while nothing was watching

    def _on_ended(self, watch: Any) -> None:
        """A watch's thread ended without being asked: its root is gone, or it broke."""
        root = next((r for r, w in self.watches.items() if w is watch), None)
        if root is None or self.observer is None:
            return  # unscheduled by this watcher, or stopping
        info = _stat(str(root))
        if info is None or info.st_ino != self.inodes.get(root):  # deleted (and maybe back already)
            self._root_gone(root)
        else:
            self._fall_back(f"watching {root} stopped unexpectedly")

    def _root_gone(self, root: Path) -> None:
        watch = self.watches.pop(root, None)
        if watch is None:
            return
        logger.warning(f"the watched folder {root} is gone: its workers stop; "
                       f"watching for it to come back")
        # Unscheduled only when the folder is back: the events its files' deletion left in
        # the observer's queue are dispatched while the watch is still scheduled.
        self.dead[root] = watch
        self._await(root)
        self._look_for_roots()  # it may be back already

    def _await(self, root: Path) -> None:
        """Watch the nearest existing ancestor of ``root`` (not recursively) for it to reappear."""
        old = self.awaited.pop(root, None)
        ancestor = next((p for p in root.parents if p.is_dir()), Path(root.anchor))
        if old is not None and old[0] == ancestor:
            self.awaited[root] = old
            return
        if old is not None:
            _unschedule(self.observer, old[1])
        watch = self.observer.schedule(self.handler, str(ancestor), event_filter=ANCESTOR_EVENTS)
        self.awaited[root] = (ancestor, watch)

    def _look_for_roots(self) -> None:
        for root in list(self.awaited):
            if not root.is_dir():
                self._await(root)  # nearer ancestors may have appeared
                continue
            _unschedule(self.observer, self.awaited.pop(root)[1])
            if root in self.dead:
                _unschedule(self.observer, self.dead.pop(root))
            try:
                self.watches[root] = self.observer.schedule(self.handler, str(root), recursive=True,
                                                            event_filter=EVENTS)
            except OSError:  # gone again already
                self._await(root)
                continue
            logger.warning(f"the watched folder {root} is back: watching it again")
            self._rescan([root])


@dataclass
class _Sync:
    """A due batch waiting for its cookies: its files' stamps and last events, taken before
    the cookies were dropped."""

    stamps: dict[str, Stamp | None]
    seen: dict[str, tuple[str, float]]
    deadline: float
    cookies: set[str] = field(default_factory=set)

    def covers(self, batch: frozenset[str], debouncer: Debouncer) -> bool:
        """True if no event touched the batch since the stamps were taken."""
        return batch == self.seen.keys() and all(debouncer.pending.get(p) == self.seen[p] for p in batch)


def git_dir(folder: Path) -> Path | None:
    """The git folder of the work tree ``folder`` is in, if any (``.git`` may be a file
    ``gitdir: PATH`` in a linked work tree or a submodule)."""
    for place in (folder, *folder.parents):
        dot_git = place / ".git"
        if dot_git.is_dir():
            return dot_git
        if dot_git.is_file():
            try:
                text = dot_git.read_text(errors="replace").strip()
            except OSError:
                return None
            if text.startswith("gitdir:"):
                return (place / text[len("gitdir:"):].strip()).resolve()
            return None
    return None


def _read_complete(paths: Iterable[str], stamps: dict[str, Stamp | None]) -> dict[str, bytes | None] | None:
    """The bytes of each file, if none changed since ``stamps`` (None for a file that is gone
    or not a file); None if one did."""
    contents: dict[str, bytes | None] = {}
    for path in paths:
        before = stamp(_stat(path))
        try:
            with open(path, "rb") as file:
                data: bytes | None = file.read()
        except OSError:
            data = None
        if before != stamps[path] or stamp(_stat(path)) != before:
            return None
        contents[path] = data
    return contents


def _stat(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:
        return None


def _under(path: str, root: Path) -> bool:
    return path.startswith(str(root) + os.sep)


def _unschedule(observer: Any, watch: Any) -> None:
    try:
        observer.unschedule(watch)
    except KeyError:  # already gone with a previous observer
        pass


def _why(exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return f"the inotify watch limit is reached; {LIMIT_HINT}"
    if exc.errno == errno.EMFILE:
        return ("the inotify instance limit is reached (or the open file limit); raise it with: "
                "sudo sysctl fs.inotify.max_user_instances=1024")
    return str(exc)
