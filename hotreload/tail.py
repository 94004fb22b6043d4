"""``hotreload logs`` and ``hotreload events``: what the host's journal holds, then, with
``-f``, each new line as it comes, until Ctrl-C or the host stops.

Text as ``hotreload run`` writes it (time, level, worker, message), coloured the same way
on a terminal; ``--json`` prints each record as ``--log-json`` does, each event in its
schema (``hotreload.events``). Reading the host's answer is ``control.stream``'s.
"""
from __future__ import annotations

import json
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Any, Sequence

from hotreload import colours, control, events

__all__ = ["event_line", "gap_line", "log_line", "show"]

# loguru's default colours of its levels, which ``run`` shows: the same here.
LEVEL_COLOURS = {
    "TRACE": "1;36", "DEBUG": "1;34", "INFO": "1", "SUCCESS": "1;32", "WARNING": "1;33", "ERROR": "1;31",
    "CRITICAL": "1;41",
}
TIME_COLOUR = "32"
EVENT_COLOURS = {"state": "1", "reload": "1;32", "reload_failed": "1;31", "crash": "1;31", "command": "1;35"}


def name_colour(name: str) -> str:
    """The colour of a worker's name, as ``run`` shows it: its own, and the host's in bold."""
    return "1" if name == "host" else colours.code_of(name)


def _painted(text: str, code: str, colour: bool) -> str:
    return colours.paint(text, code) if colour and code else text


def _clock(stamp: str) -> str:
    """``HH:MM:SS.mmm`` of an ISO 8601 time, as ``run`` shows it."""
    try:
        moment = datetime.fromisoformat(stamp)
    except ValueError:
        return stamp
    return moment.strftime("%H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


def log_line(record: dict[str, Any], colour: bool = False) -> str:
    """A record (``--log-json``'s fields) as ``run`` writes it: time | level | worker | message."""
    level, name = str(record.get("level", "")), str(record.get("worker", ""))
    code = LEVEL_COLOURS.get(level, "")
    return " | ".join([
        _painted(_clock(str(record.get("time", ""))), TIME_COLOUR, colour),
        _painted(f"{level: <7}", code, colour),
        _painted(f"{name: <10}", name_colour(name), colour),
        _painted(str(record.get("message", "")), code, colour),
    ])


def event_line(event: dict[str, Any], colour: bool = False, here: str | None = None) -> str:
    """An event in one line: time | kind | worker | what it says."""
    kind, name = str(event.get("event", "")), event.get("worker") or "host"
    return " | ".join([
        _painted(_clock(str(event.get("time", ""))), TIME_COLOUR, colour),
        _painted(f"{kind: <13}", EVENT_COLOURS.get(kind, ""), colour),
        _painted(f"{name: <10}", name_colour(name), colour),
        events.describe(event, here),
    ])


def gap_line(dropped: int) -> str:
    return f"[… {dropped} lines dropped here: this reader did not keep up …]"


def show(
    folder: Path, kind: str, names: Sequence[str] = (), lines: int | None = None, follow: bool = False,
    as_json: bool = False, colour: bool = False,
) -> int:
    """Print the answer to ``logs`` or ``events``: 0 once all came (following: once the host
    stopped), 1 with one line on stderr when there is no host, a name is unknown or the
    connection was lost, 130 on Ctrl-C."""
    here = os.getcwd()
    if hasattr(sys.stdout, "reconfigure"):  # what stdout cannot encode (a lone surrogate) as run's stderr shows it
        sys.stdout.reconfigure(errors="backslashreplace")
    try:
        for line in control.stream(folder, kind, names, lines, follow):
            if as_json:
                print(json.dumps(line))
            elif "gap" in line:
                print(gap_line(line["gap"]))
            else:
                print(log_line(line, colour) if kind == "logs" else event_line(line, colour, here))
            if follow:
                sys.stdout.flush()  # a pipe too sees each line as it comes
    except control.ControlError as exc:
        print(f"hotreload: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    if follow:
        print(f"hotreload: the host on {folder.resolve()} stopped", file=sys.stderr)
    return 0
