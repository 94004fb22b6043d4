"""``hotreload status``: the host's reply as a table, coloured on a terminal."""
from __future__ import annotations

import os
import sys
from typing import Any

__all__ = ["table", "use_colour"]

COLOURS = {"running": "32", "starting": "33", "stopping": "33", "backoff": "33", "fatal": "31"}
DIM = "2"


def use_colour() -> bool:
    return sys.stdout.isatty() and "NO_COLOR" not in os.environ


def _uptime(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{seconds:.1f}s"


def table(reply: dict[str, Any], colour: bool = False) -> str:
    """One row per worker: name, state, uptime, restarts, generation, last error."""
    header = ("NAME", "STATE", "UPTIME", "RESTARTS", "GEN", "LAST ERROR")
    rows = [
        (w["name"], w["state"], _uptime(w["uptime"]), str(w["restarts"]), str(w["generation"]),
         (w["last_error"] or "")[:100])
        for w in reply["workers"]
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(5)]
    lines = [f"host pid {reply['pid']} on {reply['folder']}"
             + (f", guardian pid {reply['guardian']}" if reply.get("guardian") else "")
             + f", reload {'on' if reply['reload'] else 'off'}"]
    for row in [header, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row, widths)] + [row[5]]
        if colour and row is not header:
            code = COLOURS.get(row[1], DIM)
            cells[1] = f"\033[{code}m{cells[1]}\033[0m"
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)
