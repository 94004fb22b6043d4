"""hotreload.testing and its pytest fixture, used on the examples as a user would."""
import socket
import sys
import urllib.request
from pathlib import Path

import pytest

from hotreload.testing import run_worker

ROOT = Path(__file__).resolve().parent.parent


def test_run_worker_runs_the_clock_example_with_a_real_ctx_and_stops_it():
    with run_worker(ROOT / "examples" / "ticker" / "clock.py", state={"ticks": 41}) as worker:
        worker.wait_for(lambda: worker.state["ticks"] >= 42)
        assert worker.running and worker.name == "clock"
    assert not worker.running and worker.ended and worker.error is None
    assert "ticker" not in sys.modules and "ticker.clock" not in sys.modules


def test_relative_imports_of_helpers_work_like_under_the_host():
    with run_worker(ROOT / "workers" / "ticker.py") as worker:
        assert worker.wait_for(lambda: "workers._util" in sys.modules)
    assert "workers._util" not in sys.modules


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fetch(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
            return response.read().decode()
    except OSError:
        return None


def test_the_fixture_serves_the_http_example_and_stops_it(hotreload_worker, monkeypatch):
    port = free_port()
    monkeypatch.setenv("HELLO_PORT", str(port))
    worker = hotreload_worker(ROOT / "examples" / "http_server" / "hello.py")
    assert worker.wait_for(lambda: fetch(port)) == "hello from hotreload\n"
    worker.stop()
    assert worker.error is None and not worker.running


def test_the_http_examples_kept_socket_is_closed_when_the_block_ends(monkeypatch):
    port = free_port()
    monkeypatch.setenv("HELLO_PORT", str(port))
    with run_worker(ROOT / "examples" / "http_server" / "hello.py") as worker:
        assert worker.wait_for(lambda: fetch(port)) == "hello from hotreload\n"
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does: TIME_WAIT is fine
        s.bind(("127.0.0.1", port))  # a listener still open would fail this: it was closed


def test_a_crash_is_reported_and_a_worker_that_will_not_stop_fails_the_test(tmp_path):
    folder = tmp_path / "svc"
    folder.mkdir()
    (folder / "boom.py").write_text("def run(ctx):\n    raise ValueError('bad input')\n")
    with run_worker(folder / "boom.py") as worker:
        with pytest.raises(AssertionError, match="ended before the condition held: run raised ValueError: bad input"
                           ) as failure:
            worker.wait_for(lambda: False)
        assert failure.value.__cause__ is worker.error
    assert isinstance(worker.error, ValueError)

    (folder / "done.py").write_text("def run(ctx):\n    return\n")
    with run_worker(folder / "done.py") as worker:
        with pytest.raises(AssertionError, match="ended before the condition held: run returned") as failure:
            worker.wait_for(lambda: False)
        assert failure.value.__cause__ is None

    (folder / "stubborn.py").write_text(
        "import time\nSTOP_TIMEOUT = 0.2\ndef run(ctx):\n    while True:\n        time.sleep(0.01)\n"
    )
    with pytest.raises(AssertionError, match="did not stop within 0.2 s"):
        with run_worker(folder / "stubborn.py"):
            pass


def test_what_the_worker_kept_is_closed_when_the_block_ends_after_its_finally(tmp_path):
    folder = tmp_path / "svc"
    folder.mkdir()
    (folder / "keeper.py").write_text(
        "EVENTS = []\n"
        "class Resource:\n"
        "    def close(self):\n"
        "        EVENTS.append('closed')\n"
        "def run(ctx):\n"
        "    ctx.state['resource'] = ctx.keep('resource', Resource)\n"
        "    try:\n"
        "        ctx.sleep(float('inf'))\n"
        "    finally:\n"
        "        EVENTS.append('finally')\n"
    )
    with run_worker(folder / "keeper.py") as worker:
        events = sys.modules["svc.keeper"].EVENTS
        worker.wait_for(lambda: "resource" in worker.state)
        assert events == []
    assert events == ["finally", "closed"]


def test_a_worker_that_says_it_is_ready_runs_and_stops_as_under_the_host(tmp_path):
    folder = tmp_path / "readyfolder"
    folder.mkdir()
    (folder / "db.py").write_text(
        'READY = "signal"\n\ndef run(ctx):\n    ctx.ready()\n    ctx.state["ready"] = True\n'
        '    ctx.sleep(float("inf"))\n'
    )
    with run_worker(folder / "db.py") as worker:
        worker.wait_for(lambda: worker.state.get("ready"))
    assert worker.ended and worker.error is None
