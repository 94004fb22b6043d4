"""Restart delays for crashed workers: exponential backoff with jitter.

Pure functions of their inputs (the random source is passed in), so the maths is
unit-tested without threads or sleeping.
"""
from __future__ import annotations

import random
from typing import Callable

__all__ = ["delay", "count_failure"]


def delay(
    n: int,
    initial: float,
    factor: float,
    cap: float,
    jitter: float,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait before the n-th consecutive restart (n >= 1).

    The base delay ``min(cap, initial * factor**(n-1))`` grows and is capped; it is then
    scaled by a uniform factor in ``[1 - jitter, 1]`` so that workers which crashed
    together (a lost database, say) do not all come back in the same instant.
    """
    try:
        base = min(cap, initial * factor ** (n - 1))
    except OverflowError:
        base = cap
    return base * (1.0 - jitter * rand())


def count_failure(previous: int, ran_for: float, stable_after: float) -> int:
    """The consecutive-failure count after a run of ``ran_for`` seconds ended badly.

    A run that lasted longer than ``stable_after`` proves the worker can run, so the
    count starts again at 1 instead of growing towards ``fatal``.
    """
    return 1 if ran_for > stable_after else previous + 1
