"""A worker's states, and their groups. Imports nothing: any module may name a state.

    STOPPED -> STARTING -> RUNNING -> (STOPPING ->) STOPPED | EXITED | BACKOFF -> STARTING ...
    STOPPED | BACKOFF -> WAITING -> STARTING once the workers in its AFTER are ready.
    BACKOFF -> FATAL after ``fatal_after`` failed runs in a row, until its source changes.

A worker that never loaded is FATAL with its error; ``hotreload status`` shows these words.
"""

__all__ = [
    "BACKOFF", "EXITED", "FATAL", "RESTARTABLE", "RUNNING", "STARTING", "STATES", "STOPPED", "STOPPING", "WAITING",
]

STOPPED = "stopped"  # not running: never started, stopped when asked, or the host is stopping
WAITING = "waiting"  # to start: a worker in its AFTER is not ready yet
STARTING = "starting"  # its thread is being started
RUNNING = "running"  # its run(ctx) is running
STOPPING = "stopping"  # asked to stop; its run has not returned yet
BACKOFF = "backoff"  # it returned or crashed: restarted when its backoff runs out
EXITED = "exited"  # it returned or crashed, and its RESTART policy says not to restart it
FATAL = "fatal"  # given up on (crashed too often, failed to load, or did not stop)

STATES = (STOPPED, WAITING, STARTING, RUNNING, STOPPING, BACKOFF, EXITED, FATAL)
# The states a worker whose new code fails to load was in if its previous version goes on.
RESTARTABLE = (RUNNING, STARTING, BACKOFF, WAITING)
