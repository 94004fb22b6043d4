"""``hotreload list``: import every worker without running it, and say what each one is.

The workers are loaded exactly as ``hotreload run`` loads them (``core.load``), so a module
that passes here starts there; errors are logged with their traceback as in ``run``, and
the table gives each in one line. Exit status 1 when any worker is broken, for CI and
pre-commit hooks.
"""
from __future__ import annotations

from hotreload import core, settings
from hotreload.records import Host
from hotreload.status import aligned

__all__ = ["report"]


def report(checked: Host) -> int:
    """Load every worker of ``checked`` (a host not yet started), print the table, and
    return the exit status: 1 when any worker is broken."""
    core.load(checked)
    rows = []
    for worker in sorted(checked.workers.values(), key=lambda w: w.name):
        kind = "worker" if worker.path is not None else "entry point"
        extra = settings.describe(worker.settings, checked.defaults)
        error = worker.order_error or ("" if worker.target is not None else worker.last_error or "broken")
        rows.append((worker.name, kind, extra, error))
    rows += [(name, "helper", "", "") for name in core.helpers(checked)]
    for cells in aligned([("NAME", "KIND", "SETTINGS", "ERROR"), *rows]):
        print("  ".join(cells).rstrip())
    broken = [row[0] for row in rows if row[3]]
    if broken:
        print(f"{len(broken)} broken: {', '.join(broken)}")
    return 1 if broken else 0
