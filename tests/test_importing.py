"""Importing workers off the host loop: a slow, huge or hostile module never freezes the host."""
import signal
import sys

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


# A parse failure that is not a SyntaxError. Before Python 3.11 a deep expression overflows
# the C parser's stack (a crash, which nothing in-process can catch); null bytes raise
# ValueError there instead.
if sys.version_info >= (3, 11):
    UNPARSABLE, UNPARSABLE_RAISES = "X = " + "+".join(["1"] * 200_000) + "\n", "RecursionError"
else:
    UNPARSABLE, UNPARSABLE_RAISES = "X = 1\0\n", "ValueError"


def test_an_unparsable_file_is_reported_by_name_and_the_rest_of_its_batch_applies(folder, start_host):
    write(folder / "_deep.py", "X = 1\n")
    write(folder / "svc.py", worker_source(1, top="from . import _deep"))
    write(folder / "other.py", worker_source(1))
    host = start_host(folder, "--debounce", "1")  # both saves below make one batch
    host.wait_started("svc", 1)
    host.wait_started("other", 1)
    write(folder / "_deep.py", UNPARSABLE)
    write(folder / "other.py", worker_source(2))
    host.wait_started("other", 2)
    log = host.wait_log(UNPARSABLE_RAISES)
    assert "workers/_deep.py" in log and "internal error" not in log
    host.barrier()
    assert host.starts("svc") == [1]  # its helper did not load: it keeps running as it was
    assert host.stop() == 0


def test_status_answers_while_a_new_version_waits_at_import_and_the_slow_import_is_reported(
    folder, start_host, tmp_path
):
    write(folder / "svc.py", worker_source(1))
    write(folder / "other.py", worker_source(1))
    host = start_host(folder)
    host.wait_started("svc", 1)
    host.wait_started("other", 1)
    gate = tmp_path / "gate"
    write(folder / "svc.py", worker_source(2, top=gated("svc", gate)))
    host.wait_for(lambda: "svc importing 0 0" in host.events(), "the new version's import to begin")
    table = status_table(folder, tmp_path)
    assert "importing workers/svc.py" in table
    assert [line.split()[:2] for line in table.splitlines() if line.startswith("other")] == [["other", "running"]]
    host.wait_log("still importing workers/svc.py: 5 s")
    assert host.starts("svc") == [1]
    gate.touch()
    host.wait_started("svc", 2)
    assert "importing" not in status_table(folder, tmp_path)
    assert host.stop() == 0


def test_a_20_mb_module_does_not_block_status(folder, start_host, tmp_path):
    write(folder / "svc.py", worker_source(1))
    host = start_host(folder)
    host.wait_started("svc", 1)
    gate = tmp_path / "gate"
    blob = "BLOB = '" + "x" * 20_000_000 + "'\n"
    write(folder / "big.py", worker_source(1, top=blob + gated("big", gate)))
    host.wait_for(lambda: "big importing 0 0" in host.events(), "the big module's import to begin")
    table = status_table(folder, tmp_path)
    assert "importing workers/big.py" in table and "svc " in table
    gate.touch()
    host.wait_started("big", 1)
    assert host.stop() == 0


def test_ctrl_c_during_a_slow_import_at_start_stops_the_host_without_waiting_for_it(folder, start_host, tmp_path):
    write(folder / "slow.py", worker_source(1, top=gated("slow", tmp_path / "never")))
    host = start_host(folder, "--no-guard")
    host.wait_for(lambda: "slow importing 0 0" in host.events(), "the slow import to begin")
    assert host.stop(signal.SIGINT) == 1
    assert "still importing workers/slow.py" in host.log() and "exiting without it" in host.log()


def test_a_worker_module_cannot_take_over_the_hosts_signal_handlers(folder, start_host):
    top = "import signal\nsignal.signal(signal.SIGINT, lambda signum, frame: None)\n"
    source = worker_source(1, top=top)
    line = source.splitlines().index("signal.signal(signal.SIGINT, lambda signum, frame: None)") + 1
    write(folder / "grab.py", source)
    write(folder / "fine.py", worker_source(1))
    host = start_host(folder, "--no-guard")
    host.wait_started("fine", 1)
    log = host.wait_log("signal only works in main thread")
    assert f'grab.py", line {line}' in log
    assert host.stop(signal.SIGINT) == 0
    assert host.events("fine")[-1] == "fine stop 1 1"
