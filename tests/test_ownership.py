"""Which worker a thread belongs to: its own thread, and every thread started from one of its threads."""
from __future__ import annotations

import asyncio
import concurrent.futures
import threading

from hotreload import ownership

ownership.install()


def started(target, name: str = "test-thread") -> threading.Thread:
    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    return thread


def in_thread(worker: str | None, action):
    """Run ``action()`` in a new thread adopted by ``worker`` (None: nobody's) and return its result."""
    result: list = []
    thread = threading.Thread(target=lambda: result.append(action()), name="adopted", daemon=True)
    if worker is not None:
        ownership.adopt(thread, worker)
    thread.start()
    thread.join(10)
    assert not thread.is_alive()
    return result[0]


def test_an_adopted_thread_belongs_to_its_worker_and_others_to_nobody():
    assert in_thread("ticker", ownership.current) == "ticker"
    assert in_thread(None, ownership.current) is None
    assert ownership.current() is None  # the test's own thread


def test_a_thread_started_from_a_worker_thread_belongs_to_that_worker_and_so_on_down():
    def grandchild_owner():
        return in_thread(None, lambda: in_thread(None, ownership.current))

    assert in_thread("poller", grandchild_owner) == "poller"
    assert in_thread(None, grandchild_owner) is None


def test_executor_threads_and_asyncio_tasks_of_a_worker_belong_to_it():
    def pool_owner():
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            return pool.submit(ownership.current).result(10)

    async def task_and_to_thread():
        task_owner = await asyncio.create_task(asyncio.sleep(0, ownership.current()))
        return task_owner, await asyncio.to_thread(ownership.current)

    assert in_thread("pool", pool_owner) == "pool"
    assert in_thread("aio", lambda: asyncio.run(task_and_to_thread())) == ("aio", "aio")


def test_an_explicit_adoption_is_kept_whoever_starts_the_thread():
    def start_one_adopted_by_b():
        return in_thread("b", ownership.current)

    assert in_thread("a", start_one_adopted_by_b) == "b"


def test_owner_by_ident_while_the_thread_lives_and_none_once_it_has_ended():
    release = threading.Event()
    seen: list = []

    def body():
        seen.append(threading.get_ident())
        release.wait(10)

    thread = threading.Thread(target=body, name="by-ident", daemon=True)
    ownership.adopt(thread, "w")
    thread.start()
    try:
        assert ownership.owner(thread.ident) == "w"
        assert seen == [thread.ident]
        assert ownership.owner(threading.get_ident()) is None
    finally:
        release.set()
        thread.join(10)
    assert ownership.owner(thread.ident) is None
    assert ownership.owner(-1) is None


def test_install_twice_wraps_thread_start_once():
    wrapped = threading.Thread.start
    ownership.install()
    assert threading.Thread.start is wrapped


def test_a_thread_started_from_a_worker_thread_gives_its_cpu_time_to_the_worker_as_it_ends():
    import time

    from hotreload import cpu

    account = cpu.Account()

    def spin():
        end = time.thread_time() + 0.1
        while time.thread_time() < end:
            pass

    def start_two():  # a plain thread and a pool's: both the worker's
        in_thread(None, spin)
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(spin).result(10)

    thread = threading.Thread(target=start_two, name="adopted", daemon=True)
    ownership.adopt(thread, "burner", account)
    thread.start()
    thread.join(10)
    assert 0.2 <= account.seconds() < 0.4  # the two spins; not the adopted thread's own, its Execution records that
    in_thread(None, spin)
    assert account.seconds() < 0.4  # a thread of nobody's counts for no one
