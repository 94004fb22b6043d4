"""``core.handle`` driven in-process, as ``host.serve`` drives it: a hand-built host, real
worker threads, each message handed over by the test and each timer fired at the time stored
for it (``core._on_timers``). The restart policies, swaps that fail or are blocked, the
backlog of changes saved during a swap, abandoned threads, and a reload of core itself (on a
copy of core.py): what the subprocess tests show end to end, here in milliseconds."""
import importlib
import math
import shutil
import signal
import sys
import threading
import time
import uuid
from dataclasses import replace

import pytest

from conftest import next_message, pump
from hotreload import core, corereload
from hotreload import host as hosting
from hotreload.log import logger
from hotreload.records import Changes, Command, Exited, Signal, Worker
from hotreload.settings import Backoff, Settings
from hotreload.states import BACKOFF, EXITED, FATAL, RUNNING, STOPPED, STOPPING

# No jitter: each delay is exact. Long: real time never reaches a restart in a test; the
# test fires it (``core._on_timers(host, worker.restart_at)``).
SLOW = Backoff(initial=10.0, factor=2.0, max=60.0, jitter=0.0, fatal_after=3)


def steady(version: int, top: str = "") -> str:
    """A worker module that runs until asked to stop."""
    return f"""{top}
VERSION = {version}


def run(ctx):
    ctx.sleep(float("inf"))
"""


# Ignores its stop: blocked in C, an interrupt reaches it only once the test opens GATE.
STUBBORN = """
import threading

GATE = threading.Event()
STOP_TIMEOUT = 10.0
VERSION = 1


def run(ctx):
    GATE.wait(30)
"""


def crashes(ctx):
    raise RuntimeError("boom")


def returns(ctx):
    return None


def launched(host, name, target, core=core, **settings) -> Worker:
    """A hand-built worker ``name`` running ``target``, launched."""
    worker = Worker(name, f"{name}.py", logger.bind(worker=name), Settings(**settings), target=target)
    host.workers[name] = worker
    assert core._launch(host, worker)
    return worker


def handle_exit(host, worker, core=core) -> float:
    """Hand the ``Exited`` that ``worker``'s thread posts to ``core.handle``; the time just
    before."""
    message = next_message(host, Exited)
    assert message.execution.worker is worker
    before = time.monotonic()
    core.handle(host, message)
    return before


def save(host, *paths) -> None:
    """What the watcher posts for files just saved, then the swap to its end."""
    core.handle(host, Changes(frozenset(map(str, paths))))
    pump(host, lambda: host.swap is None and host.job is None, "the swap to end")


def command(host, cmd, *names) -> dict:
    message = Command(cmd, list(names))
    core.handle(host, message)
    return message.reply


def module(host, name):
    return sys.modules[f"{host.package}.{name}"]


@pytest.fixture
def logged():
    lines = []
    sink = logger.add(lambda m: lines.append(str(m)), format="{message}", level="INFO")
    yield lines
    logger.remove(sink)


# --- the restart policy -----------------------------------------------------------------------


@pytest.mark.parametrize("policy, outcome, expected", [
    ("always", returns, BACKOFF), ("always", crashes, BACKOFF),
    ("on-failure", returns, EXITED), ("on-failure", crashes, BACKOFF),
    ("never", returns, EXITED), ("never", crashes, EXITED),
])
def test_the_restart_policy_decides_what_follows_a_return_or_a_crash(core_host, policy, outcome, expected):
    host = core_host()
    worker = launched(host, "w", outcome, restart=policy, backoff=SLOW)
    before = handle_exit(host, worker)
    assert worker.state == expected and worker.execution is None
    assert worker.last_error == ("RuntimeError: boom" if outcome is crashes else None)
    if expected == BACKOFF:  # the first failure waits BACKOFF's initial delay, stored once
        assert before + SLOW.initial <= worker.restart_at <= time.monotonic() + SLOW.initial
        assert host.timers == [(worker.restart_at, "w")] and worker.failures == 1
    else:
        assert worker.restart_at is None and core.wakeup(host) is None


def test_a_restart_comes_at_its_stored_time_not_before_and_the_next_waits_longer(core_host):
    host = core_host()
    worker = launched(host, "w", crashes, backoff=SLOW)
    handle_exit(host, worker)
    core._on_timers(host, worker.restart_at - 0.001)
    assert worker.state == BACKOFF and worker.execution is None and worker.restarts == 0
    core._on_timers(host, worker.restart_at)
    assert worker.state == RUNNING and worker.restarts == 1 and worker.restart_at is None
    before = handle_exit(host, worker)  # it crashes again: twice the wait
    assert worker.state == BACKOFF and worker.failures == 2
    assert before + 2 * SLOW.initial <= worker.restart_at <= time.monotonic() + 2 * SLOW.initial


