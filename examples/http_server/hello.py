"""Serves http://127.0.0.1:8000/ (or $HELLO_PORT) with the standard library, and drops no
request when you edit GREETING and save.

The listening socket is kept by the host (``ctx.keep``): it stays open from one version to
the next, so while the old version stops, the kernel queues new connections instead of
refusing them, and the new version accepts them. Each version serves on a ``dup()`` of it
and closes only that. On stop the old version stops accepting, answers the requests it has
in flight, and gives each keep-alive connection up to DRAIN seconds to send one more request,
which it answers with ``Connection: close``; then it closes what is left.
"""
import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

GREETING = "hello from hotreload"
RESTART = "on-failure"
ADDRESS = ("127.0.0.1", int(os.environ.get("HELLO_PORT", "8000")))
# serve_forever notices a shutdown request once per poll interval: new connections wait
# that long at most in the kernel's queue before the version that stops lets them go.
POLL_INTERVAL = 0.05
DRAIN = 1.0  # seconds an idle keep-alive connection gets to send its next request on stop


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    timeout = 60  # an idle keep-alive connection is closed after this

    def do_GET(self):
        body = f"{GREETING}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        if self.server.stopping:
            self.send_header("Connection", "close")  # the client reconnects: to the next version
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        self.server.log.debug(f"{self.address_string()} {format % args}")


class Server(ThreadingHTTPServer):
    """Serves on a dup() of a listening socket it is given, which it leaves open."""

    daemon_threads = False  # so that server_close waits for the requests in flight

    def __init__(self, listener, log):
        self.listener, self.log = listener, log
        self.stopping = False
        self.connections = set()
        super().__init__(listener.getsockname(), Handler)

    def server_bind(self):
        self.socket.close()  # the one socketserver made: unused
        self.socket = self.listener.dup()
        self.server_name, self.server_port = self.socket.getsockname()[:2]

    def server_activate(self):
        pass  # the kept socket listens already

    def process_request(self, request, client_address):
        self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        self.connections.discard(request)
        super().shutdown_request(request)

    def drain(self, seconds):
        """Wait up to ``seconds`` for the open connections to end, then cut the rest."""
        deadline = time.monotonic() + seconds
        while self.connections and time.monotonic() < deadline:
            time.sleep(0.01)
        for connection in list(self.connections):
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def run(ctx):
    listener = ctx.keep(("listener", ADDRESS), lambda: socket.create_server(ADDRESS, backlog=128))
    server = Server(listener, ctx.log)
    serving = threading.Thread(target=server.serve_forever, args=(POLL_INTERVAL,), name="hello-http", daemon=True)
    serving.start()
    ctx.log.info(f"serving on http://127.0.0.1:{server.server_port}/")
    try:
        ctx.sleep(float("inf"))  # until asked to stop
    finally:
        server.stopping = True
        server.shutdown()  # accepts no more: new connections wait in the kept socket's queue
        server.drain(DRAIN)
        server.server_close()  # closes this version's dup() and waits for its request threads
        serving.join(5)
        ctx.log.info("stopped serving")
