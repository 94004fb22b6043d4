"""The demo worker: logs a tick every second. Edit the message and save: the running
worker becomes the new code and keeps counting, because ctx.state survives reloads."""
from . import _util


def run(ctx):
    ctx.state.setdefault("count", 0)
    while not ctx.sleep(1):
        ctx.state["count"] += 1
        ctx.log.info(_util.greeting(ctx.state["count"]))
