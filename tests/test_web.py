"""The --http server in process: its pure rules, and a real server on loopback in front of a
stand-in host loop that answers (or does not) what reaches the inbox."""
from __future__ import annotations

import http.client
import json
import random
import socket
import subprocess
import sys
import threading
import time
import types
from typing import Any, Iterator

import pytest
from conftest import wait_for
from prometheus_client.parser import text_string_to_metric_families

from hotreload import config, metrics, web
from hotreload.inbox import Inbox
from hotreload.journal import Journal
from hotreload.log import logger
from hotreload.records import Command, Durations

pytestmark = pytest.mark.timeout(60)

TOKEN = "csrf-token"


def status(*workers: dict[str, Any], **host: Any) -> dict[str, Any]:
    rows = [{"name": "w", "state": "running", "held": False, "restarts": 0, "crashes": 0, "reloads": {},
             "reload_seconds": {"bounds": [0.01, 0.1], "counts": [], "total": 0.0}, **w} for w in workers]
    return {"uptime": 1.5, "starting": False, "stopping": False, "rss_bytes": 40e6, "threads": 9, "workers": rows,
            **host}


# --- pure rules -----------------------------------------------------------------------------


@pytest.mark.parametrize("text, address", [
    ("8377", ("127.0.0.1", 8377)), ("0.0.0.0:80", ("0.0.0.0", 80)), ("[::1]:0", ("::1", 0)),
    (":9", ("127.0.0.1", 9)), ("localhost:65535", ("localhost", 65535)), (8377, ("127.0.0.1", 8377)),
])
def test_an_http_address_is_host_and_port_with_loopback_by_default(text, address):
    assert config.http_address(text) == address


@pytest.mark.parametrize("text", ["", "x", "1:65536", "a b:1", "-1", True, 1.5, "h:"])
def test_a_bad_http_address_is_refused_saying_what_is_allowed(text):
    with pytest.raises(TypeError, match=r"\[HOST:\]PORT"):
        config.http_address(text)


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("127.1.2.3", True), ("::1", True), ("localhost", True),
    ("0.0.0.0", False), ("::", False), ("10.0.0.1", False), ("example.com", False),
])
def test_loopback_addresses(host, loopback):
    assert config.is_loopback(host) is loopback


@pytest.mark.parametrize("method, target, expected", [
    ("GET", "/healthz", "/healthz"), ("HEAD", "/metrics", "/metrics"), ("GET", "/readyz?x=1", "/readyz"),
    ("POST", "/workers/ticker/restart", ("action", "ticker", "restart")),
    ("POST", "/all/stop", ("action", None, "stop")),
    ("GET", "/workers/ticker/restart", 405), ("POST", "/healthz", 405), ("DELETE", "/metrics", 405),
    ("POST", "/workers/ticker/explode", 404), ("GET", "/nope", 404), ("POST", "/workers//stop", 404),
    ("GET", "/logs?a=1&" + "b=2&" * 20, 400),
])
def test_routes_actions_are_post_only_and_reads_get_only(method, target, expected):
    found = web.route(method, target)
    if isinstance(expected, int):
        assert isinstance(found, tuple) and found[0] == expected
    elif isinstance(expected, tuple):
        assert (found.kind, found.name, found.action) == expected
    else:
        assert found.kind == expected


def refused(target: str, headers: dict[str, str], secret: str | None = None, loopback: bool = True,
            address: tuple[str, int] = ("127.0.0.1", 8377)) -> Any:
    found = web.route("POST" if "/stop" in target else "GET", target)
    outcome = web.refusal(found, headers, TOKEN, secret, loopback, address)
    return None if outcome is None else outcome[0]


GOOD = {"Host": "127.0.0.1:8377", web.CSRF_HEADER: TOKEN}


