"""What a worker keeps across its versions (``ctx.keep``), and how it is closed at the end.

A listening socket, a connection pool, a thread pool: made once in the life of the host,
handed to every later run of the worker (reloads, restarts, crashes), closed only when the
worker is removed or the host stops. ``core`` decides when; this module does the closing,
in a thread of its own, as ``close`` is the user's code and may block.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Hashable, Iterator

from hotreload import safe

if TYPE_CHECKING:
    from loguru import Logger

__all__ = ["Closing", "Kept", "close_all", "key_problem", "overdue", "start_closing"]


# What a key may be made of: values equal to themselves in every version of the worker's
# code. An instance of a class of the worker's module is not: a reload makes a new class,
# and the object kept under the old key would be made again (a second listener: EADDRINUSE).
KEY_TYPES = (str, bytes, int, float, bool, type(None))


def key_problem(key: object) -> str | None:
    """Why ``key`` cannot be a ``ctx.keep`` key, or None: only ``KEY_TYPES`` values and tuples
    and frozensets of them."""
    pending = [key]
    while pending:
        part = pending.pop()
        if type(part) in (tuple, frozenset):
            pending.extend(part)  # type: ignore[arg-type]
        elif type(part) not in KEY_TYPES:
            return (f"a key is made of str, bytes, int, float, bool, None and tuples of them, to find its object "
                    f"again after a reload; {type(part).__qualname__} is not one (use its fields: "
                    f"(\"listener\", host, port))")
    return None


class Kept:
    """One worker's kept objects, by key, oldest first, with the close to call on each.

    Lives on the worker's record, so it outlives every version of the worker and every
    reload of ``core``. The first ``get`` of a key creates it once even when several threads
    of the worker ask at once: they wait on that key's own lock, re-entrant so that a
    ``create`` may itself keep. The store's lock is never held while a ``create`` runs: a
    create that blocks holds up only the callers of its own key, not the others, nor the
    host loop taking everything to close it.
    """

    def __init__(self) -> None:
        self._objects: dict[Hashable, tuple[Any, Callable[[Any], Any] | None]] = {}
        self._making: dict[Hashable, threading.RLock] = {}  # a lock per key ever created
        self._lock = threading.Lock()

    def get(self, key: Hashable, create: Callable[[], Any], close: Callable[[Any], Any] | None = None) -> Any:
        """The object kept under ``key``, made by ``create()`` the first time. The ``close``
        of the latest call is the one used: the newest code decides how to close."""
        problem = key_problem(key)
        if problem is not None:
            raise TypeError(f"ctx.keep: {problem}")
        with self._lock:
            if key in self._objects:
                return self._renew(key, close)
            making = self._making.setdefault(key, threading.RLock())
        with making:
            with self._lock:
                if key in self._objects:  # made by another thread while this one waited
                    return self._renew(key, close)
            obj = create()  # if it raises, nothing is kept: the next run calls it again
            with self._lock:
                self._objects[key] = (obj, close)
            return obj

    def _renew(self, key: Hashable, close: Callable[[Any], Any] | None) -> Any:
        obj = self._objects[key][0]
        self._objects[key] = (obj, close)
        return obj

    def take(self) -> list[tuple[Hashable, Any, Callable[[Any], Any] | None]]:
        """Every kept object with its key and close, newest first; the store is left empty."""
        with self._lock:
            taken = [(key, obj, close) for key, (obj, close) in reversed(self._objects.items())]
            self._objects.clear()
        return taken

    def __len__(self) -> int:
        return len(self._objects)

    def __iter__(self) -> Iterator[Hashable]:
        return iter(list(self._objects))


@dataclass(eq=False)
class Closing:
    """What a worker kept, being closed in its own thread: the host waits for it, beside the
    other closes and stops, until ``deadline`` (``time.monotonic()``), then goes on alone."""

    name: str
    thread: threading.Thread
    timeout: float
    deadline: float
    log: Logger


def start_closing(kept: Kept, name: str, log: Logger, timeout: float, describe: Callable[[BaseException], str],
                  done: Callable[[], Any] = lambda: None) -> Closing | None:
    """Start closing everything ``kept`` holds, newest first (what was made from an older
    object goes before it), with its ``close``, else its own ``close()`` if it has one, in a
    daemon thread named ``hotreload:close:NAME`` that calls ``done()`` as its last act. An
    error is logged, as ``describe`` formats it (a function that never raises:
    ``log.format_error``). None if nothing is kept."""
    taken = kept.take()
    if not taken:
        return None

    def main() -> None:
        try:
            _close(taken, log, describe)
            log.info(f"closed what it kept: {', '.join(safe.shown(key) for key, _, _ in taken)}")
        finally:
            done()

    thread = threading.Thread(target=main, name=f"hotreload:close:{name}", daemon=True)
    thread.start()
    return Closing(name, thread, timeout, time.monotonic() + timeout, log)


def overdue(closing: Closing) -> None:
    closing.log.warning(f"closing what it kept did not end within {closing.timeout:g} s; it goes on in the background")


def close_all(kept: Kept, name: str, log: Logger, timeout: float, describe: Callable[[BaseException], str]) -> bool:
    """``start_closing``, and wait for it up to ``timeout`` seconds: False if it did not end
    in time (it goes on alone). For a caller with nothing else to do meanwhile."""
    closing = start_closing(kept, name, log, timeout, describe)
    if closing is None:
        return True
    closing.thread.join(timeout)
    if closing.thread.is_alive():
        overdue(closing)
        return False
    return True


def _close(taken: list[tuple[Hashable, Any, Callable[[Any], Any] | None]], log: Logger,
           describe: Callable[[BaseException], str]) -> None:
    for key, obj, close in taken:
        try:
            if close is not None:
                close(obj)
            else:
                own = getattr(obj, "close", None)
                if callable(own):
                    own()
        except BaseException as exc:  # noqa: B036 - the user's close: reported, the rest still closed
            log.error(f"closing {safe.shown(key)} raised:\n{describe(exc)}")
