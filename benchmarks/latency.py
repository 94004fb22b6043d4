"""Save -> new code running, for hotreload and for the tools a user would pick instead.

Every subject runs at the same time, each on its own folder; the saves go round them in
turn (A B C A B C …), so a slow patch of the machine hits all of them alike and the ratios
stay fair. A save is timed from just before its first byte is written to the ``start``
report of the new version's ``run``.
"""
from __future__ import annotations

import contextlib
import http.client
import importlib.util
import itertools
import json
import os
import random
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterator

from benchmarks.harness import BIN, SAVES, WAIT, Probe, Process, http_port, summary, worker_source

__all__ = ["available_tools", "checkout_bursts", "follow", "save_to_running", "scraped_save_to_running"]

HEAVY = "import numpy  # a heavy library, imported at module level"
# A sibling worker that never waits: it holds the GIL whenever the host's threads want it.
BUSY = "def run(ctx):\n    while not ctx.stopping:\n        sum(range(1000))\n"

JURIGGED_SCRIPT = '''\
import os, socket, time
{top}

def version():
    return {version}

def main():
    last = None
    address = ("127.0.0.1", int(os.environ["HOTRELOAD_BENCH_PORT"]))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        while True:
            v = version()
            if v != last:
                s.sendto(f"start {name} {{v}} {{time.monotonic()!r}}".encode(), address)
                last = v
            time.sleep(0.001)

main()
'''


@dataclass
class Subject:
    """One tool on one worker: how to start it and how to write version N of its code."""

    name: str
    tool: str
    heavy: bool
    path: Path  # the file that is saved
    argv: list[str]
    render: Callable[[int], str]
    saves: tuple[str, ...] = tuple(SAVES)
    process: Process | None = None
    log: Path = field(init=False)


def _subjects(root: Path, tools: list[str]) -> list[Subject]:
    subjects = []
    for tool, heavy in itertools.product(tools, (False, True)):
        name = f"{tool.replace('-', '_')}_{'numpy' if heavy else 'trivial'}"
        top = HEAVY if heavy else ""
        folder = root / name / "svc"
        folder.mkdir(parents=True)
        if tool == "jurigged":
            path = folder / "script.py"
            subjects.append(Subject(
                name, tool, heavy, path, [str(BIN / "jurigged"), str(path)],
                lambda v, top=top, name=name: JURIGGED_SCRIPT.format(top=top, version=v, name=name),
                # jurigged reacts to modified/created events only: a save by rename is missed.
                saves=("in-place",),
            ))
            continue
        path = folder / f"{name}.py"
        hotreload = [str(BIN / "hotreload"), "run", str(folder)]
        argv = hotreload if tool == "hotreload" else [
            str(BIN / "watchfiles"), "--filter", "python", " ".join(hotreload + ["--no-reload", "--no-guard"]),
            str(folder),
        ]
        subjects.append(Subject(name, tool, heavy, path, argv, lambda v, top=top: worker_source(v, top=top)))
    return subjects


def _busy_subject(root: Path) -> Subject:
    """hotreload on a trivial worker, next to a worker that keeps a core busy."""
    folder = root / "busy" / "svc"
    folder.mkdir(parents=True)
    (folder / "spinner.py").write_text(BUSY)
    return Subject("hotreload_busy", "hotreload", False, folder / "hotreload_busy.py",
                   [str(BIN / "hotreload"), "run", str(folder)], lambda v: worker_source(v))


def available_tools() -> list[str]:
    """hotreload, and the alternatives that are installed in this environment."""
    tools = ["hotreload"]
    if shutil.which("watchfiles", path=str(BIN)) and importlib.util.find_spec("watchfiles"):
        tools.append("watchfiles")
    if shutil.which("jurigged", path=str(BIN)):
        tools.append("jurigged")
    return tools


def _measure(root: Path, probe: Probe, subjects: list[Subject], rounds: int, gap: float = 0.0,
             beside: Callable[[list[Subject]], ContextManager[Any]] = lambda _: contextlib.nullcontext(),
             ) -> dict[str, list[tuple[str, float, float]]]:
    """Start ``subjects`` side by side, save each in turn ``rounds`` times, stop them; with
    ``gap``, a random pause of up to that many seconds between rounds; ``beside(subjects)``
    is entered once they all run and left after the last save.
    Returns (save method, moment the save began, seconds) per save, by subject name."""
    times: dict[str, list[tuple[str, float, float]]] = {s.name: [] for s in subjects}
    pauses = random.Random(15)
    try:
        for subject in subjects:
            subject.path.write_text(subject.render(0))
            subject.log = root / f"{subject.name}.log"
            subject.process = Process(subject.argv, probe.env(), root, subject.log)
        for subject in subjects:
            probe.wait_for(subject.name, 0, timeout=60)
        with beside(subjects):
            for version in range(1, rounds + 1):
                for subject in subjects:
                    how = subject.saves[version % len(subject.saves)]
                    text = subject.render(version)
                    began = time.monotonic()
                    SAVES[how](subject.path, text)
                    times[subject.name].append((how, began, probe.wait_for(subject.name, version).at - began))
                time.sleep(pauses.uniform(0, gap))
        probe.drain(quiet=1.0)  # a save that caused a second reload shows up here
    finally:
        for subject in subjects:
            if subject.process is not None:
                subject.process.stop()
    return times


