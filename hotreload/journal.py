"""The host's journal: the last records each worker logged and the last events, kept in
bounded buffers, and the followers that stream new ones (``hotreload logs -f``, ``events -f``).

Memory stays bounded whatever a worker prints. Each name (a worker, ``host``) keeps its last
``LINES_KEPT`` records, and at most ``BYTES_KEPT`` bytes of them; a record longer than
``RECORD_MAX`` characters is cut in the middle (a traceback is one record, its last line
kept); at most ``NAMES_KEPT`` names are kept, the one that logged least recently going
first; ``EVENTS_KEPT`` events. A follower that does not keep up has at most ``QUEUE_LINES``
lines (``QUEUE_BYTES`` bytes) waiting; later ones are dropped and counted, and it is told how
many it missed: a slow reader costs nothing but its own lines.

Fed from any thread — loguru calls the log sink in the thread that logs, core adds events in
the host loop — and read by the control thread; one lock, held for a few appends. A record
costs nothing more while no one follows; a follower is woken once per batch, when its first
new line arrives, and not again until it has taken what waits. The journal is plain data,
created once per host process: a reload of core.py keeps it.
"""
from __future__ import annotations

import itertools
import json
import os
import sys
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Collection, Deque, Iterable, Tuple

from hotreload import events

__all__ = [
    "BYTES_KEPT", "EVENTS_KEPT", "Follower", "Journal", "LINES_KEPT", "NAMES_KEPT", "QUEUE_BYTES", "QUEUE_LINES",
    "RECORD_MAX", "cut", "cut_mark",
]

LINES_KEPT = 1000  # records per name
BYTES_KEPT = 512 * 1024  # bytes of records per name (as JSON lines)
RECORD_MAX = 64 * 1024  # characters of one record's message
NAMES_KEPT = 1000  # names with a buffer of their own
EVENTS_KEPT = 1000
QUEUE_LINES = 1000  # lines waiting for one follower
QUEUE_BYTES = 1024 * 1024  # bytes waiting for one follower
LOGS, EVENTS = "logs", "events"

# (time, sequence number, JSON line): the time orders what ``tail`` shows, as the log call
# made it; the number, taken as the journal gets it, orders lines logged in the same instant.
Entry = Tuple[float, int, bytes]


def cut_mark(dropped: int) -> str:
    return f" [… {dropped} characters cut …] "


def cut(text: str, limit: int = RECORD_MAX) -> str:
    """``text`` in at most ``limit`` characters: its head and its tail, with a mark in the
    middle saying how much went (a traceback's last line names the error)."""
    if len(text) <= limit:
        return text
    keep = max(0, limit - len(cut_mark(len(text))))  # the real count is no longer than this
    head, tail = keep - keep // 2, keep // 2
    return text[:head] + cut_mark(len(text) - head - tail) + text[len(text) - tail:]


@dataclass
class _Buffer:
    entries: Deque[Entry] = field(default_factory=deque)
    size: int = 0  # bytes in entries


@dataclass(eq=False)
class Follower:
    """One ``-f`` reader: the new lines it has not taken yet. Touched under the journal's lock."""

    kind: str  # LOGS or EVENTS
    names: frozenset[str] | None  # the names whose records it follows; None: every name
    wake: Callable[[], None]  # tells the reader lines wait (from any thread; must not block)
    lines: Deque[bytes] = field(default_factory=deque)
    size: int = 0  # bytes in lines
    dropped: int = 0  # lines it missed since it last took
    woken: bool = False  # woken since it last took: no second wake-up needed

    def wants(self, kind: str, name: str | None) -> bool:
        return kind == self.kind and (self.names is None or name in self.names)


