"""``hotreload run --http [HOST:]PORT``: probes, metrics and worker actions over HTTP.

Served by the standard library's ``http.server.ThreadingHTTPServer``: one listening thread,
``hotreload:http``, and a thread per connection (at most ``MAX_CONNECTIONS``). Nothing here
touches the host's records: every answer about the workers comes from the host loop, asked
as the control socket asks it, with a ``records.Command`` in the inbox and a deadline
(``/healthz`` proves the loop answers that way). So an idle host with ``--http`` and no
client wakes no thread: the listening thread blocks in ``select`` without a timeout, and is
woken to stop by shutting its socket down.

``/`` is the dashboard (``dashboard.html``, one page with its script and style inline), fed
by ``/stream``: server-sent events of the status (at once, after each event, and every
``STATUS_EVERY`` seconds while the page is open, for CPU%), the journal's events and the
chosen worker's log lines, pushed as the journal gets them. A stream is a connection's
thread asleep on an ``Event`` the journal sets; it ends when the client goes (its next write
fails) or the server stops (which sets it, and shuts the connection down: a thread blocked
writing to a client that stopped reading is let go at once). When ``MAX_STREAMS`` are open, a
new page first ends those whose client closed (a page left or chose another worker), which
would otherwise hold their place until their next write.

A request must arrive whole within ``REQUEST_TIMEOUT`` and be at most ``MAX_REQUEST`` bytes,
or the connection gets a 4xx (or is closed) before anything reaches the host loop. Read-only
paths (``/healthz``, ``/readyz``, ``/metrics``) need nothing; the others are guarded
(``refusal``): actions are POST only with the per-host CSRF token and a same-origin
``Origin``; on a non-loopback address actions and logs need the ``--http-token`` secret, and
without one they are off.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import io
import json
import re
import secrets
import select
import socket
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping
from urllib.parse import parse_qs, unquote, urlsplit

from hotreload import journal, metrics
from hotreload.config import is_loopback
from hotreload.records import Command
from hotreload.states import EXITED, RUNNING

if TYPE_CHECKING:
    from hotreload.records import Host

__all__ = ["Route", "WebServer", "loopback_hosts", "page", "refusal", "route", "shown", "sse", "unready"]

REQUEST_TIMEOUT = 5.0  # seconds a request gets to arrive whole; a slower one is cut off
MAX_REQUEST = 32 * 1024  # bytes of request line, headers and body together
MAX_BODY = 1024  # bytes of body an action may carry (it needs none)
MAX_CONNECTIONS = 64  # served at once; more get a 503 at once
LIVENESS_TIMEOUT = 1.0  # seconds the host loop gets to answer /healthz and /readyz
ANSWER_TIMEOUT = 5.0  # seconds it gets to take an action or a /metrics snapshot; later, not done
ANSWER_GRACE = 2.0  # seconds a command it took gets to be answered
JOIN_TIMEOUT = 2.0
LINGER_TIMEOUT = 0.5  # seconds a refused client still sending gets to stop, at most LINGER_READS reads
LINGER_READS = 16
MAX_STREAMS = 16  # dashboards open at once; the rest of MAX_CONNECTIONS stays for probes
STATUS_EVERY = 2.0  # seconds between status pushes to an open dashboard (its CPU% moves)
STATUS_GAP = 0.25  # seconds at least between two pushes after events (a crash loop is many)
STREAM_EVENTS = 100  # events a new stream starts with
STREAM_LINES = 200  # log lines of the chosen worker a new stream starts with
READ_ONLY = ("/", "/healthz", "/readyz", "/metrics")
GUARDED_READS = ("/csrf", "/logs", "/events", "/stream")  # a secret's: the CSRF token, what workers logged
CSRF_HEADER = "X-Hotreload-CSRF"
NOT_DONE = "not done: the host was busy or is stopping; try again"
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
DASHBOARD = Path(__file__).with_name("dashboard.html")
CSRF_MARK = "{{csrf}}"  # where the page carries the token, when the request may have it
ACTION_PATH = re.compile(r"/(?:workers/(?P<name>[^/]{1,200})|(?P<all>all))/(?P<action>restart|stop|start)")


class Route:
    """What a request asks for: ``kind`` one of READ_ONLY, GUARDED_READS, ``action``;
    for an action, the worker's name (None: all) and the verb."""

    def __init__(self, kind: str, name: str | None = None, action: str | None = None,
                 query: Mapping[str, list[str]] | None = None) -> None:
        self.kind, self.name, self.action, self.query = kind, name, action, query or {}


