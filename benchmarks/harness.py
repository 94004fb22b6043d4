"""What every benchmark uses: a UDP probe that workers report to, processes under test,
readings from /proc, the ways editors save a file, and summary statistics.

Workers time themselves: the first thing a benchmark worker's ``run`` does is send
``start NAME VERSION MONOTONIC [EXTRA…]`` to the probe on loopback. ``time.monotonic()`` is
CLOCK_MONOTONIC, one clock for every process on the machine, so the benchmark can subtract
the moment it began a save from the moment the new code ran, across processes, without
polling anything.
"""
from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

__all__ = [
    "BIN", "Probe", "Process", "SAVES", "Start", "child_pid", "cpu_hogs", "http_port", "proc_stats", "settled_stats",
    "summary", "wait_exactly", "task_wakeups",
    "temp_folder", "worker_source",
]

BIN = Path(sys.executable).parent  # hotreload, watchfiles, jurigged live beside this python
WAIT = 30.0  # seconds: no single step of a benchmark may take longer
PORT_ENV = "HOTRELOAD_BENCH_PORT"

WORKER = '''\
import os as _os, socket as _socket, sys as _sys, threading as _threading, time as _time
{top}
VERSION = {version}
{settings}

def _report(name, version, *extra):
    now = _time.monotonic()
    with _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM) as s:
        words = ["start", name, str(version), repr(now), *map(str, extra)]
        s.sendto(" ".join(words).encode(), ("127.0.0.1", int(_os.environ["{port_env}"])))


def run(ctx):
    _report(ctx.name, VERSION, _threading.active_count(), len(_sys.modules))
{body}
'''


def worker_source(version: int, body: str = "    ctx.sleep(float('inf'))", top: str = "",
                  settings: str = "") -> str:
    """A worker that reports its start to the probe, then runs ``body`` (indented)."""
    return WORKER.format(top=top, version=version, settings=settings, body=body, port_env=PORT_ENV)


@dataclass(frozen=True)
class Start:
    """One ``start`` report: who, which version, when (monotonic) and what else it said."""

    name: str
    version: int
    at: float
    extra: tuple[str, ...]


