"""`hotreload status`: CPU and memory per worker and for the host, and `status --watch`."""
import json
import os
import pty
import select
import signal
import subprocess
import time

from conftest import HOTRELOAD, WAIT, private_package, run_cli, wait_for, worker_source, write
from hotreload import control, cpu

SPIN = "while not ctx.stopping:\n    pass"
# Spins for 0.3 s of CPU on its first start only, then sleeps like the others.
SPIN_ONCE = """
if ctx.state["starts"] == 1:
    import time
    end = time.thread_time() + 0.3
    while time.thread_time() < end:
        pass
    report(ctx.name, "spent", VERSION, 1)
"""

# Starts a thread that spends 0.3 s of CPU and ends, then one that spins until the stop.
SPIN_IN_THREADS = """
import threading

def burn():
    end = time.thread_time() + 0.3
    while time.thread_time() < end:
        pass

def spin():
    while not ctx.stopping:
        pass

import time
first = threading.Thread(target=burn, name="burn")
first.start()
first.join()
report(ctx.name, "spent", VERSION, 1)
threading.Thread(target=spin, name="spin").start()
"""


def status(folder, tmp_path):
    result = run_cli("status", "-d", str(folder), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def workers(reply):
    return {w["name"]: w for w in reply["workers"]}


def spinning_host(folder, start_host):
    write(folder / "spinner.py", worker_source(body=SPIN))
    write(folder / "idle.py", worker_source())
    host = start_host(folder)
    host.wait_started("spinner", 1)
    host.wait_started("idle", 1)
    return host


def test_status_shows_each_workers_cpu_and_the_hosts_rss_threads_and_cpu(folder, start_host, tmp_path):
    host = spinning_host(folder, start_host)
    reply = status(folder, tmp_path)  # the first request: measured over a short window
    assert reply["cpu_window"] >= 0.5
    spinner, idle = workers(reply)["spinner"], workers(reply)["idle"]
    # a whole core when the machine is free; under load from elsewhere, still far above the idle one
    assert spinner["cpu_percent"] > max(5.0, 5 * idle["cpu_percent"]), reply
    assert spinner["cpu_seconds"] > idle["cpu_seconds"]
    # the process's figures hold the worker's, within the kernel's ticks (each counted apart)
    assert reply["cpu_seconds"] >= spinner["cpu_seconds"] - 0.05
    assert reply["cpu_percent"] >= spinner["cpu_percent"] - 10
    assert abs(reply["threads"] - host.threads()) <= 2
    assert 5 << 20 < reply["rss_bytes"] < 500 << 20

    table = run_cli("status", "-d", str(folder), cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[1].startswith("rss ") and " threads, cpu time " in lines[1] and "% of a core over the last" in lines[1]
    assert lines[2].split() == ["NAME", "STATE", "%CPU", "TIME", "UPTIME", "RESTARTS", "GEN", "LAST", "ERROR"]
    assert [line.split()[0] for line in lines[3:]] == ["idle", "spinner"]  # by name, without --watch
    assert float(lines[4].split()[2]) > max(5.0, 5 * float(lines[3].split()[2]))
    assert host.stop() == 0


def test_a_workers_cpu_time_stays_with_it_when_its_thread_ends(folder, start_host, tmp_path):
    write(folder / "burner.py", worker_source(body=SPIN_ONCE))
    host = start_host(folder)
    host.wait_for(lambda: "burner spent" in " ".join(host.events()), "the first run to spend 0.3 s")
    assert run_cli("restart", "-d", str(folder), "burner", cwd=tmp_path).returncode == 0
    host.wait_started("burner", 1, count=2)  # a new thread, which does not spin
    assert workers(status(folder, tmp_path))["burner"]["cpu_seconds"] >= 0.28
    assert host.stop() == 0


def test_the_threads_a_worker_started_count_for_it_while_they_run_and_once_they_ended(folder, start_host, tmp_path):
    write(folder / "parent.py", worker_source(body=SPIN_IN_THREADS))
    write(folder / "idle.py", worker_source())
    host = start_host(folder)
    host.wait_for(lambda: "parent spent" in " ".join(host.events()), "the first thread to spend 0.3 s")
    reply = workers(status(folder, tmp_path))
    assert reply["parent"]["cpu_seconds"] >= 0.28  # the thread that ended
    assert reply["parent"]["cpu_percent"] > max(5.0, 5 * reply["idle"]["cpu_percent"])  # the one spinning
    assert host.stop() == 0


def test_the_cpu_window_outlives_a_reload_of_core(folder, start_host, tmp_path):
    copy, private = private_package(tmp_path)
    write(folder / "idle.py", worker_source())
    host = start_host(folder, **private)
    host.wait_started("idle", 1)
    first = control.request(folder, "status")
    asked = time.monotonic()
    assert first["ok"] and first["cpu_window"] is None  # nothing to measure from yet
    write(copy / "core.py", (copy / "core.py").read_text() + "\n# edited\n")
    host.wait_log("core reloaded (generation 1)")
    wait_for(lambda: time.monotonic() - asked >= cpu.MIN_WINDOW + 0.1, what="the shortest window to pass")
    second = control.request(folder, "status")
    assert second["core_generation"] == 1
    assert second["cpu_window"] >= time.monotonic() - asked - 0.5  # measured from the first request's sample
    assert host.stop() == 0


def read_until(fd, done, timeout=WAIT):
    """What ``fd`` gives until ``done(text)`` holds; fails after ``timeout`` seconds."""
    text = b""
    deadline = time.monotonic() + timeout
    while not done(text.decode(errors="replace")):
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"timed out; read so far:\n{text.decode(errors='replace')}"
        if select.select([fd], [], [], remaining)[0]:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # a pty's reader gets EIO once the other end has closed
                chunk = b""
            assert chunk, f"end of output; read so far:\n{text.decode(errors='replace')}"
            text += chunk
    return text.decode(errors="replace")


def watch(folder, tmp_path, *args, **popen):
    popen.setdefault("stdout", subprocess.PIPE)
    return subprocess.Popen([str(HOTRELOAD), "status", "-d", str(folder), "--watch", *args], cwd=tmp_path,
                            stderr=subprocess.PIPE, **popen)


def frames(text):
    """The tables of a piped ``status --watch``, each a list of rows (lists of words)."""
    return [[line.split() for line in frame.splitlines()] for frame in text.split("\n\n") if frame.strip()]


def test_watch_in_a_pipe_prints_tables_sorted_by_cpu_until_ctrl_c(folder, start_host, tmp_path):
    host = spinning_host(folder, start_host)
    table, as_json = watch(folder, tmp_path, "0.2"), watch(folder, tmp_path, "0.2", "--json")
    try:
        text = read_until(table.stdout.fileno(), lambda t: len(frames(t)) >= 3)
        lines = read_until(as_json.stdout.fileno(), lambda t: t.count("\n") >= 3).splitlines()
    finally:
        for watcher in (table, as_json):
            watcher.send_signal(signal.SIGINT)
    for watcher in (table, as_json):
        assert watcher.wait(WAIT) == 0
        assert watcher.stderr.read() == b""  # quietly
        watcher.stdout.close(), watcher.stderr.close()
    for frame in frames(text)[:3]:
        assert frame[0][:3] == ["every", "0.2", "s,"] and frame[3][0] == "NAME"
        assert [row[0] for row in frame[4:]] == ["spinner", "idle"]  # by CPU
        assert "\033[" not in text  # plain in a pipe
    replies = [json.loads(line) for line in lines[:3]]
    assert all(r["ok"] and r["cpu_window"] for r in replies)
    assert all(workers(r)["spinner"]["cpu_percent"] > workers(r)["idle"]["cpu_percent"] for r in replies)
    assert host.stop() == 0


def test_watch_on_a_terminal_redraws_in_place(folder, start_host, tmp_path):
    host = spinning_host(folder, start_host)
    main, terminal = pty.openpty()
    watcher = watch(folder, tmp_path, stdout=terminal, env={**os.environ, "NO_COLOR": ""})
    os.close(terminal)
    try:
        screen = read_until(main, lambda t: t.count("\033[H") >= 3)
        watcher.send_signal(signal.SIGINT)
        assert watcher.wait(WAIT) == 0
        screen += read_until(main, lambda t: "\033[?25h" in t)  # the cursor shown again
    finally:
        watcher.kill()
        watcher.wait(WAIT)
        os.close(main)
        watcher.stderr.close()
    first, second = screen.split("\033[H")[1:3]
    assert "\033[2J" in screen.split("\033[H")[0] + first  # cleared once, then overwritten
    assert "\033[2J" not in second and second.count("\n") == first.count("\n")
    assert "every 1 s," in second and "\033[32mrunning" in second  # coloured on a terminal
    rows = [line for line in second.splitlines() if "running" in line]
    assert rows[0].startswith("spinner")
    assert host.stop() == 0


def test_watch_ends_with_1_and_one_line_when_there_is_no_host_or_it_goes(folder, start_host, tmp_path):
    result = run_cli("status", "-d", str(folder), "--watch", cwd=tmp_path)
    assert result.returncode == 1 and len(result.stderr.splitlines()) == 1
    assert "no hotreload host is running on" in result.stderr
    host = spinning_host(folder, start_host)
    watcher = watch(folder, tmp_path, "0.2")
    try:
        read_until(watcher.stdout.fileno(), lambda t: len(frames(t)) >= 1)
        assert host.stop() == 0
        assert watcher.wait(WAIT) == 1
        error = watcher.stderr.read().decode()  # gone, or (asked as it stopped) stopping
        assert len(error.splitlines()) == 1, error
        assert "no hotreload host is running on" in error or "the host is stopping" in error, error
    finally:
        watcher.kill()
        watcher.wait(WAIT)
        watcher.stdout.close(), watcher.stderr.close()


def test_watch_needs_a_positive_number_of_seconds(folder, tmp_path):
    for bad in ("0", "-1", "abc", "nan", "100000"):
        result = run_cli("status", "-d", str(folder), "--watch", bad, cwd=tmp_path)
        assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, (bad, result.stderr)
        assert "--watch" in result.stderr


# --- the table and the watch loop, without a host -------------------------------------------


def reply(**cpu_percent):
    names = cpu_percent or {"a": 1.0}
    return {"ok": True, "pid": 7, "guardian": 6, "folder": "/w", "reload": True, "rss_bytes": 31_500_000,
            "threads": 12, "cpu_seconds": 3725.0, "cpu_percent": 12.5, "cpu_window": 1.02, "workers": [
                {"name": name, "state": "running", "uptime": 5.0, "restarts": 0, "generation": 0,
                 "last_error": "x" * 300 if name == "c" else None, "cpu_percent": pct, "cpu_seconds": 3.5}
                for name, pct in names.items()]}


def test_the_header_gives_the_hosts_rss_threads_and_cpu_and_the_rows_each_workers():
    from hotreload import status as shown

    lines = shown.table(reply(a=1.0, b=None)).splitlines()
    assert lines[0] == "host pid 7 on /w, guardian pid 6, reload on"
    assert lines[1] == "rss 31.5 MB, 12 threads, cpu time 1:02:05, 12.5% of a core over the last 1.0 s"
    assert [line.split()[:4] for line in lines[3:]] == [["a", "running", "1.0", "0:03.50"], ["b", "running", "-", "0:03.50"]]
    unmeasured = {**reply(), "cpu_percent": None, "cpu_window": None}
    assert shown.table(unmeasured).splitlines()[1] == "rss 31.5 MB, 12 threads, cpu time 1:02:05"
    assert [shown.cpu_time(s) for s in (0, 0.004, 59.999, 61.5, 3599.99, 3600, 90061)] == [
        "0:00.00", "0:00.00", "0:59.99", "1:01.50", "59:59.99", "1:00:00", "25:01:01"]


def test_watch_sorts_by_cpu_and_fits_the_terminal():
    from hotreload import status as shown

    frame = shown.frame(reply(a=1.0, b=50.0, c=None, d=50.0), every=2.0, clock="12:00:00")
    lines = frame.splitlines()
    assert lines[0] == "every 2 s, by CPU, 12:00:00 (Ctrl-C to stop)"
    assert [line.split()[0] for line in lines[4:]] == ["b", "d", "a", "c"]
    small = shown.frame(reply(a=1.0, b=50.0, c=None, d=50.0), every=2.0, clock="12:00:00", size=(30, 7)).splitlines()
    assert len(small) == 7 and small[-1] == "… and 2 more"
    assert [line.split()[0] for line in small[4:6]] == ["b", "d"]
    assert all(len(line) <= 30 for line in small)
    coloured = shown.frame(reply(a=1.0), every=1.0, clock="x", size=(20, 10), colour=True).splitlines()
    assert coloured[4] == "a     \033[32mrunning\033[0m  1.0" and coloured[3] == "NAME  STATE    %CPU"


class Terminal:
    def __init__(self, tty):
        self.tty, self.text = tty, ""

    def isatty(self):
        return self.tty

    def write(self, text):
        self.text += text

    def flush(self):
        pass


def test_the_watch_loop_redraws_until_ctrl_c_and_stops_with_1_when_the_host_goes():
    from hotreload import status as shown

    replies = [reply(a=1.0), reply(a=2.0), control.ControlError("no hotreload host is running on /w")]
    ticks = []

    def fetch():
        answer = replies.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    out, err = Terminal(True), Terminal(False)
    assert shown.watch(fetch, every=1.0, out=out, err=err, sleep=ticks.append, size=(80, 24)) == 1
    assert out.text.count("\033[H") == 2 and out.text.count("\033[2J") == 1 and out.text.endswith("\n\033[?25h")
    assert err.text == "hotreload: no hotreload host is running on /w\n"
    assert len(ticks) == 2 and all(0 <= t <= 1.0 for t in ticks)

    def interrupted(seconds):
        raise KeyboardInterrupt

    piped, err = Terminal(False), Terminal(False)
    replies[:] = [reply(a=1.0)]
    assert shown.watch(fetch, every=1.0, out=piped, err=err, sleep=interrupted, as_json=True) == 0
    assert json.loads(piped.text) == reply(a=1.0) and piped.text.count("\n") == 1 and err.text == ""
    refused = [{"ok": False, "error": "the host is stopping"}]
    assert shown.watch(lambda: refused[0], every=1.0, out=piped, err=err, sleep=interrupted) == 1
    assert err.text == "hotreload: the host is stopping\n"


def test_a_status_without_a_recent_sample_asks_again_a_moment_later():
    from hotreload import status as shown

    asked, slept = [], []
    answers = [{"ok": True, "cpu_window": None}, {"ok": True, "cpu_window": 0.55}]

    def request():
        asked.append(1)
        return answers[len(asked) - 1]

    assert shown.measured(request, sleep=slept.append) == answers[1]
    assert len(asked) == 2 and slept[0] >= cpu.MIN_WINDOW
    asked.clear()
    answers.reverse()
    assert shown.measured(request, sleep=slept.append) == {"ok": True, "cpu_window": 0.55} and len(asked) == 1


def test_a_waiting_workers_state_says_what_for_and_a_heartbeat_gets_its_column():
    from hotreload import status as shown

    answer = reply(api=0.0, db=2.0)
    api, db = answer["workers"]
    api.update(state="waiting", waiting_for=["db"], uptime=None)
    db["beat"] = 0.4
    lines = shown.table(answer).splitlines()
    assert lines[2].split() == ["NAME", "STATE", "%CPU", "TIME", "UPTIME", "RESTARTS", "GEN", "BEAT", "LAST", "ERROR"]
    assert lines[3].split()[:3] == ["api", "waiting", "(db)"] and lines[4].split()[-1] == "0.4s"
    assert "\033[33mwaiting (db)\033[0m" in shown.table(answer, colour=True)