def route(method: str, target: str) -> Route | tuple[int, str]:
    """The route for ``method target``, or the status and reason it is refused with."""
    parts = urlsplit(target)
    try:
        query = parse_qs(parts.query, max_num_fields=10, strict_parsing=bool(parts.query))
    except ValueError:
        return 400, "bad query string"
    matched = ACTION_PATH.fullmatch(parts.path)
    if matched:
        if method != "POST":
            return 405, "actions are POST only"
        name = None if matched["all"] else unquote(matched["name"])
        return Route("action", name, matched["action"])
    if parts.path in READ_ONLY + GUARDED_READS:
        if method not in ("GET", "HEAD"):
            return 405, f"{parts.path} is GET only"
        return Route(parts.path, query=query)
    return 404, "no such path"


def refusal(route: Route, headers: Mapping[str, str], csrf: str, secret: str | None,
            loopback: bool, address: tuple[str, int]) -> tuple[int, str] | None:
    """Why a guarded request is refused (status, reason), or None to serve it.

    - Off a loopback address, with no secret: the guarded paths are off (anyone could act).
    - On loopback, the Host header must name loopback: a page whose name an attacker
      re-points at 127.0.0.1 (DNS rebinding) would otherwise be same-origin with this server.
    - With a secret: ``Authorization: Bearer SECRET``. A browser never adds that header by
      itself, and a page elsewhere cannot add it without a CORS preflight, which gets a 405.
    - Without one, no request a browser says comes from another page (``Origin``,
      ``Sec-Fetch-Site``): a page elsewhere, another port of this machine too, cannot read the
      answers, but could still open the dashboards' streams and hold every one of them. (With
      a secret these checks would only refuse the dashboard behind a proxy that ends TLS,
      whose ``Origin`` is ``https://...``.)
    - An action: the per-host CSRF token in ``X-Hotreload-CSRF``, and an ``Origin``, if the
      client sent one (a browser always does on POST), of this very server: a page elsewhere
      can neither read the token nor send this Origin.
    """
    if route.kind in READ_ONLY:
        return None
    if secret is None and not loopback:
        return 403, "actions and logs are off on a non-loopback address without --http-token"
    host = (headers.get("Host") or "").strip().lower()
    if loopback and host not in loopback_hosts(address):
        return 403, "the Host header must be a loopback address and this port"
    if secret is not None:
        if not hmac.compare_digest((headers.get("Authorization") or "").encode(), f"Bearer {secret}".encode()):
            return 401, "needs Authorization: Bearer TOKEN (--http-token)"
    else:
        origin = headers.get("Origin")
        site = (headers.get("Sec-Fetch-Site") or "none").strip().lower()
        if (origin is not None and origin.strip().lower() != f"http://{host}") or site not in ("same-origin", "none"):
            return 403, "cross-origin request refused"
    if route.kind != "action":
        return None
    if not hmac.compare_digest((headers.get(CSRF_HEADER) or "").encode(), csrf.encode()):
        return 403, f"needs the {CSRF_HEADER} header (GET /csrf)"
    return None


def loopback_hosts(address: tuple[str, int]) -> set[str]:
    """The Host headers a browser sends for this loopback server: a loopback name or the bound
    address (127.1.2.3 is loopback too), with the port, which a browser leaves out for 80."""
    port = address[1]
    names = {*LOOPBACK_NAMES, shown(address).rsplit(":", 1)[0].lower()}
    return {f"{name}:{port}" for name in names} | (names if port == 80 else set())


def unready(status: Mapping[str, Any]) -> list[dict[str, str]]:
    """What keeps a host from being ready: each worker that should run and does not (all but
    those stopped on request and those whose RESTART policy let them end), and the host
    itself while it starts or stops."""
    rows = [{"name": "host", "state": phase} for phase in ("starting", "stopping") if status.get(phase)]
    rows += [{"name": w["name"], "state": w["state"]} for w in status["workers"]
             if w["state"] not in (RUNNING, EXITED) and not w.get("held")]
    return rows