@pytest.mark.parametrize("target, headers, secret, loopback, status", [
    ("/all/stop", GOOD, None, True, None),
    ("/all/stop", {**GOOD, "Origin": "http://127.0.0.1:8377"}, None, True, None),
    ("/all/stop", {**GOOD, "Host": "localhost:8377", "Origin": "http://localhost:8377"}, None, True, None),
    ("/all/stop", {"Host": "127.0.0.1:8377"}, None, True, 403),  # no CSRF token
    ("/all/stop", {**GOOD, web.CSRF_HEADER: "guess"}, None, True, 403),
    ("/all/stop", {**GOOD, "Origin": "http://evil.example"}, None, True, 403),
    ("/all/stop", {**GOOD, "Origin": "null"}, None, True, 403),
    ("/all/stop", {**GOOD, "Host": "evil.example:8377", "Origin": "http://evil.example:8377"}, None, True, 403),
    ("/all/stop", {**GOOD, "Host": "127.0.0.1:1"}, None, True, 403),
    ("/logs", {"Host": "rebound.example:8377"}, None, True, 403),
    ("/all/stop", {**GOOD, "Host": "10.0.0.5:8377"}, None, False, 403),  # not loopback, no secret: off
    ("/logs", {"Host": "10.0.0.5:8377"}, None, False, 403),
    ("/logs", {"Host": "10.0.0.5:8377"}, "s3cret", False, 401),
    ("/logs", {"Host": "10.0.0.5:8377", "Authorization": "Bearer wrong"}, "s3cret", False, 401),
    ("/logs", {"Host": "10.0.0.5:8377", "Authorization": "Bearer s3cret"}, "s3cret", False, None),
    ("/all/stop", {**GOOD, "Host": "10.0.0.5:8377", "Authorization": "Bearer s3cret"}, "s3cret", False, None),
    ("/all/stop", {"Host": "10.0.0.5:8377", "Authorization": "Bearer s3cret"}, "s3cret", False, 403),
    ("/healthz", {}, None, False, None), ("/metrics", {"Host": "evil.example"}, "s3cret", False, None),
    ("/readyz", {"Origin": "http://evil.example"}, None, True, None),
    # another page (another port of this machine: same-site) may send requests, though not read them:
    # it must not hold the dashboards' streams, nor make the host tail its logs for nothing
    ("/stream", {"Host": "127.0.0.1:8377", "Sec-Fetch-Site": "same-site"}, None, True, 403),
    ("/stream", {"Host": "127.0.0.1:8377", "Sec-Fetch-Site": "cross-site"}, None, True, 403),
    ("/logs", {"Host": "127.0.0.1:8377", "Origin": "http://127.0.0.1:9999"}, None, True, 403),
    ("/csrf", {"Host": "127.0.0.1:8377", "Sec-Fetch-Site": "same-site"}, None, True, 403),
    ("/all/stop", {**GOOD, "Sec-Fetch-Site": "same-site"}, None, True, 403),
    ("/stream", {"Host": "127.0.0.1:8377", "Sec-Fetch-Site": "same-origin"}, None, True, None),
    ("/stream", {"Host": "127.0.0.1:8377", "Sec-Fetch-Site": "none"}, None, True, None),  # typed in the address bar
    ("/csrf", {"Host": "127.0.0.1:8377", "Origin": "http://127.0.0.1:8377"}, None, True, None),
    ("/metrics", {"Sec-Fetch-Site": "cross-site"}, None, True, None),
])
def test_guarded_paths_need_loopback_or_the_secret_and_actions_the_csrf_token_from_this_origin(
        target, headers, secret, loopback, status):
    assert refused(target, headers, secret, loopback) == status


@pytest.mark.parametrize("address, host, status", [
    (("127.1.2.3", 8377), "127.1.2.3:8377", None),  # any 127/8 address is loopback, named as bound
    (("127.1.2.3", 8377), "127.0.0.1:8377", None),
    (("127.1.2.3", 8377), "127.1.2.4:8377", 403),
    (("127.0.0.1", 80), "127.0.0.1", None),  # a browser leaves out port 80
    (("127.0.0.1", 80), "localhost", None),
    (("127.0.0.1", 8377), "127.0.0.1", 403),
    (("::1", 8377), "[::1]:8377", None),
])
def test_the_host_header_a_browser_sends_for_the_bound_loopback_address_is_taken(address, host, status):
    headers = {"Host": host, "Origin": f"http://{host}", web.CSRF_HEADER: TOKEN}
    assert refused("/all/stop", headers, address=address) == status


