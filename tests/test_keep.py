"""ctx.keep's store and its closing, in-process: what is created once, what is closed how."""
import threading

import pytest

from hotreload import keep
from hotreload.keep import Kept
from hotreload.log import format_error


class Resource:
    def __init__(self, name, closed):
        self.name = name
        self._closed = closed

    def close(self):
        self._closed.append(self.name)


class Log:
    """A stand-in for a worker's loguru logger: what was said, by level."""

    def __init__(self):
        self.lines = []

    def __getattr__(self, level):
        return lambda message: self.lines.append((level, message))


def test_create_is_called_only_the_first_time_a_key_is_asked_for():
    kept, calls = Kept(), []

    def create():
        calls.append(1)
        return object()

    first = kept.get("listener", create)
    assert kept.get("listener", create) is first and kept.get("listener", lambda: "other") is first
    assert calls == [1] and len(kept) == 1 and list(kept) == ["listener"]
    assert kept.get("pool", lambda: "other") == "other" and len(kept) == 2


def test_a_create_that_raises_keeps_nothing_and_is_called_again_next_time():
    kept = Kept()

    def fails():
        raise ConnectionError("the database went away")

    with pytest.raises(ConnectionError):
        kept.get("db", fails)
    assert len(kept) == 0
    assert kept.get("db", lambda: "connected") == "connected"


def test_close_all_closes_newest_first_with_the_close_given_else_the_objects_close():
    kept, closed, log = Kept(), [], Log()
    kept.get("a", lambda: Resource("a", closed))
    kept.get("b", lambda: "no close method")
    kept.get("c", lambda: Resource("c", closed), close=lambda r: closed.append(f"custom {r.name}"))
    assert keep.close_all(kept, "w", log, timeout=5, describe=format_error) is True
    assert closed == ["custom c", "a"]
    assert len(kept) == 0
    assert log.lines == [("info", "closed what it kept: 'c', 'b', 'a'")]


def test_the_close_given_by_the_latest_call_is_the_one_used():
    kept, closed = Kept(), []
    kept.get("a", lambda: Resource("a", closed), close=lambda r: closed.append("old close"))
    kept.get("a", lambda: Resource("a", closed), close=lambda r: closed.append("new close"))
    keep.close_all(kept, "w", Log(), timeout=5, describe=format_error)
    assert closed == ["new close"]


def test_a_close_that_raises_is_logged_and_the_others_are_still_closed():
    kept, closed, log = Kept(), [], Log()
    kept.get("a", lambda: Resource("a", closed))

    def broken(resource):
        raise OSError("already closed by someone")

    kept.get("b", lambda: Resource("b", closed), close=broken)
    kept.get("c", lambda: Resource("c", closed), close=lambda r: exit(3))  # even SystemExit
    assert keep.close_all(kept, "w", log, timeout=5, describe=format_error) is True
    assert closed == ["a"]
    errors = [message for level, message in log.lines if level == "error"]
    assert len(errors) == 2
    assert errors[0].startswith("closing 'c' raised:") and "SystemExit: 3" in errors[0]
    assert errors[1].startswith("closing 'b' raised:") and "OSError: already closed by someone" in errors[1]


def test_a_close_that_blocks_is_given_up_on_after_the_timeout():
    kept, release, log = Kept(), threading.Event(), Log()
    kept.get("stuck", lambda: "x", close=lambda r: release.wait(10))
    try:
        assert keep.close_all(kept, "w", log, timeout=0.1, describe=format_error) is False
        assert log.lines[-1][0] == "warning" and "closing what it kept did not end within 0.1 s" in log.lines[-1][1]
        assert any(t.name == "hotreload:close:w" for t in threading.enumerate())
    finally:
        release.set()
    for thread in threading.enumerate():
        if thread.name == "hotreload:close:w":
            thread.join(10)


def test_nothing_kept_closes_nothing_and_says_nothing():
    log = Log()
    assert keep.close_all(Kept(), "w", log, timeout=5, describe=format_error) is True
    assert log.lines == []


def test_two_threads_asking_for_the_same_key_at_once_create_it_once():
    kept, calls, gate = Kept(), [], threading.Barrier(2)

    def create():
        calls.append(1)
        return object()

    results = []

    def ask():
        gate.wait(5)
        results.append(kept.get("k", create))

    threads = [threading.Thread(target=ask, name=f"test-ask-{i}") for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert len(calls) == 1 and results[0] is results[1]


def test_create_may_keep_something_else_itself():
    kept = Kept()
    pool = kept.get("pool", lambda: ["conn", kept.get("config", lambda: {"size": 2})])
    assert pool[1] == {"size": 2} and list(kept) == ["config", "pool"]


def test_a_create_that_blocks_holds_up_neither_other_keys_nor_the_closing():
    """A worker's thread stuck in one key's create (a connection that never answers) must not
    freeze its other keys, nor the host loop that closes what it kept at a stop."""
    kept, entered, release, log = Kept(), threading.Event(), threading.Event(), Log()
    kept.get("fast", lambda: "made")

    def stuck():
        entered.set()
        release.wait(10)
        return "late"

    creator = threading.Thread(target=lambda: kept.get("slow", stuck), name="test-stuck-create", daemon=True)
    creator.start()
    try:
        assert entered.wait(5)
        other = []
        asker = threading.Thread(target=lambda: other.append(kept.get("other", lambda: "o")), name="test-other",
                                 daemon=True)
        asker.start()
        asker.join(2)
        assert other == ["o"], "ctx.keep of another key waited for a create it has nothing to do with"
        closer = threading.Thread(target=keep.close_all, args=(kept, "w", log, 0.2, format_error),
                                  name="test-closer", daemon=True)
        closer.start()
        closer.join(3)
        assert not closer.is_alive(), "close_all waited for a create that never returns"
    finally:
        release.set()
        creator.join(5)
        for thread in threading.enumerate():
            if thread.name == "hotreload:close:w":
                thread.join(5)


def test_a_key_is_made_of_values_equal_in_every_version_of_the_code():
    from hotreload.keep import key_problem

    class Address:  # as a worker's module would define it: a new class at each reload
        pass

    for good in ("listener", ("listener", "127.0.0.1", 8000), frozenset({1, "a"}), None, 3.5, b"k", (("a", 1), True)):
        assert key_problem(good) is None, good
    for bad in (Address(), ("listener", Address()), (("nested", [1]),)):
        assert "a key is made of str" in key_problem(bad)
    with pytest.raises(TypeError, match="Address is not one"):
        Kept().get(("listener", Address()), object)
