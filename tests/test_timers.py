"""The host's timer heap: stale entries are skipped, never acted on, and a deadline once set
is kept, whatever a reload of core.py changes."""
import signal
import threading
import time

from hotreload import core
from hotreload.records import Host, Options, Signal, Worker
from hotreload.inbox import Inbox
from hotreload.settings import Settings


def test_wakeup_skips_timers_whose_worker_moved_on_and_returns_the_next_due(tmp_path):
    host = Host(options=Options(tmp_path), package="svc", inbox=None)
    now = time.monotonic()
    for name, wait in (("later", 100.0), ("sooner", 5.0), ("gone", 1.0)):
        worker = Worker(name, f"{name}.py", core.logger, Settings(), state="backoff", restart_at=now + wait)
        host.workers[name] = worker
        core._set_timer(host, worker, worker.restart_at)
    # "sooner" was restarted by a save before its backoff ran out; "gone" was deleted
    host.workers["sooner"].state, host.workers["sooner"].restart_at = "running", None
    del host.workers["gone"]
    assert 99.0 < core.wakeup(host) <= 100.0
    assert [name for _, name in host.timers] == ["later"]
    core._on_timers(host, now + 50)  # nothing due yet: nothing happens
    assert host.workers["later"].state == "backoff" and len(host.timers) == 1


def test_wakeup_is_none_without_timers(tmp_path):
    assert core.wakeup(Host(options=Options(tmp_path), package="svc", inbox=None)) is None


def test_a_changed_grace_constant_does_not_change_a_deadline_already_set(tmp_path, monkeypatch):
    """A live edit of core.py that changes INTERRUPT_GRACE between an interrupt and the end of
    its grace: the deadline was decided at the interrupt, and the stop still ends."""
    release = threading.Event()
    host = Host(options=Options(tmp_path), package="svc", inbox=Inbox())
    worker = Worker("w", "w.py", core.logger.bind(worker="w"), Settings(stop_timeout=5.0),
                    target=lambda ctx: release.wait(10))  # blocked in C: an interrupt waits for it
    host.workers["w"] = worker
    try:
        core._launch(host, worker)
        execution = worker.execution
        core.handle(host, Signal(signal.SIGTERM))
        assert execution.stop_deadline is not None and core.wakeup(host) is not None
        core._on_timers(host, execution.stop_deadline)  # the stop timed out: interrupted
        assert execution.interrupted and not execution.abandoned
        monkeypatch.setattr(core, "INTERRUPT_GRACE", core.INTERRUPT_GRACE + 1.0)  # core.py edited
        assert core.wakeup(host) is not None  # the grace still ends...
        core._on_timers(host, time.monotonic() + 60)
        assert execution.abandoned and core.finished(host)  # ...and with it the stop
    finally:
        release.set()
        execution.thread.join(10)


def test_only_a_worker_with_a_heartbeat_sets_a_timer_and_a_beat_moves_it(tmp_path):
    """No periodic wake-up when no worker sets HEARTBEAT; a beat pushes the next look to
    HEARTBEAT seconds after it, and only silence past it interrupts the run."""
    release = threading.Event()
    host = Host(options=Options(tmp_path), package="svc", inbox=Inbox())
    plain = Worker("plain", "plain.py", core.logger.bind(worker="plain"), Settings(),
                   target=lambda ctx: release.wait(10))
    beating = Worker("beating", "beating.py", core.logger.bind(worker="beating"), Settings(heartbeat=30.0),
                     target=lambda ctx: release.wait(10))
    host.workers.update(plain=plain, beating=beating)
    try:
        core._launch(host, plain)
        assert core.wakeup(host) is None
        core._launch(host, beating)
        execution = beating.execution
        assert 29.0 < core.wakeup(host) <= 30.0 and execution.hang_at == execution.started_at + 30.0
        execution.beat = execution.started_at + 10.0  # a sign of life at +10 s
        core._on_timers(host, execution.started_at + 30.0)
        assert not execution.hung and execution.hang_at == execution.started_at + 40.0
        core._on_timers(host, execution.started_at + 40.0)  # silent since: hung
        assert execution.hung and execution.interrupted and execution.abandon_at is not None
    finally:
        release.set()
        for worker in (plain, beating):
            worker.execution.thread.join(10)