def test_with_a_secret_a_dashboard_behind_a_proxy_that_ends_tls_may_act():
    """Its Origin is https://...; the bearer secret, which no other page can send, is the proof."""
    headers = {"Host": "pods.example", "Origin": "https://pods.example", "Sec-Fetch-Site": "same-origin",
               "Authorization": "Bearer s3cret", web.CSRF_HEADER: TOKEN}
    assert refused("/all/stop", headers, "s3cret", False, ("0.0.0.0", 8377)) is None
    assert refused("/stream", headers, "s3cret", False, ("0.0.0.0", 8377)) is None
    assert refused("/stream", {**headers, "Authorization": "Bearer no"}, "s3cret", False, ("0.0.0.0", 8377)) == 401
    assert refused("/all/stop", {**headers, web.CSRF_HEADER: "no"}, "s3cret", False, ("0.0.0.0", 8377)) == 403


def test_ready_means_every_worker_that_should_run_runs():
    assert web.unready(status({"name": "a"}, {"name": "b", "state": "exited"},
                              {"name": "c", "state": "stopped", "held": True})) == []
    assert web.unready(status({"name": "a", "state": "backoff"}, {"name": "b", "state": "fatal"},
                              {"name": "c", "state": "stopped"}, {"name": "d"})) == [
        {"name": "a", "state": "backoff"}, {"name": "b", "state": "fatal"}, {"name": "c", "state": "stopped"}]
    assert web.unready(status(starting=True)) == [{"name": "host", "state": "starting"}]
    assert web.unready(status({"name": "a", "state": "stopping"}, stopping=True)) == [
        {"name": "host", "state": "stopping"}, {"name": "a", "state": "stopping"}]


def test_durations_count_each_one_under_the_first_bound_it_does_not_exceed():
    tally = Durations(bounds=(0.01, 0.1))
    for seconds in (0.005, 0.01, 0.05, 3.0):
        tally.add(seconds)
    assert tally.counts == [2, 1, 1]
    assert tally.total == pytest.approx(3.065)


def families(text: str) -> dict[str, Any]:
    return {family.name: family for family in text_string_to_metric_families(text)}


def test_metrics_expose_the_documented_series_per_worker():
    answer = status({"name": "a", "restarts": 3, "crashes": 2, "reloads": {"ok": 4, "failed": 1}, "cpu_seconds": 1.25,
                     "reload_seconds": {"bounds": [0.01, 0.1], "counts": [3, 1, 0], "total": 0.07}},
                    {"name": "b", "state": "fatal"}, rss_bytes=5e6, threads=7)
    found = families(metrics.exposition(answer).decode())
    value = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in found.values() for s in f.samples}
    assert value[("hotreload_worker_up", (("worker", "a"),))] == 1
    assert value[("hotreload_worker_up", (("worker", "b"),))] == 0
    assert value[("hotreload_worker_state", (("state", "fatal"), ("worker", "b")))] == 1
    assert value[("hotreload_worker_state", (("state", "running"), ("worker", "b")))] == 0
    assert value[("hotreload_worker_restarts_total", (("worker", "a"),))] == 3
    assert value[("hotreload_worker_crashes_total", (("worker", "a"),))] == 2
    assert value[("hotreload_worker_cpu_seconds_total", (("worker", "a"),))] == 1.25
    assert value[("hotreload_worker_reloads_total", (("result", "ok"), ("worker", "a")))] == 4
    assert value[("hotreload_worker_reloads_total", (("result", "failed"), ("worker", "b")))] == 0
    assert value[("hotreload_reload_duration_seconds_bucket", (("le", "0.1"), ("worker", "a")))] == 4
    assert value[("hotreload_reload_duration_seconds_bucket", (("le", "+Inf"), ("worker", "b")))] == 0
    assert value[("hotreload_reload_duration_seconds_sum", (("worker", "a"),))] == 0.07
    assert value[("hotreload_host_rss_bytes", ())] == 5e6
    assert value[("hotreload_host_threads", ())] == 7
    assert value[("hotreload_host_uptime_seconds", ())] == 1.5


