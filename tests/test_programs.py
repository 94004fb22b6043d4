"""Program workers: a module with COMMAND (or a Procfile line) runs a real child process,
supervised like a thread worker, and never outlives the host."""
import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from conftest import WAIT, run_cli, wait_for, worker_source, write
from hotreload.cpu import parse_thread_stat
from hotreload.signals import DUPLICATE_WINDOW

PY = sys.executable


def program(command, **settings):
    """A program worker module: COMMAND and its settings."""
    return "".join(f"{key} = {value!r}\n" for key, value in {"COMMAND": command, **settings}.items())


def python(code):
    """A COMMAND running ``code`` in a fresh Python."""
    return [PY, "-c", code]


# Prints its pid and a line on each stream, then runs until killed.
SERVICE = python("import os, sys, time\n"
                 "print('service up', os.getpid(), os.environ.get('GREETING', ''))\n"
                 "print('a warning', file=sys.stderr, flush=True)\n"
                 "time.sleep(3600)")
# Ignores SIGTERM (saying so), so that only the SIGKILL after the stop timeout ends it.
STUBBORN = python("import signal, time\n"
                  "signal.signal(signal.SIGTERM, lambda *a: print('got TERM, ignoring it', flush=True))\n"
                  "print('stubborn up', flush=True)\n"
                  "while True: time.sleep(0.05)")


SEEN: list = []  # the pids a test saw: killed at its end, should it fail and leave them running


@pytest.fixture(autouse=True)
def no_leftovers():
    yield
    for pid in SEEN:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
    SEEN.clear()


def seen(pid):
    SEEN.append(pid)
    return pid


def said(name, text):
    """How a line ``text`` that worker ``name`` wrote at INFO appears in the log."""
    return f"| INFO    | {name:<10} | {text}"


