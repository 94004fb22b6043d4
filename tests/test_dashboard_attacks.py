"""The dashboard against what could break it, in headless Chromium against the real command on
loopback: a host restarted under the page, a worker that floods its log, worker names that
are the names of a JavaScript object's properties, a person going down the worker list, a
page on another local port opening the stream in a loop, a malformed secret in the address."""
from __future__ import annotations

import contextlib
import http.server
import socket
import threading
from typing import Any, Iterator

import pytest
from browser import browser as chromium_context, missing
from conftest import WAIT, run_cli, write
from test_http import get, port_of

pytestmark = pytest.mark.timeout(120)

SLEEPER = "def run(ctx):\n    while not ctx.sleep(3600):\n        pass\n"

MISSING = missing()
pytestmark = [pytestmark, pytest.mark.skipif(MISSING is not None, reason=MISSING or "")]
if MISSING is None:
    from playwright.sync_api import Page, expect

    expect.set_options(timeout=WAIT * 1000)


@pytest.fixture
def browser() -> Iterator[Any]:
    """A fresh headless Chromium's context (its profile removed afterwards)."""
    with chromium_context() as context:
        context.set_default_timeout(WAIT * 1000)
        yield context


def dashboard(browser: Any, port: int, suffix: str = "") -> Page:
    page = browser.pages[0]
    page.goto(f"http://127.0.0.1:{port}/{suffix}")
    expect(page.locator("#connection")).to_have_text("live")
    return page


def row(page: Page, name: str) -> Any:
    return page.locator(f'table#workers tr[data-worker="{name}"]')


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def answers(port: int) -> bool:
    try:
        return get(port, "/healthz")[0] == 200
    except OSError:  # refused: not listening yet
        return False


def test_after_the_host_restarts_the_page_acts_on_the_new_host(folder, start_host, browser):
    """A new host process has a new CSRF token: the page must not keep sending the old one."""
    write(folder / "sleeper.py", SLEEPER)
    port = free_port()  # the same port for the new host, as a person would give it
    host = start_host(folder, "--http", f"127.0.0.1:{port}")
    host.wait_log("http on 127.0.0.1:")
    page = dashboard(browser, port)
    expect(row(page, "sleeper").locator("td.state")).to_have_text("running")
    first = host.host_pid()
    assert run_cli("restart", "--host", "-d", str(folder), cwd=folder).returncode == 0
    host.wait_for(lambda: host.host_pid() != first and answers(port), "the new host's /healthz")
    expect(page.locator("#host")).to_contain_text(f"pid {host.host_pid()} ")
    expect(page.locator("#connection")).to_have_text("live")
    page.locator('button[data-action="restart"][data-worker="sleeper"]').click()
    expect(page.locator("#message")).to_have_text("sleeper: restarting")


FLOOD = """import time
def run(ctx):
    number = 0
    while not ctx.stopping:
        for _ in range(200):
            number += 1
            ctx.log.info(f"line {number} " + "x" * 60)
        time.sleep(0.01)
"""


def test_a_worker_flooding_its_log_leaves_the_followed_page_answering(folder, start_host, browser):
    """Thousands of lines a second while the page follows them: it keeps its last lines and
    answers clicks (each line laid out on its own froze it for tens of seconds)."""
    write(folder / "flood.py", FLOOD)
    host = start_host(folder, "--no-guard", "--http", "127.0.0.1:0")
    port = port_of(host)
    page = dashboard(browser, port)
    page.select_option("#log-worker", "flood")
    expect(page.locator("#log li")).to_have_count(500)  # KEPT
    for _ in range(5):
        shown = page.locator("#log li:last-child").text_content()
        expect(page.locator("#log li:last-child")).not_to_have_text(shown)  # still following
    page.locator('button[data-action="stop"][data-worker="flood"]').click()
    expect(row(page, "flood").locator("td.state")).to_have_text("stopped (held)")


