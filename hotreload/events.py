"""What happens to the workers, as events: ``hotreload events`` shows them, tools read them.

Core calls the constructors below where things happen; the journal stamps each event with
its time and keeps the last ones. Each is one JSON object, and its schema is stable: fields
may be added in later versions, never removed or changed in type. Every event has

    time    str       when, ISO 8601 with the local offset, as --log-json writes it
    event   str       one of KINDS
    worker  str|null  the worker it concerns; null for a helper module or the host

and the fields of its kind (``SCHEMA``):

    state          state str, previous str, note str ("" when there is none)
    reload         file str, generation int|null (null: a helper), ms float
    reload_failed  file str|null, line int|null, error str (one line)
    crash          exception str (the type's name), error str (one line), file str|null, line
                   int|null (the innermost frame in the folder: the user's line)
    command        command str (restart, stop, start, restart-host), names [str]

Pure functions only: no clock (the journal passes the time in), no I/O.
"""
from __future__ import annotations

import os
import traceback
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, Sequence

__all__ = [
    "KINDS", "SCHEMA", "Event", "command", "crashed", "describe", "reload_failed", "reloaded", "stamped",
    "state_changed", "where",
]

Event = Dict[str, Any]

KINDS = ("state", "reload", "reload_failed", "crash", "command")
NONE = type(None)
SCHEMA: dict[str, dict[str, tuple[type, ...]]] = {  # each kind's own fields and their JSON types
    "state": {"state": (str,), "previous": (str,), "note": (str,)},
    "reload": {"file": (str,), "generation": (int, NONE), "ms": (float,)},
    "reload_failed": {"file": (str, NONE), "line": (int, NONE), "error": (str,)},
    "crash": {"exception": (str,), "error": (str,), "file": (str, NONE), "line": (int, NONE)},
    "command": {"command": (str,), "names": (list,)},
}


def state_changed(worker: str, state: str, previous: str, note: str = "") -> Event:
    return {"event": "state", "worker": worker, "state": state, "previous": previous, "note": note}


def reloaded(worker: str | None, file: str, generation: int | None, ms: float) -> Event:
    """A worker's new code started (``generation``: how many times it was swapped), or a
    helper reloaded (``worker`` and ``generation`` None)."""
    return {"event": "reload", "worker": worker, "file": file, "generation": generation, "ms": round(float(ms), 3)}


def reload_failed(worker: str | None, file: str | None, line: int | None, error: str) -> Event:
    return {"event": "reload_failed", "worker": worker, "file": file, "line": line, "error": error}


def crashed(worker: str, exception: str, error: str, file: str | None = None, line: int | None = None) -> Event:
    return {"event": "crash", "worker": worker, "exception": exception, "error": error, "file": file, "line": line}


def command(cmd: str, names: Sequence[str]) -> Event:
    return {"event": "command", "worker": None, "command": cmd, "names": list(names)}


def stamped(event: Event, at: float) -> Event:
    """``event`` with its ``time`` first: ``at`` (seconds since the epoch) in local time."""
    return {"time": datetime.fromtimestamp(at).astimezone().isoformat(), **event}


def where(exc: BaseException, folder: Path) -> tuple[str | None, int | None]:
    """The file and line an error points at, for a failed reload or a crash: a syntax
    error's own, a broken worker contract's (``loader.WorkerError``), else the innermost frame
    of the traceback inside ``folder`` — the user's line, not the library it called. (None,
    None) when it has none of those, or when the exception's own attributes raise (it is the
    user's object)."""
    try:
        return _where(exc, folder)
    except BaseException:  # noqa: B036 - a property of the user's exception may raise anything
        return None, None


def _where(exc: BaseException, folder: Path) -> tuple[str | None, int | None]:
    if isinstance(exc, SyntaxError):
        return (exc.filename, exc.lineno) if isinstance(exc.filename, str) else (None, None)
    path = getattr(exc, "path", None)
    if isinstance(path, str):
        line = getattr(exc, "line", None)
        return path, line if isinstance(line, int) else None
    inside = str(folder) + os.sep
    found: tuple[str | None, int | None] = (None, None)
    for frame, line in traceback.walk_tb(exc.__traceback__):  # outermost first; no source read
        if frame.f_code.co_filename.startswith(inside):
            found = (frame.f_code.co_filename, line)
    return found


def describe(event: Event, here: str | None = None) -> str:
    """What the event says beyond its time, kind and worker, in one line; paths under
    ``here`` are shown relative to it."""
    kind = event.get("event")

    def shown(path: str) -> str:
        return path[len(here) + 1:] if here and path.startswith(here.rstrip(os.sep) + os.sep) else path

    if kind == "state":
        return f"{event['previous']} -> {event['state']}" + (f": {event['note']}" if event["note"] else "")
    if kind == "reload":
        timing = f"in {event['ms']:.1f} ms"
        if event["generation"] is None:
            return f"{shown(event['file'])} {timing}"
        return f"generation {event['generation']} {timing} ({shown(event['file'])})"
    if kind == "reload_failed":
        place = shown(event["file"]) if event["file"] else ""
        if place and event["line"] is not None:
            place += f":{event['line']}"
        return f"{place}: {event['error']}" if place else event["error"]
    if kind == "crash":
        file, line = event.get("file"), event.get("line")
        return f"{shown(file)}:{line}: {event['error']}" if file and line is not None else str(event["error"])
    if kind == "command":
        return " ".join([event["command"], *event["names"]])
    return ", ".join(f"{key}={value}" for key, value in event.items() if key not in ("time", "event", "worker"))
