"""``hotreload new NAME``: a worker to start from, showing the three things ``ctx`` offers;
with ``--command``, a program worker showing its settings."""
from __future__ import annotations

import keyword
from pathlib import Path

from hotreload import program
from hotreload.settings import SettingsError

__all__ = ["PROGRAM_TEMPLATE", "TEMPLATE", "new_worker"]

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

PROGRAM_TEMPLATE = '''\
"""{name}: a program hotreload runs and supervises. Save this file with a new COMMAND (or ENV,
CWD, STOP_SIGNAL or a setting) while it runs and the program restarts with it."""

COMMAND = {command!r}  # a list, or a string split like a shell would (without a shell)

# Optional settings (these are the defaults):
# ENV = {{}}                 # added to the environment: {{"PORT": "8000"}}
# CWD = "."                # the folder it runs in, relative to the workers folder
# STOP_SIGNAL = "SIGTERM"  # sent to its process group to stop it; SIGKILL after STOP_TIMEOUT
# RESTART = "always"       # or "on-failure" (a nonzero exit status), "never"
# BACKOFF = {{"initial": 0.5, "factor": 2.0, "max": 30.0, "jitter": 0.5, "fatal_after": 10}}
# STOP_TIMEOUT = 5.0
'''


def new_worker(folder: Path, name: str, command: str | None = None) -> Path:
    """Write ``folder/name.py`` from the template (a program worker running ``command``, if
    given); ValueError for a bad name or command, or an existing file."""
    if not name.isidentifier() or keyword.iskeyword(name):
        raise ValueError(f"{name!r} is not a valid worker name: use a Python identifier, like my_worker")
    if name.startswith("_"):
        raise ValueError(f"{name!r} starts with '_', which makes it a helper, not a worker")
    if not folder.is_dir():
        raise ValueError(f"workers folder {str(folder)!r} does not exist")
    if command is not None:
        try:
            program.parse({"COMMAND": command}, folder)
        except SettingsError as exc:
            raise ValueError(f"--command {exc}") from None
    path = folder / f"{name}.py"
    package = folder / name
    if path.exists() or package.exists():
        raise ValueError(f"{path if path.exists() else package} already exists; not overwriting it")
    with open(path, "x", encoding="utf-8") as f:
        f.write(TEMPLATE.format(name=name) if command is None else PROGRAM_TEMPLATE.format(name=name, command=command))
    return path
