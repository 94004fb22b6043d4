"""Headless Chromium for the dashboard's tests, its benchmark and the README's screenshot:
Playwright for Python driving the system's Chromium (Debian's ``chromium``), never a browser
of Playwright's own download. ``HOTRELOAD_CHROMIUM`` names another binary."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext

# Root needs --no-sandbox; there is no GPU; the network is closed, so none of the browser's own
# calls home (QUIC probes, updates, sync), each of which would wait on it.
ARGS = ("--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync")


def chromium() -> str | None:
    return os.environ.get("HOTRELOAD_CHROMIUM") or shutil.which("chromium")


def missing() -> str | None:
    """Why no browser can be driven here, or None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "no playwright: pip install -e '.[test]'"
    path = chromium()
    if path is None:
        return "no Chromium: apt-get install chromium (Debian) or set HOTRELOAD_CHROMIUM"
    if not os.access(path, os.X_OK):
        return f"HOTRELOAD_CHROMIUM={path} is not an executable"
    return None


@contextlib.contextmanager
def browser(width: int = 1280, height: int = 800) -> Iterator[BrowserContext]:
    """A fresh headless Chromium, its window ``width`` x ``height`` CSS pixels, with a profile
    folder and a TMPDIR of its own, removed afterwards: Chromium leaves its singleton socket's
    folder in TMPDIR now and then (``context.pages[0]`` is its tab)."""
    from playwright.sync_api import sync_playwright

    root = Path(tempfile.mkdtemp(prefix="hotreload-chromium-"))
    (root / "tmp").mkdir()
    try:
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                root / "profile", executable_path=chromium(), headless=True, args=list(ARGS),
                env={**os.environ, "TMPDIR": str(root / "tmp")}, viewport={"width": width, "height": height})
            try:
                yield context
            finally:
                context.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