def test_a_worker_that_fails_fatal_after_times_in_a_row_is_given_up_on(core_host):
    host = core_host()
    worker = launched(host, "w", crashes, backoff=SLOW)
    for attempt in range(1, SLOW.fatal_after):
        handle_exit(host, worker)
        assert worker.state == BACKOFF and worker.failures == attempt
        core._on_timers(host, worker.restart_at)
    handle_exit(host, worker)
    assert worker.state == FATAL and worker.failures == SLOW.fatal_after and worker.execution is None
    assert worker.restart_at is None and core.wakeup(host) is None  # no restart is due, ever
    assert worker.last_error == "RuntimeError: boom"


def test_a_run_longer_than_the_backoff_max_counts_as_a_first_failure(core_host):
    def crashes_later(ctx):
        ctx.sleep(0.03)
        raise RuntimeError("late")

    host = core_host()
    worker = launched(host, "w", crashes_later, backoff=replace(SLOW, max=0.01, fatal_after=2))
    for _ in range(3):  # each run lasted longer than max: the count starts again each time
        handle_exit(host, worker)
        assert worker.state == BACKOFF and worker.failures == 1
        core._on_timers(host, worker.restart_at)


def test_a_shutdown_cancels_a_restart_in_backoff_and_stops_the_running(core_host):
    def raises_when_stopped(ctx):
        ctx.sleep(float("inf"))
        raise RuntimeError("while stopping")

    host = core_host()
    waiting = launched(host, "waiting", crashes, backoff=SLOW)
    handle_exit(host, waiting)
    running = launched(host, "running", raises_when_stopped)
    core.handle(host, Signal(signal.SIGTERM))
    assert waiting.state == STOPPED and waiting.restart_at is None and running.state == STOPPING
    pump(host, lambda: core.finished(host), "the shutdown")
    assert running.state == STOPPED and running.last_error is None  # an error on the way out is no crash
    core._on_timers(host, math.inf)  # every time stored passes: nothing starts again
    assert waiting.execution is None and waiting.restarts == 0 and core.exit_status(host) == 0


# --- swaps that fail or are blocked -----------------------------------------------------------


def test_new_code_that_raises_keeps_the_previous_version_running_until_a_good_save(core_host):
    host = core_host({"w.py": steady(1)})
    worker, path = host.workers["w"], host.options.folder / "w.py"
    target, execution = worker.target, worker.execution
    path.write_text(steady(2, top="raise RuntimeError('broken v2')"))
    save(host, path)
    assert worker.state == RUNNING and worker.target is target and worker.generation == 0
    assert worker.execution is not execution and worker.execution.thread.is_alive()  # stopped for the swap
    assert worker.last_error == "RuntimeError: broken v2" and module(host, "w").VERSION == 1
    assert f"{host.package}.w" in host.broken
    path.write_text(steady(3))
    save(host, path)
    assert worker.generation == 1 and worker.last_error is None and module(host, "w").VERSION == 3
    assert worker.state == RUNNING and not host.broken


def test_new_code_that_does_not_parse_stops_nothing(core_host):
    host = core_host({"w.py": steady(1)})
    worker, path = host.workers["w"], host.options.folder / "w.py"
    execution = worker.execution
    path.write_text("def run(ctx)\n")
    save(host, path)
    assert worker.execution is execution and worker.state == RUNNING and worker.generation == 0
    assert worker.last_error.startswith("SyntaxError")
    path.write_text(steady(1))  # the bad edit undone
    save(host, path)
    assert worker.execution is execution and worker.last_error is None


def test_a_worker_whose_helper_is_deleted_keeps_its_previous_version_until_the_helper_is_back(core_host):
    host = core_host({"w.py": steady(1, top="from . import _helper"), "_helper.py": "X = 1\n"})
    worker, helper = host.workers["w"], host.options.folder / "_helper.py"
    target = worker.target
    helper.unlink()
    save(host, helper)
    assert worker.state == RUNNING and worker.target is target and worker.generation == 0
    assert worker.last_error == f"it imports {host.package}._helper (its file is gone)"
    assert f"{host.package}._helper" not in sys.modules
    helper.write_text("X = 2\n")
    save(host, helper)
    assert worker.generation == 1 and worker.last_error is None and module(host, "w")._helper.X == 2


