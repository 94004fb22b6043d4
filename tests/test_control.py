"""Controlling a running host from another shell, through its Unix socket."""
import json
import os
import socket
import stat
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from conftest import run_cli, worker_source, write
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
    assert lines[1].split() == ["NAME", "STATE", "UPTIME", "RESTARTS", "GEN", "LAST", "ERROR"]
    assert lines[2].split()[:2] == ["alpha", "running"] and "\033[" not in table.stdout  # no colour in a pipe

    assert run_cli("restart", "-d", str(folder), "alpha", cwd=tmp_path).stdout == "alpha: restarting\n"
    host.wait_started("alpha", 1, count=2)
    assert status(folder, tmp_path)["alpha"]["restarts"] == 1

    assert run_cli("stop", "-d", str(folder), "beta", cwd=tmp_path).returncode == 0
    host.wait_for(lambda: status(folder, tmp_path)["beta"]["state"] == "stopped", "beta stopped")
    assert [e.split()[1] for e in host.events("beta")] == ["start", "stop"]

    assert run_cli("start", "-d", str(folder), "beta", cwd=tmp_path).stdout == "beta: started\n"
    host.wait_started("beta", 1, count=2)
    assert host.stop() == 0


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


def test_a_shared_runtime_folder_is_refused(tmp_path, monkeypatch):
    shared = tmp_path / "run"
    (shared / "hotreload").mkdir(parents=True)
    os.chmod(shared / "hotreload", 0o777)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(shared))
    try:
        control.socket_path(tmp_path)
    except control.ControlError as exc:
        assert "is not a private folder" in str(exc)
    else:
        raise AssertionError("a world-writable socket folder was accepted")


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

    reply = {"pid": 1, "guardian": None, "folder": "/w", "reload": True, "workers": [
        {"name": "a", "state": "running", "uptime": 75.0, "restarts": 2, "generation": 3, "last_error": None},
        {"name": "b", "state": "fatal", "uptime": None, "restarts": 9, "generation": 0,
         "last_error": "RuntimeError: no"},
    ]}
    plain = status_table.table(reply).splitlines()
    assert plain[2].split() == ["a", "running", "1m15s", "2", "3"]
    assert plain[3].split() == ["b", "fatal", "-", "9", "0", "RuntimeError:", "no"]
    coloured = status_table.table(reply, colour=True)
    assert "\033[32mrunning" in coloured and "\033[31mfatal" in coloured
