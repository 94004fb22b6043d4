"""Fails most of the time, to show the restart backoff: delays grow from 0.5 s by x2,
jittered, up to 8 s; after 6 failures in a row without a stable run it goes fatal.
Fix it (set FAILURE_RATE = 0) and save: it restarts at once on the new code."""
import random

FAILURE_RATE = 0.8
BACKOFF = {"initial": 0.5, "factor": 2.0, "max": 8.0, "fatal_after": 6}


def run(ctx):
    ctx.state["runs"] = ctx.state.get("runs", 0) + 1
    ctx.log.info(f"run {ctx.state['runs']}")
    while not ctx.sleep(0.5):
        if random.random() < FAILURE_RATE:
            raise ConnectionError("the upstream service went away")
        ctx.log.info("working")