def test_a_worker_whose_helper_fails_to_load_keeps_its_previous_version_until_the_helper_is_fixed(core_host):
    host = core_host({"w.py": steady(1, top="from . import _helper"), "_helper.py": "X = 1\n"})
    worker, helper = host.workers["w"], host.options.folder / "_helper.py"
    target = worker.target
    helper.write_text("X = 2\nraise ImportError('helper v2')\n")
    save(host, helper)
    assert worker.state == RUNNING and worker.target is target and worker.generation == 0
    assert worker.last_error == f"it imports {host.package}._helper (it failed to load)"
    assert host.broken == {f"{host.package}._helper"} and module(host, "_helper").X == 1
    helper.write_text("X = 3\n")
    save(host, helper)
    assert worker.generation == 1 and worker.last_error is None and not host.broken
    assert module(host, "w")._helper.X == 3


# --- the backlog -------------------------------------------------------------------------------


def test_changes_saved_during_a_swap_come_back_as_one_batch_when_it_ends(core_host):
    host = core_host({f"{name}.py": steady(1) for name in "abc"})
    paths = {name: host.options.folder / f"{name}.py" for name in "abc"}
    for path in paths.values():
        path.write_text(steady(2))
    core.handle(host, Changes(frozenset({str(paths["a"])})))
    assert host.swap is not None and host.swap.waiting == {"a"}  # a is stopping
    core.handle(host, Changes(frozenset({str(paths["b"])})))
    core.handle(host, Changes(frozenset({str(paths["c"])})))
    assert host.workers["b"].generation == host.workers["c"].generation == 0  # not yet
    pump(host, lambda: host.swap is None and host.job is None, "the swap of a to end")
    assert host.workers["a"].generation == 1 and not host.backlog
    backlog = next_message(host, Changes)
    assert backlog == Changes(frozenset({str(paths["b"]), str(paths["c"])}))
    assert host.inbox.get(0) is None  # one message for both
    core.handle(host, backlog)
    pump(host, lambda: host.swap is None and host.job is None, "the swap of b and c to end")
    assert [host.workers[name].generation for name in "abc"] == [1, 1, 1]


def test_changes_saved_while_the_workers_import_are_applied_once_they_have_started(core_host):
    host = core_host({"a.py": steady(1), "b.py": steady(1)}, start=False)
    path = host.options.folder / "a.py"
    core.start(host)
    assert f"{host.package}.a" in sys.modules and host.job is not None  # a imported, b next
    path.write_text(steady(2))
    core.handle(host, Changes(frozenset({str(path)})))
    assert host.backlog == {str(path)}
    pump(host, lambda: host.job is None and not host.startup, "the workers to start")
    assert [w.state for w in host.workers.values()] == [RUNNING, RUNNING] and module(host, "a").VERSION == 1
    save(host, *next_message(host, Changes).paths)
    assert host.workers["a"].generation == 1 and module(host, "a").VERSION == 2


# --- abandoned threads ---------------------------------------------------------------------


def test_a_worker_that_ignores_its_stop_is_interrupted_then_abandoned_and_its_new_code_waits_for_its_thread(
    core_host
):
    host = core_host({"w.py": STUBBORN})
    worker, path = host.workers["w"], host.options.folder / "w.py"
    old, gate = worker.execution, module(host, "w").GATE
    try:
        path.write_text(steady(2))
        core.handle(host, Changes(frozenset({str(path)})))
        assert worker.state == STOPPING and host.swap.waiting == {"w"}
        core._on_timers(host, old.stop_deadline)  # the stop timed out: interrupted, given a grace
        assert old.interrupted and not old.abandoned and worker.state == STOPPING and host.swap.waiting == {"w"}
        assert old.abandon_at == old.stop_deadline + core.INTERRUPT_GRACE
        core._on_timers(host, old.abandon_at)  # the grace is over: given up on, the swap goes on
        assert old.abandoned and worker.state == FATAL and worker.last_error == "did not stop when asked"
        pump(host, lambda: host.swap is None and host.job is None, "the swap to end")
        assert worker.generation == 1 and worker.start_pending and worker.execution is old  # one version at a time
        assert command(host, "start", "w")["results"]["w"].startswith("cannot start: its abandoned thread")
    finally:
        gate.set()
    pump(host, lambda: worker.execution is not old, "the abandoned thread to end")
    assert worker.state == RUNNING and worker.execution.thread.is_alive() and not worker.start_pending
    assert module(host, "w").VERSION == 2 and worker.target is module(host, "w").run


