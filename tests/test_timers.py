"""The host's timer heap, without threads: stale entries are skipped, never acted on."""
import time

from hotreload import core
from hotreload.host import Host, Options
from hotreload.settings import Settings
from hotreload.worker import Worker


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
