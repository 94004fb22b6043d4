"""``hotreload new NAME``: a worker to start from, showing the three things ``ctx`` offers."""
from __future__ import annotations

import keyword
from pathlib import Path

__all__ = ["TEMPLATE", "new_worker"]

TEMPLATE = '''\
"""{name}: a hotreload worker. Save this file while it runs and the new code takes over."""

# Optional settings (these are the defaults):
# RESTART = "always"      # or "on-failure", "never"
# BACKOFF = {{"initial": 0.5, "factor": 2.0, "max": 30.0, "jitter": 0.5, "fatal_after": 10}}
# STOP_TIMEOUT = 5.0


def run(ctx):
    # ctx.state is a dict that survives crashes and reloads: keep plain data in it.
    count = ctx.state.setdefault("count", 0)
    ctx.log.info(f"starting at count {{count}}")
    # ctx.sleep waits, and returns True as soon as the host asks this worker to stop.
    while not ctx.sleep(1.0):
        ctx.state["count"] += 1
        ctx.log.info(f"tick {{ctx.state['count']}}")
'''


def new_worker(folder: Path, name: str) -> Path:
    """Write ``folder/name.py`` from the template; ValueError for a bad name or an existing file."""
    if not name.isidentifier() or keyword.iskeyword(name):
        raise ValueError(f"{name!r} is not a valid worker name: use a Python identifier, like my_worker")
    if name.startswith("_"):
        raise ValueError(f"{name!r} starts with '_', which makes it a helper, not a worker")
    if not folder.is_dir():
        raise ValueError(f"workers folder {str(folder)!r} does not exist")
    path = folder / f"{name}.py"
    package = folder / name
    if path.exists() or package.exists():
        raise ValueError(f"{path if path.exists() else package} already exists; not overwriting it")
    with open(path, "x", encoding="utf-8") as f:
        f.write(TEMPLATE.format(name=name))
    return path
