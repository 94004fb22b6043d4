"""`hotreload logs` and `hotreload events` against the real host: what it kept, then live."""
import json
import random
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path


from conftest import HOTRELOAD, WAIT, private_package, run_cli, wait_for, worker_source, write
from hotreload import control, journal

CHATTY = """
def run(ctx):
    n = 0
    while not ctx.sleep(PAUSE):
        n += 1
        ctx.log.info(f"{ctx.name} line {n}")
"""


def chatty(pause: float = 0.02) -> str:
    return CHATTY.replace("PAUSE", repr(pause))


def logs(folder, *args, cwd):
    return run_cli("logs", "-d", str(folder), *args, cwd=cwd)


def events(folder, *args, cwd):
    result = run_cli("events", "-d", str(folder), "--json", *args, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def records(folder, *args, cwd):
    result = logs(folder, "--json", *args, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


class Follow:
    """`hotreload logs|events -f ...` in a subprocess, its stdout read by a thread as it comes."""

    def __init__(self, cwd: Path, *args: str) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen([str(HOTRELOAD), *args], cwd=cwd, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, start_new_session=True)
        self.reader = threading.Thread(target=self._read, name="follow-reader", daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_line(self, text: str) -> None:
        wait_for(lambda: any(text in line for line in self.lines), what=f"{text!r} from {self.proc.args[1:]}")

    def end(self, timeout: float = WAIT) -> tuple[int, str]:
        """Its exit status and stderr, once it ended by itself."""
        try:
            status = self.proc.wait(timeout)
            return status, self.proc.stderr.read()
        finally:
            self.kill()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(WAIT)
        self.reader.join(WAIT)
        self.proc.stdout.close()
        self.proc.stderr.close()


def test_logs_shows_the_last_n_records_of_the_named_workers_in_the_order_they_were_logged(
    folder, start_host, tmp_path
):
    write(folder / "alpha.py", chatty())
    write(folder / "beta.py", chatty())
    write(folder / "gamma.py", chatty())
    host = start_host(folder)
    host.wait_log("| alpha      | alpha line 30")
    host.wait_log("| beta       | beta line 30")
    both = records(folder, "alpha", "beta", "-n", "40", cwd=tmp_path)
    assert len(both) == 40 and {r["worker"] for r in both} == {"alpha", "beta"}
    assert [r["time"] for r in both] == sorted(r["time"] for r in both)  # interleaved in time order
    alpha = [int(r["message"].split()[-1]) for r in both if r["worker"] == "alpha"]
    assert alpha == list(range(alpha[0], alpha[0] + len(alpha)))  # none missing, none twice
    host.wait_log("| gamma      | gamma line 60")  # more than 50 records kept: the default shows 50
    assert len(records(folder, "gamma", cwd=tmp_path)) == 50  # the default
    everyone = records(folder, "-n", "1000", cwd=tmp_path)
    assert {r["worker"] for r in everyone} == {"host", "alpha", "beta", "gamma"}  # all when none is named
    host_only = records(folder, "host", "-n", "1000", cwd=tmp_path)
    assert host_only and {r["worker"] for r in host_only} == {"host"}
    assert any("3 worker(s) in" in r["message"] for r in host_only)
    assert records(folder, "alpha", "-n", "0", cwd=tmp_path) == []
    assert len(records(folder, "gamma", "-n", str(10 ** 30), cwd=tmp_path)) >= 30  # more than kept: all of it

    text = logs(folder, "beta", "-n", "3", cwd=tmp_path)
    assert text.returncode == 0 and "\033[" not in text.stdout  # no colour in a pipe
    lines = text.stdout.splitlines()
    assert len(lines) == 3 and all(line.split(" | ")[1:3] == ["INFO   ", "beta      "] for line in lines)
    assert lines[-1].split(" | ")[3].startswith("beta line ")
    assert host.stop() == 0


def test_logs_json_prints_the_records_as_log_json_does(folder, start_host, tmp_path):
    write(folder / "alpha.py", chatty(0.05))
    host = start_host(folder, "--log-json")
    host.wait_for(lambda: '"alpha line 3"' in host.log(), "three lines")
    kept = logs(folder, "--json", "-n", "1000", cwd=tmp_path)
    assert kept.returncode == 0
    written = set(host.log().splitlines())
    lines = kept.stdout.splitlines()
    assert len(lines) >= 5 and all(line in written for line in lines)  # byte for byte
    assert set(json.loads(lines[0])) == {"time", "level", "worker", "message"}
    assert host.stop() == 0


def test_a_crash_and_a_failed_reload_are_kept_with_their_whole_traceback(folder, start_host, tmp_path):
    write(folder / "flaky.py", worker_source(body="""
        def deep(n):
            return deep(n - 1) if n else {}["missing"]
        deep(3)
    """, BACKOFF={"initial": 60, "max": 60}))
    host = start_host(folder, "--log-json")
    host.wait_log("backoff: crashed")
    [crash] = [r for r in records(folder, "flaky", cwd=tmp_path) if r["message"].startswith("crashed after")]
    message = crash["message"]
    assert message.count('flaky.py", line') >= 3 and message.endswith("KeyError: 'missing'")
    assert message.splitlines()[1] == "Traceback (most recent call last):"
    assert json.dumps(crash) in host.log().splitlines()  # all of it, as the log has it

    write(folder / "flaky.py", worker_source(2, top="import json\njson.loads('{')"))
    host.wait_log("not reloaded: its new code failed")
    [failed] = [r for r in records(folder, "flaky", cwd=tmp_path) if "not reloaded" in r["message"]]
    assert 'flaky.py", line' in failed["message"] and "JSONDecodeError" in failed["message"].splitlines()[-1]
    assert json.dumps(failed) in host.log().splitlines()
    text = logs(folder, "flaky", cwd=tmp_path).stdout
    assert f"| ERROR   | flaky      | {message}\n" in text  # in text, as run prints it
    assert host.stop() == 0


def test_the_buffer_of_a_worker_stays_at_its_bound_whatever_it_logs(folder, start_host, tmp_path):
    write(folder / "flood.py", """
def run(ctx):
    for n in range(1, 5001):
        ctx.log.info(f"flood {n}")
    ctx.log.info("flood done")
    ctx.sleep(float("inf"))
""")
    write(folder / "quiet.py", chatty(3600))
    host = start_host(folder)
    host.wait_log("| flood      | flood done")
    kept = records(folder, "flood", "-n", "100000", cwd=tmp_path)
    assert len(kept) == journal.LINES_KEPT
    assert kept[-1]["message"] == "flood done" and kept[0]["message"] == f"flood {5001 - journal.LINES_KEPT + 1}"
    assert [r["message"] for r in records(folder, "quiet", cwd=tmp_path)] == ["starting", "running"]
    assert host.stop() == 0


def test_logs_follow_shows_new_lines_until_the_host_stops_then_exits_0(folder, start_host, tmp_path):
    write(folder / "alpha.py", chatty(0.05))
    write(folder / "beta.py", chatty(0.05))
    host = start_host(folder)
    host.wait_log("| alpha      | alpha line 2")
    follow = Follow(tmp_path, "logs", "-d", str(folder), "-f", "-n", "1", "alpha")
    try:
        follow.wait_line("alpha line")
        first = int(follow.lines[0].split()[-1])
        follow.wait_line(f"alpha line {first + 5}")
        numbers = [int(line.split()[-1]) for line in follow.lines[:6]]
        assert numbers == list(range(first, first + 6))  # the last one kept, then each new one
        assert not any("beta" in line for line in follow.lines)
        assert host.stop() == 0
        status, stderr = follow.end()
    finally:
        follow.kill()
    assert status == 0 and stderr == f"hotreload: the host on {folder} stopped\n"
    assert any("| alpha      | stopped" in line for line in follow.lines)  # the shutdown's lines too


def test_logs_follow_json_prints_log_json_lines(folder, start_host, tmp_path):
    write(folder / "alpha.py", chatty(0.05))
    host = start_host(folder)
    host.wait_log("| alpha      | running")
    follow = Follow(tmp_path, "logs", "-d", str(folder), "alpha", "--json", "-n", "0", "-f")
    try:
        follow.wait_line('"alpha line')
        record = json.loads(follow.lines[0])
        assert set(record) == {"time", "level", "worker", "message"} and record["worker"] == "alpha"
        assert host.stop() == 0
        assert follow.end()[0] == 0
    finally:
        follow.kill()


def test_ctrl_c_ends_a_follower_quietly_and_the_host_forgets_it(folder, start_host, tmp_path):
    write(folder / "alpha.py", chatty(0.05))
    host = start_host(folder)
    host.wait_log("| alpha      | running")
    follow = Follow(tmp_path, "logs", "-d", str(folder), "-f")
    try:
        follow.wait_line("alpha line")
        follow.proc.send_signal(signal.SIGINT)
        status, stderr = follow.end()
    finally:
        follow.kill()
    assert status == 130 and stderr == ""
    assert run_cli("status", "-d", str(folder), cwd=tmp_path).returncode == 0
    assert host.stop() == 0


def test_unknown_names_no_host_and_bad_options_are_one_line_errors(folder, start_host, tmp_path):
    for args in (["logs"], ["logs", "-f"], ["events"], ["events", "-f"]):
        result = run_cli(*args, "-d", str(folder), cwd=tmp_path)
        assert result.returncode == 1, args
        assert result.stderr == f"hotreload: no hotreload host is running on {folder}\n"
    write(folder / "alpha.py", chatty())
    host = start_host(folder)
    host.wait_log("| alpha      | running")
    for args in (["gamma"], ["alpha", "gamma", "-f"]):
        result = logs(folder, *args, cwd=tmp_path)
        assert result.returncode == 1 and result.stdout == ""
        assert result.stderr == "hotreload: no worker named gamma; the names are: alpha, host\n"
    for bad in ("-1", "x"):
        result = logs(folder, "-n", bad, cwd=tmp_path)
        assert result.returncode == 2 and len(result.stderr.splitlines()) == 1
    assert run_cli("events", "-d", str(folder), "alpha", cwd=tmp_path).returncode == 2  # takes no names
    assert host.stop() == 0


def test_events_tell_state_changes_reloads_failed_reloads_crashes_and_commands(folder, start_host, tmp_path):
    write(folder / "svc.py", worker_source(1, BACKOFF={"initial": 0.05, "max": 0.1}))
    host = start_host(folder)
    host.wait_started("svc", 1)
    write(folder / "svc.py", worker_source(2, BACKOFF={"initial": 0.05, "max": 0.1}))
    host.wait_started("svc", 2)
    write(folder / "svc.py", "def run(ctx):\n    x = (\n")  # does not parse: line 2
    host.wait_log("| svc        | not loaded")
    failing = worker_source(3, top="import json\n\njson.loads('{')")  # fails at import
    write(folder / "svc.py", failing)
    host.wait_log("| svc        | not reloaded")
    write(folder / "svc.py", worker_source(4, body="raise KeyError('k')", BACKOFF={"initial": 60, "max": 60}))
    host.wait_log("| svc        | backoff: crashed")
    assert run_cli("stop", "-d", str(folder), "svc", cwd=tmp_path).returncode == 0
    host.wait_log("| svc        | stopped")

    seen = events(folder, cwd=tmp_path)
    by_kind = {}
    for event in seen:
        by_kind.setdefault(event["event"], []).append(event)
        assert event["worker"] in ("svc", None)
    path = str(folder / "svc.py")
    states = [(e["previous"], e["state"]) for e in by_kind["state"]]
    assert states[:2] == [("stopped", "starting"), ("starting", "running")]
    assert ("backoff", "stopped") in states
    reload = by_kind["reload"][0]
    assert reload["generation"] == 1 and reload["file"] == path and 0 < reload["ms"] < 10_000
    assert [e["generation"] for e in by_kind["reload"]] == [1, 2]  # the good saves: v2, then v4
    syntax, runtime = by_kind["reload_failed"]
    assert (syntax["file"], syntax["line"]) == (path, 2) and syntax["error"].startswith("SyntaxError")
    assert runtime["file"] == path and runtime["error"].startswith("JSONDecodeError")
    assert runtime["line"] == failing.splitlines().index("json.loads('{')") + 1  # the user's line, not json's
    [crash] = by_kind["crash"]
    assert crash["exception"] == "KeyError" and crash["error"] == "KeyError: 'k'"
    assert crash["file"] == path and isinstance(crash["line"], int)  # the worker's line that raised
    [command] = by_kind["command"]
    assert (command["command"], command["names"], command["worker"]) == ("stop", ["svc"], None)
    assert [e["time"] for e in seen] == sorted(e["time"] for e in seen)

    text = run_cli("events", "-d", str(folder), cwd=tmp_path).stdout.splitlines()
    assert len(text) == len(seen)
    assert any(line.split(" | ")[1:] == ["reload_failed", "svc       ", f"{Path(path).relative_to(tmp_path)}:2: "
                                          f"{syntax['error']}"] for line in text), text
    assert any(line.endswith("| command       | host       | stop svc") for line in text), text
    assert host.stop() == 0


def test_events_of_a_helper_reload_and_of_a_new_worker_that_fails_to_load(folder, start_host, tmp_path):
    write(folder / "_util.py", "X = 1\n")
    write(folder / "svc.py", worker_source(top="from . import _util"))
    host = start_host(folder)
    host.wait_started("svc", 1)
    write(folder / "_util.py", "X = 2\n")
    host.wait_started("svc", 1, count=2)  # its importer reloaded with it
    write(folder / "fresh.py", "import json\n\njson.loads('{')\n\ndef run(ctx):\n    pass\n")
    host.wait_log("| fresh      | cannot start this new worker")
    seen = events(folder, cwd=tmp_path)
    [helper] = [e for e in seen if e["event"] == "reload" and e["worker"] is None]
    assert helper["file"] == str(folder / "_util.py") and helper["generation"] is None
    [svc] = [e for e in seen if e["event"] == "reload" and e["worker"] == "svc"]
    assert svc["generation"] == 1
    [fresh] = [e for e in seen if e["event"] == "reload_failed"]
    assert (fresh["worker"], fresh["file"], fresh["line"]) == ("fresh", str(folder / "fresh.py"), 3)
    assert host.stop() == 0


def test_events_follow_shows_new_events_until_the_host_stops_then_exits_0(folder, start_host, tmp_path):
    write(folder / "svc.py", worker_source())
    host = start_host(folder)
    host.wait_started("svc", 1)
    follow = Follow(tmp_path, "events", "-d", str(folder), "-f", "--json")
    try:
        follow.wait_line('"state": "running"')  # what was kept comes first
        kept = len(follow.lines)
        assert run_cli("restart", "-d", str(folder), "svc", cwd=tmp_path).returncode == 0
        host.wait_started("svc", 1, count=2)
        follow.wait_line('"command": "restart"')
        wait_for(lambda: sum('"state": "running"' in line for line in follow.lines) == 2, what="running again")
        kinds = [json.loads(line)["event"] for line in follow.lines[kept:]]
        assert kinds[0] == "command" and set(kinds[1:]) == {"state"}
        assert host.stop() == 0
        status, stderr = follow.end()
    finally:
        follow.kill()
    assert status == 0 and "stopped" in stderr


def test_what_the_host_kept_and_its_followers_outlive_a_reload_of_core(folder, start_host, tmp_path):
    copy, private = private_package(tmp_path)
    write(folder / "svc.py", worker_source())
    host = start_host(folder, **private)
    host.wait_started("svc", 1)
    follow = Follow(tmp_path, "events", "-d", str(folder), "-f", "--json")
    try:
        follow.wait_line('"state": "running"')
        before = records(folder, "-n", "1000", cwd=tmp_path)
        write(copy / "core.py", (copy / "core.py").read_text() + "\n# edited\n")
        host.wait_log("core reloaded (generation 1)")
        after = records(folder, "-n", "1000", cwd=tmp_path)
        assert after[:len(before)] == before and "core reloaded" in after[-1]["message"]
        assert run_cli("restart", "-d", str(folder), "svc", cwd=tmp_path).returncode == 0  # the new core's events
        follow.wait_line('"command": "restart"')
        wait_for(lambda: sum('"state": "running"' in line for line in follow.lines) == 2, what="running again")
        assert [e["event"] for e in events(folder, cwd=tmp_path)].count("command") == 1
        assert host.stop() == 0
        assert follow.end()[0] == 0
    finally:
        follow.kill()


# --- followers that do not keep up ----------------------------------------------------------


def host_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


class Client:
    """A raw stream client that behaves in one of several ways, some of them hostile."""

    BEHAVIOURS = ("never reads", "reads slowly", "leaves", "chatters", "reads")

    def __init__(self, path: Path, behaviour: str, kind: str, rng: random.Random) -> None:
        self.behaviour, self.kind = behaviour, kind
        self.conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.conn.settimeout(WAIT)  # for the connection and the request only
        self.conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fills up soon
        self.conn.connect(str(path))
        request = {"cmd": self.kind, "follow": True}
        if self.kind == "logs":
            request["lines"] = rng.choice([0, 1, 1000])
        self.conn.sendall(json.dumps(request).encode() + b"\n")
        self.conn.setblocking(False)  # from now on no move waits (a timeout would wait first)
        self.read = 0

    def step(self, rng: random.Random) -> None:
        """One move, never waiting."""
        try:
            if self.behaviour == "reads slowly" and rng.random() < 0.2:
                self.read += len(self.conn.recv(512))
            elif self.behaviour == "reads":
                for _ in range(16):  # what has come, up to 1 MB: the host may send without end
                    self.read += len(self.conn.recv(65536))
            elif self.behaviour == "chatters":
                self.conn.send(rng.randbytes(rng.randrange(1, 200)))
            elif self.behaviour == "leaves" and rng.random() < 0.3:
                self.conn.close()
                self.behaviour = "gone"
        except BlockingIOError:
            pass
        except OSError:
            self.behaviour = "gone"

    def close(self) -> None:
        self.conn.close()


def test_followers_that_do_not_keep_up_never_stall_the_host(folder, start_host, tmp_path):
    """Streams whose clients never read, read a little, chatter or leave, beside a worker
    logging thousands of lines a second: status still answers, saves are still reloaded,
    memory stays bounded, and the host stops as it should."""
    write(folder / "flood.py", """
def run(ctx):
    n = 0
    while not ctx.sleep(0.01):
        for _ in range(100):
            n += 1
            ctx.log.info(f"flood {n} " + "x" * (n % 300))
""")
    write(folder / "svc.py", worker_source(1))
    host = start_host(folder)
    host.wait_started("svc", 1)
    host.wait_log("| flood      | flood 2000")
    path = control.socket_path(folder)
    rng = random.Random(12)
    clients = [Client(path, behaviour, kind, rng) for behaviour in Client.BEHAVIOURS for kind in ("logs", "events")]
    try:
        rss_before = host_rss_kb(host.host_pid())
        for version in range(2, 5):
            for _ in range(20):
                for client in clients:
                    client.step(rng)
            began = time.monotonic()
            status = run_cli("status", "-d", str(folder), "--json", cwd=tmp_path)
            assert status.returncode == 0, status.stderr
            assert time.monotonic() - began < 10
            write(folder / "svc.py", worker_source(version))
            host.wait_started("svc", version)
        names = {w["name"]: w["state"] for w in json.loads(status.stdout)["workers"]}
        assert names == {"flood": "running", "svc": "running"}
        growth = host_rss_kb(host.host_pid()) - rss_before
        assert growth < 30_000, f"RSS grew by {growth} KB"  # bounded queues: no growth per line
        [reader] = [c for c in clients if (c.behaviour, c.kind) == ("reads", "logs")]
        assert reader.read > 100_000  # the stream flowed all along to the client that reads
    finally:
        for client in clients:
            client.close()
    assert host.stop() == 0
    assert "Traceback" not in host.log()


def test_more_streams_than_allowed_are_refused_in_one_line(folder, start_host, tmp_path):
    write(folder / "alpha.py", chatty(3600))
    host = start_host(folder)
    host.wait_log("| alpha      | running")
    path = control.socket_path(folder)
    held = []
    try:
        while True:  # take every stream the host allows
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            held.append(conn)
            conn.settimeout(WAIT)
            conn.connect(str(path))
            conn.sendall(b'{"cmd": "events", "follow": true}\n')
            header = json.loads(conn.makefile("rb").readline())
            if not header["ok"]:
                assert header["error"].endswith("are reading this host's logs and events already; try again later")
                break
            assert len(held) <= control.MAX_STREAMS
        assert len(held) == control.MAX_STREAMS + 1
        result = logs(folder, cwd=tmp_path)
        assert result.returncode == 1 and len(result.stderr.splitlines()) == 1
        assert run_cli("status", "-d", str(folder), cwd=tmp_path).returncode == 0  # requests still served
    finally:
        for conn in held:
            conn.close()
    wait_for(lambda: logs(folder, cwd=tmp_path).returncode == 0, what="a stream slot freed")
    assert host.stop() == 0


def test_a_record_with_text_the_terminal_cannot_encode_is_shown_as_run_shows_it(folder, start_host, tmp_path):
    # A file name decoded with surrogateescape (os.listdir of bytes, a broken locale) in a line.
    write(folder / "w.py", 'def run(ctx):\n    print("name \\udcff")\n    ctx.log.info("lone \\ud800")\n'
                           '    ctx.sleep(float("inf"))\n')
    host = start_host(folder)
    host.wait_log("| w          | lone \\ud800")
    assert "| w          | name \\udcff" in host.log()
    for args in ((), ("-f",)):
        if args:
            follower = Follow(tmp_path, "logs", "-d", str(folder), "w", *args)
            follower.wait_line("lone \\ud800")
            host.stop()
            status, err = follower.end()
            assert status == 0 and "Traceback" not in err, err
            shown = follower.lines
        else:
            result = logs(folder, "w", cwd=tmp_path)
            assert result.returncode == 0 and result.stderr == "", result.stderr
            shown = result.stdout.splitlines()
        assert any(line.endswith("| w          | name \\udcff") for line in shown), shown
        assert any(line.endswith("| w          | lone \\ud800") for line in shown), shown


def test_a_worker_file_named_host_is_refused_as_the_host_is_named_so_in_every_log(folder, start_host, tmp_path):
    write(folder / "host.py", 'def run(ctx):\n    ctx.log.info("the worker named host")\n    ctx.sleep(float("inf"))\n')
    write(folder / "other.py", 'def run(ctx):\n    ctx.log.info("the other worker")\n    ctx.sleep(float("inf"))\n')
    host = start_host(folder)
    host.wait_log("the other worker")
    assert "host.py: 'host' is the host's own name in logs, status and events: rename the file" in host.log()
    assert not any("the worker named host" in r["message"] for r in records(folder, "host", cwd=tmp_path))
    assert "the worker named host" not in host.log()
