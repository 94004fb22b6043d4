"""The guardian: the host process is started again when it dies, and only then."""
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import HOTRELOAD, REPORT_FUNCTION, WAIT, run_cli, wait_for, worker_source, write


def proc_field(pid: int, name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    raise KeyError(name)


def test_a_host_killed_by_sigsegv_comes_back_with_its_workers(folder, start_host):
    write(folder / "alpha.py", worker_source())
    host = start_host(folder)
    host.wait_started("alpha", 1)
    first = host.host_pid()
    os.kill(first, signal.SIGSEGV)
    host.wait_log("| guardian   | the host was killed by SIGSEGV; starting it again in")
    host.wait_started("alpha", 1, count=2)
    assert host.host_pid() != first
    assert host.stop() == 0


ONCE = """
import os
if not os.path.exists({marker!r}):
    open({marker!r}, "w").close()
    {action}
"""


@pytest.mark.parametrize("status", [3, 0])
def test_os_exit_in_a_worker_is_survived_whatever_its_status(folder, start_host, tmp_path, status):
    body = ONCE.format(marker=str(tmp_path / "exited-once"), action=f"os._exit({status})")
    write(folder / "alpha.py", worker_source(body=body))
    host = start_host(folder)
    host.wait_log(f"| guardian   | the host exited with status {status}; starting it again in")
    host.wait_started("alpha", 1, count=2)
    assert host.stop() == 0


def test_sigterm_stops_guardian_and_host_and_nothing_is_started_again(folder, start_host):
    write(folder / "alpha.py", worker_source())
    host = start_host(folder)
    host.wait_started("alpha", 1)
    host_pid = host.host_pid()
    assert host_pid != host.proc.pid
    assert host.stop(signal.SIGTERM) == 0
    assert not Path(f"/proc/{host_pid}").exists() or "zombie" in Path(f"/proc/{host_pid}/status").read_text()
    assert [e.split()[1] for e in host.events("alpha")] == ["start", "stop"]
    assert "| guardian   |" not in host.log()


def test_sighup_restarts_the_host_gracefully(folder, start_host):
    write(folder / "alpha.py", worker_source())
    host = start_host(folder)
    host.wait_started("alpha", 1)
    os.kill(host.proc.pid, signal.SIGHUP)
    host.wait_started("alpha", 1, count=2)
    assert [e.split()[1] for e in host.events("alpha")] == ["start", "stop", "start"]
    assert "| guardian   | host restarted on SIGHUP" in host.log()
    assert host.stop() == 0


def test_sighup_sent_to_a_guarded_host_restarts_it_through_the_guardian(folder, start_host):
    write(folder / "alpha.py", worker_source())
    host = start_host(folder)
    host.wait_started("alpha", 1)
    first = host.host_pid()
    os.kill(first, signal.SIGHUP)
    host.wait_started("alpha", 1, count=2)
    assert [e.split()[1] for e in host.events("alpha")] == ["start", "stop", "start"]
    assert "| guardian   | host restarted on SIGHUP" in host.log()
    assert host.host_pid() != first
    assert host.stop() == 0


def test_with_log_json_the_guardian_logs_json_too(folder, start_host):
    write(folder / "alpha.py", worker_source())
    host = start_host(folder, "--log-json")
    host.wait_started("alpha", 1)
    os.kill(host.host_pid(), signal.SIGKILL)
    host.wait_started("alpha", 1, count=2)
    lines = [json.loads(line) for line in host.log().splitlines()]
    assert {"level": "ERROR", "worker": "guardian"}.items() <= next(
        line for line in lines if line["worker"] == "guardian").items()
    assert host.stop() == 0


def test_a_host_that_fails_before_it_is_ready_is_not_started_again(folder, start_host):
    write(folder / "__init__.py", "raise RuntimeError('broken package')")
    host = start_host(folder)
    assert host.proc.wait(20) == 1
    assert host.log().count("RuntimeError: broken package") == 1
    assert "starting it again" not in host.log()


def test_the_guardian_sleeps_and_imports_only_the_standard_library(folder, start_host):
    write(folder / "alpha.py", worker_source())
    host = start_host(folder)
    host.wait_started("alpha", 1)
    before = proc_field(host.proc.pid, "voluntary_ctxt_switches")
    host.barrier()  # a second, during which the host works and the guardian must not wake
    assert proc_field(host.proc.pid, "voluntary_ctxt_switches") == before
    assert host.stop() == 0
    code = ("import sys; from hotreload import cli, guardian; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'loguru', 'watchdog', 'importlib_metadata'}))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout == "[]\n"


def test_a_host_that_ends_during_start_up_without_saying_why_is_a_crash(folder, start_host, tmp_path):
    """Only a start-up failure the host announces is final; os._exit while importing is not one."""
    top = ONCE.format(marker=str(tmp_path / "exited-once"), action="os._exit(0)")
    write(folder / "alpha.py", worker_source(top=top))
    host = start_host(folder)
    host.wait_log("| guardian   | the host exited with status 0; starting it again in")
    host.wait_started("alpha", 1)
    assert host.stop() == 0


def test_ctrl_c_while_the_host_is_starting_stops_it_quietly(folder, start_host, tmp_path):
    """`timeout -s INT 2 hotreload run` on a busy machine: the signal comes while the host
    still imports (here: its workers folder's __init__.py, until released)."""
    release = tmp_path / "release"
    write(folder / "__init__.py", REPORT_FUNCTION + f"""
import os, time
report("package", "importing")
deadline = time.monotonic() + 20
while not os.path.exists({str(release)!r}) and time.monotonic() < deadline:
    time.sleep(0.02)
""")
    write(folder / "alpha.py", worker_source())
    host = start_host(folder)
    host.wait_for(lambda: host.events("package"), "the package import")
    try:
        assert host.stop(signal.SIGINT) == 0  # a graceful stop: no worker failed to stop
    finally:
        release.touch()
    assert "Traceback" not in host.log() and "starting it again" not in host.log()
    assert host.starts("alpha") == []


def test_a_stop_asked_of_the_host_itself_is_final_whatever_its_status(folder, start_host):
    """`kill N` on the host (N as `status` or a refused second host names it), with a worker
    that has to be interrupted: the host exits 1, and the guardian with it."""
    write(folder / "stubborn.py", worker_source(body="import time\nwhile True:\n    time.sleep(0.02)",
                                                 STOP_TIMEOUT=0.2))
    host = start_host(folder)
    host.wait_started("stubborn", 1)
    os.kill(host.host_pid(), signal.SIGTERM)
    assert host.proc.wait(WAIT) == 1
    assert "starting it again" not in host.log()
    assert host.starts("stubborn") == [1]


FORK_ONCE = """
import multiprocessing, os, time


def linger(release):
    deadline = time.monotonic() + 60
    while not os.path.exists(release) and time.monotonic() < deadline:
        time.sleep(0.05)
"""


def gone(pid):
    try:
        return "\tZ" in Path(f"/proc/{pid}/status").read_text().split("State:")[1][:4]
    except (OSError, IndexError):
        return True


def test_a_forked_child_of_a_worker_does_not_keep_the_next_host_out(folder, start_host, tmp_path):
    """The child inherits the host's open files, the control lock's among them; the lock
    must stay the host's, so that a new host can take it while the child lives on."""
    release = tmp_path / "release"
    body = ONCE.format(marker=str(tmp_path / "forked-once"), action=f"""
    child = multiprocessing.get_context("fork").Process(target=linger, args=({str(release)!r},), daemon=True)
    child.start()
    report("child", child.pid)""")
    write(folder / "alpha.py", worker_source(body=body, top=FORK_ONCE))
    host = start_host(folder)
    child = int(host.wait_for(lambda: host.events("child"), "the forked child")[0].split()[1])
    try:
        os.kill(host.host_pid(), signal.SIGKILL)
        host.wait_started("alpha", 1, count=2)
        assert Path(f"/proc/{child}").exists()  # alive all along, holding what it inherited
        assert "already running" not in host.log()
        assert run_cli("status", "-d", str(folder), cwd=tmp_path).returncode == 0
        assert host.stop() == 0
        os.kill(child, signal.SIGTERM)  # the host's handlers, inherited, must not keep it alive
        wait_for(lambda: gone(child), what="the forked child to end on SIGTERM")
    finally:
        release.touch()
        try:
            os.kill(child, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_the_guardian_outlives_a_closed_output_and_still_brings_the_host_back(folder, tmp_path):
    """`hotreload run 2>&1 | head -1`: once the reader is gone, every line the guardian
    writes fails (EPIPE); it must go on guarding all the same."""
    write(folder / "alpha.py", worker_source())
    report = tmp_path / "report.txt"
    report.touch()
    env = {**os.environ, "HOTRELOAD_TEST_REPORT": str(report)}
    proc = subprocess.Popen([str(HOTRELOAD), "run", str(folder)], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)

    def started(count):
        assert proc.poll() is None, f"hotreload exited with status {proc.returncode}"
        return report.read_text().count("alpha start") >= count

    try:
        assert select.select([proc.stderr], [], [], WAIT)[0], "no output at all"
        proc.stderr.readline()
        proc.stderr.close()  # head -1 has its line and exits
        wait_for(lambda: started(1), what="the first start")
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        os.kill(int(children[0]), signal.SIGKILL)
        wait_for(lambda: started(2), what="the host started again")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(WAIT) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(WAIT)


SLOW_STOP = """
while not ctx.sleep(0.05):
    pass
deadline = time.monotonic() + 20  # stopping takes until the test releases it
while not os.path.exists({release!r}) and time.monotonic() < deadline:
    time.sleep(0.02)
"""


def slow_to_stop(folder, release):
    """A worker that, asked to stop, finishes only once ``release`` exists: a signal sent
    meanwhile reaches a host that is still stopping."""
    write(folder / "alpha.py", worker_source(top="import os, time", body=SLOW_STOP.format(release=str(release)),
                                             STOP_TIMEOUT=30))


def twice(pid, sig):
    """One signal delivered twice, 50 ms apart, as `timeout -s INT` (the child, then its
    process group) or systemd (the main process, then the control group) can."""
    os.kill(pid, sig)
    time.sleep(0.05)
    os.kill(pid, sig)


@pytest.mark.parametrize("bare, sig", [(False, signal.SIGINT), (True, signal.SIGTERM)], ids=["guardian", "bare"])
def test_a_stop_signal_delivered_twice_stops_gracefully_once(folder, start_host, tmp_path, bare, sig):
    release = tmp_path / "release"
    slow_to_stop(folder, release)
    host = start_host(folder, *(["--no-guard"] if bare else []))
    host.wait_started("alpha", 1)
    twice(host.proc.pid, sig)
    host.wait_log("| alpha      | stopping")
    release.touch()
    assert host.stop(sig) == 0
    assert [e.split()[1] for e in host.events("alpha")] == ["start", "stop"]  # its finally ran
    assert "again: exiting now" not in host.log()


@pytest.mark.parametrize("bare", [False, True], ids=["guardian", "bare"])
def test_a_sighup_delivered_twice_restarts_gracefully_once(folder, start_host, tmp_path, bare):
    release = tmp_path / "release"
    slow_to_stop(folder, release)
    host = start_host(folder, *(["--no-guard"] if bare else []))
    host.wait_started("alpha", 1)
    twice(host.proc.pid, signal.SIGHUP)
    host.wait_log("| alpha      | stopping")
    release.touch()
    host.wait_started("alpha", 1, count=2)
    assert [e.split()[1] for e in host.events("alpha")] == ["start", "stop", "start"]
    restarts = "restarting on SIGHUP" if bare else "| guardian   | host restarted on SIGHUP"
    assert host.log().count(restarts) == 1
    assert "again: exiting now" not in host.log()
    assert host.stop() == 0


def test_a_second_restart_host_during_a_restart_is_merged_into_it(folder, start_host, tmp_path):
    release = tmp_path / "release"
    slow_to_stop(folder, release)
    host = start_host(folder)
    host.wait_started("alpha", 1)
    for _ in range(2):  # the second reaches the old host while it is still stopping
        result = run_cli("restart", "-d", str(folder), "--host", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
    release.touch()
    host.wait_started("alpha", 1, count=2)
    assert [e.split()[1] for e in host.events("alpha")] == ["start", "stop", "start"]
    assert host.log().count("| guardian   | host restarted on SIGHUP") == 1
    assert host.stop() == 0


def test_sighup_restarts_a_bare_host_in_place_same_pid(folder, start_host, tmp_path):
    """`ExecReload=kill -HUP $MAINPID`: a graceful stop, then the same command line in the
    same process, with its control socket back."""
    write(folder / "alpha.py", worker_source())
    host = start_host(folder, "--no-guard")
    host.wait_started("alpha", 1)
    command = Path(f"/proc/{host.proc.pid}/cmdline").read_bytes()
    os.kill(host.proc.pid, signal.SIGHUP)
    host.wait_started("alpha", 1, count=2)
    assert [e.split()[1] for e in host.events("alpha")] == ["start", "stop", "start"]
    assert Path(f"/proc/{host.proc.pid}/cmdline").read_bytes() == command
    assert "stopping on SIGHUP" in host.log() and "restarting on SIGHUP" in host.log()
    assert run_cli("status", "-d", str(folder), cwd=tmp_path).returncode == 0  # claimed before workers start
    assert host.stop() == 0
    assert [e.split()[1] for e in host.events("alpha")] == ["start", "stop", "start", "stop"]


def test_a_stop_during_a_bare_hosts_restart_makes_it_final(folder, start_host, tmp_path):
    """systemctl stop during systemctl reload: the restart's graceful stop goes on, and no new
    program is run."""
    release = tmp_path / "release"
    slow_to_stop(folder, release)
    host = start_host(folder, "--no-guard")
    host.wait_started("alpha", 1)
    os.kill(host.proc.pid, signal.SIGHUP)
    host.wait_log("| alpha      | stopping")
    os.kill(host.proc.pid, signal.SIGTERM)
    release.touch()
    assert host.proc.wait(WAIT) == 0
    assert [e.split()[1] for e in host.events("alpha")] == ["start", "stop"]
    assert "restarting on SIGHUP" not in host.log() and "again: exiting now" not in host.log()


@pytest.mark.parametrize("argv0, head", [("/venv/bin/hotreload", ["/venv/bin/hotreload"]),
                                         ("/site/hotreload/__main__.py", ["-m", "hotreload"])])
def test_the_command_line_run_again_without_orig_argv(monkeypatch, argv0, head):
    """Python 3.9 has no sys.orig_argv: the script, or -m for `python -m hotreload`."""
    from hotreload import host

    monkeypatch.delattr(sys, "orig_argv", raising=False)
    monkeypatch.setattr(sys, "argv", [argv0, "run", "workers", "--no-guard"])
    assert host._command_line() == [sys.executable, *head, "run", "workers", "--no-guard"]