def test_without_http_neither_the_server_nor_prometheus_client_is_imported():
    code = ("import sys, hotreload.cli, hotreload.host, hotreload.core, hotreload.control; "
            "print(sorted(m for m in ('hotreload.web', 'hotreload.metrics', 'http.server', 'prometheus_client') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "[]", out.stderr


# --- a real server, a stand-in loop -----------------------------------------------------------


class Loop:
    """Answers the Commands the inbox gets (while ``answering``), as core would, and keeps
    every message that reached it."""

    def __init__(self) -> None:
        self.host = types.SimpleNamespace(inbox=Inbox(), journal=Journal(), log=logger.bind(worker="host"))
        self.answering = True
        self.status = status({"name": "ticker"})
        self.received: list[Any] = []
        self.thread = threading.Thread(target=self._run, name="test:loop")
        self.thread.start()

    def _run(self) -> None:
        while True:
            message = self.host.inbox.get(None)
            if message == "stop":
                return
            if message is None:
                continue
            self.received.append(message)
            if self.answering and isinstance(message, Command) and message.take():
                message.answer({"ok": True, **self.status} if message.cmd in ("status", "ping")
                               else {"ok": True, "results": {n: message.cmd for n in message.names}})

    def stop(self) -> None:
        self.host.inbox.put("stop")
        self.thread.join(5)


@pytest.fixture
def served() -> Iterator[tuple[web.WebServer, Loop]]:
    loop = Loop()
    server = web.WebServer(loop.host, ("127.0.0.1", 0))
    server.start()
    yield server, loop
    server.stop()
    loop.stop()
    assert not [t.name for t in threading.enumerate() if t.name.startswith("hotreload:http")]


def request(server: web.WebServer, method: str, path: str, headers: dict[str, str] | None = None,
            body: bytes | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.address[1], timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        reply = conn.getresponse()
        return reply.status, reply.read()
    finally:
        conn.close()


def raw(server: web.WebServer, data: bytes, wait: float = 10.0) -> bytes:
    """What the server answers ``data`` with, until it closes the connection."""
    with socket.create_connection(("127.0.0.1", server.address[1]), timeout=wait) as conn:
        try:
            conn.sendall(data)
            conn.shutdown(socket.SHUT_WR)
        except OSError:  # it closed first: a request too large
            pass
        chunks = []
        try:
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except ConnectionResetError:
            pass
        return b"".join(chunks)


def test_healthz_readyz_and_metrics_come_from_the_loops_answer(served):
    server, loop = served
    assert request(server, "GET", "/healthz") == (200, b'{"ok": true}\n')
    assert request(server, "GET", "/readyz")[0] == 200
    loop.status = status({"name": "ticker", "state": "backoff"})
    code, body = request(server, "GET", "/readyz")
    assert (code, json.loads(body)["not_running"]) == (503, [{"name": "ticker", "state": "backoff"}])
    code, body = request(server, "GET", "/metrics")
    assert code == 200 and "hotreload_worker_up" in families(body.decode())
    assert [m.cmd for m in loop.received] == ["ping", "ping", "ping", "status"]  # probes: the light command


def test_healthz_fails_within_a_second_when_the_loop_does_not_answer_and_the_command_is_never_acted_on(served):
    server, loop = served
    loop.answering = False
    started = time.monotonic()
    code, body = request(server, "GET", "/healthz")
    assert code == 503 and b"did not answer within 1 s" in body
    assert time.monotonic() - started < web.LIVENESS_TIMEOUT + 1.0
    assert loop.received[0].take() is False  # expired: a late loop does not act on it


def test_an_action_with_the_token_reaches_the_loop_and_one_without_does_not(served):
    server, loop = served
    host = {"Host": f"127.0.0.1:{server.address[1]}"}
    token = json.loads(request(server, "GET", "/csrf", host)[1])["token"]
    assert request(server, "POST", "/workers/ticker/restart", host)[0] == 403
    assert request(server, "POST", "/workers/ticker/restart", {**host, web.CSRF_HEADER: token,
                                                               "Origin": "http://evil.example"})[0] == 403
    assert loop.received == []
    code, body = request(server, "POST", "/workers/ticker/restart", {**host, web.CSRF_HEADER: token})
    assert (code, json.loads(body)) == (200, {"ok": True, "results": {"ticker": "restart"}})
    code, body = request(server, "POST", "/all/stop", {**host, web.CSRF_HEADER: token})
    assert json.loads(body)["results"] == {"ticker": "stop"}
    assert [(m.cmd, m.names) for m in loop.received] == [("restart", ["ticker"]), ("status", []),
                                                          ("stop", ["ticker"])]


MALFORMED = [
    b"GARBAGE\r\n\r\n",
    b"GET /healthz HTTP/9.9\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\n" + b"X: y\r\n" * 200 + b"\r\n",  # too many headers
    b"GET /healthz HTTP/1.1\r\nX: " + b"a" * 70000 + b"\r\n\r\n",  # one huge header
    b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n",  # a huge request line
    b"POST /all/stop HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 99999999\r\n\r\n",
    b"\x00\xff\xfe\r\n\r\n",
    b"FROB /healthz HTTP/1.1\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nContent-Length: \xb2\r\n\r\n",  # a digit to str.isdigit, not to int()
    b"POST /all/stop HTTP/1.1\r\nContent-Length: \xd9\xa3\r\n\r\n",  # Arabic-Indic 3, in UTF-8
]


@pytest.mark.parametrize("data", MALFORMED, ids=range(len(MALFORMED)))
def test_a_malformed_or_oversized_request_gets_a_4xx_and_never_reaches_the_loop(served, data):
    server, loop = served
    answer = raw(server, data)
    assert answer.startswith(b"HTTP/1.0 4"), answer[:80]
    assert loop.received == []


@pytest.mark.parametrize("lines", ["%C2%B2", "%D9%A3", "-1", "1.5", "x"])
def test_logs_and_events_refuse_a_count_of_lines_that_is_not_ascii_digits_with_a_400(served, lines):
    server, _ = served
    host = {"Host": f"127.0.0.1:{server.address[1]}"}
    for path in ("/logs", "/events"):
        code, body = request(server, "GET", f"{path}?lines={lines}", host)
        assert (code, json.loads(body)["error"]) == (400, "lines must be a whole number >= 0"), path
    assert request(server, "GET", "/events?lines=2", host)[0] == 200


def test_fuzzed_requests_never_reach_the_loop_nor_stop_the_server(served):
    server, loop = served
    rng = random.Random(15)
    for _ in range(200):
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 600)))
        if rng.random() < 0.5:  # something closer to HTTP, mangled
            data = b"POST /workers/x/restart HTTP/1.1\r\n" + data + b"\r\n\r\n"
        answer = raw(server, data)
        assert not answer or answer.split()[1][:1] == b"4", (data[:60], answer[:80])
    assert loop.received == []
    assert request(server, "GET", "/healthz")[0] == 200


