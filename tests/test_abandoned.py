"""At most one version of a worker runs: core's decisions about an abandoned thread,
in-process with real threads (the end-to-end case is in test_supervision.py)."""
import threading

import pytest

from hotreload import core
from hotreload.records import Host, Options
from hotreload.inbox import Inbox
from hotreload.settings import Settings
from hotreload.records import Exited, Worker
from hotreload.worker import Execution


@pytest.fixture
def stuck(tmp_path):
    """A host whose worker ``w`` is fatal with an abandoned thread still running."""
    release = threading.Event()
    host = Host(options=Options(tmp_path), package="svc", inbox=Inbox())
    worker = Worker("w", "w.py", core.logger.bind(worker="w"), Settings(), state="fatal",
                    target=lambda ctx: release.wait(10))
    host.workers["w"] = worker
    old = Execution(worker, host.inbox)
    old.start()
    old.abandoned = True
    worker.execution = old
    yield host, worker, old, release
    release.set()
    old.thread.join(10)
    if worker.execution is not None and worker.execution is not old:
        worker.execution.request_stop(1.0)
        worker.execution.thread.join(10)


def test_a_worker_is_not_launched_while_its_abandoned_thread_runs(stuck):
    host, worker, old, release = stuck
    assert core._launch(host, worker) is False
    assert worker.execution is old and worker.start_pending and worker.state == "fatal"
    assert core._start_one(host, worker).startswith("cannot start: its abandoned thread still runs")


def test_when_the_abandoned_thread_ends_a_pending_start_happens(stuck):
    host, worker, old, release = stuck
    core._launch(host, worker)
    release.set()
    old.thread.join(10)
    core._on_exit(host, Exited(old, None))
    assert worker.execution is not None and worker.execution is not old and worker.state == "running"


def test_a_worker_removed_meanwhile_is_not_started_when_its_abandoned_thread_ends(stuck):
    host, worker, old, release = stuck
    core._launch(host, worker)
    del host.workers["w"]
    release.set()
    old.thread.join(10)
    core._on_exit(host, Exited(old, None))
    assert worker.execution is None and worker.state == "fatal"
