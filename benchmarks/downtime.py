"""Requests lost while a server's file is saved again and again: hotreload serving the
examples on a kept listening socket (``ctx.keep``), and ``uvicorn --reload`` — a process
restart — serving the same ASGI app.

Each subject gets the clients of ``tests/traffic.py``: 4 that open a new connection per
request and 1 that keeps its connection alive. Its file is saved ``saves`` times, 100-300 ms
apart, each save a new version of the greeting; then the clients run until every one of them
has been served the last version. Nothing is retried: a request counts as failed when it was
refused, reset, timed out or answered other than 200.
"""
from __future__ import annotations

import os
import random
import re
import shutil
import socket
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.harness import BIN, WAIT, Process, percentile, summary
from tests.traffic import Traffic

__all__ = ["downtime"]

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
HTTP_GREETING = "hello from hotreload"
ASGI_GREETING = "hello from hotreload and uvicorn"
SWAP_LINE = re.compile(r"reloaded \(generation \d+\) in ([0-9.]+) ms")


@dataclass
class Subject:
    name: str
    path: Path  # the file saved
    greeting: str  # the text each save replaces with "version N"
    argv: list[str]
    env: dict[str, str]
    port: int
    log: Path
    process: Process | None = None
    traffic: Traffic | None = None

    def save(self, version: int) -> None:
        self.path.write_text(self.source.replace(self.greeting, f"version {version}"))

    def __post_init__(self) -> None:
        self.source = self.path.read_text()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _copy(example: str, root: Path, label: str) -> Path:
    """The example's folder, copied to ``root/label/``; a folder named as under examples/."""
    folder = root / label / example
    shutil.copytree(EXAMPLES / example, folder)
    return folder


def _hotreload(root: Path, example: str, file: str, greeting: str, port_env: str) -> Subject:
    folder = _copy(example, root, f"hotreload_{example}")
    port = _free_port()
    argv = [str(BIN / "hotreload"), "run", str(folder), "--no-guard"]
    return Subject(f"hotreload {example}", folder / file, greeting, argv, {port_env: str(port)}, port,
                   root / f"hotreload_{example}.log")


def _uvicorn(root: Path) -> Subject:
    folder = _copy("asgi", root, "uvicorn")
    port = _free_port()
    argv = [str(BIN / "uvicorn"), "web:app", "--app-dir", str(folder), "--reload", "--reload-dir", str(folder),
            "--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
    return Subject("uvicorn --reload asgi", folder / "web.py", ASGI_GREETING, argv, {}, port, root / "uvicorn.log")



def _serving(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _wait(condition: Any, what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout} s")
        time.sleep(0.05)


def _run(root: Path, subjects: list[Subject], saves: int, rng: random.Random) -> dict[str, Any]:
    """Serve, load and save every subject side by side: each save of one subject is followed
    by one of the next, so a subject's saves are 100-300 ms apart and drift hits all alike."""
    try:
        for subject in subjects:
            subject.process = Process(subject.argv, {**os.environ, **subject.env}, root, subject.log)
        for subject in subjects:
            _wait(lambda s=subject: _serving(s.port), f"{subject.name} serving")
            subject.traffic = Traffic(subject.port)
            subject.traffic.start()
        time.sleep(1.0)  # the clients under way before the first save
        for version in range(1, saves + 1):
            for subject in subjects:
                subject.save(version)
                time.sleep(rng.uniform(0.1, 0.3) / len(subjects))
        newest = f"version {saves}\n"
        for subject in subjects:
            traffic = subject.traffic
            _wait(lambda t=traffic: all(t.bodies(c)[-1:] == [newest] for c in t.clients()),
                  f"{subject.name}: every client served the last version", timeout=60)
        for subject in subjects:
            subject.traffic.stop()
    finally:
        for subject in subjects:
            if subject.traffic is not None:
                subject.traffic.stop()
            if subject.process is not None:
                subject.process.stop()
    return {subject.name: _figures(subject, saves) for subject in subjects}


def _figures(subject: Subject, saves: int) -> dict[str, Any]:
    traffic = subject.traffic
    assert traffic is not None
    requests = traffic.snapshot()
    order = {subject.greeting: 0, **{f"version {n}": n for n in range(1, saves + 1)}}
    unknown = stale = 0
    for client in traffic.clients():
        last = 0
        for body in traffic.bodies(client):
            version = order.get(body.strip())
            if version is None:
                unknown += 1
                continue
            stale += version < last
            last = max(last, version)
    failed = [r for r in requests if r.error is not None]
    log = subject.log.read_text(errors="replace")
    swaps = [float(ms) for ms in SWAP_LINE.findall(log)]
    seconds = [r.seconds for r in requests]
    return {
        "saves": saves,
        "requests": len(requests),
        "failed": len(failed),
        "failed_percent": round(100 * len(failed) / len(requests), 2),
        "failures": dict(Counter(r.error.split(":")[0] for r in failed).most_common()),
        "keep_alive_connections": max((r.connection for r in requests if r.client.startswith("keep-alive")),
                                      default=0),
        "stale_or_unknown_responses": stale + unknown,
        "latency_ms": {**summary(seconds), "p99": round(percentile(seconds, 99) * 1000, 2)},
        "worst_served_ms": round(max((r.seconds for r in requests if r.error is None), default=0) * 1000, 1),
        # hotreload: code swaps; uvicorn: process restarts begun (a restart may end the one before)
        "reloads": len(swaps) if swaps else log.count("Reloading..."),
        "swap_ms": summary([ms / 1000 for ms in swaps]) if swaps else None,
    }


def downtime(root: Path, saves: int, seed: int = 1) -> dict[str, Any]:
    """The stdlib example alone, then the ASGI app under hotreload and under ``uvicorn
    --reload`` side by side."""
    rng = random.Random(seed)
    results = _run(root, [_hotreload(root, "http_server", "hello.py", HTTP_GREETING, "HELLO_PORT")], saves, rng)
    asgi = [_hotreload(root, "asgi", "web.py", ASGI_GREETING, "ASGI_PORT"), _uvicorn(root)]
    results.update(_run(root, asgi, saves, rng))
    return results