def save_to_running(root: Path, probe: Probe, rounds: int, tools: list[str]) -> dict[str, Any]:
    """``rounds`` saves of every subject, interleaved; then the same for hotreload next to
    a busy worker, alone, so that its spinning does not weigh on the others."""
    groups = [_subjects(root, tools)]
    if "hotreload" in tools:
        groups.append([_busy_subject(root)])
    results: dict[str, Any] = {}
    for subjects in groups:
        times = _measure(root, probe, subjects, rounds)
        for subject in subjects:
            by_save: dict[str, list[float]] = {}
            for how, _, seconds in times[subject.name]:
                by_save.setdefault(how, []).append(seconds)
            results[subject.name] = {
                "tool": subject.tool,
                "worker": "numpy" if subject.heavy else "trivial",
                **summary([seconds for _, _, seconds in times[subject.name]]),
                "by_save": {how: summary(values) for how, values in by_save.items()},
                "extra_starts": probe.extra_starts({subject.name}),
            }
    return results

SCRAPED = {"metrics_plain": [], "metrics_http": ["--http", "127.0.0.1:0"],
           "metrics_scraped": ["--http", "127.0.0.1:0"]}  # the last one's /metrics is scraped


class Scraper:
    """GET /metrics from a host's --http port every ``every`` seconds, on a thread of its
    own, at a fixed rate as Prometheus does; keeps when each scrape began and ended."""

    def __init__(self, port: int, every: float) -> None:
        self.port, self.every = port, every
        self.spans: list[tuple[float, float]] = []
        self.failed = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="bench:scraper")

    def _run(self) -> None:
        while True:
            began = time.monotonic()
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=WAIT)
            try:
                conn.request("GET", "/metrics")
                reply = conn.getresponse()
                reply.read()
                self.failed += reply.status != 200
            except OSError:
                self.failed += 1
            finally:
                conn.close()
            self.spans.append((began, time.monotonic()))
            if self.stopping.wait(max(0.0, began + self.every - time.monotonic())):
                return

    @contextlib.contextmanager
    def running(self) -> Iterator[Scraper]:
        self.thread.start()
        try:
            yield self
        finally:
            self.stopping.set()
            self.thread.join(WAIT)


def scraped_save_to_running(root: Path, probe: Probe, rounds: int, every: float, gap: float) -> dict[str, Any]:
    """Save -> running for three hosts of one trivial worker side by side, saved in turn:
    without --http, with --http and no client, and with --http and /metrics scraped every
    ``every`` seconds; the random ``gap`` between rounds spreads the saves over the
    scrapes' cycle, as a person's saves fall at any moment of it."""
    subjects = []
    for name, extra in SCRAPED.items():
        folder = root / name / "svc"
        folder.mkdir(parents=True)
        subjects.append(Subject(name, "hotreload", False, folder / f"{name}.py",
                                [str(BIN / "hotreload"), "run", str(folder), *extra], lambda v: worker_source(v)))
    scrapers: list[Scraper] = []

    @contextlib.contextmanager
    def scraping(started: list[Subject]) -> Iterator[None]:
        scrapers.append(Scraper(http_port(started[-1].log), every))
        with scrapers[0].running():
            yield

    times = _measure(root, probe, subjects, rounds, gap, scraping)
    spans = scrapers[0].spans
    results: dict[str, Any] = {name: summary([seconds for _, _, seconds in times[name]]) for name in SCRAPED}
    during = [seconds for _, began, seconds in times["metrics_scraped"]
              if any(start < began + seconds and began < end for start, end in spans)]
    results["metrics_scraped"].update({
        "scrapes": len(spans), "scrapes_failed": scrapers[0].failed,
        "scrape_ms": summary([end - start for start, end in spans]),
        "saves_during_a_scrape": len(during), "max_during_a_scrape_ms": round(max(during, default=0) * 1000, 2),
    })
    results["every_s"], results["gap_s"] = every, gap
    results["p50_moved_ms"] = round(results["metrics_scraped"]["p50"] - results["metrics_http"]["p50"], 2)
    return results


BURST_HELPERS = 5
BURST_BODY = """\
    n = ctx.state['n'] = ctx.state.get('n', 0) + 1
    from . import {helpers}
    _report(ctx.name + '_run', n, VERSION, sum(h.V for h in ({helpers},)))
    ctx.sleep(float('inf'))"""


def _git(folder: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost", *args],
                   cwd=folder, check=True, capture_output=True)