def status(folder, tmp_path):
    result = run_cli("status", "-d", str(folder), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return {w["name"]: w for w in json.loads(result.stdout)["workers"]}


def running_pid(host, folder, tmp_path, name, other_than=None):
    """The pid of program ``name`` once it runs (and is not ``other_than``)."""
    def found():
        result = run_cli("status", "-d", str(folder), "--json", cwd=tmp_path)  # fails until the host listens
        rows = {w["name"]: w for w in json.loads(result.stdout)["workers"]} if result.returncode == 0 else {}
        pid = rows.get(name, {}).get("pid")
        return pid if pid and pid != other_than and alive(pid) else None
    return seen(host.wait_for(found, f"{name} to run as a new process"))


def alive(pid):
    """True while ``pid`` runs (a zombie nobody reaped yet counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def wait_gone(pid, within=5.0):
    wait_for(lambda: not alive(pid), within, f"pid {pid} to be gone")


def test_a_program_runs_its_output_lines_are_log_lines_and_status_shows_its_pid(folder, start_host, tmp_path):
    write(folder / "service.py", program(SERVICE, ENV={"GREETING": "hello"}))
    host = start_host(folder)
    host.wait_log("| WARNING | service    | a warning")
    log = host.wait_log("| INFO    | service    | service up")
    assert "hello" in log
    pid = status(folder, tmp_path)["service"]["pid"]
    assert f"service up {pid} hello" in log
    stat = Path(f"/proc/{pid}/stat").read_text()
    assert stat.split()[3] == str(host.host_pid())  # the host's child
    assert os.getpgid(pid) == pid  # in a process group of its own
    row = status(folder, tmp_path)["service"]
    assert row["state"] == "running" and row["pid"] == pid
    assert row["cpu_seconds"] >= round(parse_thread_stat(stat), 2) > 0  # the program's CPU
    table = run_cli("status", "-d", str(folder), cwd=tmp_path).stdout.splitlines()
    assert table[2].split()[:4] == ["NAME", "STATE", "PID", "%CPU"] and table[3].split()[2] == str(pid)
    assert host.stop() == 0
    assert not alive(row["pid"])


def test_a_programs_cpu_time_stays_counted_after_it_ends(folder, start_host, tmp_path):
    write(folder / "burner.py", program(python("import time\nend = time.process_time() + 0.3\n"
                                               "while time.process_time() < end: pass"), RESTART="never"))
    host = start_host(folder)
    host.wait_log("| burner     | exited: returned")
    assert status(folder, tmp_path)["burner"]["cpu_seconds"] >= 0.3
    assert host.stop() == 0


def test_a_crashing_program_is_restarted_after_its_backoff(folder, start_host):
    write(folder / "flaky.py", program(["sh", "-c", "echo flaky runs; exit 3"], BACKOFF={"initial": 0.1, "max": 1}))
    host = start_host(folder)
    log = host.wait_log("backoff: crashed; restarting in", count=2)
    assert log.count(said("flaky", "flaky runs")) >= 2 and "exited with status 3" in log
    assert host.stop() == 0


def test_restart_on_failure_does_not_restart_a_program_that_exits_0(folder, start_host):
    write(folder / "job.py", program(["sh", "-c", "echo job done"], RESTART="on-failure"))
    host = start_host(folder)
    host.wait_log("exited: returned; RESTART='on-failure', not restarting")
    assert host.log().count(said("job", "job done")) == 1
    assert host.stop() == 0


def test_a_command_that_cannot_start_is_a_crash_saying_why(folder, start_host):
    write(folder / "missing.py", program("no-such-program-here --flag", BACKOFF={"initial": 0.1}))
    host = start_host(folder)
    log = host.wait_log("backoff: crashed; restarting in")
    assert "cannot start no-such-program-here: No such file or directory" in log
    assert host.stop() == 0


def test_stop_sends_the_stop_signal_to_the_group_then_sigkill_after_the_stop_timeout(folder, start_host, tmp_path):
    write(folder / "stubborn.py", program(STUBBORN, STOP_TIMEOUT=1))
    write(folder / "polite.py", program(python("import signal, time\n"
                                               "signal.signal(signal.SIGINT, lambda *a: exit(print('got INT')))\n"
                                               "print('polite up', flush=True)\n"
                                               "time.sleep(3600)"), STOP_SIGNAL="SIGINT"))
    host = start_host(folder)
    host.wait_log(said("stubborn", "stubborn up"))
    host.wait_log(said("polite", "polite up"))
    pid = running_pid(host, folder, tmp_path, "stubborn")
    asked = time.monotonic()
    assert run_cli("stop", "-d", str(folder), "stubborn", "polite", cwd=tmp_path).returncode == 0
    host.wait_log(said("polite", "got INT"))
    host.wait_log(said("stubborn", "got TERM, ignoring it"))
    host.wait_log("did not stop within 1 s; killing its process group (SIGKILL)")
    host.wait_for(lambda: status(folder, tmp_path)["stubborn"]["state"] == "stopped", "stubborn stopped")
    assert 0.9 <= time.monotonic() - asked < WAIT
    assert not alive(pid)
    host.wait_log("polite     | stopped")
    assert host.stop() == 0


def test_ctrl_c_stops_every_program_even_one_that_ignores_its_stop_signal(folder, start_host, tmp_path):
    write(folder / "service.py", program(SERVICE))
    write(folder / "stubborn.py", program(STUBBORN, STOP_TIMEOUT=1))
    host = start_host(folder)
    pids = [running_pid(host, folder, tmp_path, name) for name in ("service", "stubborn")]
    host.wait_log(said("stubborn", "stubborn up"))
    assert host.stop(signal.SIGINT) == 1  # one had to be killed
    for pid in pids:
        assert not alive(pid)


def test_a_second_ctrl_c_exits_at_once_killing_what_the_programs_started(folder, start_host, tmp_path):
    # The shell and its background sleeper ignore SIGTERM; the sleeper is no child of the host.
    write(folder / "deaf.py", program(["sh", "-c", "trap '' TERM; sleep 3600 & echo sleeper $!; wait"],
                                      STOP_TIMEOUT=60))
    host = start_host(folder, "--no-guard")
    log = host.wait_log(said("deaf", "sleeper "))
    sleeper = seen(int(log.split(said("deaf", "sleeper "))[1].split()[0]))
    host.proc.send_signal(signal.SIGINT)
    host.wait_log("| deaf       | stopping")
    time.sleep(DUPLICATE_WINDOW + 0.1)  # a second SIGINT sooner would count as the first delivered again
    assert host.stop(signal.SIGINT) == 128 + signal.SIGINT
    wait_gone(sleeper)


def test_a_program_dies_with_its_host_killed_by_sigkill(folder, start_host, tmp_path):
    write(folder / "stubborn.py", program(STUBBORN))
    host = start_host(folder, "--no-guard")
    pid = running_pid(host, folder, tmp_path, "stubborn")
    os.kill(host.host_pid(), signal.SIGKILL)
    wait_gone(pid)


def test_when_the_guardian_starts_a_new_host_the_old_hosts_programs_are_gone(folder, start_host, tmp_path):
    write(folder / "stubborn.py", program(STUBBORN))
    host = start_host(folder)
    pid = running_pid(host, folder, tmp_path, "stubborn")
    first_host = host.host_pid()  # once it runs: before, this would be the guardian's pid
    os.kill(first_host, signal.SIGKILL)
    wait_gone(pid)
    ups = host.wait_log("the host was killed by SIGKILL; starting it again").count(said("stubborn", "stubborn up"))
    second = running_pid(host, folder, tmp_path, "stubborn", other_than=pid)
    host.wait_log(said("stubborn", "stubborn up"), count=ups + 1)  # its SIGTERM handler is in place
    assert host.host_pid() != first_host
    assert not alive(pid) and alive(second)
    assert host.stop() == 1  # stubborn had to be killed
    assert not alive(second)


def test_what_a_program_leaves_in_its_group_is_killed_when_it_ends(folder, start_host, tmp_path):
    # The shell starts a sleeper in the background and exits: the sleeper goes with it.
    write(folder / "forker.py", program(["sh", "-c", "sleep 3600 & echo sleeper $!; exec sleep 0.3"],
                                        RESTART="never"))
    host = start_host(folder)
    log = host.wait_log(said("forker", "sleeper "))
    sleeper = seen(int(log.split(said("forker", "sleeper "))[1].split()[0]))
    host.wait_log("exited: returned")
    wait_gone(sleeper)
    assert host.stop() == 0


def test_a_save_that_changes_nothing_the_program_uses_does_not_restart_it(folder, start_host, tmp_path):
    write(folder / "service.py", program(SERVICE, ENV={"GREETING": "one"}))
    host = start_host(folder)
    pid = running_pid(host, folder, tmp_path, "service")
    host.wait_log(said("service", "service up"))
    write(folder / "service.py", "# a comment, and the same settings\n" + program(SERVICE, ENV={"GREETING": "one"}))
    host.wait_log("unchanged: pid")
    assert status(folder, tmp_path)["service"]["pid"] == pid and alive(pid)
    assert host.log().count(said("service", "service up")) == 1

    write(folder / "service.py", program(SERVICE, ENV={"GREETING": "two"}))
    new = running_pid(host, folder, tmp_path, "service", other_than=pid)
    host.wait_log(said("service", f"service up {new} two"))
    assert not alive(pid)
    assert status(folder, tmp_path)["service"]["generation"] == 1
    write(folder / "service.py", program(SERVICE, ENV={"GREETING": "two"}, STOP_TIMEOUT=2))  # a setting
    third = running_pid(host, folder, tmp_path, "service", other_than=new)
    assert not alive(new) and alive(third)
    assert host.stop() == 0


def test_a_broken_save_keeps_the_program_running(folder, start_host, tmp_path):
    write(folder / "service.py", program(SERVICE))
    host = start_host(folder)
    pid = running_pid(host, folder, tmp_path, "service")
    write(folder / "service.py", program(SERVICE, STOP_SIGNAL="SIGNOPE"))
    log = host.wait_log("not reloaded")
    assert "service.py:2: STOP_SIGNAL: must be a signal such as 'SIGTERM'" in log
    host.wait_log("the previous version (generation 0) keeps running")
    assert status(folder, tmp_path)["service"]["pid"] == pid and alive(pid)
    assert host.stop() == 0


def test_a_thread_worker_turned_program_and_back(folder, start_host, tmp_path):
    write(folder / "shifty.py", worker_source())
    host = start_host(folder)
    host.wait_started("shifty", 1)
    write(folder / "shifty.py", program(SERVICE))
    pid = running_pid(host, folder, tmp_path, "shifty")
    assert [e.split()[1] for e in host.events("shifty")] == ["start", "stop"]
    write(folder / "shifty.py", worker_source(2))
    host.wait_started("shifty", 2)
    wait_gone(pid)
    assert host.stop() == 0


def test_a_module_with_both_run_and_command_is_refused_at_its_command(folder, tmp_path):
    write(folder / "both.py", "def run(ctx):\n    pass\n\nCOMMAND = 'true'\n")
    result = run_cli("list", str(folder), "--no-entry-points", cwd=tmp_path)
    assert result.returncode == 1
    assert "both.py:4: defines both run(ctx) and COMMAND" in result.stdout + result.stderr


def test_procfile_lines_are_program_workers_and_a_module_of_the_same_name_wins(folder, start_host, tmp_path):
    write(folder / "web.py", worker_source())
    write(folder / "Procfile", "# the stack\n"
                               "web: sh -c 'echo procfile web'\n"
                               "ticker: sh -c 'while :; do echo tick; sleep 0.2; done'\n"
                               "this line has no colon\n")
    host = start_host(folder)
    host.wait_log("| ticker     | tick")
    host.wait_started("web", 1)
    log = host.log()
    assert "workers/Procfile:2: web is also workers/web.py, which wins" in log
    assert "workers/Procfile:4: not `name: command`" in log
    assert said("web", "procfile web") not in log
    rows = status(folder, tmp_path)
    assert rows["ticker"]["source"].endswith("workers/Procfile") and rows["ticker"]["pid"]
    listing = run_cli("list", str(folder), "--no-entry-points", cwd=tmp_path).stdout
    assert any(line.split()[:2] == ["ticker", "program"] for line in listing.splitlines())
    assert host.stop() == 0


def test_procfile_changes_start_restart_and_remove_only_the_lines_that_changed(folder, start_host, tmp_path):
    sleeper = f"{PY} -c 'import time; time.sleep(3600)'"
    write(folder / "Procfile", f"keep: {sleeper}\nchange: {sleeper}\ngo: {sleeper}\n")
    host = start_host(folder)
    pids = {name: running_pid(host, folder, tmp_path, name) for name in ("keep", "change", "go")}
    write(folder / "Procfile", f"keep: {sleeper}\nchange: {sleeper} # changed\nnew: {sleeper}\n")
    running_pid(host, folder, tmp_path, "new")
    changed = running_pid(host, folder, tmp_path, "change", other_than=pids["change"])
    host.wait_log("removed: no longer in")
    rows = status(folder, tmp_path)
    assert "go" not in rows and not alive(pids["go"]) and not alive(pids["change"])
    assert rows["keep"]["pid"] == pids["keep"] and rows["change"]["pid"] == changed
    (folder / "Procfile").unlink()
    host.wait_for(lambda: not status(folder, tmp_path), "every Procfile worker to be removed")
    for pid in (pids["keep"], changed):
        assert not alive(pid)
    assert host.stop() == 0


def test_a_helper_value_the_command_uses_restarts_the_program_and_its_other_code_does_not(folder, start_host,
                                                                                         tmp_path):
    write(folder / "_settings.py", "GREETING = 'one'\n\n\ndef unused():\n    return 1\n")
    write(folder / "service.py", f"from ._settings import GREETING\n\n{program(SERVICE)}ENV = {{'GREETING': GREETING}}\n")
    host = start_host(folder)
    pid = running_pid(host, folder, tmp_path, "service")
    write(folder / "_settings.py", "GREETING = 'one'\n\n\ndef unused():\n    return 2\n")
    host.wait_log("unchanged: pid")
    assert status(folder, tmp_path)["service"]["pid"] == pid
    write(folder / "_settings.py", "GREETING = 'two'\n")
    new = running_pid(host, folder, tmp_path, "service", other_than=pid)
    host.wait_log(said("service", f"service up {new} two"))
    assert host.stop() == 0


def test_a_relative_program_path_is_taken_from_cwd(folder, start_host):
    (folder / "bin").mkdir()
    write(folder / "bin" / "hello.sh", "#!/bin/sh\necho hello from $(basename \"$PWD\")\n")
    (folder / "bin" / "hello.sh").chmod(0o755)
    write(folder / "hello.py", program("./hello.sh", CWD="bin", RESTART="never"))
    host = start_host(folder)
    host.wait_log(said("hello", "hello from bin"))
    assert host.stop() == 0


def test_a_stopped_program_starts_on_a_save(folder, start_host, tmp_path):
    write(folder / "service.py", program(SERVICE))
    host = start_host(folder)
    pid = running_pid(host, folder, tmp_path, "service")
    assert run_cli("stop", "-d", str(folder), "service", cwd=tmp_path).returncode == 0
    wait_gone(pid)
    write(folder / "service.py", "# saved\n" + program(SERVICE))
    running_pid(host, folder, tmp_path, "service", other_than=pid)
    assert host.stop() == 0


def test_a_module_that_comes_takes_a_procfile_name_and_gives_it_back_when_it_goes(folder, start_host, tmp_path):
    write(folder / "Procfile", f"svc: {PY} -c 'import time; time.sleep(3600)'\n")
    host = start_host(folder)
    pid = running_pid(host, folder, tmp_path, "svc")
    write(folder / "svc.py", worker_source())
    host.wait_started("svc", 1)
    host.wait_log("removed: a module of the folder takes its name")
    assert not alive(pid) and status(folder, tmp_path)["svc"]["source"].endswith("svc.py")
    (folder / "svc.py").unlink()
    back = running_pid(host, folder, tmp_path, "svc", other_than=pid)
    assert status(folder, tmp_path)["svc"]["source"].endswith("Procfile") and alive(back)
    assert host.stop() == 0


def test_a_watched_file_restarts_a_program(folder, start_host, tmp_path):
    write(folder / "motd.txt", "first\n")
    write(folder / "motd.py", program(["sh", "-c", "echo says $(cat motd.txt); exec sleep 3600"], WATCH=["motd.txt"]))
    host = start_host(folder)
    host.wait_log(said("motd", "says first"))
    pid = running_pid(host, folder, tmp_path, "motd")
    write(folder / "motd.txt", "second\n")
    host.wait_log(said("motd", "says second"))
    assert not alive(pid)
    assert host.stop() == 0


def test_settings_that_need_a_ctx_are_load_errors_for_a_program(folder, tmp_path):
    write(folder / "beats.py", program("sleep 60", HEARTBEAT=5))
    write(folder / "signals.py", program("sleep 60", READY="signal"))
    result = run_cli("list", str(folder), "--no-entry-points", cwd=tmp_path)
    out = result.stdout + result.stderr
    assert result.returncode == 1
    assert "beats.py:2: HEARTBEAT: a program has no ctx.heartbeat()" in out
    assert "signals.py:2: READY: 'signal' needs ctx.ready()" in out
