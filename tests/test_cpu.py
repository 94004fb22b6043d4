"""CPU accounting for `status`: parsing the kernel's figures, the window, a worker's total (pure)."""
import threading
import time

import pytest

from hotreload import cpu

# /proc/self/task/TID/stat of a thread whose name holds spaces and parentheses: utime 250
# and stime 50 ticks (fields 14 and 15).
THREAD_STAT = "4242 (worker:a (b) c) S 4200 4200 4100 0 -1 4194368 900 0 0 0 250 50 0 0 20 0 7 0 1013300 " \
              "3133440 2048 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"


def test_a_threads_cpu_is_utime_plus_stime_in_seconds_whatever_its_name_holds():
    assert cpu.parse_thread_stat(THREAD_STAT, ticks_per_second=100) == pytest.approx(3.0)
    assert cpu.parse_thread_stat(THREAD_STAT, ticks_per_second=250) == pytest.approx(1.2)
    named_like_fields = THREAD_STAT.replace("(worker:a (b) c)", "(x) S 1 2 3 99 99 (y)")
    assert cpu.parse_thread_stat(named_like_fields, ticks_per_second=100) == pytest.approx(3.0)


def test_the_process_usage_is_its_cpu_threads_and_resident_pages():
    usage = cpu.parse_process_stat(THREAD_STAT, ticks_per_second=100, page_size=4096)
    assert usage == cpu.Usage(cpu_seconds=pytest.approx(3.0), threads=7, rss_bytes=2048 * 4096)


@pytest.mark.parametrize("text", ["", "4242 (x", "4242 (x) S 1 2", "4242 (x) S " + "a " * 30])
def test_a_stat_line_that_cannot_be_read_is_an_error(text):
    with pytest.raises(ValueError):
        cpu.parse_thread_stat(text, ticks_per_second=100)
    with pytest.raises(ValueError):
        cpu.parse_process_stat(text, ticks_per_second=100, page_size=4096)


def sample(at, host=0.0, **workers):
    return cpu.Sample(at=at, host_seconds=host, workers=workers)


def test_the_window_starts_at_the_newest_kept_sample_old_enough_and_not_too_old():
    old, recent = sample(100.0), sample(104.8)
    assert cpu.base_for([old, recent], now=105.0) is old  # recent is under MIN_WINDOW old
    assert cpu.base_for([old, recent], now=105.3) is recent
    assert cpu.base_for([recent], now=105.0) is None
    assert cpu.base_for([old], now=100.0 + cpu.MAX_WINDOW + 0.1) is None
    assert cpu.base_for([], now=1.0) is None


def test_at_most_two_samples_are_kept_and_always_one_base_for_the_next_request():
    kept: list = []
    for at in (10.0, 10.1, 10.2, 10.6, 10.7, 12.0):
        kept = cpu.keep(kept, sample(at))
        assert len(kept) <= 2
        assert cpu.base_for(kept, now=at + cpu.MIN_WINDOW) is not None  # a request soon after has one
    assert [s.at for s in cpu.keep([sample(10.0), sample(10.6)], sample(10.7))] == [10.0, 10.6]
    assert [s.at for s in cpu.keep([sample(10.0), sample(10.6)], sample(11.1))] == [10.6, 11.1]


def test_percentages_are_of_one_core_over_the_window():
    base = sample(10.0, host=5.0, busy=2.0, idle=1.0, gone=3.0)
    now = sample(12.0, host=6.5, busy=3.8, idle=1.0, new=0.4, reborn=0.1)
    base = cpu.Sample(base.at, base.host_seconds, {**base.workers, "reborn": 9.0})
    usage = cpu.usage(base, now)
    assert usage.window == pytest.approx(2.0)
    assert usage.host_percent == pytest.approx(75.0)
    assert usage.workers == {"busy": pytest.approx(90.0), "idle": 0.0, "new": pytest.approx(20.0),
                             "reborn": pytest.approx(5.0)}  # a fresh record counts from zero
    nothing = cpu.usage(None, now)
    assert nothing.window is None and nothing.host_percent is None and nothing.workers == {}


class Thread:
    """Stands for a threading.Thread: only its native_id is read."""

    def __init__(self, native_id):
        self.native_id = native_id


def test_a_workers_total_is_its_ended_threads_plus_its_live_ones():
    account = cpu.Account()
    live, ending, unstarted = Thread(1), Thread(2), Thread(None)
    readings = {1: 1.5, 2: 0.7}
    assert cpu.worker_seconds(account, [live, ending, unstarted], readings.get) == pytest.approx(2.2)
    account.ended(ending, 0.75)  # its last act: counted once, from its own final figure
    assert cpu.worker_seconds(account, [live, ending], readings.get) == pytest.approx(2.25)
    assert cpu.worker_seconds(account, [live], readings.get) == pytest.approx(2.25)
    readings.pop(1)  # gone between listing and reading, before it could record its end
    assert cpu.worker_seconds(account, [live], readings.get) == pytest.approx(0.75)


def test_threads_are_grouped_by_their_owner():
    threads = [Thread(1), Thread(2), Thread(3)]
    owners = {1: "a", 3: "a", 2: None}
    grouped = cpu.threads_by_owner(threads, lambda thread: owners[thread.native_id])
    assert grouped == {"a": [threads[0], threads[2]]}


def test_the_kernel_figures_of_this_process_and_a_spinning_thread():
    spent = threading.Event()

    def spin():
        end = time.thread_time() + 0.2
        while time.thread_time() < end:
            pass
        spent.set()
        stop.wait(5)

    stop = threading.Event()
    thread = threading.Thread(target=spin, name="test:spin")
    thread.start()
    try:
        assert spent.wait(10)
        assert cpu.thread_seconds(thread.native_id) >= 0.15  # ticks: 10 ms resolution
    finally:
        stop.set()
        thread.join(5)
    deadline = time.monotonic() + 10  # join returns a moment before the kernel's task ends
    while cpu.thread_seconds(thread.native_id) is not None and time.monotonic() < deadline:
        time.sleep(0.001)
    assert cpu.thread_seconds(thread.native_id) is None  # ended: no such task any more
    usage = cpu.process_usage()
    assert usage.cpu_seconds >= 0.15 and usage.threads >= 1 and usage.rss_bytes > 1 << 20


def test_a_thread_records_its_own_cpu_as_its_last_act():
    account = cpu.Account()

    def spin():
        end = time.thread_time() + 0.1
        while time.thread_time() < end:
            pass
        account.thread_ended()

    thread = threading.Thread(target=spin, name="test:spin")
    thread.start()
    thread.join(10)
    assert cpu.worker_seconds(account, [thread], lambda tid: 99.0) == pytest.approx(0.1, abs=0.05)