@pytest.mark.parametrize("stopped_meanwhile", [False, True], ids=["restarted", "stopped-meanwhile"])
def test_a_restart_asked_of_a_worker_that_is_then_abandoned_happens_when_its_thread_ends(
    core_host, stopped_meanwhile
):
    host = core_host({"w.py": STUBBORN})
    worker = host.workers["w"]
    old, gate = worker.execution, module(host, "w").GATE
    try:
        assert command(host, "restart", "w")["results"] == {"w": "restarting"}
        core._on_timers(host, old.stop_deadline)
        core._on_timers(host, old.abandon_at)
        assert old.abandoned and worker.start_pending and worker.state == FATAL and not host.restarting
        if stopped_meanwhile:
            assert command(host, "stop", "w")["results"]["w"].startswith("not running (fatal)")
            assert not worker.start_pending
    finally:
        gate.set()
    pump(host, lambda: worker.execution is not old, "the abandoned thread to end")
    if stopped_meanwhile:
        assert worker.execution is None and worker.state == FATAL
    else:
        assert worker.execution is not None and worker.state == RUNNING


def test_a_shutdown_leaves_an_abandoned_worker_as_it_is_and_does_not_wait_for_its_thread(core_host):
    host = core_host({"w.py": STUBBORN})
    worker = host.workers["w"]
    old, gate = worker.execution, module(host, "w").GATE
    try:
        command(host, "stop", "w")
        core._on_timers(host, old.stop_deadline)
        core._on_timers(host, old.abandon_at)
        assert old.abandoned and worker.state == FATAL
        core.handle(host, Signal(signal.SIGTERM))
        assert worker.state == FATAL and worker.execution is old and core.wakeup(host) is None
        assert core.finished(host) and core.exit_status(host) == 1  # it did not stop when asked
    finally:
        gate.set()


# --- a reload of core itself, on a copy of core.py ---------------------------------------


@pytest.fixture
def core_copy(tmp_path, monkeypatch):
    """``(path, module)``: a copy of hotreload's core.py, imported from a folder of its own,
    for a test to edit and reload (``corereload.on_own_changes``) under a live host."""
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # a rewrite within the same second is read
    folder = tmp_path / "core_copy"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    path = folder / f"core_{uuid.uuid4().hex[:8]}.py"
    shutil.copyfile(core.__file__, path)
    yield path, importlib.import_module(path.stem)
    del sys.modules[path.stem]


def edited(path, old, new):
    source = path.read_text()
    assert source.count(old) == 1, f"core.py changed: {old!r} is not there once"
    path.write_text(source.replace(old, new))


def test_a_reload_of_core_keeps_every_record_and_the_deadlines_already_set(core_host, core_copy, logged):
    path, live = core_copy
    host = core_host()
    host.core_file = path
    # Its restart comes after the other's stop has timed out and been given up on.
    crasher = launched(host, "crasher", crashes, core=live, backoff=replace(SLOW, initial=100.0, max=600.0))
    handle_exit(host, crasher, core=live)
    release = threading.Event()
    stubborn = launched(host, "stubborn", lambda ctx: release.wait(30), core=live, stop_timeout=10.0)
    execution = stubborn.execution
    try:
        live.handle(host, Command("stop", ["stubborn"]))
        live._on_timers(host, execution.stop_deadline)  # interrupted: when it is given up on is decided
        restart_at, abandon_at = crasher.restart_at, execution.abandon_at
        edited(path, "INTERRUPT_GRACE = 1.0\n", "INTERRUPT_GRACE = 30.0\n")
        edited(path, "restarting in {wait:.2f} s", "coming back in {wait:.2f} s")
        corereload.on_own_changes(host, live, hosting.CORE_API, [str(path)])
        assert host.core_generation == 1 and live.INTERRUPT_GRACE == 30.0

        assert crasher.restart_at == restart_at and stubborn.execution is execution
        assert execution.abandon_at == abandon_at and not execution.abandoned
        before = time.monotonic()
        due = live.wakeup(host)
        assert abandon_at < restart_at and abandon_at - time.monotonic() <= due <= abandon_at - before
        live._on_timers(host, abandon_at)
        assert execution.abandoned and stubborn.state == FATAL  # at the time set before the reload
        live._on_timers(host, restart_at)
        assert crasher.state == RUNNING and crasher.restarts == 1
        handle_exit(host, crasher, core=live)  # it crashes again: the new core decides
        assert crasher.state == BACKOFF and any("crashed; coming back in" in line for line in logged)
    finally:
        release.set()
        execution.thread.join(5)