def test_a_dropped_notice_stays_among_the_lines(folder, start_host, browser):
    """The notice of lines a slow page missed is a line of the list, not the placeholder that
    the next line replaces."""
    write(folder / "sleeper.py", SLEEPER)
    host = start_host(folder, "--no-guard", "--http", "127.0.0.1:0")
    page = dashboard(browser, port_of(host))
    page.evaluate("""() => {
        dispatch('event: dropped\\ndata: {"kind": "log", "count": 7}');
        dispatch('event: log\\ndata: {"time": "t", "level": "INFO", "worker": "sleeper", "message": "after"}');
    }""")
    expect(page.locator("#log li").last).to_contain_text("after")
    expect(page.locator("#log li", has_text="7 lines dropped")).to_have_count(1)


def test_workers_named_as_an_objects_properties_show_their_own_error(folder, start_host, browser):
    write(folder / "toString.py", "AFTER = ['nobody']\n" + SLEEPER)  # fatal at start: an error and no event
    write(folder / "constructor.py", "AFTER = ['nobody']\n" + SLEEPER)
    host = start_host(folder, "--no-guard", "--http", "127.0.0.1:0")
    page = dashboard(browser, port_of(host))
    for name in ("toString", "constructor"):
        error = row(page, name).locator("td.error")
        expect(error).to_contain_text("AFTER: no worker named nobody")
        expect(error).not_to_contain_text("function")


def test_going_down_the_worker_list_keeps_the_page_live(folder, start_host, browser):
    """Each choice opens a new stream and closes the last: 20 of them in a second must not
    find the 16 places taken by the closed ones."""
    names = [f"w{number:02}" for number in range(20)]
    for name in names:
        write(folder / f"{name}.py", SLEEPER)
    host = start_host(folder, "--no-guard", "--http", "127.0.0.1:0")
    page = dashboard(browser, port_of(host))
    expect(page.locator("#log-worker option")).to_have_count(len(names) + 1)
    page.focus("#log-worker")
    for _ in names:
        page.keyboard.press("ArrowDown")
    expect(page.locator("#log-worker")).to_have_value(names[-1])
    expect(page.locator("#log li").first).to_contain_text("starting")  # the last choice's stream came
    expect(page.locator("#connection")).to_have_text("live")
    expect(page.locator("#message")).to_have_text("")


class _Hostile(http.server.BaseHTTPRequestHandler):
    page = b""

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(self.page)))
        self.end_headers()
        self.wfile.write(self.page)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@contextlib.contextmanager
def hostile_page(text: str) -> Iterator[int]:
    """A page served on another port of loopback, as any local program's web page."""
    handler = type("Handler", (_Hostile,), {"page": text.encode()})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="test:hostile-page")
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(WAIT)


def test_a_page_on_another_local_port_cannot_keep_the_dashboard_out(folder, start_host, browser):
    write(folder / "sleeper.py", SLEEPER)
    host = start_host(folder, "--no-guard", "--http", "127.0.0.1:0")
    port = port_of(host)
    loop = f"""<!doctype html><script>
    window.sent = 0;
    setInterval(() => {{ for (let i = 0; i < 4; i++) {{
      window.sent++; fetch("http://127.0.0.1:{port}/stream", {{mode: "no-cors"}}).catch(() => 0); }} }}, 100);
    </script>"""
    with hostile_page(loop) as hostile:
        attacker = browser.new_page()
        attacker.goto(f"http://127.0.0.1:{hostile}/")
        attacker.wait_for_function("window.sent >= 40")
        page = dashboard(browser, port)
        sent = attacker.evaluate("window.sent")
        attacker.wait_for_function(f"window.sent >= {sent + 40}")
        expect(page.locator("#connection")).to_have_text("live")
        expect(page.locator("#message")).to_have_text("")
        attacker.close()


def test_a_malformed_secret_in_the_address_still_leaves_a_working_page(folder, start_host, browser):
    write(folder / "sleeper.py", SLEEPER)
    host = start_host(folder, "--no-guard", "--http", "127.0.0.1:0")
    page = dashboard(browser, port_of(host), "#token=%E0%A4%A")
    expect(row(page, "sleeper").locator("td.state")).to_have_text("running")