def test_a_request_that_never_finishes_is_cut_off_at_the_deadline(served, monkeypatch):
    server, loop = served
    monkeypatch.setattr(web, "REQUEST_TIMEOUT", 0.5)
    with socket.create_connection(("127.0.0.1", server.address[1]), timeout=10) as conn:
        started = time.monotonic()
        conn.sendall(b"GET /healthz HTTP/1.1\r\n")
        closed = False
        while time.monotonic() - started < 5:  # slowloris: a byte now and then, never the end
            try:
                conn.sendall(b"X")
                conn.settimeout(0.2)
                if conn.recv(100) == b"":
                    closed = True
                    break
            except socket.timeout:
                continue
            except OSError:
                closed = True
                break
        assert closed and time.monotonic() - started < 0.5 + 1.0
    assert loop.received == []


def test_connections_beyond_the_cap_are_refused_at_once(served, monkeypatch):
    server, _ = served
    monkeypatch.setattr(web, "MAX_CONNECTIONS", 2)
    monkeypatch.setattr(web, "REQUEST_TIMEOUT", 3.0)
    idle = [socket.create_connection(("127.0.0.1", server.address[1]), timeout=10) for _ in range(2)]
    try:
        wait_for(lambda: len(server.clients) == 2, 5, "the two connections to be accepted")
        answer = raw(server, b"GET /healthz HTTP/1.1\r\n\r\n")
        assert answer.startswith(b"HTTP/1.0 503")
    finally:
        for conn in idle:
            conn.close()


