"""Which stop and restart signals count: pure logic, no processes."""
import signal

import pytest

from hotreload.signals import DUPLICATE_WINDOW, EXIT_NOW, IGNORE, RESTART, STOP, Delivery, is_duplicate, react

INT, TERM, HUP = signal.SIGINT, signal.SIGTERM, signal.SIGHUP


def test_the_same_signal_again_within_the_window_is_a_duplicate():
    first = Delivery(INT, 100.0)
    assert is_duplicate(first, INT, 100.0)
    assert is_duplicate(first, INT, 100.0 + DUPLICATE_WINDOW - 0.001)
    assert not is_duplicate(first, INT, 100.0 + DUPLICATE_WINDOW)
    assert not is_duplicate(first, TERM, 100.01)  # another signal is another request
    assert not is_duplicate(None, INT, 100.0)
    assert not is_duplicate(first, INT, 99.0)  # a clock that went backwards proves nothing


@pytest.mark.parametrize("under_way, signum, expected", [
    (None, INT, STOP), (None, TERM, STOP), (None, HUP, RESTART),
    (STOP, INT, EXIT_NOW), (STOP, TERM, EXIT_NOW), (STOP, HUP, IGNORE),
    (RESTART, INT, STOP), (RESTART, TERM, STOP), (RESTART, HUP, IGNORE),
])
def test_what_a_signal_that_counts_asks_for(under_way, signum, expected):
    long_ago = Delivery(signum, 0.0)
    assert react(under_way, long_ago, signum, 10.0) == expected
    assert react(under_way, None, signum, 10.0) == expected


def test_a_stop_delivered_twice_stops_once_and_a_persons_second_ctrl_c_exits():
    first = Delivery(INT, 10.0)
    assert react(STOP, first, INT, 10.05) == IGNORE  # timeout -s INT: the process, then its group
    assert react(STOP, first, INT, 10.0 + DUPLICATE_WINDOW + 0.1) == EXIT_NOW
    assert react(STOP, first, TERM, 10.05) == EXIT_NOW  # a different signal is a second request


def test_two_restart_requests_are_one_restart():
    first = Delivery(HUP, 10.0)
    assert react(RESTART, first, HUP, 10.05) == IGNORE
    assert react(RESTART, first, HUP, 30.0) == IGNORE  # merged into the restart under way
    assert react(None, first, HUP, 10.05) == IGNORE  # the duplicate came after the restart
