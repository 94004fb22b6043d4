"""The dashboard of ``hotreload run --http``, driven in headless Chromium (``browser.py``):
what a person sees and clicks, against the real command on loopback."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterator

import pytest
from browser import browser, missing
from conftest import WAIT, Host, worker_source, write
from test_http import get, port_of

MISSING = missing()
pytestmark = [pytest.mark.timeout(120), pytest.mark.skipif(MISSING is not None, reason=MISSING or "")]

if MISSING is None:
    from playwright.sync_api import Page, expect

    expect.set_options(timeout=WAIT * 1000)

NAMES = ("alpha", "beta")
STOPPED = re.compile(r"^stopped( \(held\))?$")  # held: stopped on request, not restarted


def save(path: Path, text: str) -> None:
    """Write a temp file and rename it over ``path``, as most editors save: the host never sees
    a half-written file."""
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(text)
    os.replace(temp, path)


def chatty(version: int) -> str:
    """A worker that logs a line naming its version when it starts."""
    return worker_source(version, body=f"ctx.log.info('hello from version {version}')")


@pytest.fixture
def page() -> Iterator[Page]:
    with browser() as context:
        tab = context.pages[0]
        tab.set_default_timeout(WAIT * 1000)
        yield tab


def host_with(folder: Path, start_host, *names: str) -> tuple[Host, int]:
    for name in names:
        write(folder / f"{name}.py", chatty(1))
    host = start_host(folder, "--no-guard", "--http", "127.0.0.1:0")
    port = port_of(host)
    for name in names:
        host.wait_started(name, 1)
    return host, port


def open_dashboard(page: Page, port: int) -> None:
    page.goto(f"http://127.0.0.1:{port}/")
    expect(page.locator("#connection")).to_have_text("live")


def row(page: Page, name: str):
    return page.locator(f'table#workers tr[data-worker="{name}"]')


def button(page: Page, action: str, name: str | None = None):
    which = f'[data-worker="{name}"]' if name else "[data-all]"
    return page.locator(f'button[data-action="{action}"]{which}')


def test_the_dashboard_shows_every_worker_and_its_figures(folder, start_host, page):
    write(folder / "crasher.py", worker_source(1, body="raise RuntimeError('boom')",
                                               BACKOFF={"initial": 60, "jitter": 0}))
    host, port = host_with(folder, start_host, *NAMES)
    host.wait_log("crashed after")
    open_dashboard(page, port)
    expect(page.locator("table#workers tr[data-worker]")).to_have_count(3)
    for name in NAMES:
        expect(row(page, name).locator("td.state")).to_have_text("running")
        expect(row(page, name).locator("td.restarts")).to_have_text("0")
        expect(row(page, name).locator("td.reloads")).to_have_text("0")
        expect(row(page, name).locator("td.cpu")).to_have_text(re.compile(r"^\d+(\.\d+)?%$"))
        for action in ("restart", "stop", "start"):
            expect(button(page, action, name)).to_be_visible()
    crasher = row(page, "crasher")
    expect(crasher.locator("td.state")).to_have_text("backoff")
    expect(crasher.locator("td.crashes")).to_have_text("1")
    expect(crasher.locator("td.error")).to_contain_text(re.compile(r"crasher\.py:\d+.*boom"))
    expect(page.locator('#events li[data-event="crash"][data-worker="crasher"]')).to_contain_text("boom")
    for action in ("restart", "stop", "start"):
        expect(button(page, action)).to_be_visible()


def test_restart_changes_the_restart_count(folder, start_host, page):
    host, port = host_with(folder, start_host, *NAMES)
    open_dashboard(page, port)
    expect(row(page, "alpha").locator("td.restarts")).to_have_text("0")
    button(page, "restart", "alpha").click()
    expect(row(page, "alpha").locator("td.restarts")).to_have_text("1")
    host.wait_started("alpha", 1, count=2)
    expect(page.locator('#events li[data-event="command"]')).to_contain_text("restart alpha")
    expect(row(page, "beta").locator("td.restarts")).to_have_text("0")
    assert host.starts("beta") == [1]


def test_a_save_shows_its_reload_and_log_line_without_reloading_the_page(folder, start_host, page):
    host, port = host_with(folder, start_host, *NAMES)
    open_dashboard(page, port)
    page.evaluate("window.notReloaded = true")
    page.select_option("select#log-worker", "alpha")
    log = page.locator("#log li")
    expect(log.filter(has_text="hello from version 1")).to_have_count(1)
    expect(log.filter(has_text="hello from version 2")).to_have_count(0)

    save(folder / "alpha.py", chatty(2))
    host.wait_started("alpha", 2)
    reload = page.locator('#events li[data-event="reload"][data-worker="alpha"]')
    expect(reload).to_have_count(1)
    expect(reload).to_contain_text(re.compile(r"generation 1 in \d+\.\d ms \(.*alpha\.py\)"))
    kinds = page.locator('#events li[data-worker="alpha"]').evaluate_all("items => items.map(i => i.dataset.event)")
    assert kinds.index("reload") > kinds.index("state"), f"the newest event is not last: {kinds}"
    expect(log.filter(has_text="hello from version 2")).to_have_count(1)
    expect(row(page, "alpha").locator("td.reloads")).to_have_text("1")
    assert page.evaluate("window.notReloaded") is True, "the page was loaded again"


def test_an_action_without_the_token_is_refused(folder, start_host, page):
    host, port = host_with(folder, start_host, "alpha")
    open_dashboard(page, port)
    refused = page.evaluate("fetch('/workers/alpha/restart', {method: 'POST'}).then(r => r.status)")
    assert refused == 403
    assert get(port, "/workers/alpha/restart", method="POST")[0] == 403
    assert host.starts("alpha") == [1]
    taken = page.evaluate("""async () => {
        const {token} = await (await fetch('/csrf')).json();
        const reply = await fetch('/workers/alpha/restart', {method: 'POST', headers: {'X-Hotreload-CSRF': token}});
        return reply.status;
    }""")
    assert taken == 200
    host.wait_started("alpha", 1, count=2)


def test_stop_then_start_a_worker(folder, start_host, page):
    host, port = host_with(folder, start_host, *NAMES)
    open_dashboard(page, port)
    state = row(page, "alpha").locator("td.state")
    expect(state).to_have_text("running")
    button(page, "stop", "alpha").click()
    expect(state).to_have_text(STOPPED)
    expect(row(page, "beta").locator("td.state")).to_have_text("running")
    button(page, "start", "alpha").click()
    expect(state).to_have_text("running")
    host.wait_started("alpha", 1, count=2)


def test_restart_all_and_stop_all(folder, start_host, page):
    host, port = host_with(folder, start_host, *NAMES)
    open_dashboard(page, port)
    button(page, "restart").click()
    for name in NAMES:
        expect(row(page, name).locator("td.restarts")).to_have_text("1")
        host.wait_started(name, 1, count=2)
    button(page, "stop").click()
    for name in NAMES:
        expect(row(page, name).locator("td.state")).to_have_text(STOPPED)
    button(page, "start").click()
    for name in NAMES:
        expect(row(page, name).locator("td.state")).to_have_text("running")


def test_on_a_phone_the_table_and_buttons_fit_the_width(folder, start_host):
    host, port = host_with(folder, start_host, "a_worker_with_a_rather_long_name", "beta")
    with browser(390, 844) as context:
        page = context.pages[0]
        page.set_default_timeout(WAIT * 1000)
        open_dashboard(page, port)
        expect(page.locator("table#workers tr[data-worker]")).to_have_count(2)
        width = page.evaluate("window.innerWidth")
        assert page.evaluate("document.documentElement.scrollWidth") <= width, "the page scrolls sideways"
        for target in [page.locator("table#workers"), *page.locator("button[data-action]").all()]:
            box = target.bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width, target


def test_with_a_secret_the_page_works_once_given_it_in_the_address_and_not_without(folder, start_host, page, tmp_path):
    write(folder / "alpha.py", chatty(1))
    (tmp_path / "secret").write_text("s3cret-of-this-test\n")
    host = start_host(folder, "--no-guard", "--http", "127.0.0.1:0", "--http-token-file", str(tmp_path / "secret"))
    port = port_of(host)
    host.wait_started("alpha", 1)
    page.goto(f"http://127.0.0.1:{port}/")
    expect(page.locator("#message")).to_contain_text("401")  # no secret: no stream, no token
    expect(page.locator("#connection")).not_to_have_text("live")
    assert 'content="">' in page.content()  # the page came without the CSRF token

    page.goto(f"http://127.0.0.1:{port}/#token=s3cret-of-this-test")
    expect(page.locator("#connection")).to_have_text("live")
    expect(page.locator("#message")).to_have_text("")  # the 401 is gone with its cause
    assert "s3cret" not in page.url  # taken off the address bar
    button(page, "restart", "alpha").click()
    expect(row(page, "alpha").locator("td.restarts")).to_have_text("1")
    host.wait_started("alpha", 1, count=2)