def test_stop_ends_a_client_waiting_on_a_loop_that_is_gone(served):
    server, loop = served
    loop.answering = False
    results: list[Any] = []
    client = threading.Thread(target=lambda: results.append(request(server, "GET", "/metrics")))
    client.start()
    wait_for(lambda: loop.received, 5, "the scrape to reach the loop")
    started = time.monotonic()
    server.stop()
    client.join(5)
    assert time.monotonic() - started < web.JOIN_TIMEOUT and results[0][0] == 503


# --- what core counts, in process -------------------------------------------------------------


def test_core_counts_crashes_reloads_and_a_stop_on_request_in_the_status_the_server_reads(core_host):
    from conftest import pump

    from hotreload import core
    from hotreload.records import Changes

    crashing = "BACKOFF = {'initial': 60, 'jitter': 0}\ndef run(ctx):\n    raise RuntimeError('boom')\n"
    sleeping = "def run(ctx):\n    while not ctx.sleep(60):\n        pass\n"
    host = core_host({"bad.py": crashing, "good.py": sleeping})
    pump(host, lambda: host.workers["bad"].state == "backoff", "the crash")

    def ask(cmd: str, *names: str) -> dict[str, Any]:
        message = Command(cmd, list(names))
        core.handle(host, message)
        return message.reply

    def saved(source: str) -> None:
        (host.options.folder / "good.py").write_text(source)
        core.handle(host, Changes(frozenset([str(host.options.folder / "good.py")])))
        pump(host, lambda: host.swap is None and host.job is None, "the swap to end")

    saved(sleeping + "# 2\n")
    saved(sleeping + "oops(\n")
    saved(sleeping.replace("ctx.sleep(60)", "ctx.sleep(61)") + "import nowhere_at_all\n")
    rows = {row["name"]: row for row in ask("status")["workers"]}
    assert rows["bad"]["crashes"] == 1 and rows["good"]["crashes"] == 0
    assert rows["good"]["reloads"] == {"ok": 1, "failed": 2}
    assert sum(rows["good"]["reload_seconds"]["counts"]) == 1 and rows["good"]["reload_seconds"]["total"] > 0
    assert web.unready(ask("status")) == [{"name": "bad", "state": "backoff"}]
    ask("stop", "bad")
    assert web.unready(ask("status")) == []  # stopped on request: not expected to run
    ask("start", "bad")
    assert not host.workers["bad"].held


# --- the dashboard and its stream -------------------------------------------------------------


class Stream:
    """A /stream client: its server-sent events, one ``(kind, data)`` at a time."""

    def __init__(self, server: web.WebServer, path: str = "/stream", headers: dict[str, str] | None = None) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", server.address[1], timeout=10)
        self.conn.request("GET", path, headers={"Host": f"127.0.0.1:{server.address[1]}", **(headers or {})})
        self.reply = self.conn.getresponse()

    def next(self) -> tuple[str, Any]:
        kind, data = "", ""
        while True:
            line = self.reply.fp.readline().decode()
            if line == "":
                raise EOFError("the stream ended")
            if line == "\n" and kind:
                return kind, json.loads(data)
            if line.startswith("event: "):
                kind = line[7:].strip()
            elif line.startswith("data: "):
                data += line[6:].strip()

    def until(self, kind: str, check: Any = lambda data: True) -> Any:
        while True:
            got, data = self.next()
            if got == kind and check(data):
                return data

    def close(self) -> None:
        self.reply.close()  # the socket stays open while the reply holds it
        self.conn.close()


