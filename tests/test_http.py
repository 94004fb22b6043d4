"""``hotreload run --http 127.0.0.1:0``: the real command, asked over HTTP on loopback."""
from __future__ import annotations

import compileall
import json
import re
import signal
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from conftest import Host, private_package, run_cli, wait_for, worker_source, write
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.timeout(90)

SLEEPER = "def run(ctx):\n    while not ctx.sleep(3600):\n        pass\n"


def port_of(host: Host) -> int:
    """The port the host logged: ``http on 127.0.0.1:PORT``."""
    log = host.wait_log("http on 127.0.0.1:")
    return int(re.search(r"http on 127\.0\.0\.1:(\d+)", log)[1])


def get(port: int, path: str, headers: dict[str, str] | None = None, method: str = "GET") -> tuple[int, bytes]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def post(port: int, path: str) -> tuple[int, Any]:
    token = json.loads(get(port, "/csrf")[1])["token"]
    code, body = get(port, path, {"X-Hotreload-CSRF": token, "Origin": f"http://127.0.0.1:{port}"}, "POST")
    return code, json.loads(body)


def samples(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    code, body = get(port, "/metrics")
    assert code == 200
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body.decode()) for s in family.samples}


def test_probes_metrics_and_actions_follow_the_workers(folder, start_host):
    write(folder / "ticker.py", worker_source(1))
    write(folder / "crasher.py", worker_source(1, body="raise RuntimeError('boom')",
                                               BACKOFF={"initial": 60, "jitter": 0}))
    host = start_host(folder, "--no-guard", "--http", "127.0.0.1:0")
    port = port_of(host)
    assert get(port, "/healthz") == (200, b'{"ok": true}\n')
    host.wait_log("crashed after")
    code, body = get(port, "/readyz")
    assert (code, json.loads(body)["not_running"]) == (503, [{"name": "crasher", "state": "backoff"}])
    ticker = (("worker", "ticker"),)
    assert samples(port)[("hotreload_worker_crashes_total", (("worker", "crasher"),))] == 1
    host_figures = samples(port)
    assert host_figures[("hotreload_host_rss_bytes", ())] > 1e6 and host_figures[("hotreload_host_threads", ())] >= 3
    assert post(port, "/workers/crasher/stop") == (200, {"ok": True, "results": {"crasher": "stopped"}})
    host.wait_for(lambda: get(port, "/readyz")[0] == 200, "ready once the crasher is stopped on request")

    write(folder / "ticker.py", worker_source(2))
    host.wait_started("ticker", 2)
    write(folder / "ticker.py", worker_source(3) + "\n  oops(")
    host.wait_log("not loaded; the previous version keeps running")
    figures = samples(port)
    assert figures[("hotreload_worker_reloads_total", (("result", "ok"), *ticker))] == 1
    assert figures[("hotreload_worker_reloads_total", (("result", "failed"), *ticker))] == 1
    assert figures[("hotreload_reload_duration_seconds_count", ticker)] == 1
    assert figures[("hotreload_worker_up", ticker)] == 1
    assert figures[("hotreload_worker_up", (("worker", "crasher"),))] == 0

    assert post(port, "/workers/ticker/restart")[0] == 200
    host.wait_started("ticker", 2, count=2)
    host.wait_for(lambda: samples(port)[("hotreload_worker_restarts_total", ticker)] == 1, "the restart counted")
    assert post(port, "/workers/nobody/restart")[0] == 404
    assert post(port, "/all/stop")[1]["results"] == {"crasher": "not running (stopped)", "ticker": "stopping"}
    assert host.stop() == 0


