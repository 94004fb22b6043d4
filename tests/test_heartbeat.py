"""HEARTBEAT: a thread worker silent for that long is hung — its stack logged, interrupted,
restarted with the crash counted — and one that sleeps in ctx.sleep or beats is not (the real
`hotreload run`)."""
import json

from conftest import run_cli, worker_source, write

# No ctx.sleep, no ctx.stopping, no ctx.heartbeat(): hung, though Python code runs.
HANGS = """
while True:
    time.sleep(0.05)
"""
BEATS = """
for _ in range(30):
    time.sleep(0.05)
    ctx.heartbeat()
report(ctx.name, "beat-done")
"""
SLEEPS_LONG = """
ctx.sleep(1.5)
report(ctx.name, "woke")
"""


def status(folder, tmp_path):
    result = run_cli("status", "-d", str(folder), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return {w["name"]: w for w in json.loads(result.stdout)["workers"]}


def test_a_silent_worker_is_hung_logged_interrupted_and_restarted_until_fatal(folder, start_host, tmp_path):
    write(folder / "stuck.py", worker_source(top="import time", body=HANGS, HEARTBEAT=0.5,
                                             BACKOFF={"initial": 0.05, "max": 0.1, "fatal_after": 2}))
    write(folder / "other.py", worker_source())
    host = start_host(folder)
    log = host.wait_log("| stuck      | fatal: hung 2 times in a row; not restarting until its source changes")
    assert log.count("| stuck      | hung: no sign of life for ") == 4  # the check, and the end, of each run
    assert "(HEARTBEAT = 0.5); interrupting it. It is at:\n" in log
    assert "stuck.py\", line" in log and "time.sleep(0.05)" in log  # its stack
    assert "| stuck      | backoff: hung; restarting in" in log
    assert host.events("stuck") == ["stuck start 1 1", "stuck stop 1 1", "stuck start 1 2", "stuck stop 1 2"]
    rows = status(folder, tmp_path)
    assert rows["stuck"]["last_error"] == "hung: no sign of life for 0.5 s (HEARTBEAT)"
    assert rows["stuck"]["restarts"] == 1 and rows["other"]["state"] == "running"
    assert host.stop() == 0


def test_a_worker_that_sleeps_in_ctx_sleep_or_beats_is_not_hung(folder, start_host, tmp_path):
    write(folder / "sleeper.py", worker_source(body=SLEEPS_LONG, HEARTBEAT=0.5))
    write(folder / "beater.py", worker_source(top="import time", body=BEATS, HEARTBEAT=0.5))
    write(folder / "plain.py", worker_source())
    host = start_host(folder)
    host.wait_for(lambda: {"sleeper woke", "beater beat-done"} <= set(host.events()), "both past their heartbeat")
    assert "hung" not in host.log()
    rows = status(folder, tmp_path)
    assert rows["plain"]["beat"] is None  # no HEARTBEAT: no beat shown
    assert 0 <= rows["sleeper"]["beat"] < 0.5 and 0 <= rows["beater"]["beat"] < 0.5
    table = run_cli("status", "-d", str(folder), cwd=tmp_path).stdout.splitlines()
    assert table[2].split() == ["NAME", "STATE", "%CPU", "TIME", "UPTIME", "RESTARTS", "GEN", "BEAT", "LAST", "ERROR"]
    assert host.starts("sleeper") == host.starts("beater") == [1]
    assert host.stop() == 0


# The worker's own thread waits in ctx.sleep; a thread it started sleeps in ctx.sleep too, then ends.
SLEEPS_BESIDE_A_HELPER = """
import threading
def helper():
    for _ in range(2):
        ctx.sleep(0.05)
    report(ctx.name, "helper-done")
threading.Thread(target=helper).start()
ctx.sleep(2.0)
report(ctx.name, "woke")
"""


def test_a_worker_in_ctx_sleep_is_not_hung_when_another_of_its_threads_leaves_ctx_sleep(folder, start_host):
    write(folder / "w.py", worker_source(body=SLEEPS_BESIDE_A_HELPER, HEARTBEAT=0.5))
    host = start_host(folder)
    host.wait_for(lambda: "w woke" in host.events() or "hung" in host.log(), "the worker to wake, past its heartbeat")
    assert "hung" not in host.log() and "w helper-done" in host.events()
    assert host.starts("w") == [1]
    assert host.stop() == 0
