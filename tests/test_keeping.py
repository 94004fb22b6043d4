"""ctx.keep under the real `hotreload run`: made once, kept across reloads, restarts and
crashes, closed after the worker's own finally when it is removed or the host stops."""
import signal


from conftest import worker_source, write

# A resource that says when it is made and closed, tagged with the id of the object.
RESOURCE = '''
class Resource:
    def __init__(self):
        report("res", "created", id(self))

    def close(self):
        report("res", "closed", id(self))
'''
KEEP = 'res = ctx.keep("res", Resource)\nreport(ctx.name, "has", id(res))'
FAST = {"initial": 0.01, "max": 0.05, "fatal_after": 1000}


def said(host, name, what):
    """The last words of every line ``name WHAT ...`` of the report."""
    return [line.split()[2:] for line in host.events(name) if line.split()[1] == what]


def test_what_a_worker_keeps_is_made_once_across_reloads_restarts_and_crashes(folder, start_host):
    write(folder / "w.py", worker_source(1, top=RESOURCE, body=KEEP))
    host = start_host(folder)
    host.wait_for(lambda: said(host, "w", "has"), "the first version to keep its resource")
    write(folder / "w.py", worker_source(2, top=RESOURCE, body=KEEP))
    host.wait_for(lambda: len(said(host, "w", "has")) == 2, "the second version to keep it")
    write(folder / "w.py", worker_source(3, top=RESOURCE, body=KEEP + '\nraise RuntimeError("boom")', BACKOFF=FAST))
    host.wait_for(lambda: len(said(host, "w", "has")) >= 5, "the crashing version to restart")
    created = said(host, "res", "created")
    assert len(created) == 1
    assert {tuple(words) for words in said(host, "w", "has")} == {tuple(created[0])}
    assert said(host, "res", "closed") == []
    assert host.stop() == 0
    assert said(host, "res", "closed") == created


def test_a_removed_worker_closes_what_it_kept_after_its_finally(folder, start_host):
    write(folder / "w.py", worker_source(1, top=RESOURCE, body=KEEP))
    write(folder / "other.py", worker_source(1))
    host = start_host(folder)
    host.wait_for(lambda: said(host, "w", "has"), "the worker to keep its resource")
    (folder / "w.py").unlink()
    host.wait_for(lambda: said(host, "res", "closed"), "the resource to be closed")
    events = host.events()
    assert events.index("w stop 1 1") < events.index(f"res closed {said(host, 'res', 'created')[0][0]}")
    assert "| w          | closed what it kept: 'res'" in host.log()
    assert host.stop() == 0
    assert len(said(host, "res", "closed")) == 1  # not again at the host's stop


def test_the_host_stop_closes_what_every_worker_kept_running_or_not(folder, start_host):
    write(folder / "running.py", worker_source(1, top=RESOURCE, body=KEEP))
    write(folder / "done.py", worker_source(1, top=RESOURCE, body=KEEP + "\nreturn", RESTART="never"))
    host = start_host(folder)
    host.wait_log("| done       | exited: returned")
    host.wait_for(lambda: said(host, "running", "has"), "the running worker to keep its resource")
    assert said(host, "res", "closed") == []
    assert host.stop() == 0
    events = host.events()
    for name in ("running", "done"):
        closed = events.index(f"res closed {said(host, name, 'has')[0][0]}")
        assert closed > events.index(f"{name} stop 1 1")
    assert len(said(host, "res", "closed")) == 2


def test_a_create_that_raises_is_a_crash_and_the_next_start_calls_it_again(folder, start_host):
    flaky = RESOURCE + '''
ATTEMPTS = []


def connect():
    ATTEMPTS.append(1)
    if len(ATTEMPTS) < 3:
        raise ConnectionError(f"refused, attempt {len(ATTEMPTS)}")
    return Resource()
'''
    body = 'res = ctx.keep("res", connect)\nreport(ctx.name, "has", id(res))'
    write(folder / "w.py", worker_source(1, top=flaky, body=body, BACKOFF=FAST))
    host = start_host(folder)
    host.wait_for(lambda: said(host, "w", "has"), "the third start to keep its resource")
    log = host.log()
    assert "ConnectionError: refused, attempt 2" in log
    assert log.count("| w          | backoff: crashed; restarting in") == 2
    assert len(said(host, "res", "created")) == 1 and len(host.starts("w")) == 3
    assert host.stop() == 0


# Ignores its stop and even the Interrupted raised into it, until the test creates RELEASE.
STUCK = '''
import time


def stuck():
    # The host's one interrupt lands at any bytecode: every one of them is inside the try.
    while True:
        try:
            while not _os.path.exists(_os.environ["RELEASE"]):
                time.sleep(0.02)
            return
        except BaseException:
            pass
'''


