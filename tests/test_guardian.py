"""The guardian: the host process is started again when it dies, and only then."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from conftest import worker_source, write


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
    host.wait_log("| guardian   | the host killed by SIGSEGV; starting it again in")
    host.wait_started("alpha", 1, count=2)
    assert host.host_pid() != first
    assert host.stop() == 0


def test_os_exit_in_a_worker_is_survived(folder, start_host, tmp_path):
    marker = tmp_path / "exited-once"
    body = f"""
import os
if not os.path.exists({str(marker)!r}):
    open({str(marker)!r}, "w").close()
    os._exit(3)
"""
    write(folder / "alpha.py", worker_source(body=body))
    host = start_host(folder)
    host.wait_log("| guardian   | the host exited with status 3; starting it again in")
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