def _whole(text: str) -> bool:
    """ASCII digits only: ``str.isdigit`` also takes "²", which ``int`` refuses."""
    return text.isascii() and text.isdigit()


def shown(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def page(csrf: str) -> tuple[bytes, str]:
    """The dashboard with ``csrf`` in it (empty: the page asks ``/csrf`` with the secret the
    user gave it), and the Content-Security-Policy that lets only its own inline script run,
    lets it talk only to this server, and keeps it out of frames (clickjacking its buttons)."""
    text = DASHBOARD.read_text(encoding="utf-8")
    script = text[text.index("<script>") + len("<script>"):text.index("</script>")]
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    policy = (f"default-src 'none'; script-src 'sha256-{digest}'; style-src 'unsafe-inline'; "
              "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
    return text.replace(CSRF_MARK, csrf).encode(), policy


def sse(kind: str, data: bytes | str) -> bytes:
    """One server-sent event: ``kind`` and its data (JSON, one line)."""
    text = data.decode() if isinstance(data, bytes) else data
    return f"event: {kind}\ndata: {text.strip()}\n\n".encode()


class _Deadline(io.RawIOBase):
    """A connection's bytes, until a deadline and up to a size: each read waits only as long
    as is left, so a client sending a byte now and then (slowloris) is cut off in time."""

    def __init__(self, conn: socket.socket, deadline: float, limit: int) -> None:
        self.conn, self.deadline, self.left = conn, deadline, limit

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the request did not arrive in time")
        if self.left <= 0:
            raise _TooLarge()
        self.conn.settimeout(remaining)
        view = memoryview(buffer)[:self.left]
        received = self.conn.recv_into(view)
        self.left -= received
        return received


class _TooLarge(Exception):
    pass


def _linger(conn: socket.socket) -> None:
    """Before closing on a client still sending: say we are done, and read (a bounded amount,
    briefly) what it sends, so that the close does not reset the connection and lose the
    reply it has not read yet."""
    try:
        conn.shutdown(socket.SHUT_WR)
        conn.settimeout(LINGER_TIMEOUT)
        for _ in range(LINGER_READS):
            if not conn.recv(65536):
                return
    except OSError:
        pass


def _closed(conn: socket.socket) -> bool:
    """Whether the client closed ``conn`` (a read would return nothing), without waiting
    (``recv`` on a socket with a timeout would wait for it to be readable)."""
    try:
        poll = select.poll()
        poll.register(conn, select.POLLIN)
        if not poll.poll(0):
            return False
        return conn.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    server_version = "hotreload"
    default_request_version = "HTTP/1.0"  # a reply has a status line, even to a request without a version
    error_message_format = "%(code)d %(message)s\n"
    error_content_type = "text/plain; charset=utf-8"
    timeout = REQUEST_TIMEOUT  # also bounds writing the reply to a client that does not read

    def setup(self) -> None:
        super().setup()
        raw = _Deadline(self.connection, time.monotonic() + REQUEST_TIMEOUT, MAX_REQUEST)
        self.rfile = io.BufferedReader(raw)

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except _TooLarge:
            self.close_connection = True
            self.connection.settimeout(REQUEST_TIMEOUT)
            self.wfile.write(b"HTTP/1.0 431 Request Header Fields Too Large\r\nConnection: close\r\n\r\n")
            _linger(self.connection)
        except OSError:  # the client went, or did not read its reply in time
            self.close_connection = True

    def version_string(self) -> str:
        return self.server_version

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        super().send_error(400 if code == 505 else code, message, explain)  # a bad version is a bad request

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        """No access log: probes and scrapes come every few seconds."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("do_"):  # any other method: 405, not the base class's 501
            return self.do_GET
        raise AttributeError(name)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.server.web.respond(self)

    do_POST = do_HEAD = do_GET  # noqa: N815


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], family: int, web: WebServer) -> None:
        self.address_family = family
        self.web = web
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        """Bind without ``HTTPServer``'s ``getfqdn``, a DNS lookup."""
        http.server.socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def process_request(self, request: Any, client_address: Any) -> None:
        """A named thread per connection, at most ``MAX_CONNECTIONS`` at once."""
        self.web.serve_connection(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client's error ends its connection, quietly."""


class WebServer:
    """The host's HTTP server, bound at creation; ``start``/``stop`` from the host loop's side."""

    def __init__(self, host: Host, address: tuple[str, int], secret: str | None = None) -> None:
        self.inbox = host.inbox
        self.journal = host.journal
        self.log = host.log
        self.secret = secret
        self.csrf = secrets.token_urlsafe(32)
        self.loopback = is_loopback(address[0])
        family = socket.getaddrinfo(address[0], address[1], type=socket.SOCK_STREAM)[0][0]
        self.server = _Server(address, family, self)
        self.address = (address[0], self.server.server_address[1])
        self.stopping = False
        self.lock = threading.Lock()
        self.clients: dict[threading.Thread, socket.socket] = {}  # each connection's thread, its socket
        self.pending: set[Command] = set()
        self.streams: dict[threading.Event, socket.socket] = {}  # each stream's wake-up, its connection
        self.thread = threading.Thread(target=self._main, name="hotreload:http", daemon=True)

    def start(self) -> None:
        self.thread.start()
        self.log.info(f"http on {shown(self.address)}")
        if self.secret is None and not self.loopback:
            self.log.warning("actions and logs over http are off: the address is not loopback and "
                             "there is no --http-token")

    def stop(self) -> None:
        """Stop listening, tell clients waiting on the host loop it is gone, cut off those still
        sending a request (SHUT_RD: the rest of their reply can still go) and the streams
        (their write may be blocked on a client that does not read), and join every thread."""
        self.stopping = True
        deadline = time.monotonic() + JOIN_TIMEOUT
        try:
            self.server.socket.shutdown(socket.SHUT_RDWR)  # wakes the listening thread's select
        except OSError:
            pass
        self.thread.join(JOIN_TIMEOUT)  # then no connection is added, nor left unstarted
        with self.lock:
            for command in self.pending:
                command.expire()
                command.done.set()
            for wake in self.streams:
                wake.set()
            clients, streaming = dict(self.clients), set(self.streams.values())
        for conn in clients.values():
            try:
                conn.shutdown(socket.SHUT_RDWR if conn in streaming else socket.SHUT_RD)
            except OSError:
                pass
        for thread in clients:
            if thread.ident is not None:
                thread.join(max(0.0, deadline - time.monotonic()))
        self.server.server_close()

    def _main(self) -> None:
        while not self.stopping:
            self.server.handle_request()  # blocks until a connection comes, without a timeout

    def serve_connection(self, request: socket.socket, client_address: Any) -> None:
        with self.lock:
            full = len(self.clients) >= MAX_CONNECTIONS or self.stopping
            if not full:
                thread = threading.Thread(target=self._connection, args=(request, client_address),
                                          name="hotreload:http-client", daemon=True)
                self.clients[thread] = request
        if full:
            try:
                request.setblocking(False)
                request.send(b"HTTP/1.0 503 Service Unavailable\r\nConnection: close\r\n\r\n")
            except OSError:
                pass
            self.server.shutdown_request(request)
            return
        thread.start()

    def _connection(self, request: socket.socket, client_address: Any) -> None:
        try:
            self.server.process_request_thread(request, client_address)
        finally:
            with self.lock:
                self.clients.pop(threading.current_thread(), None)

    # --- answering -------------------------------------------------------------------------

    def respond(self, handler: _Handler) -> None:
        found = route(handler.command, handler.path)
        if isinstance(found, tuple):
            self._send(handler, found[0], {"ok": False, "error": found[1]})
            return
        refused = refusal(found, handler.headers, self.csrf, self.secret, self.loopback, self.address)
        if refused is not None:
            self._send(handler, refused[0], {"ok": False, "error": refused[1]})
            return
        if not self._body_read(handler):
            return
        if found.kind == "/":
            self._page(handler)
        elif found.kind == "/stream":
            self._stream(handler, found)
        else:
            self._send(handler, *self._answer(found))

    def _body_read(self, handler: _Handler) -> bool:
        """Read and drop the body an action may carry; refuse one too long or chunked."""
        if handler.headers.get("Transfer-Encoding"):
            self._send(handler, 411, {"ok": False, "error": "a body needs a Content-Length"})
            return False
        length = handler.headers.get("Content-Length", "0").strip()
        if not _whole(length) or int(length) > MAX_BODY:
            self._send(handler, 413, {"ok": False, "error": f"a body of at most {MAX_BODY} bytes"})
            return False
        handler.rfile.read(int(length))
        return True

    def _answer(self, found: Route) -> tuple[int, Any, str]:
        if found.kind == "/csrf":
            return 200, {"token": self.csrf}, ""
        if found.kind in ("/logs", "/events"):
            return self._tail(found)
        if found.kind == "action":
            return self._act(found)
        probe = found.kind in ("/healthz", "/readyz")  # a ping: no CPU read, no sample kept
        wait = LIVENESS_TIMEOUT if probe else ANSWER_TIMEOUT
        status = self.ask("ping" if probe else "status", [], wait)
        if status is None:
            return 503, {"ok": False, "error": f"the host loop did not answer within {wait:g} s"}, ""
        if found.kind == "/healthz":
            return 200, {"ok": True}, ""
        if found.kind == "/readyz":
            waiting = unready(status)
            return (503 if waiting else 200), {"ready": not waiting, "not_running": waiting}, ""
        return 200, metrics.exposition(status), metrics.CONTENT_TYPE

    def _act(self, found: Route) -> tuple[int, Any, str]:
        """One worker's action; for all, the workers the loop names first."""
        names = [found.name] if found.name is not None else None
        if names is None:
            status = self.ask("status", [], ANSWER_TIMEOUT)
            if status is None:
                return 503, {"ok": False, "error": NOT_DONE}, ""
            names = [w["name"] for w in status["workers"]]
        if not names:
            return 200, {"ok": True, "results": {}}, ""
        reply = self.ask(found.action or "", names, ANSWER_TIMEOUT)
        if reply is None:
            return 503, {"ok": False, "error": NOT_DONE}, ""
        if reply.get("ok"):
            return 200, reply, ""
        error = str(reply.get("error", ""))
        return (404 if error.startswith("no worker named") else 409), reply, ""

    def _tail(self, found: Route) -> tuple[int, Any, str]:
        kind = found.kind[1:]
        names = found.query.get("worker", []) if kind == "logs" else []
        lines_asked = found.query.get("lines", ["50"])[-1]
        if not _whole(lines_asked):
            return 400, {"ok": False, "error": "lines must be a whole number >= 0"}, ""
        unknown = [name for name in names if name not in self.journal.names()]
        if unknown:
            return 404, {"ok": False, "error": f"no worker named {', '.join(unknown)}"}, ""
        lines, _ = self.journal.tail(kind, names, int(lines_asked))
        return 200, b"".join(lines), "application/x-ndjson"

    def _page(self, handler: _Handler) -> None:
        may_read_secrets = refusal(Route("/csrf"), handler.headers, self.csrf, self.secret, self.loopback,
                                   self.address) is None  # what the token is: the page gets it only then
        body, policy = page(self.csrf if may_read_secrets else "")
        self._send(handler, 200, body, "text/html; charset=utf-8",
                   {"Content-Security-Policy": policy, "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer"})

    def _stream(self, handler: _Handler, found: Route) -> None:
        """``/stream[?worker=NAME]``: the dashboard's server-sent events until the client goes
        or the server stops. See the module's docstring."""
        if handler.command == "HEAD":
            self._send(handler, 200, b"", "text/event-stream")
            return
        names = found.query.get("worker", [])[-1:]
        if names and names[0] not in self.journal.names():
            self._send(handler, 404, {"ok": False, "error": f"no worker named {names[0]}"})
            return
        wake = threading.Event()
        with self.lock:
            if len(self.streams) >= MAX_STREAMS:
                self._end_closed_streams()
            full = self.stopping or len(self.streams) >= MAX_STREAMS
            if not full:
                self.streams[wake] = handler.connection
        if full:
            self._send(handler, 503, {"ok": False, "error": f"at most {MAX_STREAMS} dashboards at once"})
            return
        events = lines = None
        try:
            past_events, events = self.journal.tail(journal.EVENTS, [], STREAM_EVENTS, wake.set)
            past_lines, lines = self.journal.tail(journal.LOGS, names, STREAM_LINES, wake.set) if names else ([], None)
            handler.connection.settimeout(REQUEST_TIMEOUT)  # a client that stops reading is let go
            self._head(handler, 200, "text/event-stream")  # no length: the stream ends when the connection does
            self._push(handler, [], want_status=True)  # first: the page shows paths relative to its folder
            self._push(handler, [sse("event", line) for line in past_events] + [sse("log", line) for line in past_lines],
                       want_status=False)
            self._follow(handler, wake, [f for f in (events, lines) if f is not None])
        except OSError:  # the client went
            pass
        finally:
            for follower in (events, lines):
                if follower is not None:
                    self.journal.unfollow(follower)
            with self.lock:
                self.streams.pop(wake, None)

    def _follow(self, handler: _Handler, wake: threading.Event, followers: list[journal.Follower]) -> None:
        """Push what the followers take as it comes, and the status every ``STATUS_EVERY``
        seconds, or ``STATUS_GAP`` after the last one once events came (they changed it)."""
        last_status = time.monotonic()
        due = last_status + STATUS_EVERY
        while not self.stopping:
            wake.wait(max(0.0, due - time.monotonic()))
            wake.clear()
            if self.stopping or wake not in self.streams or _closed(handler.connection):
                return  # the server stops, or its client went (its page closed, or chose another worker)
            chunks, eventful = [], False
            for follower in followers:
                taken, dropped = self.journal.take(follower)
                kind = "event" if follower.kind == journal.EVENTS else "log"
                eventful = eventful or (kind == "event" and bool(taken))
                chunks += [sse(kind, line) for line in taken]
                if dropped:
                    chunks.append(sse("dropped", json.dumps({"kind": kind, "count": dropped})))
            if eventful:
                due = min(due, last_status + STATUS_GAP)
            now = time.monotonic()
            self._push(handler, chunks, want_status=now >= due)
            if now >= due:
                last_status, due = now, now + STATUS_EVERY

    def _end_closed_streams(self) -> None:
        """Under the lock: let go of the streams whose client closed its connection (it reads
        as ended), so that a page just closed does not keep a new one out."""
        for wake, conn in list(self.streams.items()):
            if _closed(conn):
                del self.streams[wake]
                wake.set()

    def _push(self, handler: _Handler, chunks: list[bytes], want_status: bool) -> None:
        """Write ``chunks``, then, if wanted, the status: an event is never held back while
        the host loop takes its time to answer."""
        if chunks:
            handler.wfile.write(b"".join(chunks))
        if want_status:
            status = self.ask("status", [], LIVENESS_TIMEOUT)
            if status is not None:
                handler.wfile.write(sse("status", json.dumps(status)))

    def ask(self, cmd: str, names: list[str], wait: float) -> dict[str, Any] | None:
        """The host loop's answer to ``cmd``, or None when it did not take it within ``wait``
        (then it never acts on it) or the server is stopping."""
        command = Command(cmd, names, expires=time.monotonic() + wait)
        with self.lock:
            if self.stopping:
                return None
            self.pending.add(command)
        try:
            self.inbox.put(command)
            if not command.done.wait(wait) and not command.expire():
                command.done.wait(ANSWER_GRACE)  # taken in time: being answered
            return command.reply
        finally:
            with self.lock:
                self.pending.discard(command)

    @staticmethod
    def _head(handler: _Handler, status: int, kind: str, extra: Mapping[str, str] | None = None) -> None:
        """The status line and headers of every answer: never cached, never sniffed."""
        handler.send_response(status)
        handler.send_header("Content-Type", kind)
        for name, value in {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", **(extra or {})}.items():
            handler.send_header(name, value)
        handler.end_headers()

    @staticmethod
    def _send(handler: _Handler, status: int, body: Any, kind: str = "", extra: Mapping[str, str] | None = None) -> None:
        data = body if isinstance(body, bytes) else (json.dumps(body) + "\n").encode()
        handler.connection.settimeout(REQUEST_TIMEOUT)  # the reader left what remained of its deadline
        WebServer._head(handler, status, kind or "application/json", {"Content-Length": str(len(data)), **(extra or {})})
        if handler.command != "HEAD":
            handler.wfile.write(data)