def test_the_dashboard_is_one_page_with_its_token_and_a_policy_that_runs_only_its_own_script(served):
    server, _ = served
    host = {"Host": f"127.0.0.1:{server.address[1]}"}
    conn = http.client.HTTPConnection("127.0.0.1", server.address[1], timeout=10)
    conn.request("GET", "/", headers=host)
    reply = conn.getresponse()
    page = reply.read().decode()
    conn.close()
    assert reply.status == 200 and reply.getheader("Content-Type") == "text/html; charset=utf-8"
    assert f'<meta name="hotreload-csrf" content="{server.csrf}">' in page
    assert page.count("<script>") == 1 and "src=" not in page and "http://" not in page and "https://" not in page
    policy = reply.getheader("Content-Security-Policy")
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy and "connect-src 'self'" in policy
    assert web.page("x")[1] == policy  # the script's hash: the only script that may run
    assert reply.getheader("X-Frame-Options") == "DENY"
    # a Host that is not loopback (DNS rebinding) gets the page without the token
    status_code, body = request(server, "GET", "/", {"Host": "evil.example:80"})
    assert status_code == 200 and server.csrf not in body.decode()


def test_a_stream_starts_with_the_status_then_what_was_journalled_and_pushes_each_new_line(served, monkeypatch):
    server, loop = served
    monkeypatch.setattr(web, "STATUS_EVERY", 3600.0)  # no periodic status among the lines this test reads
    journal = loop.host.journal
    journal.add_event({"event": "state", "worker": "ticker", "state": "running", "previous": "starting", "note": ""})
    journal.add_record({"time": "t", "level": "INFO", "worker": "ticker", "message": "old line"}, time.time())
    journal.add_record({"time": "t", "level": "INFO", "worker": "other", "message": "not followed"}, time.time())
    stream = Stream(server, "/stream?worker=ticker")
    try:
        assert stream.reply.status == 200 and stream.reply.getheader("Content-Type") == "text/event-stream"
        assert stream.next()[0] == "status"
        assert stream.next() == ("event", {**json.loads(journal.tail("events", [], 1)[0][0])})
        assert stream.next()[1]["message"] == "old line"
        journal.add_record({"time": "t", "level": "INFO", "worker": "other", "message": "still not"}, time.time())
        journal.add_record({"time": "t", "level": "INFO", "worker": "ticker", "message": "new line"}, time.time())
        assert stream.next() == ("log", {"time": "t", "level": "INFO", "worker": "ticker", "message": "new line"})
        asked = len(loop.received)
        journal.add_event({"event": "crash", "worker": "ticker", "exception": "E", "error": "E: x", "file": None,
                           "line": None})
        assert stream.next()[1]["event"] == "crash"
        assert stream.next()[0] == "status"  # an event changed it: pushed again at once, or soon
        assert len(loop.received) == asked + 1
    finally:
        stream.close()


def test_a_stream_for_a_worker_nobody_knows_is_a_404_and_head_sends_no_body(served):
    server, _ = served
    host = {"Host": f"127.0.0.1:{server.address[1]}"}
    assert request(server, "GET", "/stream?worker=nobody", host)[0] == 404
    assert request(server, "HEAD", "/stream", host) == (200, b"")


def test_a_stream_is_guarded_like_the_logs(served):
    server, _ = served
    assert request(server, "GET", "/stream", {"Host": "evil.example:80"})[0] == 403
    server.loopback = False
    assert request(server, "GET", "/stream", {"Host": f"127.0.0.1:{server.address[1]}"})[0] == 403


def test_stop_ends_every_stream_at_once_and_a_closed_page_frees_its_stream(served, monkeypatch):
    server, loop = served
    monkeypatch.setattr(web, "MAX_STREAMS", 2)
    first = Stream(server)
    assert first.next()[0] == "status"
    second = Stream(server)
    assert second.next()[0] == "status"
    third = Stream(server)
    assert third.reply.status == 503  # at most MAX_STREAMS
    third.close()
    second.close()  # the page went: its thread finds out at its next write, the status push
    wait_for(lambda: len(server.streams) == 1, what="the closed stream's end", timeout=web.STATUS_EVERY * 5)
    server.stop()
    with pytest.raises(EOFError):
        while True:
            first.next()
    first.close()


