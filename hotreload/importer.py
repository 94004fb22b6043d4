"""The importer: one thread that reads, parses, imports and reloads worker modules, so that
the host loop never waits for them.

A module's code is the user's: it may sleep, connect somewhere, or be 20 MB long. Run in
the host loop, it froze crash restarts, control commands and Ctrl-C until it was done; run
in the main thread, it could replace the host's signal handlers. Here it runs in a thread
of its own, one ``Job`` at a time, and each finished job comes back to the loop as a
``Loaded`` message. ``core`` submits a job and carries on; what a job means, and what to do
with its result, is ``core``'s business (the job carries it as plain data).
"""
from __future__ import annotations

import queue
import threading
from typing import TYPE_CHECKING

from hotreload.records import Job, Loaded

if TYPE_CHECKING:
    from hotreload.inbox import Inbox

__all__ = ["Importer", "REPORT_AFTER", "next_report", "run"]

REPORT_AFTER = 5.0  # seconds a job runs before "still importing x.py" is logged
REPORT_EVERY_MAX = 60.0  # then at 10, 20, 40 s..., at least once a minute


def run(job: Job) -> Job:
    """Run ``job`` here and now, keeping what it returned or raised."""
    try:
        job.result = job.fn()
    except BaseException as exc:  # noqa: B036 - module code may raise anything, even SystemExit
        job.error = exc
    return job


def next_report(last: float) -> float:
    """Seconds after its start at which a job still running is reported again, ``last``
    being when it last was (0: never)."""
    if last <= 0:
        return REPORT_AFTER
    return last + min(last, REPORT_EVERY_MAX)


class Importer:
    """The thread: started by ``host.serve``, stopped at its end with a bounded join.

    Daemon, because a module that never finishes importing must not keep the process alive.
    """

    def __init__(self, inbox: Inbox) -> None:
        self._inbox = inbox
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._main, name="hotreload:importer", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def submit(self, job: Job) -> None:
        self._jobs.put(job)

    def stop(self, timeout: float) -> bool:
        """Ask the thread to end after its current job; True if it ended within ``timeout``."""
        self._jobs.put(None)
        if self.thread.is_alive():
            self.thread.join(timeout)
        return not self.thread.is_alive()

    def _main(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            self._inbox.put(Loaded(run(job)))