def checkout_bursts(root: Path, probe: Probe, rounds: int, windows: list[float]) -> dict[str, Any]:
    """``git checkout`` between two commits that change a worker and the five helpers it
    imports, once per round on hosts with each ``--debounce`` window, in turn. Counts the
    runs each checkout caused (one is right) and those that saw old and new code mixed."""
    helpers = ", ".join(f"h{i}" for i in range(BURST_HELPERS))
    hosts: dict[float, tuple[Process, Path, str]] = {}
    runs = {window: 0 for window in windows}
    figures = {window: {"latency": [], "runs_per_checkout": [], "mixed": 0} for window in windows}
    try:
        for window in windows:
            name = f"burst{int(window * 1e6)}us"
            folder = root / name / "svc"
            folder.mkdir(parents=True)
            _git(folder, "init", "-q")
            for version in (1, 2):
                for i in range(BURST_HELPERS):
                    (folder / f"h{i}.py").write_text(f"V = {version}\n")
                body = BURST_BODY.format(helpers=helpers)
                (folder / f"{name}.py").write_text(worker_source(version, body=body))
                _git(folder, "add", "-A")
                _git(folder, "commit", "-qm", f"v{version}")
                _git(folder, "tag", f"v{version}")
            argv = [str(BIN / "hotreload"), "run", str(folder), "--debounce", repr(window)]
            hosts[window] = (Process(argv, probe.env(), root, root / f"{name}.log"), folder, name)
            runs[window] = 1
            probe.wait_for(f"{name}_run", 1)
        for round_ in range(rounds):
            target = 1 + round_ % 2
            for window, (_, folder, name) in hosts.items():
                began = time.monotonic()
                _git(folder, "checkout", "-q", f"v{target}")
                while True:  # runs until the one on the new code
                    runs[window] += 1
                    run = probe.wait_for(f"{name}_run", runs[window])
                    version, total = map(int, run.extra)
                    if (version, total) == (target, target * BURST_HELPERS):
                        break
                    figures[window]["mixed"] += version != total // BURST_HELPERS or total % BURST_HELPERS != 0
                figures[window]["latency"].append(run.at - began)
                probe.drain(quiet=0.3)  # any later run of the same checkout arrives now
                later = sum(1 for key in probe.first if key[0] == f"{name}_run" and key[1] > runs[window])
                runs[window] += later
                figures[window]["runs_per_checkout"].append(1 + later)
    finally:
        for process, _, _ in hosts.values():
            process.stop()
    return {
        f"{window * 1000:g} ms": {
            **summary(f["latency"]),
            "checkouts": rounds,
            "extra_runs": sum(f["runs_per_checkout"]) - rounds,
            "mixed_runs": f["mixed"],
        }
        for window, f in figures.items()
    }


# A worker that logs its CLOCK_MONOTONIC reading in each line, once a follower is attached.
MARKER = '''\
import os, time

def run(ctx):
    while not os.path.exists({go!r}) and not ctx.sleep(0.05):
        ctx.log.info("waiting for the follower")
    for n in range({lines}):
        if ctx.sleep({interval}):
            return
        ctx.log.info(f"mark {{n}} {{time.monotonic()!r}}")
    ctx.sleep(float("inf"))
'''


def follow(root: Path, lines: int, interval: float = 0.02) -> dict[str, Any]:
    """``hotreload logs -f``: from a worker's log call to its line read from the command's
    stdout (a pipe), alone in its host and next to a busy worker (``BUSY``)."""
    return {label: _follow_one(root / label, lines, interval, busy) for label, busy in
            (("quiet", False), ("busy", True))}


def _follow_one(root: Path, lines: int, interval: float, busy: bool) -> dict[str, Any]:
    folder = root / "svc"
    folder.mkdir(parents=True)
    go = root / "go"
    (folder / "marker.py").write_text(MARKER.format(go=str(go), lines=lines, interval=interval))
    if busy:
        (folder / "busy.py").write_text(BUSY)
    hotreload = str(BIN / "hotreload")
    host = Process([hotreload, "run", str(folder), "--no-guard"], dict(os.environ), root, root / "host.log")
    try:
        deadline = time.monotonic() + 30
        while subprocess.run([hotreload, "logs", "-d", str(folder), "marker"], capture_output=True).returncode:
            if time.monotonic() > deadline:
                raise TimeoutError("the marker worker never logged")
            time.sleep(0.05)
        follower = subprocess.Popen([hotreload, "logs", "-d", str(folder), "-f", "-n", "0", "--json", "marker"],
                                    stdout=subprocess.PIPE)
        delays = []
        try:
            assert follower.stdout is not None
            for raw in follower.stdout:
                arrived = time.monotonic()
                words = json.loads(raw)["message"].split()
                if words[0] == "waiting":
                    go.touch()
                elif words[0] == "mark":
                    delays.append(arrived - float(words[2]))
                    if len(delays) == lines:
                        break
        finally:
            follower.kill()
            follower.wait()
    finally:
        host.stop()
    return summary(delays)