def test_stop_cuts_off_a_stream_whose_client_stopped_reading(served):
    server, loop = served
    port = server.address[1]
    with socket.socket() as client:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # full after a few writes
        client.connect(("127.0.0.1", port))
        client.sendall(f"GET /stream HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        wait_for(lambda: server.streams, what="the stream")

        def stuck() -> bool:  # its queue overflows: its thread is blocked writing, not taking
            for _ in range(20):
                loop.host.journal.add_event({"event": "state", "worker": "w", "state": "running",
                                             "previous": "starting", "note": "x" * 50_000})
            return any(f.dropped for f in loop.host.journal._followers)

        wait_for(stuck, what="the stream's thread blocked on the full connection")
        server.stop()
        assert not [t.name for t in threading.enumerate() if t.name.startswith("hotreload:http")]


def test_a_closed_page_gives_its_place_to_the_next_page_at_once(served, monkeypatch):
    server, _ = served
    monkeypatch.setattr(web, "MAX_STREAMS", 2)
    monkeypatch.setattr(web, "STATUS_EVERY", 3600.0)  # no status push finds the closed page
    streams = [Stream(server), Stream(server)]
    for stream in streams:
        assert stream.next()[0] == "status"
    for _ in range(5):  # a person going down the worker list: each choice a new stream, the last one closed
        streams.pop(0).close()
        streams.append(Stream(server))
        assert streams[-1].reply.status == 200
        assert streams[-1].next()[0] == "status"
    wait_for(lambda: len([t for t in threading.enumerate() if t.name == "hotreload:http-client"]) == 2,
             what="the closed pages' threads to end")
    for stream in streams:
        stream.close()


def test_an_event_goes_out_before_the_status_it_asks_for_is_answered(served, monkeypatch):
    server, loop = served
    monkeypatch.setattr(web, "STATUS_GAP", 0.0)  # every event asks for a status at once
    stream = Stream(server)
    try:
        assert stream.next()[0] == "status"
        loop.answering = False
        monkeypatch.setattr(web, "LIVENESS_TIMEOUT", 60.0)  # the status that follows takes a minute
        loop.host.journal.add_event({"event": "command", "worker": None, "command": "stop", "names": ["w"]})
        assert stream.next()[1]["event"] == "command"  # within the socket's 10 s: not after the status
    finally:
        stream.close()


def test_probes_of_a_real_loop_read_no_cpu_keep_no_sample_and_journal_nothing(core_host):
    """``status --watch`` shows CPU% since a sample kept from an earlier ``status``: probes
    every few seconds, asking the full status, would keep samples of their own and move it."""
    from conftest import WAIT, pump

    crashing = "BACKOFF = {'initial': 60, 'jitter': 0}\ndef run(ctx):\n    raise RuntimeError('boom')\n"
    sleeping = "def run(ctx):\n    while not ctx.sleep(60):\n        pass\n"
    host = core_host({"bad.py": crashing, "good.py": sleeping})
    pump(host, lambda: host.workers["bad"].state == "backoff", "the crash")
    events_before = host.journal.tail("events", [], None)[0]
    server = web.WebServer(host, ("127.0.0.1", 0))
    server.start()
    answers: list[tuple[int, bytes]] = []

    def probe() -> None:
        try:
            answers.extend([request(server, "GET", path) for path in ("/healthz", "/readyz") * 10])
        finally:
            host.inbox.put(None)  # wakes the pump to see it

    client = threading.Thread(target=probe)
    try:
        client.start()
        pump(host, lambda: len(answers) == 20, "the probes to be answered", timeout=WAIT)
    finally:
        client.join(WAIT)
        server.stop()
    assert set(answers[0::2]) == {(200, b'{"ok": true}\n')}
    assert {(code, json.loads(body)["not_running"][0]["name"]) for code, body in answers[1::2]} == {(503, "bad")}
    assert host.cpu_samples == []
    assert host.journal.tail("events", [], None)[0] == events_before


def test_stop_cuts_off_a_connection_still_sending_its_request_and_joins_its_thread(served):
    server, loop = served
    with socket.create_connection(("127.0.0.1", server.address[1]), timeout=10) as conn:
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and no end of the headers
        wait_for(lambda: server.clients, what="the connection's thread")
        server.stop()  # before, its thread read on for REQUEST_TIMEOUT, past stop's join
        assert not [t.name for t in threading.enumerate() if t.name.startswith("hotreload:http")]
        reply = conn.recv(1024)  # its headers ended there: the server is going, a 503 at most
        assert reply == b"" or reply.startswith(b"HTTP/1.0 503 "), reply
    assert loop.received == []
