"""The host's inbox: ordered messages, bounded waits, and woken by a signal that another
thread received (the case a lock-based queue sleeps through)."""
import signal
import threading
import time

import pytest

from hotreload.inbox import Inbox


def test_messages_come_out_in_order_and_an_empty_wait_is_bounded():
    inbox = Inbox()
    for n in range(3):
        inbox.put(n)
    assert [inbox.get(1.0) for _ in range(3)] == [0, 1, 2]
    started = time.monotonic()
    assert inbox.get(0.05) is None
    assert time.monotonic() - started < 5


def test_a_put_from_another_thread_wakes_a_wait_without_a_limit():
    inbox = Inbox()
    threading.Thread(target=inbox.put, args=("hello",)).start()
    message = inbox.get(None)
    while message is None:  # a wake-up byte can outlive its message: wait again
        message = inbox.get(None)
    assert message == "hello"


@pytest.fixture
def usr1_posts_to():
    previous_handler = signal.getsignal(signal.SIGUSR1)
    yield lambda inbox: signal.signal(signal.SIGUSR1, lambda s, f: inbox.put("signal"))
    signal.signal(signal.SIGUSR1, previous_handler)
    signal.set_wakeup_fd(-1)


def test_a_signal_delivered_to_another_thread_wakes_the_main_thread(usr1_posts_to):
    inbox = Inbox()
    inbox.wake_on_signals()
    usr1_posts_to(inbox)
    worker = threading.Thread(target=lambda: signal.pthread_kill(threading.get_ident(), signal.SIGUSR1))
    worker.start()
    message = inbox.get(10.0)  # woken by the signal's byte: its handler runs right after
    if message is None:
        message = inbox.get(10.0)
    worker.join(10.0)
    assert message == "signal"


@pytest.mark.parametrize("timeout", [float("inf"), 1e10, float("nan")])
def test_a_timeout_too_long_for_the_platform_is_a_long_wait_not_a_crash(timeout):
    inbox = Inbox()
    timer = threading.Timer(0.05, inbox.put, args=("hello",))
    timer.start()
    message = inbox.get(timeout)
    while message is None:  # a wake-up byte can outlive its message: wait again
        message = inbox.get(timeout)
    timer.join(5)
    assert message == "hello"
