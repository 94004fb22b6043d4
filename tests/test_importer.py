"""The importer thread and its job bookkeeping, in-process."""
import sys
import threading

from hotreload import importer
from hotreload.inbox import Inbox


def test_a_slow_job_is_reported_at_5_10_20_40_s_then_at_least_once_a_minute():
    times, last = [], 0.0
    for _ in range(8):
        last = importer.next_report(last)
        times.append(last)
    assert times == [5, 10, 20, 40, 80, 140, 200, 260]


def test_run_keeps_what_the_job_returned_or_raised_even_system_exit():
    assert importer.run(importer.Job("t", "doing", lambda: 42)).result == 42
    job = importer.run(importer.Job("t", "doing", lambda: sys.exit(3)))
    assert isinstance(job.error, SystemExit) and job.result is None


def test_jobs_run_in_turn_in_a_named_thread_and_come_back_as_loaded_messages():
    inbox = Inbox()
    thread = importer.Importer(inbox)
    thread.start()
    names = []
    for n in range(3):
        thread.submit(importer.Job("t", f"job {n}", lambda n=n: names.append(threading.current_thread().name) or n))
    results = []
    while len(results) < 3:
        message = inbox.get(5.0)
        assert isinstance(message, importer.Loaded)
        results.append(message.job.result)
    assert results == [0, 1, 2] and names == ["hotreload:importer"] * 3
    assert thread.stop(5.0)


def test_stop_waits_a_bounded_time_for_a_job_that_does_not_end():
    release = threading.Event()
    thread = importer.Importer(Inbox())
    thread.start()
    thread.submit(importer.Job("t", "hanging", lambda: release.wait(30)))
    assert not thread.stop(0.05) and thread.thread.daemon
    release.set()
    thread.thread.join(5.0)
    assert not thread.thread.is_alive()
