"""What a stop or restart signal means, for the host and for the guardian alike.

One signal is often delivered twice: ``timeout -s INT`` signals its child and then its own
process group, systemd signals the main process and the whole control group, a wrapper
passes a signal on that its target also got directly. Such a duplicate comes within
milliseconds of the first, a person's second Ctrl-C much later (a fast, deliberate double
tap is a quarter of a second or more; someone who sees that a stop hangs presses again
after seconds). So the same signal again within ``DUPLICATE_WINDOW`` seconds of the one
that counted is the same request; later, it is a second one. A second restart request while
a restart is under way is merged into it, however late it comes.

Standard library only: the guardian imports it.
"""
from __future__ import annotations

import signal
from dataclasses import dataclass

__all__ = ["DUPLICATE_WINDOW", "EXIT_NOW", "IGNORE", "RESTART", "STOP", "Delivery", "is_duplicate", "react"]

DUPLICATE_WINDOW = 0.5  # seconds

# What a signal asks for (``react``'s answers); also what can be under way.
STOP = "stop"  # stop gracefully; or, with a restart under way, make that stop final
RESTART = "restart"  # stop gracefully, then start afresh
EXIT_NOW = "exit now"  # a second stop request: stop waiting for the workers
IGNORE = "ignore"  # a duplicate, or merged into what is under way


@dataclass(frozen=True)
class Delivery:
    """A signal that counted, and when (``time.monotonic()``)."""

    signum: int
    at: float


def is_duplicate(last: Delivery | None, signum: int, now: float, window: float = DUPLICATE_WINDOW) -> bool:
    """True when ``signum`` at ``now`` is ``last`` delivered again, not a request of its own."""
    return last is not None and last.signum == signum and 0 <= now - last.at < window


def react(under_way: str | None, last: Delivery | None, signum: int, now: float) -> str:
    """What ``signum``, arriving at ``now``, asks for, given what is ``under_way`` (None,
    ``STOP`` or ``RESTART``) and the ``last`` signal that counted. SIGHUP asks for a restart;
    any other signal (SIGINT, SIGTERM) for a stop."""
    if is_duplicate(last, signum, now):
        return IGNORE
    if signum == signal.SIGHUP:
        return RESTART if under_way is None else IGNORE
    if under_way == STOP:
        return EXIT_NOW
    return STOP
