"""checker: a thread worker that asks the web program for its page every two seconds."""
import urllib.request

from ._config import PORT

AFTER = ["web"]  # started once web is ready, stopped before it


def run(ctx):
    url = f"http://127.0.0.1:{PORT}/"
    while not ctx.sleep(2):
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                ctx.log.info(f"web says: {response.read().decode().strip()}")
        except OSError as exc:
            ctx.log.warning(f"web does not answer (yet): {exc}")