def test_what_an_abandoned_thread_kept_is_closed_only_when_that_thread_ends(folder, start_host, tmp_path):
    release = tmp_path / "release"
    write(folder / "w.py", worker_source(1, top=RESOURCE + STUCK, body=KEEP + "\nstuck()", STOP_TIMEOUT=0.2))
    host = start_host(folder, env={"RELEASE": str(release)})
    host.wait_for(lambda: said(host, "w", "has"), "the worker to keep its resource")
    (folder / "w.py").unlink()
    host.wait_log("its abandoned thread may still use them")
    host.barrier()  # the removal is done
    assert said(host, "res", "closed") == []
    release.touch()
    host.wait_for(lambda: said(host, "res", "closed"), "the resource to be closed once the thread ended")
    events = host.events()
    assert events.index("w stop 1 1") < events.index(f"res closed {said(host, 'res', 'created')[0][0]}")
    assert host.stop() == 0


def test_a_host_that_stops_with_an_abandoned_thread_leaves_what_it_kept_open(folder, start_host, tmp_path):
    write(folder / "w.py", worker_source(1, top=RESOURCE + STUCK, body=KEEP + "\nstuck()", STOP_TIMEOUT=0.2))
    host = start_host(folder, env={"RELEASE": str(tmp_path / "never")})
    host.wait_for(lambda: said(host, "w", "has"), "the worker to keep its resource")
    assert host.stop(signal.SIGTERM) == 1
    assert "its abandoned thread may still use them" in host.log()
    assert said(host, "res", "closed") == []


def test_a_thread_stuck_in_a_create_does_not_hold_up_the_host_stop(folder, start_host):
    # A thread of the worker blocks in a create (a connect without a timeout); the worker's
    # own run stops as asked. The host must still exit within its bound, not wait on it.
    body = '''
        import threading, time
        threading.Thread(target=lambda: ctx.keep("never", lambda: time.sleep(3600)), daemon=True).start()
        report(ctx.name, "asked")
    '''
    write(folder / "w.py", worker_source(1, body=body))
    host = start_host(folder, "--stop-timeout", "1")
    host.wait_for(lambda: said(host, "w", "asked"), "the worker to start its stuck thread")
    assert host.stop(timeout=1 + 2 + 5) in (0, 1)
    assert "w stop 1 1" in host.events()


BLOCKING_CLOSE = '''
import time
def close(obj):
    report(ctx.name, "closing", time.monotonic())
    time.sleep(3600)
ctx.keep("k", lambda: 1, close)
'''


def test_blocking_closes_at_the_host_stop_hold_up_neither_each_other_nor_the_other_workers_stops(
    folder, start_host
):
    # Each close blocks (a pool whose shutdown hangs): the host gives each up after the stop
    # timeout. They must be waited for together, and meanwhile the workers that stopped at
    # once must not be reported as "did not stop" and interrupted.
    for name in ("a", "b", "c"):
        write(folder / f"{name}.py", worker_source(1, body=BLOCKING_CLOSE.replace("\n", "\n        ")))
    host = start_host(folder, "--stop-timeout", "1")
    for name in ("a", "b", "c"):
        host.wait_started(name, 1)
    host.stop(timeout=3 * (1 + 2) + 5)
    starts = sorted(float(words[0]) for name in ("a", "b", "c") for words in said(host, name, "closing"))
    assert len(starts) == 3
    assert "did not stop within" not in host.log()
    assert starts[-1] - starts[0] < 0.9  # not one stop timeout after the other


ADDRESS_CLASS = '''
from dataclasses import dataclass

@dataclass(frozen=True)
class Address:
    host: str
    port: int
'''
KEEP_BY_ADDRESS = 'res = ctx.keep(("res", Address("127.0.0.1", 8000)), Resource)\nreport(ctx.name, "has", id(res))'


def test_a_key_made_of_the_workers_own_class_is_refused_as_it_would_not_find_its_object_after_a_reload(
    folder, start_host
):
    """A new class after each reload: the key would no longer be equal, and a second listener
    would be made on the same address (EADDRINUSE). Refused at once, with what to use."""
    write(folder / "w.py", worker_source(1, top=RESOURCE + ADDRESS_CLASS, body=KEEP_BY_ADDRESS, BACKOFF=FAST))
    host = start_host(folder)
    host.wait_log("ctx.keep: a key is made of str, bytes, int, float, bool, None and tuples of them")
    assert "Address is not one" in host.log()
    assert said(host, "res", "created") == []
    assert host.stop() == 0
