"""``hotreload status``: the host's reply as a table, coloured on a terminal; ``--watch``
redraws it every few seconds, sorted by CPU."""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence, TextIO

from hotreload import colours, control, cpu

__all__ = ["aligned", "cpu_time", "frame", "measured", "run", "table", "use_colour", "watch"]

COLOURS = {"running": "32", "starting": "33", "stopping": "33", "backoff": "33", "waiting": "33", "fatal": "31"}
DIM = "2"
# On a terminal, ``--watch`` draws each frame over the last: home, each line then "clear to
# its end", then "clear below"; the first clears the screen, and the cursor is hidden meanwhile.
HOME, CLEAR_LINE, CLEAR_BELOW, CLEAR_SCREEN = "\033[H", "\033[K", "\033[J", "\033[2J"
HIDE_CURSOR, SHOW_CURSOR = "\033[?25l", "\033[?25h"

Reply = dict[str, Any]


def use_colour() -> bool:
    """On a terminal, unless NO_COLOR is set: ``run``'s rule (``colours.wanted``) for stdout."""
    return colours.wanted("auto", sys.stdout.isatty(), os.environ.get("NO_COLOR"))


def _uptime(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{seconds:.1f}s"


def cpu_time(seconds: float) -> str:
    """CPU time as ``top`` shows it: ``m:ss.hh`` under an hour, ``h:mm:ss`` from one."""
    hundredths = int(seconds * 100 + 1e-6)  # cut, not rounded: 59.999 s is not a minute yet
    whole, hundredths = divmod(hundredths, 100)
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}:{secs:02d}.{hundredths:02d}"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def aligned(rows: Sequence[Sequence[str]]) -> list[list[str]]:
    """``rows`` with every column but the last padded to its widest cell."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return [[cell.ljust(width) for cell, width in zip(row, widths)] + [row[-1]] for row in rows]


def _state(worker: dict[str, Any]) -> str:
    """The state, with what a waiting worker waits for: ``waiting (db, cache)``."""
    waits = worker.get("waiting_for")
    return f"{worker['state']} ({', '.join(waits)})" if waits else worker["state"]


def _header(reply: Reply) -> list[str]:
    lines = [f"host pid {reply['pid']} on {reply['folder']}"
             + (f", guardian pid {reply['guardian']}" if reply.get("guardian") else "")
             + f", reload {'on' if reply['reload'] else 'off'}"]
    usage = (f"rss {reply['rss_bytes'] / 1e6:.1f} MB, {reply['threads']} threads, "
             f"cpu time {cpu_time(reply['cpu_seconds'])}")
    if reply.get("cpu_window") is not None:
        usage += f", {_percent(reply['cpu_percent'])}% of a core over the last {reply['cpu_window']:.1f} s"
    lines.append(usage)
    importing = reply.get("importing")
    if importing:
        lines.append(f"{importing['doing']} ({importing['seconds']:.1f} s)")
    return lines


def _by_cpu(worker: dict[str, Any]) -> tuple[float, float, str]:
    return -(worker["cpu_percent"] or 0.0), -worker["cpu_seconds"], worker["name"]


def _lines(reply: Reply, colour: bool, by_cpu: bool, size: tuple[int, int] | None) -> list[str]:
    """The header and one row per worker — in the host's order (by name), or by CPU — cut to
    ``size`` (columns, lines) if given, the rows left out counted on the last line."""
    workers = sorted(reply["workers"], key=_by_cpu) if by_cpu else reply["workers"]
    beats = any(w.get("beat") is not None for w in workers)  # the age of the last heartbeat, if HEARTBEAT is set
    pids = any(w.get("pid") for w in workers)  # a program runs: its pid
    header = ("NAME", "STATE", *(("PID",) if pids else ()), "%CPU", "TIME", "UPTIME", "RESTARTS", "GEN",
              *(("BEAT",) if beats else ()), "LAST ERROR")
    rows = [
        (w["name"], _state(w), *((str(w.get("pid") or "-"),) if pids else ()),
         _percent(w["cpu_percent"]), cpu_time(w["cpu_seconds"]), _uptime(w["uptime"]),
         str(w["restarts"]), str(w["generation"]), *((_uptime(w.get("beat")),) if beats else ()),
         (w["last_error"] or "")[:100])
        for w in workers
    ]
    lines = _header(reply)
    cells = aligned([header, *rows])
    more = ""
    if size is not None and len(lines) + len(cells) > size[1]:
        room = max(0, size[1] - len(lines) - 2)  # the column names, and the line saying how many more
        more = f"… and {len(cells) - 1 - room} more"
        cells = cells[:room + 1]
    width = size[0] - 1 if size is not None else None  # not the last column: a full line may wrap
    lines = [line[:width] for line in lines]
    for number, row in enumerate(cells):
        line = "  ".join(row).rstrip()[:width].rstrip()
        state_at = len(row[0]) + 2
        if colour and number and len(line) > state_at:  # the state, in its colour
            state = row[1].strip()  # "waiting (db, cache)" is coloured as "waiting"
            end = min(len(line), state_at + len(state))
            code = COLOURS.get(state.split(" ")[0], DIM)
            line = line[:state_at] + colours.paint(line[state_at:end], code) + line[end:]
        lines.append(line)
    return lines + ([more[:width]] if more else [])


def table(reply: Reply, colour: bool = False) -> str:
    """The host, its RSS, threads and CPU; one row per worker, by name: name, state (with what
    a waiting worker waits for), a program's pid (while one runs), CPU%, CPU time, uptime, restarts, generation, the age of the
    last heartbeat (BEAT) when a worker sets HEARTBEAT, last error."""
    return "\n".join(_lines(reply, colour, by_cpu=False, size=None))


def frame(reply: Reply, every: float, clock: str, colour: bool = False, size: tuple[int, int] | None = None) -> str:
    """One screen of ``--watch``: a title line, then the table sorted by CPU, fitted to
    ``size`` (columns, lines) on a terminal."""
    title = f"every {every:g} s, by CPU, {clock} (Ctrl-C to stop)"
    lines = _lines(reply, colour, by_cpu=True, size=None if size is None else (size[0], size[1] - 1))
    return "\n".join([title[:size[0] - 1] if size is not None else title, *lines])


def measured(request: Callable[[], Reply], sleep: Callable[[float], None] = time.sleep) -> Reply:
    """The host's status, with its CPU% over a window: the host measures from its previous
    status request (see ``cpu``); when it had none recent enough, ask again a moment later."""
    reply = request()
    if reply.get("ok") and reply.get("cpu_window") is None:
        sleep(cpu.MIN_WINDOW + 0.05)
        reply = request()
    return reply


def _say(err: TextIO, message: str) -> int:
    err.write(f"hotreload: {message}\n")
    return 1


def run(folder: Path, as_json: bool, every: float | None) -> int:
    """``hotreload status``: once, or every ``every`` seconds until Ctrl-C."""
    def fetch() -> Reply:
        return measured(lambda: control.request(folder, "status"))

    if every is not None:
        return watch(fetch, every, sys.stdout, sys.stderr, as_json=as_json, colour=use_colour())
    try:
        reply = fetch()
    except control.ControlError as exc:
        return _say(sys.stderr, str(exc))
    if not reply.get("ok"):
        return _say(sys.stderr, reply.get("error", "the host refused"))
    print(json.dumps(reply, indent=2) if as_json else table(reply, colour=use_colour()))
    return 0


def watch(
    fetch: Callable[[], Reply], every: float, out: TextIO, err: TextIO, sleep: Callable[[float], None] = time.sleep,
    as_json: bool = False, colour: bool = False, size: tuple[int, int] | None = None,
) -> int:
    """Show ``fetch()`` every ``every`` seconds: redrawn in place on a terminal, as repeated
    tables (or JSON lines) otherwise. Ctrl-C ends it with 0; a host that is gone, with 1."""
    redraw = out.isatty() and not as_json
    drawn = False

    def leave() -> None:  # below the last frame, with the cursor back, before any last word
        nonlocal drawn
        if drawn:
            drawn = False
            out.write("\n" + SHOW_CURSOR)
            out.flush()

    try:
        while True:
            began = time.monotonic()
            try:
                reply = fetch()
            except control.ControlError as exc:
                leave()
                return _say(err, str(exc))
            if not reply.get("ok"):
                leave()
                return _say(err, reply.get("error", "the host refused"))
            if as_json:
                out.write(json.dumps(reply) + "\n")
            elif redraw:
                shown = frame(reply, every, time.strftime("%H:%M:%S"), colour, size or _size(out))
                out.write(("" if drawn else HIDE_CURSOR + CLEAR_SCREEN) + HOME
                          + shown.replace("\n", CLEAR_LINE + "\n") + CLEAR_LINE + CLEAR_BELOW)
                drawn = True
            else:
                out.write(frame(reply, every, time.strftime("%H:%M:%S")) + "\n\n")
            out.flush()
            sleep(max(0.0, every - (time.monotonic() - began)))
    except KeyboardInterrupt:
        return 0
    finally:
        leave()


def _size(out: TextIO) -> tuple[int, int]:
    try:
        columns, lines = os.get_terminal_size(out.fileno())
    except (OSError, ValueError, AttributeError):
        return 80, 24
    return max(columns, 20), max(lines, 6)
