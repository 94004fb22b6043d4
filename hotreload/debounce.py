"""Turning a stream of file events into batches of complete files.

Pure logic: the caller feeds events with a timestamp and asks when the next batch is due.

What a save looks like (measured with real editors, see the README): a close-after-write
(``closed``) or a rename onto the file (``moved`` to it) marks the moment its new content is
complete, so a file in that state is flushed after a short ``coalesce`` window, which lets a
burst across many files (``git checkout``, a formatter) land as one batch. A ``modified`` or
``created`` alone means a writer may still be busy (truncate, then write): such a file waits
for ``settle`` seconds of quiet, which only matters where no close event exists (the polling
fallback). A deletion is held for ``hold`` seconds, because delete-then-create is how
``git checkout`` and some editors rewrite a file, not a removal.

Opening a file with truncation sends ``opened`` and nothing else, and the kernel merges it
with a reader's ``opened`` at the same moment: so a file opened since its last close-after-
write may be half-written, and waits ``settle`` seconds from that open (a read costs that
wait only if it falls between a save and its batch).

Complete *when the event was sent* only: the next save may already be truncating the file.
So a batch that is due is not flushed at once: the watcher first notes each file's ``Stamp``,
then waits until every event sent before that moment has arrived (see ``watcher``). If none
of them touched the batch, the stamped content is complete: the watcher reads it, checking
the stamps before and after, and the host loads those bytes.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import NamedTuple

__all__ = ["Debouncer", "Stamp", "Windows", "classify", "stamp"]

READY, WRITING, GONE = "ready", "writing", "gone"

_STATE_OF = {
    "closed": READY,
    "moved_to": READY,
    "created": WRITING,
    "modified": WRITING,
    "deleted": GONE,
    "moved_from": GONE,
}

def classify(event_type: str) -> str | None:
    """The state an event puts a file in, or None for events that say nothing about its
    content (opened, attrib, closed_no_write: reads, ``touch``, our own imports)."""
    return _STATE_OF.get(event_type)


class Stamp(NamedTuple):
    """What identifies a file's content without reading it: any write changes the size or
    the modification time (nanoseconds; Linux 6.13+ makes it fine-grained once it was read),
    and a rename onto the file changes the inode."""

    inode: int
    size: int
    mtime_ns: int


def stamp(info: os.stat_result | None) -> Stamp | None:
    """The stamp of a ``stat`` result; None for a file that does not exist."""
    return None if info is None else Stamp(info.st_ino, info.st_size, info.st_mtime_ns)


@dataclass(frozen=True)
class Windows:
    """How long each kind of pending file waits for quiet before it is flushed (seconds)."""

    coalesce: float = 0.01
    hold: float = 0.1
    settle: float = 0.5

    def wait(self, state: str) -> float:
        return {READY: self.coalesce, GONE: self.hold, WRITING: self.settle}[state]


@dataclass
class Debouncer:
    """Pending files with their state and last event time; one batch when all are quiet."""

    windows: Windows = field(default_factory=Windows)
    pending: dict[str, tuple[str, float]] = field(default_factory=dict)
    opened: dict[str, float] = field(default_factory=dict)  # last open since a close-after-write

    def add(self, path: str, event_type: str, now: float) -> None:
        if event_type == "opened":
            self.opened[path] = now
            return
        if event_type in ("closed", "moved_to", "deleted"):
            self.opened.pop(path, None)
        state = classify(event_type)
        if state is not None:
            self.pending[path] = (state, now)

    def due(self) -> float | None:
        """When the pending batch is complete (a monotonic time), or None if nothing is pending.

        The whole batch waits for its slowest member, so a checkout that rewrites many files
        is applied as one change, with every file complete.
        """
        if not self.pending:
            return None
        return max(
            max(last + self.windows.wait(state), self.opened.get(path, last) + self.windows.settle)
            if path in self.opened else last + self.windows.wait(state)
            for path, (state, last) in self.pending.items()
        )

    def ready(self, now: float) -> frozenset[str]:
        """The batch, if it is due at ``now`` (it stays pending: see ``take``)."""
        due = self.due()
        return frozenset() if due is None or now < due else frozenset(self.pending)

    def take(self, now: float) -> frozenset[str]:
        """The batch, if it is due at ``now``; it is then no longer pending."""
        batch = self.ready(now)
        if batch:
            self.pending.clear()
            self.opened = {p: t for p, t in self.opened.items() if t + self.windows.settle > now}
        return batch