def test_an_internal_error_of_the_reloaded_core_rolls_it_back_and_the_same_bytes_are_not_tried_again(
    core_host, core_copy, logged, monkeypatch
):
    path, live = core_copy
    monkeypatch.setattr(hosting, "core", live)
    host = core_host({"w.py": steady(1)})
    host.core_file = path
    worker = host.workers["w"]
    execution = worker.execution
    signature = "def _on_command(host: Host, command: Command) -> dict[str, Any]:\n"
    edited(path, signature, signature + "    raise RuntimeError('a bug in the new core')\n")
    corereload.on_own_changes(host, live, hosting.CORE_API, [str(path)])
    assert host.core_generation == 1 and host.previous_core is not None

    hosting._call_core(host, "handle", host, Command("status"))
    assert any("internal error in core.handle" in line and "a bug in the new core" in line for line in logged)
    assert host.core_generation == 0 and host.previous_core is None
    status = Command("status")
    hosting._call_core(host, "handle", host, status)  # the previous core answers
    assert status.reply["ok"] and status.reply["core_generation"] == 0
    assert [row["state"] for row in status.reply["workers"]] == [RUNNING] and worker.execution is execution

    corereload.on_own_changes(host, live, hosting.CORE_API, [str(path)])
    assert host.core_generation == 0  # the bytes that failed: not tried again
    edited(path, "    raise RuntimeError('a bug in the new core')\n", "")
    corereload.on_own_changes(host, live, hosting.CORE_API, [str(path)])
    assert host.core_generation == 1
    status = Command("status")
    hosting._call_core(host, "handle", host, status)  # the fixed core answers
    assert status.reply["core_generation"] == 1 and worker.execution is execution


def test_a_message_a_failing_new_core_did_not_consume_is_handled_again_by_the_previous_one(
    core_host, core_copy, logged, monkeypatch
):
    """A worker's end, handed to a new core that raises on it: after the rollback, the
    previous core gets the same message, so the worker is not left 'running' on a dead thread."""
    path, live = core_copy
    monkeypatch.setattr(hosting, "core", live)
    host = core_host()
    host.core_file = path
    worker = launched(host, "w", crashes, core=live, backoff=SLOW)
    signature = "def _on_exit(host: Host, message: Exited) -> None:\n"
    edited(path, signature, signature + "    raise RuntimeError('a bug in the new core')\n")
    corereload.on_own_changes(host, live, hosting.CORE_API, [str(path)])
    assert host.core_generation == 1

    hosting._call_core(host, "handle", host, next_message(host, Exited))
    assert host.core_generation == 0  # rolled back...
    pump(host, lambda: worker.state == BACKOFF, "the previous core to handle the crash", core=live)
    assert worker.execution is None and worker.restart_at is not None  # ...and the crash was not lost
    assert any("handed again to the previous core" in line for line in logged)


def test_a_ready_a_failing_new_core_did_not_consume_is_handled_again_by_the_previous_one(
    core_host, core_copy, logged, monkeypatch
):
    """ctx.ready(), handed to a new core that raises on it: after the rollback the previous
    core gets it, so the workers after this one (AFTER) do not wait for ever."""
    from hotreload.records import Ready

    path, live = core_copy
    monkeypatch.setattr(hosting, "core", live)
    host = core_host()
    host.core_file = path
    signature = "def _on_ready(host: Host, execution: Execution) -> None:\n"
    edited(path, signature, signature + "    raise RuntimeError('a bug in the new core')\n")
    corereload.on_own_changes(host, live, hosting.CORE_API, [str(path)])
    assert host.core_generation == 1

    def signals(ctx):
        ctx.ready()
        ctx.sleep(float("inf"))

    worker = launched(host, "db", signals, core=live, ready="signal")
    hosting._call_core(host, "handle", host, next_message(host, Ready))
    assert host.core_generation == 0  # rolled back...
    pump(host, lambda: worker.ready, "the previous core to take the worker's ctx.ready()", core=live)
    assert any("handed again to the previous core" in line for line in logged)  # ...and the ready not lost