def test_probes_are_answered_while_a_reload_imports_for_longer_than_the_liveness_timeout(folder, start_host, tmp_path):
    importing, release = tmp_path / "importing", tmp_path / "release"
    write(folder / "slow.py", SLEEPER)
    host = start_host(folder, "--no-guard", "--http", "127.0.0.1:0")
    port = port_of(host)
    host.wait_log("slow       | running")
    write(folder / "slow.py", f"import os, time\nopen({str(importing)!r}, 'w').close()\n"
                              f"deadline = time.monotonic() + 30\n"
                              f"while not os.path.exists({str(release)!r}) and time.monotonic() < deadline:\n"
                              f"    time.sleep(0.01)\n" + SLEEPER)
    host.wait_for(importing.exists, "the new version's import to begin")
    try:
        assert get(port, "/healthz") == (200, b'{"ok": true}\n')
        assert get(port, "/healthz", method="HEAD") == (200, b"")
        code, body = get(port, "/readyz")
        assert code in (200, 503) and "ready" in json.loads(body), body  # the loop's answer, not its silence
    finally:
        release.touch()
    host.wait_log("slow       | reloaded")
    host.wait_for(lambda: get(port, "/readyz")[0] == 200, "ready on the new version")
    assert host.stop() == 0


def test_an_idle_host_serving_http_wakes_no_thread(folder, start_host, tmp_path):
    # The host watches its own package's folder (a save of core.py reloads it) and, in a git
    # work tree, its git folder: any process importing hotreload from the same checkout (another
    # test session, a hotreload command) or a git command there wakes the file watcher of an
    # otherwise idle host. It runs from a private copy, compiled beforehand, which only it opens.
    copy, private = private_package(tmp_path)
    assert compileall.compile_dir(copy, quiet=1)
    write(folder / "sleeper.py", SLEEPER)
    host = start_host(folder, "--no-guard", "--http", "127.0.0.1:0", "--log-level", "debug", **private)
    port = port_of(host)
    host.wait_log("sleeper    | running")
    assert f"supervising with {copy / 'core.py'}" in host.log()  # (a debug line) it watches the copy
    tasks = Path(f"/proc/{host.host_pid()}/task")
    threads = {task.name for task in tasks.iterdir()}
    assert get(port, "/metrics")[0] == 200 and get(port, "/healthz")[0] == 200  # the clients come and go

    def switches() -> dict[str, int]:
        """Context switches by thread; one that ended since the listing is left out."""
        counts = {}
        for task in tasks.iterdir():
            try:
                text = (task / "status").read_text()
            except FileNotFoundError:
                continue
            counts[task.name] = sum(int(line.split()[1]) for line in text.splitlines() if "ctxt_switches" in line)
        return counts

    def quiet_for(seconds: float) -> bool:
        before = switches()
        time.sleep(seconds)  # a measurement window, not a wait
        return switches() == before

    # a connection's thread may outlive its reply by a while on a loaded machine: it must end first
    wait_for(lambda: {task.name for task in tasks.iterdir()} <= threads, 15, "the connections' threads to end")
    wait_for(lambda: quiet_for(0.5), 15, "start-up work to settle")
    assert quiet_for(2.0), "a thread of the host woke while it was idle"
    assert host.stop() == 0


def test_sigterm_closes_the_port_and_a_taken_port_is_an_error(folder, start_host, tmp_path):
    write(folder / "sleeper.py", SLEEPER)
    host = start_host(folder, "--no-guard", "--http", "127.0.0.1:0")
    port = port_of(host)
    assert get(port, "/healthz")[0] == 200
    assert host.stop(signal.SIGTERM) == 0
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = run_cli("run", str(folder), "--no-guard", "--http", str(taken.getsockname()[1]), cwd=tmp_path)
    assert busy.returncode == 1 and "cannot serve HTTP on 127.0.0.1:" in busy.stderr


def test_http_from_the_config_file_and_a_token_file(folder, start_host, tmp_path):
    write(folder / "sleeper.py", SLEEPER)
    (tmp_path / "token").write_text("s3cret\n")
    (tmp_path / "pyproject.toml").write_text('[tool.hotreload]\nhttp = "127.0.0.1:0"\nhttp-token-file = "token"\n')
    host = start_host(folder, "--no-guard")
    port = port_of(host)
    host.wait_log("sleeper    | running")
    assert get(port, "/logs")[0] == 401
    code, body = get(port, "/logs?worker=sleeper", {"Authorization": "Bearer s3cret"})
    assert code == 200 and any(json.loads(line)["message"] == "running" for line in body.splitlines())
    assert host.stop() == 0
    (tmp_path / "token").write_text("\n")
    empty = run_cli("run", str(folder), "--no-guard", cwd=tmp_path)
    assert empty.returncode == 2 and "is empty" in empty.stderr
