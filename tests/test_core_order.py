"""Start order, watched files and heartbeats in ``core.handle``, driven in-process (see
``core_host`` in conftest): the branches the subprocess tests show end to end, in milliseconds."""
import signal

from conftest import next_message, pump
from hotreload import core
from hotreload.records import Changes, Command, Exited, Signal
from hotreload.states import BACKOFF, RUNNING, STOPPED, STOPPING, WAITING


def source(*lines: str, body: str = 'ctx.sleep(float("inf"))') -> str:
    return "\n".join(lines) + f"\n\n\ndef run(ctx):\n    {body}\n"


SIGNALS_READY = source('READY = "signal"', body='ctx.sleep(float("inf"))')
# Runs until asked to stop, or crashes once its ctx.state says so.
CRASHES_WHEN_TOLD = 'while not ctx.sleep(0.01):\n        if ctx.state.get("crash"):\n            raise RuntimeError("told")'


def test_at_shutdown_a_worker_is_asked_to_stop_only_once_the_workers_after_it_have_stopped(core_host):
    host = core_host({"db.py": source(), "api.py": source('AFTER = ["db"]'), "web.py": source('AFTER = ["api"]')})
    db, api, web = (host.workers[name] for name in ("db", "api", "web"))
    assert db.state == api.state == web.state == RUNNING
    core.handle(host, Signal(signal.SIGTERM))
    assert (web.state, api.state, db.state) == (STOPPING, RUNNING, RUNNING)
    pump(host, lambda: web.execution is None, "web to stop")
    assert (api.state, db.state) == (STOPPING, RUNNING)
    pump(host, lambda: core.finished(host), "the host to finish")
    assert db.state == STOPPED and core.exit_status(host) == 0


def test_a_worker_keeps_running_when_its_dependency_crashes_and_waits_for_it_at_its_own_restart(core_host):
    host = core_host({"db.py": source('READY = "signal"', body="ctx.ready()\n    " + CRASHES_WHEN_TOLD),
                      "api.py": source('AFTER = ["db"]', body=CRASHES_WHEN_TOLD)})
    db, api = host.workers["db"], host.workers["api"]
    pump(host, lambda: api.state == RUNNING, "api to start once db said it is ready")
    db.user_state["crash"] = True
    pump(host, lambda: db.state == BACKOFF, "db to crash")
    assert api.state == RUNNING and api.execution is not None  # api keeps running
    api.user_state["crash"] = True  # now api crashes too: its restart waits for db again
    pump(host, lambda: api.state == BACKOFF, "api to crash")
    core._on_timers(host, api.restart_at)
    assert api.state == WAITING and api.execution is None
    assert core._status(host)["workers"][0]["waiting_for"] == ["db"]  # api's row: the first by name


def test_stop_and_start_of_a_waiting_worker(core_host):
    host = core_host({"db.py": SIGNALS_READY, "api.py": source('AFTER = ["db"]')})
    api = host.workers["api"]
    start = Command("start", ["api"])
    assert start.take()
    assert core._on_command(host, start)["results"] == {"api": "already waiting"}
    stop = Command("stop", ["api"])
    assert stop.take()
    assert core._on_command(host, stop)["results"] == {"api": "stopped"} and api.state == STOPPED
    host.workers["db"].execution.ctx.ready()
    pump(host, lambda: host.workers["db"].ready, "db to be ready")
    assert api.state == STOPPED  # stopped when asked: it does not start by itself


def test_a_watched_file_restarts_its_worker_only_when_its_bytes_change(core_host):
    host = core_host({"page.py": source('WATCH = ["templates/*.html"]'), "templates/a.html": "1"})
    page = host.workers["page"]
    template = host.options.folder / "templates" / "a.html"
    first = page.execution
    core.handle(host, Changes(frozenset({str(template)})))  # saved unchanged
    assert host.swap is None and page.execution is first
    template.write_text("2")
    core.handle(host, Changes(frozenset({str(template)})))
    pump(host, lambda: page.execution not in (None, first) and host.swap is None, "page to restart")
    assert page.generation == 0 and page.state == RUNNING


def test_a_hung_run_ends_as_a_crash_counted_for_backoff(core_host):
    host = core_host({"stuck.py": source("import time", "HEARTBEAT = 5",
                                         body="while True:\n        time.sleep(0.01)")})
    stuck = host.workers["stuck"]
    execution = stuck.execution
    core._on_timers(host, execution.hang_at)
    assert execution.hung and execution.interrupted
    exited = next_message(host, Exited)
    core.handle(host, exited)
    assert stuck.state == BACKOFF and stuck.failures == 1
    assert stuck.last_error == "hung: no sign of life for 5 s (HEARTBEAT)"