class Journal:
    """What ``hotreload logs`` and ``events`` read: see the module's docstring. Safe from
    any thread."""

    def __init__(
        self, lines_kept: int = LINES_KEPT, bytes_kept: int = BYTES_KEPT, events_kept: int = EVENTS_KEPT,
        queue_lines: int = QUEUE_LINES, queue_bytes: int = QUEUE_BYTES, names_kept: int = NAMES_KEPT,
    ) -> None:
        self.lines_kept, self.bytes_kept, self.names_kept = lines_kept, bytes_kept, names_kept
        self.queue_lines, self.queue_bytes = queue_lines, queue_bytes
        self._lock = threading.Lock()
        self._buffers: dict[str, _Buffer] = {}
        self._events: Deque[Entry] = deque(maxlen=events_kept)
        self._named: set[str] = {"host"}  # names events mentioned (a worker that never logged)
        self._followers: list[Follower] = []
        self._numbers = itertools.count()
        _journals.add(self)

    def add_record(self, fields: dict[str, Any], at: float) -> None:
        """Keep one log record: ``fields`` as ``--log-json`` writes them (time, level, worker,
        message), ``at`` its time in seconds since the epoch. Called by the loguru sink, in the
        thread that logged."""
        if len(fields["message"]) > RECORD_MAX:
            fields = {**fields, "message": cut(fields["message"])}
        line = (json.dumps(fields) + "\n").encode()
        name = fields["worker"]
        with self._lock:
            buffer = self._buffers.get(name)
            if buffer is None:
                buffer = self._buffers[name] = self._new_buffer()
            buffer.entries.append((at, next(self._numbers), line))
            buffer.size += len(line)
            while len(buffer.entries) > self.lines_kept or buffer.size > self.bytes_kept:
                buffer.size -= len(buffer.entries.popleft()[2])
            wakes = self._publish(LOGS, name, line) if self._followers else ()
        for wake in wakes:
            wake()

    def add_event(self, event: events.Event, at: float | None = None) -> None:
        """Keep one event (from ``hotreload.events``), stamped with ``at`` (default: now)."""
        at = time.time() if at is None else at
        line = (json.dumps(events.stamped(event, at)) + "\n").encode()
        name = event.get("worker")
        with self._lock:
            self._events.append((at, next(self._numbers), line))
            if name is not None:
                self._named.add(name)
            wakes = self._publish(EVENTS, name, line) if self._followers else ()
        for wake in wakes:
            wake()

    def names(self) -> set[str]:
        """Every name the journal knows: ``host``, and whoever logged or had an event."""
        with self._lock:
            return self._named | set(self._buffers)

    def tail(
        self, kind: str, names: Collection[str], count: int | None, wake: Callable[[], None] | None = None,
    ) -> tuple[list[bytes], Follower | None]:
        """The last ``count`` lines (None: all kept) of ``kind`` — log records of ``names``
        (every name when empty) interleaved in time order, or events — and,
        given ``wake``, a ``Follower`` of what comes next: taken together, so that no line
        is missed or seen twice between the two."""
        if count is not None:
            count = min(count, sys.maxsize)  # islice takes no more; nothing keeps as much
        with self._lock:
            if kind == EVENTS:
                recent = [list(self._events)]
            else:
                chosen = [self._buffers[n] for n in (names or self._buffers) if n in self._buffers]
                recent = [list(itertools.islice(reversed(b.entries), count)) for b in chosen]
            follower = None
            if wake is not None:
                follower = Follower(kind, frozenset(names) if names and kind == LOGS else None, wake)
                self._followers.append(follower)
        ordered = sorted(itertools.chain.from_iterable(recent))  # by time, then as received
        if count is not None:
            ordered = ordered[-count:] if count else []
        return [line for _, _, line in ordered], follower

    def take(self, follower: Follower) -> tuple[list[bytes], int]:
        """The lines waiting for ``follower``, and how many it missed after them."""
        with self._lock:
            lines, dropped = list(follower.lines), follower.dropped
            follower.lines.clear()
            follower.size = follower.dropped = 0
            follower.woken = False
        return lines, dropped

    def unfollow(self, follower: Follower) -> None:
        with self._lock:
            if follower in self._followers:
                self._followers.remove(follower)
            follower.lines.clear()
            follower.size = follower.dropped = 0

    def _new_buffer(self) -> _Buffer:
        if len(self._buffers) >= self.names_kept:
            quiet = min(self._buffers, key=lambda n: self._buffers[n].entries[-1][1] if self._buffers[n].entries else -1)
            self._named.discard(quiet)
            del self._buffers[quiet]
        return _Buffer()

    def _publish(self, kind: str, name: str | None, line: bytes) -> list[Callable[[], None]]:
        """Queue ``line`` for the followers that want it; the wake-ups to make, once unlocked."""
        wakes = []
        for follower in self._followers:
            if not follower.wants(kind, name):
                continue
            if len(follower.lines) < self.queue_lines and follower.size + len(line) <= self.queue_bytes:
                follower.lines.append(line)
                follower.size += len(line)
            else:
                follower.dropped += 1
            if not follower.woken:
                follower.woken = True
                wakes.append(follower.wake)
        return wakes

    def _after_fork(self) -> None:
        """In a forked child (a worker's ``multiprocessing``): the parent's lock may have been
        held at the fork, and its followers are the parent's readers, not the child's."""
        self._lock = threading.Lock()
        self._followers = []


_journals: weakref.WeakSet[Journal] = weakref.WeakSet()


def _after_fork_in_child(journals: Iterable[Journal] = _journals) -> None:
    for kept in list(journals):
        kept._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
