"""The dashboard of ``--http`` in headless Chromium (``tests/browser.py``): how long a save's
reload event takes to show on the page, and the README's screenshot
(``python -m benchmarks.dashboard docs/dashboard.png``).

The bar: a save shows its reload event on the page within 200 ms of the host logging it. The
host stamps each event with the wall clock as its journal takes it (the event's ``time``, read
back from ``/events``); a ``MutationObserver`` in the page notes the wall clock when the
event's item appears in ``#events``. Both clocks are this machine's.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import sys
import time
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from benchmarks.harness import BIN, WAIT, Process, save_by_replace, summary, temp_folder
from tests import browser

__all__ = ["reload_to_page", "screenshot"]

ROOT = Path(__file__).resolve().parent.parent
HTTP_LINE = re.compile(r"http on 127\.0\.0\.1:(\d+)")
SLEEPER = "VERSION = {version}\n\n\ndef run(ctx):\n    while not ctx.sleep(3600):\n        pass\n"
# Notes, per generation, when a reload item saying "generation N" first shows in #events.
OBSERVER = """() => {
    window.benchShown = {};
    const note = () => {
        const now = performance.timeOrigin + performance.now();
        for (const item of document.querySelectorAll('#events li[data-event="reload"]')) {
            const found = /generation (\\d+) in/.exec(item.textContent);
            if (found && !(found[1] in window.benchShown)) window.benchShown[found[1]] = now;
        }
    };
    new MutationObserver(note).observe(document.getElementById('events'),
                                       {childList: true, subtree: true, characterData: true});
    note();
}"""


def _wait(condition: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)
    return value


def _host(folder: Path, root: Path) -> tuple[Process, int]:
    """``hotreload run FOLDER --http 127.0.0.1:0`` and the port it serves."""
    log = root / "host.log"
    host = Process([str(BIN / "hotreload"), "run", str(folder), "--no-guard", "--http", "127.0.0.1:0"],
                   dict(os.environ), root, log)
    try:
        found = _wait(lambda: HTTP_LINE.search(log.read_text(errors="replace")), "the host to serve http")
    except TimeoutError:
        host.stop()
        raise
    return host, int(found[1])


def _open(page: Any, port: int) -> None:
    from playwright.sync_api import expect

    page.set_default_timeout(WAIT * 1000)
    page.goto(f"http://127.0.0.1:{port}/")
    expect(page.locator("#connection")).to_have_text("live", timeout=WAIT * 1000)


def _reload_times(port: int) -> dict[int, float]:
    """Each reload event's generation and its ``time``, in ms since the epoch."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/events?lines=1000", timeout=WAIT) as reply:
        events = [json.loads(line) for line in reply.read().splitlines()]
    return {e["generation"]: datetime.fromisoformat(e["time"]).timestamp() * 1000
            for e in events if e["event"] == "reload" and e["generation"] is not None}


def reload_to_page(root: Path, saves: int) -> dict[str, Any]:
    """Save a worker ``saves`` times, each once the page showed the last; the delay from each
    reload event's ``time`` to its item on the page."""
    reason = browser.missing()
    if reason is not None:
        return {"skipped": reason}
    folder = root / "workers"
    folder.mkdir()
    saved = folder / "saved.py"
    saved.write_text(SLEEPER.format(version=0))
    host, port = _host(folder, root)
    try:
        with browser.browser() as context:
            page = context.pages[0]
            _open(page, port)
            page.evaluate(OBSERVER)
            for generation in range(1, saves + 1):
                save_by_replace(saved, SLEEPER.format(version=generation))
                page.wait_for_function("g => g in window.benchShown", arg=str(generation), timeout=WAIT * 1000)
            shown = page.evaluate("window.benchShown")
        logged = _reload_times(port)
    finally:
        host.stop()
    delays = [(shown[str(g)] - logged[g]) / 1000 for g in range(1, saves + 1)]
    return summary(delays)


def screenshot(path: Path) -> None:
    """The dashboard at laptop width with the demo workers of ``workers/``, the examples'
    ticker and crasher, after one save of the demo: a reload event, crashes, a log."""
    reason = browser.missing()
    if reason is not None:
        raise SystemExit(f"no screenshot: {reason}")
    with temp_folder() as root:
        folder = root / "workers"
        folder.mkdir()
        for source in ("workers/ticker.py", "workers/_util.py", "examples/ticker/clock.py",
                       "examples/crasher/flaky.py"):
            shutil.copy(ROOT / source, folder)
        host, port = _host(folder, root)
        try:
            with browser.browser(1280, 800) as context:
                from playwright.sync_api import expect

                page = context.pages[0]
                _open(page, port)
                expect(page.locator('tr[data-worker="flaky"] td.crashes')).not_to_have_text("0")
                util = folder / "_util.py"
                save_by_replace(util, util.read_text().replace('f"tick {count}"', 'f"tick {count}, edited"'))
                expect(page.locator('#events li[data-event="reload"][data-worker="ticker"]')).to_have_count(1)
                page.select_option("select#log-worker", "ticker")
                expect(page.locator("#log li").filter(has_text="edited")).not_to_have_count(0)
                page.screenshot(path=str(path))
        finally:
            host.stop()


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/dashboard.png")
    screenshot(target)
    print(f"{target}: {target.stat().st_size // 1024} KB")
