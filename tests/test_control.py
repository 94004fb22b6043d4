"""Controlling a running host from another shell, through its Unix socket."""
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from conftest import WAIT, run_cli, worker_source, write
from hotreload import control


def two_workers(folder, start_host, *args):
    write(folder / "alpha.py", worker_source())
    write(folder / "beta.py", worker_source())
    host = start_host(folder, *args)
    host.wait_started("alpha", 1)
    host.wait_started("beta", 1)
    return host


def status(folder, tmp_path):
    result = run_cli("status", "-d", str(folder), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return {w["name"]: w for w in json.loads(result.stdout)["workers"]}


def test_status_restart_stop_and_start_act_on_the_running_host(folder, start_host, tmp_path):
    host = two_workers(folder, start_host)
    table = run_cli("status", "-d", str(folder), cwd=tmp_path)
    assert table.returncode == 0
    lines = table.stdout.splitlines()
    assert lines[2].split() == ["NAME", "STATE", "%CPU", "TIME", "UPTIME", "RESTARTS", "GEN", "LAST", "ERROR"]
    assert lines[3].split()[:2] == ["alpha", "running"] and "\033[" not in table.stdout  # no colour in a pipe

    assert run_cli("restart", "-d", str(folder), "alpha", cwd=tmp_path).stdout == "alpha: restarting\n"
    host.wait_started("alpha", 1, count=2)
    assert status(folder, tmp_path)["alpha"]["restarts"] == 1

    assert run_cli("stop", "-d", str(folder), "beta", cwd=tmp_path).returncode == 0
    host.wait_for(lambda: status(folder, tmp_path)["beta"]["state"] == "stopped", "beta stopped")
    assert [e.split()[1] for e in host.events("beta")] == ["start", "stop"]

    assert run_cli("start", "-d", str(folder), "beta", cwd=tmp_path).stdout == "beta: started\n"
    host.wait_started("beta", 1, count=2)
    assert host.stop() == 0


def test_restart_stop_and_start_all_act_on_every_worker(folder, start_host, tmp_path):
    host = two_workers(folder, start_host)
    stopped = run_cli("stop", "-d", str(folder), "--all", cwd=tmp_path)
    assert (stopped.returncode, stopped.stdout) == (0, "alpha: stopping\nbeta: stopping\n"), stopped.stderr
    host.wait_for(lambda: {w["state"] for w in status(folder, tmp_path).values()} == {"stopped"}, "all stopped")
    events = run_cli("events", "-d", str(folder), "--json", cwd=tmp_path).stdout.splitlines()
    commands = [e for e in map(json.loads, events) if e["event"] == "command"]
    assert commands == [{**commands[0], "command": "stop", "names": ["alpha", "beta"]}]  # the names --all meant
    started = run_cli("start", "-d", str(folder), "--all", cwd=tmp_path)
    assert (started.returncode, started.stdout) == (0, "alpha: started\nbeta: started\n"), started.stderr
    host.wait_started("alpha", 1, count=2)
    host.wait_started("beta", 1, count=2)
    restarted = run_cli("restart", "-d", str(folder), "--all", cwd=tmp_path)
    assert restarted.stdout == "alpha: restarting\nbeta: restarting\n"
    host.wait_started("alpha", 1, count=3)
    host.wait_started("beta", 1, count=3)
    for wrong in (["stop", "alpha", "--all"], ["start"], ["restart"], ["restart", "--host", "--all"]):
        result = run_cli(*wrong, "-d", str(folder), cwd=tmp_path)
        assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, (wrong, result.stderr)
        assert "--all" in result.stderr
    assert len(host.starts("alpha")) == 3  # the wrong ones did nothing
    assert host.stop() == 0


def test_a_request_for_all_workers_is_checked():
    checked = control.check(b'{"cmd": "stop", "all": true}')
    assert isinstance(checked, control.Command) and (checked.cmd, checked.names, checked.all_workers) == ("stop", [], True)
    for wrong in (b'{"cmd": "stop", "all": "yes"}', b'{"cmd": "stop", "all": true, "names": ["a"]}',
                  b'{"cmd": "start", "all": false}', b'{"cmd": "restart"}'):
        reply = control.check(wrong)
        assert isinstance(reply, dict) and reply["ok"] is False and reply["error"], wrong


def test_ping_the_http_probes_light_command_is_a_command_like_status():
    checked = control.check(b'{"cmd": "ping"}')
    assert isinstance(checked, control.Command) and (checked.cmd, checked.names) == ("ping", [])
    assert control.check(b'{"cmd": "ping", "all": true}')["ok"] is False


def test_start_revives_a_fatal_worker(folder, start_host, tmp_path):
    write(folder / "doomed.py", worker_source(body="raise RuntimeError('no')", BACKOFF={"fatal_after": 1}))
    host = start_host(folder)
    host.wait_log("| doomed     | fatal:")
    assert run_cli("start", "-d", str(folder), "doomed", cwd=tmp_path).returncode == 0
    host.wait_log("| doomed     | fatal:", count=2)
    assert len(host.starts("doomed")) == 2
    assert host.stop() == 0


def test_unknown_names_and_no_host_are_errors_with_exit_1(folder, start_host, tmp_path):
    result = run_cli("status", "-d", str(folder), cwd=tmp_path)
    assert result.returncode == 1 and "no hotreload host is running on" in result.stderr
    host = two_workers(folder, start_host)
    result = run_cli("stop", "-d", str(folder), "alpha", "gamma", cwd=tmp_path)
    assert result.returncode == 1 and "no worker named gamma" in result.stderr
    assert status(folder, tmp_path)["alpha"]["state"] == "running"  # nothing was done
    assert host.stop() == 0


def test_restart_host_restarts_the_host_process_through_its_guardian(folder, start_host, tmp_path):
    host = two_workers(folder, start_host)
    before = host.host_pid()
    result = run_cli("restart", "-d", str(folder), "--host", cwd=tmp_path)
    assert result.returncode == 0 and "restarting" in result.stdout
    host.wait_started("alpha", 1, count=2)
    assert host.host_pid() != before
    assert [e.split()[1] for e in host.events("alpha")] == ["start", "stop", "start"]  # a clean stop
    assert host.stop() == 0
    bare = start_host(folder, "--no-guard")
    bare.wait_started("alpha", 1, count=3)
    result = run_cli("restart", "-d", str(folder), "--host", cwd=tmp_path)
    assert result.returncode == 1 and "without a guardian" in result.stderr
    assert bare.stop() == 0


def test_a_second_host_on_the_same_folder_is_refused_naming_the_first(folder, start_host, tmp_path):
    first = two_workers(folder, start_host)
    second = run_cli("run", str(folder), cwd=tmp_path)
    assert second.returncode == 1
    assert f"another hotreload host (pid {first.host_pid()}) is already running" in second.stderr
    assert first.stop() == 0


def test_a_socket_left_by_a_killed_host_is_replaced(folder, start_host, tmp_path, runtime_dir):
    first = two_workers(folder, start_host, "--no-guard")
    path = control.socket_path(folder)
    first.kill()
    assert path.exists()  # SIGKILL left it behind
    second = start_host(folder, "--no-guard")
    second.wait_started("alpha", 1, count=2)
    assert status(folder, tmp_path)["alpha"]["state"] == "running"
    assert second.stop() == 0
    assert not path.exists()


def test_only_the_owner_can_reach_the_socket(folder, start_host, runtime_dir):
    host = two_workers(folder, start_host)
    path = control.socket_path(folder)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    host.stop()


def test_a_shared_socket_folder_is_neither_used_by_a_host_nor_trusted_by_clients(tmp_path, runtime_dir):
    shared = runtime_dir / "hotreload"
    shared.mkdir()
    os.chmod(shared, 0o777)
    path, note = control.host_socket_path(tmp_path)
    assert path.parent != shared and path.parent.parent == runtime_dir
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert note == f"{shared} is not a private folder of this user (others may use it: mode 777): " \
                   f"using {path.parent} for the control socket"
    assert control.socket_paths(tmp_path) == [path]  # the shared folder is not even looked in
    assert control.host_socket_path(tmp_path)[0] == path  # the next host uses the same one


class Unread:
    """An inbox that nobody reads: a host loop that is blocked."""

    def __init__(self):
        self.messages = []

    def put(self, message):
        self.messages.append(message)


FIRST_HOST = """
import sys
from pathlib import Path
from hotreload import control
server = control.Server(Path(sys.argv[1]), None)
server.claim()
print(server.path, flush=True)
sys.stdin.read()
server.stop()
"""


def test_a_second_host_is_refused_even_when_the_first_runs_in_a_fallback_folder(folder, runtime_dir):
    usual = runtime_dir / "hotreload"
    usual.mkdir()
    os.chmod(usual, 0o777)
    # The lock belongs to a process (lockf): the first host must be another one.
    first = subprocess.Popen([sys.executable, "-c", FIRST_HOST, str(folder)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        first_path = Path(first.stdout.readline().strip())
        assert first_path.parent.parent == runtime_dir and first_path.parent != usual
        os.chmod(usual, 0o700)  # the usual folder is fine again: a second host would use it
        second = control.Server(folder, Unread())
        assert second.path.parent == usual
        try:
            second.claim()
        except control.AlreadyRunning as exc:
            assert exc.pid == str(first.pid)
        else:
            second.stop()
            raise AssertionError("a second host started beside the first")
        assert list(usual.iterdir()) == []  # it left nothing behind
        assert control.socket_path(folder) == first_path  # where clients find the first
    finally:
        first.communicate("", timeout=WAIT)


def ask(path, data: bytes, timeout: float = 5.0) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        conn.connect(str(path))
        conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := conn.recv(65536):
            reply += chunk
        return reply


def test_malformed_oversized_and_hostile_requests_get_an_error_and_never_hurt_the_host(folder, start_host, tmp_path):
    host = two_workers(folder, start_host)
    path = control.socket_path(folder)

    @settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.one_of(
        st.binary(max_size=2000),
        st.text(max_size=300).map(str.encode),
        st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                     lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
                     max_leaves=20).map(lambda v: json.dumps(v).encode()),
        st.fixed_dictionaries({"cmd": st.sampled_from(["stop", "start", "restart", "frob", 3, None]),
                               "names": st.one_of(st.none(), st.integers(), st.lists(st.text(max_size=5), max_size=3))})
        .map(lambda v: json.dumps(v).encode()),
    ))
    def one(data):
        reply = json.loads(ask(path, data.replace(b"\n", b" ") + b"\n"))
        assert isinstance(reply, dict) and "ok" in reply
        if not reply["ok"]:
            assert isinstance(reply["error"], str) and reply["error"]

    set_hypothesis_home_dir(tmp_path / "hypothesis")  # its caches go with the test's temp folder
    try:
        one()
    finally:
        set_hypothesis_home_dir(None)
    # too long, then a client that connects and says nothing: both are cut off, the host answers on
    assert b"longer than" in ask(path, b"x" * (control.MAX_LINE + 10))
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as silent:
        silent.connect(str(path))
        began = time.monotonic()
        reply = json.loads(ask(path, b'{"cmd": "status"}\n'))
        assert reply["ok"] and time.monotonic() - began < control.CLIENT_TIMEOUT + 3
    assert {w["name"]: w["state"] for w in reply["workers"]} == {"alpha": "running", "beta": "running"}
    assert host.stop() == 0


def test_the_status_table_colours_states_only_when_asked():
    from hotreload import status as status_table

    reply = {"pid": 1, "guardian": None, "folder": "/w", "reload": True, "rss_bytes": 1 << 20, "threads": 3,
             "cpu_seconds": 1.0, "cpu_percent": None, "cpu_window": None, "workers": [
        {"name": "a", "state": "running", "uptime": 75.0, "restarts": 2, "generation": 3, "last_error": None,
         "cpu_percent": 1.5, "cpu_seconds": 0.25},
        {"name": "b", "state": "fatal", "uptime": None, "restarts": 9, "generation": 0,
         "last_error": "RuntimeError: no", "cpu_percent": 0.0, "cpu_seconds": 0.0},
    ]}
    plain = status_table.table(reply).splitlines()
    assert plain[3].split() == ["a", "running", "1.5", "0:00.25", "1m15s", "2", "3"]
    assert plain[4].split() == ["b", "fatal", "0.0", "0:00.00", "-", "9", "0", "RuntimeError:", "no"]
    coloured = status_table.table(reply, colour=True)
    assert "\033[32mrunning" in coloured and "\033[31mfatal" in coloured


# --- many workers, slow and many clients --------------------------------------------------


def test_status_of_hundreds_of_workers_is_not_cut_at_the_request_size_cap(folder, start_host, tmp_path):
    for i in range(600):
        write(folder / f"w{i:03d}.py", "def run(ctx):\n    ctx.sleep(float('inf'))\n")
    host = start_host(folder, "--no-reload")
    host.wait_log(f"| {'w599':<10} | running")
    result = run_cli("status", "-d", str(folder), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    reply = json.loads(result.stdout)
    assert len(reply["workers"]) == 600
    assert len(json.dumps(reply)) > control.MAX_LINE  # the reply is longer than a request may be
    assert host.stop() == 0


def drip(path, stop):
    """A client that sends its request one byte at a time, a little faster than once a second."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.connect(str(path))
        try:
            for byte in b'{"cmd": "status"}\n' * 100:
                conn.sendall(bytes([byte]))
                if stop.wait(0.8):
                    return
        except OSError:  # cut off by the host: what should happen
            return


def test_slow_and_idle_clients_do_not_hold_up_anyone_else(folder, start_host, tmp_path):
    host = two_workers(folder, start_host)
    path = control.socket_path(folder)
    stop = threading.Event()
    dripper = threading.Thread(target=drip, args=(path, stop), name="dripper")
    idle = []
    try:
        for _ in range(15):
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            idle.append(conn)
            conn.connect(str(path))
        dripper.start()
        result = run_cli("status", "-d", str(folder), "--json", cwd=tmp_path)
        assert result.returncode == 0, result.stderr  # before: "did not answer in time" after 10 s
        assert len(json.loads(result.stdout)["workers"]) == 2
        for conn in idle:  # each was cut off with a reply saying why, not left hanging
            conn.settimeout(WAIT)
            reply = json.loads(conn.makefile("rb").readline())
            assert reply["ok"] is False and "whole request" in reply["error"]
        dripper.join(WAIT)
        assert not dripper.is_alive(), "the slow client was not cut off"
    finally:
        stop.set()
        for conn in idle:
            conn.close()
        if dripper.ident is not None:
            dripper.join(WAIT)
    assert host.stop() == 0


def test_two_hundred_concurrent_status_calls_all_get_their_answer(folder, start_host):
    host = two_workers(folder, start_host)
    replies, errors = [], []

    def one():
        try:
            replies.append(control.request(folder, "status"))
        except BaseException as exc:  # noqa: BLE001 - recorded for the assert
            errors.append(exc)

    threads = [threading.Thread(target=one, name=f"client-{i}") for i in range(200)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert errors == []
    assert len(replies) == 200 and all(r["ok"] for r in replies)
    assert host.stop() == 0


def test_a_full_backlog_is_retried_then_reported_in_one_line(folder, monkeypatch):
    path = control.socket_path(folder)
    path.parent.mkdir(mode=0o700, exist_ok=True)
    monkeypatch.setattr(control, "CONNECT_TIMEOUT", 0.3, raising=False)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(str(path))
        listener.listen(0)  # never accepted: the backlog fills up
        queued = []
        try:
            while True:
                conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                conn.setblocking(False)
                queued.append(conn)
                conn.connect(str(path))
        except BlockingIOError:
            pass
        try:
            control.request(folder, "status")
        except control.ControlError as exc:
            assert "not accepting connections" in str(exc)
        else:
            raise AssertionError("a host that accepts nothing answered")
        finally:
            for conn in queued:
                conn.close()


# --- what the client reports is what happened ---------------------------------------------


def request_through_a_server(folder, inbox, cmd, names):
    """``control.request`` to a real server on ``folder`` whose host loop is ``inbox``."""
    server = control.Server(folder, inbox)
    server.claim()
    server.start()
    try:
        return control.request(folder, cmd, names)
    finally:
        server.stop()


def test_a_command_the_host_picks_up_after_its_deadline_is_reported_not_done_and_never_done(
    folder, monkeypatch
):
    monkeypatch.setattr(control, "ANSWER_TIMEOUT", 0.2)
    inbox = Unread()
    reply = request_through_a_server(folder, inbox, "stop", ["b"])
    assert reply == {"ok": False, "error": "not done: the host was busy for 0.2 s; try again"}
    [command] = inbox.messages
    assert command.take() is False  # the host loop, unblocked, must not act on it now


def test_a_command_the_host_took_but_never_answered_is_reported_as_unknown(folder, monkeypatch):
    monkeypatch.setattr(control, "ANSWER_TIMEOUT", 0.1)
    monkeypatch.setattr(control, "ANSWER_GRACE", 0.1)

    class TakesAndFails:  # a host loop that took the command, then failed before answering
        def put(self, command):
            assert command.take()

    reply = request_through_a_server(folder, TakesAndFails(), "stop", ["b"])
    assert reply == {"ok": False, "error": "the host took the command but did not answer; see its log"}


def test_the_host_loop_does_not_act_on_an_expired_command(folder):
    from hotreload import core, records

    running = records.Host(options=records.Options(folder), package=folder.name)
    late = records.Command("status", expires=time.monotonic() - 1)
    core.handle(running, late)
    assert not late.done.is_set() and late.reply is None
    timely = records.Command("status", expires=time.monotonic() + 60)
    core.handle(running, timely)
    assert timely.reply["ok"] is True


def test_a_command_sent_while_the_host_loop_is_blocked_is_done_exactly_when_reported_done(
    folder, start_host, tmp_path
):
    """A reload whose import blocks (today on the host loop) while `stop b` is sent: either the
    client hears it was done and b stops, or it hears it was not and b never stops."""
    go = tmp_path / "go"
    write(folder / "a.py", worker_source(1))
    write(folder / "b.py", worker_source(1))
    host = start_host(folder)
    host.wait_started("a", 1)
    host.wait_started("b", 1)
    write(folder / "a.py", worker_source(2, top=f"""
        import os, time
        report("a", "importing", 2, 0)
        _until = time.monotonic() + 30
        while not os.path.exists({str(go)!r}) and time.monotonic() < _until:
            time.sleep(0.01)
    """))
    host.wait_for(lambda: "a importing 2 0" in host.events("a"), "a's import to begin")
    result = run_cli("stop", "-d", str(folder), "b", cwd=tmp_path)
    go.touch()
    host.wait_started("a", 2)
    if result.returncode == 0:
        assert result.stdout == "b: stopping\n"
        host.wait_for(lambda: "b stop 1 1" in host.events("b"), "b to stop")
    else:
        assert "not done" in result.stderr or "try again" in result.stderr, result.stderr
        host.barrier()
        assert "b stop 1 1" not in host.events("b"), "b was stopped after the client was told it was not"
    assert host.stop() == 0


# --- where the socket is --------------------------------------------------------------------


@pytest.fixture
def short_tmp(monkeypatch):
    """A TMPDIR of the test's own, sticky and open to all like /tmp, with XDG_RUNTIME_DIR unset."""
    path = Path(tempfile.mkdtemp(prefix="hr-"))
    os.chmod(path, 0o1777)
    monkeypatch.setenv("TMPDIR", str(path))
    monkeypatch.setattr(tempfile, "tempdir", None)  # this process reads TMPDIR again
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_a_socket_folder_taken_by_another_user_is_avoided_and_the_host_says_where(
    folder, start_host, tmp_path, short_tmp
):
    taken = short_tmp / f"hotreload-{os.getuid()}"
    taken.mkdir(mode=0o755)
    if os.getuid() == 0:
        os.chown(taken, 65534, 65534)  # as another user would have made it
    else:
        os.chmod(taken, 0o777)  # not ours alone: just as unusable
    host = two_workers(folder, start_host)
    log = host.wait_log("for the control socket")
    [line] = [line for line in log.splitlines() if "for the control socket" in line]
    assert f"{taken} is not a private folder of this user" in line
    used = Path(line.split(" using ")[1].split(" for the control socket")[0])
    assert used.parent == short_tmp and used.name.startswith(taken.name + "-")
    assert stat.S_IMODE(used.stat().st_mode) == 0o700 and used.stat().st_uid == os.getuid()
    assert status(folder, tmp_path)["alpha"]["state"] == "running"
    assert run_cli("stop", "-d", str(folder), "beta", cwd=tmp_path).stdout == "beta: stopping\n"
    host.wait_for(lambda: "beta stop 1 1" in host.events("beta"), "beta to stop")
    assert host.stop() == 0


def test_a_runtime_folder_too_long_for_a_socket_path_falls_back_to_a_short_one(
    folder, start_host, tmp_path, short_tmp, monkeypatch
):
    long = short_tmp / ("x" * 100)
    long.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(long))
    host = two_workers(folder, start_host)
    assert status(folder, tmp_path)["beta"]["state"] == "running"
    assert f"using {short_tmp / f'hotreload-{os.getuid()}'} for the control socket" in host.log()
    assert host.stop() == 0


def test_a_socket_path_that_cannot_fit_is_a_one_line_error(folder, tmp_path, short_tmp, monkeypatch):
    long = short_tmp / ("x" * 100)
    long.mkdir(mode=0o1777)
    monkeypatch.setenv("TMPDIR", str(long))
    write(folder / "alpha.py", worker_source())
    for args in (["status", "-d", str(folder)], ["run", str(folder), "--no-guard"]):
        result = run_cli(*args, cwd=tmp_path)
        assert result.returncode == 1
        assert "Traceback" not in result.stderr
        [line] = result.stderr.strip().splitlines()
        assert "longer than the 107 bytes a socket path may have" in line, line
    assert not list(long.iterdir())  # nothing left behind