@dataclass
class Probe:
    """A UDP socket on loopback that collects workers' reports."""

    sock: socket.socket = field(default_factory=lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    seen: Counter = field(default_factory=Counter)  # (name, version) -> reports
    first: dict = field(default_factory=dict)  # (name, version) -> its first Start

    def __post_init__(self) -> None:
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.port = self.sock.getsockname()[1]

    def env(self) -> dict[str, str]:
        return {**os.environ, PORT_ENV: str(self.port)}

    def receive(self, timeout: float) -> Start | None:
        self.sock.settimeout(max(timeout, 1e-6))
        try:
            data = self.sock.recv(4096)
        except socket.timeout:
            return None
        words = data.decode().split()
        start = Start(words[1], int(words[2]), float(words[3]), tuple(words[4:]))
        self.seen[start.name, start.version] += 1
        self.first.setdefault((start.name, start.version), start)
        return start

    def wait_for(self, name: str, version: int, timeout: float = WAIT) -> Start:
        """The first report of ``name`` at ``version``, which may have come in already."""
        deadline = time.monotonic() + timeout
        while (name, version) not in self.first:
            if self.receive(deadline - time.monotonic()) is None and time.monotonic() >= deadline:
                raise TimeoutError(f"no report of {name} version {version} within {timeout} s")
        return self.first[name, version]

    def drain(self, quiet: float) -> None:
        """Count whatever arrives until ``quiet`` seconds pass without a report."""
        while self.receive(quiet) is not None:
            pass

    def extra_starts(self, names: set[str]) -> int:
        """Reports beyond one per (name, version): a save that caused two reloads."""
        return sum(n - 1 for (name, _), n in self.seen.items() if name in names and n > 1)

    def close(self) -> None:
        self.sock.close()


class Process:
    """A command under test, in its own process group, stopped with SIGINT then killed."""

    def __init__(self, argv: Sequence[str], env: dict[str, str], cwd: Path, log: Path) -> None:
        self.log = log.open("wb")
        self.popen = subprocess.Popen(
            list(argv), env=env, cwd=cwd, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pid = self.popen.pid

    def stop(self, sig: int = signal.SIGINT, timeout: float = WAIT) -> float:
        """Signal the process group and wait; seconds it took to exit."""
        began = time.monotonic()
        if self.popen.poll() is None:
            try:
                os.killpg(self.pid, sig)
            except ProcessLookupError:
                pass
            wait_exactly(self.popen, timeout)
        self.log.close()
        return time.monotonic() - began


def wait_exactly(popen: subprocess.Popen, timeout: float = WAIT) -> int:
    """Wait for ``popen`` in one blocking call, killing its group after ``timeout`` seconds.

    ``Popen.wait(timeout)`` polls with sleeps that grow to 50 ms, which would round every
    timing up to 63.5, 113.5, 163.5 ms and so on; a blocking wait returns when it exits.
    """
    killer = threading.Timer(timeout, lambda: os.killpg(popen.pid, signal.SIGKILL))
    killer.start()
    try:
        return popen.wait()
    finally:
        killer.cancel()


def proc_stats(pid: int) -> dict[str, float]:
    """RSS and peak RSS (MB), threads, open fds, inotify watches and CPU seconds of a process,
    from /proc."""
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line
    )
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    fds = os.listdir(f"/proc/{pid}/fd")
    watches = 0
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:inotify":
                text = Path(f"/proc/{pid}/fdinfo/{fd}").read_text()
                watches += sum(line.startswith("inotify wd:") for line in text.splitlines())
        except OSError:
            continue
    switches = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            for line in Path(f"/proc/{pid}/task/{task}/status").read_text().splitlines():
                if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                    switches += int(line.split()[1])
        except OSError:
            continue
    return {
        "rss_mb": int(status["VmRSS"].split()[0]) / 1024,
        "peak_rss_mb": int(status["VmHWM"].split()[0]) / 1024,  # the most it ever had resident
        "threads": int(status["Threads"]),
        "fds": len(fds),
        "watches": watches,
        "cpu_s": (int(fields[11]) + int(fields[12])) / ticks,
        "wakeups": switches,
    }


def settled_stats(pid: int, interval: float = 0.05, timeout: float = WAIT) -> dict[str, float]:
    """``proc_stats`` once two readings ``interval`` apart agree on threads and fds: a worker
    that has just reported may still be closing its socket or ending a thread."""
    deadline = time.monotonic() + timeout
    previous = proc_stats(pid)
    while True:
        time.sleep(interval)
        current = proc_stats(pid)
        same = all(current[key] == previous[key] for key in ("threads", "fds", "watches"))
        if same or time.monotonic() > deadline:
            return current
        previous = current


def child_pid(pid: int, timeout: float = WAIT) -> int:
    """The first child of ``pid`` (the host under its guardian), once it exists."""
    deadline = time.monotonic() + timeout
    while True:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        if children:
            return int(children[0])
        if time.monotonic() > deadline:
            raise TimeoutError(f"process {pid} has no child")
        time.sleep(0.01)


def task_wakeups(pid: int) -> dict[str, int]:
    """Context switches per thread (by tid) of a process: a thread that never wakes adds none."""
    result = {}
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            lines = Path(f"/proc/{pid}/task/{task}/status").read_text().splitlines()
        except OSError:
            continue
        result[task] = sum(int(line.split()[1]) for line in lines if "ctxt_switches" in line)
    return result


def http_port(log: Path, timeout: float = WAIT) -> int:
    """The port a host started with ``--http HOST:0`` chose: it logs ``http on HOST:PORT``."""
    deadline = time.monotonic() + timeout
    while True:
        found = re.search(r"http on \S+:(\d+)", log.read_text(errors="replace"))
        if found:
            return int(found[1])
        if time.monotonic() > deadline:
            raise TimeoutError(f"no 'http on' line in {log} within {timeout} s")
        time.sleep(0.01)


# --- saving a file the ways editors do (see EDITOR_EVENTS.md) ---------------------------------


def save_in_place(path: Path, text: str) -> None:
    """Truncate and write, as ``open(p, 'w')``, ``cp`` or vim under /tmp do."""
    path.write_text(text)


def save_by_replace(path: Path, text: str) -> None:
    """Write a temp file and rename it over the file, as VS Code, JetBrains or ``sed -i`` do."""
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(text)
    os.replace(temp, path)


def save_with_backup(path: Path, text: str) -> None:
    """vim's default ``writebackup``: move the file aside, write a new one, delete the backup."""
    backup = path.with_name(path.name + "~")
    os.replace(path, backup)
    path.write_text(text)
    backup.unlink()


SAVES: dict[str, Callable[[Path, str], None]] = {
    "in-place": save_in_place,
    "replace": save_by_replace,
    "backup": save_with_backup,
}


# --- figures ---------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile: the smallest value with at least q % of the values at or below."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def summary(values: Sequence[float], scale: float = 1000.0) -> dict[str, float]:
    """Median, p95, min and max of ``values`` times ``scale`` (seconds to ms by default)."""
    return {
        "p50": round(statistics.median(values) * scale, 2),
        "p95": round(percentile(values, 95) * scale, 2),
        "min": round(min(values) * scale, 2),
        "max": round(max(values) * scale, 2),
        "n": len(values),
    }


@contextlib.contextmanager
def cpu_hogs(count: int) -> Iterator[None]:
    """``count`` processes that spin for as long as the block runs: a loaded machine."""
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


@contextlib.contextmanager
def temp_folder() -> Iterator[Path]:
    """A temp folder, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="hotreload-bench-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
