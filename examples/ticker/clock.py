"""Logs the time every second and counts its ticks in ctx.state, which survives reloads:
edit FORMAT and save, and the count goes on."""
import time

FORMAT = "%H:%M:%S"


def run(ctx):
    ctx.state.setdefault("ticks", 0)
    while not ctx.sleep(1):
        ctx.state["ticks"] += 1
        ctx.log.info(f"tick {ctx.state['ticks']} at {time.strftime(FORMAT)}")
