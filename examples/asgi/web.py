"""A Starlette app served by uvicorn on http://127.0.0.1:8001/ (or $ASGI_PORT), inside an
async worker; edit GREETING (or add a route) and save: no request is dropped.

    pip install -e '.[examples]'      # uvicorn and starlette
    hotreload run examples/asgi

The listening socket is kept by the host (``ctx.keep``), so the kernel queues connections
while one version hands over to the next. uvicorn closes the sockets it is given when it
shuts down: each version gets a ``dup()`` of the kept one, and closing that leaves the kept
socket listening. The host stops an async worker by cancelling it; uvicorn's own shutdown
is graceful only when asked through ``server.should_exit``, so ``run`` catches the
cancellation and asks (``stop``).
"""
import asyncio
import os
import socket

import uvicorn
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

GREETING = "hello from hotreload and uvicorn"
ADDRESS = ("127.0.0.1", int(os.environ.get("ASGI_PORT", "8001")))
DRAIN = 1.0  # seconds an idle keep-alive connection gets to send its next request on stop


async def hello(request):
    return PlainTextResponse(f"{GREETING}\n")


app = Starlette(routes=[Route("/", hello)])


class Draining:
    """ASGI middleware: once ``on`` is set, every response says ``Connection: close``, so
    that keep-alive clients reconnect, to the next version, after their current request."""

    def __init__(self, app):
        self.app, self.on = app, False

    async def __call__(self, scope, receive, send):
        async def send_closing(message):
            if self.on and message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
            await send(message)

        await self.app(scope, receive, send_closing if scope["type"] == "http" else send)


async def stop(server, serving, draining):
    """Stop accepting (connections wait in the kept socket's queue), give keep-alive clients
    up to DRAIN seconds for one more request each, then let uvicorn finish what is in flight.
    Asking uvicorn to exit at once would close idle keep-alive connections under clients
    that are sending on them."""
    draining.on = True
    while not server.started and not serving.done():  # a stop that came as it was starting:
        await asyncio.sleep(0.01)  # then it would go on to accept connections and drop them
    loop = asyncio.get_running_loop()
    for listening in server.servers:
        for sock in listening.sockets:
            loop.remove_reader(sock.fileno())  # accept no more, yet leave the server open:
    deadline = loop.time() + DRAIN  # connections accepted already may still be attaching to it
    while server.server_state.connections and loop.time() < deadline:
        await asyncio.sleep(0.01)
    server.should_exit = True
    await serving


async def run(ctx):
    listener = ctx.keep(("listener", ADDRESS), lambda: socket.create_server(ADDRESS, backlog=1024))
    draining = Draining(app)
    config = uvicorn.Config(draining, log_config=None, access_log=False, timeout_graceful_shutdown=3)
    server = uvicorn.Server(config)
    serving = asyncio.ensure_future(server.serve(sockets=[listener.dup()]))
    ctx.log.info(f"serving on http://{ADDRESS[0]}:{ADDRESS[1]}/")
    try:
        await asyncio.shield(serving)  # the host's cancellation stops here, not inside uvicorn
    except asyncio.CancelledError:
        await stop(server, serving, draining)
        ctx.log.info("stopped serving")
