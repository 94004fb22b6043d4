"""``hotreload status``: the host's reply as a table, coloured on a terminal."""
from __future__ import annotations

import os
import sys
from typing import Any, Sequence

__all__ = ["aligned", "table", "use_colour"]

COLOURS = {"running": "32", "starting": "33", "stopping": "33", "backoff": "33", "waiting": "33", "fatal": "31"}
DIM = "2"


def use_colour() -> bool:
    """On a terminal, unless NO_COLOR is set (to anything but the empty string, as
    https://no-color.org says; ``run``'s log follows the same rule)."""
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


def _uptime(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{seconds:.1f}s"


def _cpu(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.1f}s"


def aligned(rows: Sequence[Sequence[str]]) -> list[list[str]]:
    """``rows`` with every column but the last padded to its widest cell."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return [[cell.ljust(width) for cell, width in zip(row, widths)] + [row[-1]] for row in rows]


def _state(worker: dict[str, Any]) -> str:
    """The state, with what a waiting worker waits for: ``waiting (db, cache)``."""
    waits = worker.get("waiting_for")
    return f"{worker['state']} ({', '.join(waits)})" if waits else worker["state"]


def table(reply: dict[str, Any], colour: bool = False) -> str:
    """One row per worker: name, state, uptime, restarts, generation, last error; the age of
    the last heartbeat (BEAT) when a worker sets HEARTBEAT; and while a program runs, the pid
    and CPU seconds of each running one."""
    beats = any(w.get("beat") is not None for w in reply["workers"])
    header: tuple[str, ...] = ("NAME", "STATE", "UPTIME", "RESTARTS", "GEN", *(("BEAT",) if beats else ()),
                               "LAST ERROR")
    rows = [
        (w["name"], _state(w), _uptime(w["uptime"]), str(w["restarts"]), str(w["generation"]),
         *((_uptime(w.get("beat")),) if beats else ()), (w["last_error"] or "")[:100])
        for w in reply["workers"]
    ]
    if any(w.get("pid") for w in reply["workers"]):
        header = (*header[:2], "PID", "CPU", *header[2:])
        rows = [(*row[:2], str(w.get("pid") or "-"), _cpu(w.get("cpu")), *row[2:])
                for row, w in zip(rows, reply["workers"])]
    lines = [f"host pid {reply['pid']} on {reply['folder']}"
             + (f", guardian pid {reply['guardian']}" if reply.get("guardian") else "")
             + f", reload {'on' if reply['reload'] else 'off'}"]
    importing = reply.get("importing")
    if importing:
        lines.append(f"{importing['doing']} ({importing['seconds']:.1f} s)")
    for number, cells in enumerate(aligned([header, *rows])):
        if colour and number:
            code = COLOURS.get(cells[1].split(" ")[0], DIM)
            cells[1] = f"\033[{code}m{cells[1]}\033[0m"
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)
