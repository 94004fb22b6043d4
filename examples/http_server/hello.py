"""Serves http://127.0.0.1:8000/ (or $HELLO_PORT) with the standard library.

The server runs in a thread of its own; on stop (Ctrl-C, or a reload after you edit
GREETING) it is shut down and its socket closed before the new version binds the port.
"""
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

GREETING = "hello from hotreload"
RESTART = "on-failure"
POLL_INTERVAL = 0.05


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"{GREETING}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        self.server.log.info(f"{self.address_string()} {format % args}")


def run(ctx):
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ.get("HELLO_PORT", "8000"))), Handler)
    server.log = ctx.log
    # serve_forever notices a shutdown request once per poll_interval: keep it short, as
    # a reload waits for the old server to close before the new one binds the port.
    serving = threading.Thread(target=server.serve_forever, args=(POLL_INTERVAL,), name="hello-http", daemon=True)
    serving.start()
    ctx.log.info(f"serving on http://127.0.0.1:{server.server_port}/")
    try:
        ctx.sleep(float("inf"))  # until asked to stop
    finally:
        server.shutdown()
        server.server_close()
        serving.join(5)
        ctx.log.info("server closed")
