"""The journal: bounded buffers of log records and events, and the followers that stream them."""
import json
import os

import itertools

from hotreload import events, journal
from hotreload.journal import Journal

CLOCK = itertools.count(1_700_000_000)  # each record a second after the one before


def record(worker: str, message: str, time: str = "2024-01-01T00:00:00+00:00") -> dict:
    return {"time": time, "level": "INFO", "worker": worker, "message": message}


def messages(lines: list[bytes]) -> list[str]:
    return [json.loads(line)["message"] for line in lines]


class Wakes:
    """Counts the wake-ups a journal asks for."""

    def __init__(self):
        self.count = 0

    def __call__(self):
        self.count += 1


def test_each_name_keeps_its_last_records_up_to_the_bound():
    kept = Journal(lines_kept=3)
    for i in range(10):
        kept.add_record(record("a", f"a{i}"), next(CLOCK))
    kept.add_record(record("b", "b0"), next(CLOCK))
    assert messages(kept.tail("logs", ["a"], 100)[0]) == ["a7", "a8", "a9"]
    assert messages(kept.tail("logs", ["b"], 100)[0]) == ["b0"]  # a's flood did not push b's out


def test_each_name_keeps_at_most_its_byte_budget():
    kept = Journal(bytes_kept=2000)
    for i in range(100):
        kept.add_record(record("a", f"{i:03d}" + "x" * 200), next(CLOCK))
    lines = kept.tail("logs", ["a"], 1000)[0]
    assert sum(map(len, lines)) <= 2000 and len(lines) == 2000 // len(lines[0])
    assert messages(lines)[-1].startswith("099")


def test_a_multi_line_record_is_one_record_and_an_oversized_one_is_cut_in_the_middle():
    kept = Journal()
    traceback = "crashed after 0.1 s:\nTraceback (most recent call last):\n  File ...\nRuntimeError: no"
    kept.add_record(record("a", traceback), next(CLOCK))
    huge = "HEAD" + "x" * (journal.RECORD_MAX * 2) + "TAIL"
    kept.add_record(record("a", huge), next(CLOCK))
    first, second = messages(kept.tail("logs", ["a"], 10)[0])
    assert first == traceback
    assert second.startswith("HEAD") and second.endswith("TAIL") and len(second) <= journal.RECORD_MAX
    assert "characters cut" in second
    assert journal.cut("short", 10) == "short"


def test_the_cut_mark_says_how_much_went():
    cut = journal.cut("a" * 100 + "b" * 100, 50)
    head, tail = cut.split(" [")[0], cut.split("] ")[-1]
    assert len(cut) <= 50 and set(head) == {"a"} and set(tail) == {"b"}
    assert cut == head + journal.cut_mark(200 - len(head) - len(tail)) + tail


def test_the_tail_interleaves_names_in_the_order_logged_and_keeps_the_last_n_overall():
    kept = Journal()
    for i in range(5):
        kept.add_record(record("a", f"a{i}"), next(CLOCK))
        kept.add_record(record("host", f"h{i}"), next(CLOCK))
        kept.add_record(record("b", f"b{i}"), next(CLOCK))
    assert messages(kept.tail("logs", [], 4)[0]) == ["h3", "b3", "a4", "h4", "b4"][1:]
    assert messages(kept.tail("logs", ["a", "b"], 3)[0]) == ["b3", "a4", "b4"]
    assert kept.tail("logs", ["a"], 0)[0] == []
    line = kept.tail("logs", ["a"], 1)[0][0]
    assert line.endswith(b"\n") and json.loads(line) == record("a", "a4")  # the --log-json line itself


def test_a_record_of_another_thread_that_came_in_late_is_shown_at_its_time():
    kept = Journal()
    kept.add_record(record("b", "b at 10"), 10.0)
    kept.add_record(record("a", "a at 5, received after"), 5.0)
    kept.add_record(record("a", "a at 10 too"), 10.0)  # the same instant: in the order received
    assert messages(kept.tail("logs", [], 10)[0]) == ["a at 5, received after", "b at 10", "a at 10 too"]
    assert messages(kept.tail("logs", [], 2)[0]) == ["b at 10", "a at 10 too"]


def test_events_are_stamped_and_bounded():
    kept = Journal(events_kept=3)
    for i in range(5):
        kept.add_event(events.command("stop", [f"w{i}"]), at=1_700_000_000.0 + i)
    lines = kept.tail("events", [], None)[0]
    assert [json.loads(line)["names"] for line in lines] == [["w2"], ["w3"], ["w4"]]
    assert json.loads(lines[0])["time"] == events.stamped({}, 1_700_000_002.0)["time"]


