"""Start order, end to end: AFTER, READY, waiting, the reverse order at shutdown, load errors,
and restart --with-dependents (the real `hotreload run` in a subprocess)."""
import json
import socket

from conftest import run_cli, worker_source, write

# A body for a worker with READY = "signal": ready once the file FLAG exists.
READY_ON_FLAG = """
while not os.path.exists(FLAG):
    if ctx.sleep(0.02):
        return
ctx.ready()
"""


def status(folder, tmp_path):
    result = run_cli("status", "-d", str(folder), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return {w["name"]: w for w in json.loads(result.stdout)["workers"]}


def line_of(source, text):
    return next(n for n, line in enumerate(source.splitlines(), 1) if text in line)


def test_workers_start_after_the_workers_they_name_and_stop_before_them(folder, start_host):
    write(folder / "db.py", worker_source(body="ctx.ready()", READY="signal"))
    write(folder / "cache.py", worker_source())
    write(folder / "api.py", worker_source(AFTER=["db", "cache"]))
    host = start_host(folder)
    host.wait_started("api", 1)
    log = host.wait_log("| api        | running")  # the host logs it after the worker's own report
    assert "| api        | waiting: for " in log
    assert log.index("| db         | ready: it called ctx.ready()") < log.index("| api        | running")
    assert log.index("| cache      | running") < log.index("| api        | running")
    assert host.events().index("db start 1 1") < host.events().index("api start 1 1")

    write(folder / "db.py", worker_source(2, body="ctx.ready()", READY="signal"))  # a reload of db...
    host.wait_started("db", 2)
    host.barrier()
    assert host.starts("api") == [1]  # ...does not restart the workers after it

    assert host.stop() == 0
    events = host.events()
    assert events.index("api stop 1 1") < events.index("db stop 2 2")
    assert events.index("api stop 1 1") < events.index("cache stop 1 1")


def test_status_shows_a_worker_waiting_for_another_until_that_one_is_ready(folder, start_host, tmp_path):
    flag = tmp_path / "db-is-ready"
    write(folder / "db.py", worker_source(top=f"import os\nFLAG = {str(flag)!r}", body=READY_ON_FLAG,
                                          READY="signal"))
    write(folder / "api.py", worker_source(AFTER=["db"]))
    host = start_host(folder)
    host.wait_started("db", 1)
    rows = status(folder, tmp_path)
    assert rows["api"]["state"] == "waiting" and rows["api"]["waiting_for"] == ["db"]
    table = run_cli("status", "-d", str(folder), cwd=tmp_path).stdout
    assert next(line for line in table.splitlines() if line.startswith("api")).split()[1:3] == ["waiting", "(db)"]
    assert host.starts("api") == []
    flag.touch()
    host.wait_started("api", 1)
    assert status(folder, tmp_path)["api"]["waiting_for"] is None
    assert host.stop() == 0


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


LISTEN_ON_FLAG = """
while not os.path.exists(FLAG):
    if ctx.sleep(0.02):
        return
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", PORT))
server.listen()
ctx.state["server"] = server
report(ctx.name, "listening")
"""


def test_a_worker_with_ready_tcp_is_ready_once_its_port_accepts_on_loopback(folder, start_host, tmp_path):
    port, flag = free_port(), tmp_path / "listen"
    write(folder / "db.py", worker_source(top=f"import os, socket\nFLAG = {str(flag)!r}\nPORT = {port}",
                                          body=LISTEN_ON_FLAG, READY=f"tcp:{port}"))
    write(folder / "api.py", worker_source(AFTER=["db"]))
    host = start_host(folder)
    host.wait_started("db", 1)
    host.wait_for(lambda: status(folder, tmp_path)["api"]["waiting_for"] == ["db"], "api waiting for db")
    flag.touch()
    host.wait_started("api", 1)
    log = host.wait_log("| api        | running")
    assert log.index(f"| db         | ready: port {port} accepts connections") < log.index("| api        | running")
    host.wait_for(lambda: "db listening" in host.events(), "db's own report that it listens")
    assert host.stop() == 0


def test_unknown_names_and_cycles_are_load_errors_naming_them_in_list_and_run(folder, start_host, tmp_path):
    api = worker_source(AFTER=["db", "queue"])
    write(folder / "api.py", api)
    write(folder / "a.py", worker_source(AFTER=["b"]))
    write(folder / "b.py", worker_source(AFTER=["a"]))
    write(folder / "db.py", worker_source())
    line = line_of(api, "AFTER")
    listed = run_cli("list", str(folder), cwd=tmp_path)
    assert listed.returncode == 1
    assert f"workers/api.py:{line}: AFTER: no worker named queue" in listed.stdout
    assert f"workers/a.py:{line}: AFTER: a cycle: a -> b -> a" in listed.stdout
    assert f"workers/b.py:{line}: AFTER: a cycle: b -> a -> b" in listed.stdout
    assert listed.stdout.splitlines()[-1] == "3 broken: a, api, b"

    host = start_host(folder)
    host.wait_started("db", 1)
    log = host.wait_log(f"| api        | cannot start: workers/api.py:{line}: AFTER: no worker named queue")
    assert f"| a          | cannot start: workers/a.py:{line}: AFTER: a cycle: a -> b -> a" in log
    rows = status(folder, tmp_path)
    assert rows["api"]["state"] == rows["a"]["state"] == rows["b"]["state"] == "fatal"
    assert rows["api"]["last_error"] == f"workers/api.py:{line}: AFTER: no worker named queue"
    assert host.starts("a") == host.starts("b") == host.starts("api") == []

    write(folder / "b.py", worker_source(2))  # the cycle broken in b: b starts, and a after it
    host.wait_started("b", 2)
    host.wait_started("a", 1)
    assert status(folder, tmp_path)["a"]["last_error"] is None

    write(folder / "db.py", worker_source(2, AFTER=["nobody"]))  # a reload with an unknown name
    log = host.wait_log("| db         | not reloaded: its new code failed:")
    assert f"db.py:{line}: AFTER: no worker named nobody" in log
    host.wait_for(lambda: host.events("db")[-1] == "db start 1 2", "the previous version of db to run again")
    assert host.stop() == 0


def test_restart_with_dependents_stops_those_after_first_and_starts_them_in_order(folder, start_host, tmp_path):
    write(folder / "db.py", worker_source(body="ctx.ready()", READY="signal"))
    write(folder / "api.py", worker_source(body="ctx.ready()", READY="signal", AFTER=["db"]))
    write(folder / "web.py", worker_source(AFTER=["api"]))
    write(folder / "other.py", worker_source())
    host = start_host(folder)
    host.wait_started("web", 1)
    host.wait_started("other", 1)
    before = len(host.events())
    result = run_cli("restart", "-d", str(folder), "db", "--with-dependents", cwd=tmp_path)
    assert (result.returncode, result.stdout) == (0, "db: restarting\napi: restarting\nweb: restarting\n")
    host.wait_started("web", 1, count=2)
    assert [" ".join(e.split()[:2]) for e in host.events()[before:]] == [
        "web stop", "api stop", "db stop", "db start", "api start", "web start",
    ]
    assert host.starts("other") == [1]
    assert {name: row["restarts"] for name, row in status(folder, tmp_path).items()} == {
        "db": 1, "api": 1, "web": 1, "other": 0,
    }
    assert host.stop() == 0
