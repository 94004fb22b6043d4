"""HTTP clients that keep a server on loopback busy and note every request: what it got back,
or how it failed, and how long it took. Standard library only.

Used by the zero-downtime tests (``test_downtime.py``) and by the ``downtime`` benchmark
(``python -m benchmarks.run downtime`` imports it as ``tests.traffic``).

    with Traffic(port, fresh=4, keep_alive=1) as traffic:
        ... save the server's file again and again ...
    traffic.failures        # [] when no request failed

A *fresh* client opens a new connection for every request (``Connection: close``); a
*keep-alive* client sends its requests one after the other on one HTTP/1.1 connection, and
opens a new one only when the server said ``Connection: close`` (as ``http.client`` does).
A request is failed when it raised (refused, reset, timed out) or its status is not 200.
Nothing is retried: a request sent on a connection the server dropped is a failure.
"""
from __future__ import annotations

import http.client
import threading
import time
from dataclasses import dataclass, field

__all__ = ["Request", "Traffic"]

TIMEOUT = 10.0  # seconds a request may take before it counts as failed


@dataclass(frozen=True)
class Request:
    client: str  # "fresh-0", "keep-alive-0"
    began: float  # time.monotonic()
    seconds: float
    body: str | None  # None when it failed
    error: str | None  # "ConnectionRefusedError: [Errno 111] …", "status 503"
    connection: int  # which connection of its client carried it (1, 2, …)


@dataclass
class Traffic:
    port: int
    fresh: int = 4
    keep_alive: int = 1
    path: str = "/"
    host: str = "127.0.0.1"
    requests: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._client, args=(f"fresh-{i}", False), name=f"traffic:fresh-{i}", daemon=True)
            for i in range(self.fresh)
        ] + [
            threading.Thread(target=self._client, args=(f"keep-alive-{i}", True), name=f"traffic:keep-alive-{i}",
                             daemon=True)
            for i in range(self.keep_alive)
        ]

    def __enter__(self) -> Traffic:
        self.start()
        return self

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Let each client finish the request it is on, and wait for them (a request is
        bounded by ``TIMEOUT``)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(TIMEOUT + 5)
            if thread.is_alive():
                raise RuntimeError(f"{thread.name} did not stop")

    @property
    def failures(self) -> list[Request]:
        return [r for r in self.snapshot() if r.error is not None]

    def snapshot(self) -> list[Request]:
        with self._lock:
            return list(self.requests)

    def bodies(self, client: str) -> list[str]:
        """What ``client`` got back, in order (failed requests left out)."""
        return [r.body for r in self.snapshot() if r.client == client and r.body is not None]

    def clients(self) -> list[str]:
        return [t.name.split(":", 1)[1] for t in self._threads]

    def _client(self, name: str, keep_alive: bool) -> None:
        conn: http.client.HTTPConnection | None = None
        connections = 0
        while not self._stop.is_set():
            if conn is None:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=TIMEOUT)
                connections += 1
            began = time.monotonic()
            body = error = None
            try:
                conn.request("GET", self.path, headers={} if keep_alive else {"Connection": "close"})
                response = conn.getresponse()
                text = response.read().decode()
                if response.status == 200:
                    body = text
                else:
                    error = f"status {response.status}"
                if response.will_close or not keep_alive:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as exc:
                error = f"{type(exc).__name__}: {exc}"
                conn.close()
                conn = None
            request = Request(name, began, time.monotonic() - began, body, error, connections)
            with self._lock:
                self.requests.append(request)
        if conn is not None:
            conn.close()