def test_names_are_the_host_and_every_name_that_logged_or_had_an_event():
    kept = Journal()
    assert kept.names() == {"host"}
    kept.add_record(record("a", "hello"), next(CLOCK))
    kept.add_event(events.state_changed("quiet", "running", "starting"))
    kept.add_event(events.command("stop", ["x"]))  # the host's: no worker
    assert kept.names() == {"host", "a", "quiet"}


def test_a_follower_gets_what_comes_after_its_tail_and_one_wake_up_until_it_takes():
    kept = Journal()
    kept.add_record(record("a", "before"), next(CLOCK))
    wakes = Wakes()
    tail, follower = kept.tail("logs", ["a"], 10, wake=wakes)
    assert messages(tail) == ["before"] and wakes.count == 0
    kept.add_record(record("a", "one"), next(CLOCK))
    kept.add_record(record("b", "not followed"), next(CLOCK))
    kept.add_record(record("a", "two"), next(CLOCK))
    kept.add_event(events.command("stop", ["a"]))  # an event is not a log line
    assert wakes.count == 1  # one wake-up for the batch
    lines, dropped = kept.take(follower)
    assert messages(lines) == ["one", "two"] and dropped == 0
    assert kept.take(follower) == ([], 0)
    kept.add_record(record("a", "three"), next(CLOCK))
    assert wakes.count == 2 and messages(kept.take(follower)[0]) == ["three"]
    kept.unfollow(follower)
    kept.add_record(record("a", "after"), next(CLOCK))
    assert wakes.count == 2 and kept.take(follower) == ([], 0)


def test_an_events_follower_gets_events_only():
    kept = Journal()
    wakes = Wakes()
    _, follower = kept.tail("events", [], None, wake=wakes)
    kept.add_record(record("a", "a log line"), next(CLOCK))
    assert wakes.count == 0
    kept.add_event(events.crashed("a", "KeyError", "KeyError: 'k'"))
    lines, _ = kept.take(follower)
    assert [json.loads(line)["event"] for line in lines] == ["crash"]


def test_a_follower_that_does_not_take_costs_a_bounded_queue_and_is_told_how_much_it_missed():
    kept = Journal(queue_lines=5)
    wakes = Wakes()
    _, follower = kept.tail("logs", [], 0, wake=wakes)
    for i in range(1000):
        kept.add_record(record("a", f"m{i}"), next(CLOCK))
    assert wakes.count == 1  # not once per record
    lines, dropped = kept.take(follower)
    assert messages(lines) == [f"m{i}" for i in range(5)] and dropped == 995
    kept.add_record(record("a", "next"), next(CLOCK))
    assert kept.take(follower) == (kept.tail("logs", ["a"], 1)[0], 0)


def test_a_follower_queue_is_bounded_in_bytes_too():
    kept = Journal(queue_bytes=1000)
    _, follower = kept.tail("logs", [], 0, wake=Wakes())
    for i in range(50):
        kept.add_record(record("a", "x" * 100), next(CLOCK))
    lines, dropped = kept.take(follower)
    assert sum(map(len, lines)) <= 1000 and dropped == 50 - len(lines) and lines


def test_no_follower_no_wake_up_and_a_record_logged_costs_no_call():
    kept = Journal()
    _, follower = kept.tail("logs", [], 0, wake=None)
    assert follower is None
    kept.add_record(record("a", "alone"), next(CLOCK))  # nothing to call: nothing was given


def test_past_the_name_bound_the_name_that_logged_least_recently_goes():
    kept = Journal(names_kept=3)
    for name in ("a", "b", "c"):
        kept.add_record(record(name, name), next(CLOCK))
    kept.add_record(record("a", "a again"), next(CLOCK))
    kept.add_record(record("d", "d"), next(CLOCK))
    assert {"a", "c", "d"} <= kept.names() and kept.tail("logs", ["b"], 10)[0] == []


def test_a_forked_child_has_no_followers_and_a_lock_of_its_own():
    kept = Journal()
    wakes = Wakes()
    _, follower = kept.tail("logs", [], 0, wake=wakes)
    with kept._lock:  # held by this thread at the fork: the child must not inherit it held
        pid = os.fork()
        if pid == 0:  # the child: log, and report through the exit status
            try:
                kept.add_record(record("a", "from the child"), next(CLOCK))
                os._exit(0 if wakes.count == 0 and kept.take(follower) == ([], 0) else 3)
            finally:
                os._exit(4)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_a_tail_longer_than_anything_kept_gives_everything_kept():
    kept = Journal()
    for n in range(3):
        kept.add_record(record("w", f"line {n}"), at=float(n))
    lines, _ = kept.tail(journal.LOGS, ["w"], 10 ** 30)
    assert [json.loads(line)["message"] for line in lines] == ["line 0", "line 1", "line 2"]
