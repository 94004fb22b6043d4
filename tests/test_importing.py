"""Importing workers off the host loop: a slow, huge or hostile module never freezes the host."""
import signal

from conftest import run_cli, worker_source, write


def gated(name, gate, before=""):
    """Module-level code that reports it is being imported, then waits (60 s at most) for the
    file ``gate``: the import is still running until the test creates it."""
    return f'''
import os as _os, time as _time
{before}
report("{name}", "importing", 0, 0)
_deadline = _time.monotonic() + 60
while not _os.path.exists({str(gate)!r}) and _time.monotonic() < _deadline:
    _time.sleep(0.01)
'''


def status_table(folder, tmp_path):
    result = run_cli("status", "-d", str(folder), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_an_unparsable_file_is_reported_by_name_and_the_rest_of_its_batch_applies(folder, start_host):
    write(folder / "_deep.py", "X = 1\n")
    write(folder / "svc.py", worker_source(1, top="from . import _deep"))
    write(folder / "other.py", worker_source(1))
    host = start_host(folder, "--debounce", "1")  # both saves below make one batch
    host.wait_started("svc", 1)
    host.wait_started("other", 1)
    write(folder / "_deep.py", "X = " + "+".join(["1"] * 200_000) + "\n")  # RecursionError in ast.parse
    write(folder / "other.py", worker_source(2))
    host.wait_started("other", 2)
    log = host.wait_log("RecursionError")
    assert "workers/_deep.py" in log and "internal error" not in log
    host.barrier()
    assert host.starts("svc") == [1]  # its helper did not load: it keeps running as it was
    assert host.stop() == 0
