"""Supervision never dies: whatever a worker raises, defines or leaves behind, the host
keeps supervising every worker (the real `hotreload run` in a subprocess)."""
import json
import os
import socket

from conftest import run_cli, worker_source, write

# An exception whose __str__ (and __repr__) raise: formatting it is user code too.
UNPRINTABLE = '''
class DbError(Exception):
    def __str__(self):
        return self.detail  # no such attribute

    def __repr__(self):
        return self.detail
'''
FAST = {"initial": 0.01, "max": 0.05, "fatal_after": 1000}


def status(folder, tmp_path):
    result = run_cli("status", "-d", str(folder), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return {w["name"]: w for w in json.loads(result.stdout)["workers"]}


def test_a_crash_with_an_unprintable_exception_backs_off_and_restarts(folder, start_host, tmp_path):
    write(folder / "db.py", worker_source(top=UNPRINTABLE, body="raise DbError()", BACKOFF=FAST))
    host = start_host(folder)
    host.wait_for(lambda: len(host.starts("db")) >= 3, "the worker restarted twice")
    log = host.log()
    assert "internal error" not in log
    assert "| db         | crashed after" in log and "str() failed>" in log  # traceback's own text
    assert status(folder, tmp_path)["db"]["last_error"] == "<DbError: str() failed>"
    assert host.stop() == 0


def test_an_unprintable_exception_at_import_is_reported_at_start_and_at_a_reload(folder, start_host, tmp_path):
    raising = UNPRINTABLE + "raise DbError()\n"
    write(folder / "broken.py", raising + "def run(ctx):\n    pass\n")
    write(folder / "svc.py", worker_source(1))
    host = start_host(folder)
    host.wait_started("svc", 1)
    host.wait_log("| broken     | fatal: fix the file and save it")
    write(folder / "svc.py", raising + worker_source(2))
    host.wait_log("| svc        | not reloaded: its new code failed")
    host.wait_for(lambda: host.events("svc")[-1] == "svc start 1 2", "the previous version to resume")
    rows = status(folder, tmp_path)
    assert rows["svc"]["state"] == "running"
    assert rows["broken"]["last_error"] == rows["svc"]["last_error"] == "<DbError: str() failed>"
    assert "internal error" not in host.log()
    assert host.stop() == 0


def line_of(source, text):
    """The number of the first line of ``source`` that contains ``text``."""
    return next(n for n, line in enumerate(source.splitlines(), 1) if text in line)


def test_an_infinite_or_huge_duration_is_reported_at_load_and_the_host_carries_on(folder, start_host):
    forever = worker_source(1, top='STOP_TIMEOUT = float("inf")')
    slow = worker_source(1, BACKOFF={"initial": 1e10})
    write(folder / "forever.py", forever)
    write(folder / "slow.py", slow)
    write(folder / "good.py", worker_source(1))
    host = start_host(folder)
    host.wait_started("good", 1)
    line = line_of(forever, "STOP_TIMEOUT")
    log = host.wait_log(f"forever.py:{line}: STOP_TIMEOUT: must be > 0 and <= 86400 seconds, got inf")
    assert (f"slow.py:{line_of(slow, 'BACKOFF')}: BACKOFF['initial']: must be > 0 and <= 86400 seconds,"
            " got 10000000000.0") in log
    write(folder / "forever.py", worker_source(2, top='STOP_TIMEOUT = float("inf")'))
    host.wait_log(f"forever.py:{line}: STOP_TIMEOUT: must be", count=2)
    write(folder / "forever.py", worker_source(3, STOP_TIMEOUT=86400))
    host.wait_started("forever", 3)
    assert host.starts("forever") == [3] and host.starts("slow") == []
    assert host.stop() == 0


STUCK_IN_ACCEPT = '''
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen()
report(ctx.name, "port", srv.getsockname()[1])
srv.accept()  # no timeout: neither the stop request nor Interrupted reaches it
'''


def test_a_stuck_thread_is_never_run_beside_its_new_version(folder, start_host, tmp_path):
    write(folder / "stuck.py", worker_source(1, top="import socket", body=STUCK_IN_ACCEPT, STOP_TIMEOUT=0.2))
    host = start_host(folder)
    port = int(host.wait_for(lambda: [e.split()[2] for e in host.events("stuck") if " port " in e], "the port")[0])
    write(folder / "stuck.py", worker_source(2))
    log = host.wait_log("| stuck      | reloaded (generation 1) in")
    assert "still running after being interrupted; giving up on it" in log
    assert "not started: its abandoned thread still runs" in log and "hotreload restart --host" in log
    for command in ("start", "restart"):
        result = run_cli(command, "-d", str(folder), "stuck", cwd=tmp_path)
        assert result.stdout.startswith("stuck: cannot start: its abandoned thread still runs"), result.stdout
    host.barrier()
    assert host.starts("stuck") == [1]
    assert status(folder, tmp_path)["stuck"]["state"] == "fatal"
    socket.create_connection(("127.0.0.1", port), timeout=5).close()  # accept() returns: the thread ends
    host.wait_started("stuck", 2)
    old_stop, new_start = host.events("stuck")[-2:]
    assert old_stop.startswith("stuck stop ") and new_start == "stuck start 2 2"  # one after the other
    assert host.stop() == 0


def test_a_module_renamed_to_a_package_and_back_is_the_same_worker_with_its_state(folder, start_host, tmp_path):
    write(folder / "w.py", worker_source(1))
    host = start_host(folder)
    host.wait_started("w", 1)
    package = folder / "w" / "__init__.py"
    (folder / "w").mkdir()
    os.rename(folder / "w.py", package)  # a rename: one batch
    host.wait_for(lambda: "w start 1 2" in host.events(), "w started from its package")
    assert status(folder, tmp_path)["w"]["source"] == os.path.join("workers", "w", "__init__.py")
    os.rename(package, folder / "w.py")  # and back
    os.rmdir(folder / "w")
    host.wait_for(lambda: "w start 1 3" in host.events(), "w started from its module")
    assert status(folder, tmp_path)["w"]["source"] == os.path.join("workers", "w.py")
    os.remove(folder / "w.py")  # a delete and a later create: two batches
    host.wait_log("| w          | removed: its file is gone")
    (folder / "w").mkdir()
    write(package, worker_source(2))
    host.wait_started("w", 2)
    assert host.events("w")[-1] == "w start 2 4"
    assert host.stop() == 0


def test_a_run_that_cannot_take_ctx_is_reported_at_load_by_run_and_by_list(folder, start_host, tmp_path):
    write(folder / "none.py", "X = 1\n\ndef run():\n    pass\n")
    write(folder / "extra.py", "def run(ctx, extra):\n    pass\n")
    write(folder / "good.py", worker_source(1))
    listed = run_cli("list", str(folder), "--no-entry-points", cwd=tmp_path)
    assert listed.returncode == 1 and listed.stdout.splitlines()[-1] == "2 broken: extra, none"
    assert "none.py:3: run() cannot be called as run(ctx): too many positional arguments" in listed.stdout
    assert "extra.py:1: run(ctx, extra) cannot be called as run(ctx): missing a required argument: 'extra'" in (
        listed.stdout)
    host = start_host(folder)
    host.wait_started("good", 1)
    host.wait_log("| none       | fatal: fix the file and save it")
    write(folder / "good.py", worker_source(2).replace("def run(ctx):", "def run():"))
    host.wait_log("| good       | not reloaded: its new code failed")
    host.wait_for(lambda: host.events("good")[-1] == "good start 1 2", "the previous version to resume")
    log = host.log()
    assert "none.py:3: run() cannot be called as run(ctx)" in log and "TypeError" not in log
    assert host.stop() == 0


LOGURU_BOILERPLATE = '''
import sys
from loguru import logger

logger.remove()
logger.add(sys.stderr, format="OWN {message}")
'''


def test_a_worker_that_removes_all_loguru_sinks_does_not_silence_the_host(folder, start_host, tmp_path):
    source = worker_source(1, top=LOGURU_BOILERPLATE, body='ctx.log.info(f"hello {VERSION}")')
    write(folder / "boiler.py", source)
    log_file = tmp_path / "host.log"
    host = start_host(folder, "--log-json", "--log-file", str(log_file))
    host.wait_log('"worker": "boiler", "message": "hello 1"')
    warning = f"boiler.py:{line_of(source, 'logger.remove()')} removed the host's log sinks"
    host.wait_log(warning)
    write(folder / "boiler.py", source.replace("VERSION = 1", "VERSION = 2"))
    host.wait_log('"worker": "boiler", "message": "hello 2"')
    host.wait_log(warning, count=2)
    assert host.stop() == 0
    lines = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert [line["message"] for line in lines if line["worker"] == "boiler" and "hello" in line["message"]] == [
        "hello 1", "hello 2"]
    assert sum(warning in line["message"] for line in lines) == 2


def test_a_worker_file_replaced_by_a_folder_of_its_name_is_reported(folder, start_host, tmp_path):
    (folder / "odd.py").mkdir()  # at start
    write(folder / "b.py", worker_source(1))
    release = tmp_path / "release"
    write(folder / "gate.py", worker_source(1, top="import os, time", body=f'''
        while not ctx.sleep(0.05):
            pass
        report(ctx.name, "holding")
        deadline = time.monotonic() + 20
        while not os.path.exists({str(release)!r}) and time.monotonic() < deadline:
            time.sleep(0.01)
        ''', STOP_TIMEOUT=30))
    host = start_host(folder)
    host.wait_started("b", 1)
    host.wait_log(f"skipping {folder / 'odd.py'}: a folder, not a module file")
    write(folder / "gate.py", worker_source(2))  # a swap that waits for gate to stop...
    host.wait_for(lambda: "gate holding" in host.events(), "gate holding the swap")
    os.remove(folder / "b.py")
    (folder / "b.py").mkdir()  # ...so the host sees b.py only once it is a folder
    release.touch()
    host.wait_log(f"| b          | {os.path.join('workers', 'b.py')} is a folder, not a module file")
    host.wait_log("| b          | removed: its file is gone")
    assert host.stop() == 0
