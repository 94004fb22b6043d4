"""A stand-in for a real worker: logs a line every few seconds, and takes its time to stop."""
import time

STOP_TIMEOUT = 10  # the Deployment's terminationGracePeriodSeconds covers this + 2 s


def run(ctx):
    ctx.state.setdefault("greetings", 0)
    while not ctx.sleep(5):
        ctx.state["greetings"] += 1
        ctx.log.info(f"hello #{ctx.state['greetings']}")
    time.sleep(0.1)  # a little clean-up
