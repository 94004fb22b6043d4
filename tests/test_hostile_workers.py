"""What a worker does to the process it shares with the host must not end the host or its control."""
from __future__ import annotations

import json

from conftest import run_cli, wait_for, worker_source, write


def test_a_worker_that_closes_stderr_does_not_end_the_host(folder, start_host, tmp_path):
    """Every log line then fails to write to stderr; loguru reports only OSError quietly and
    let the ValueError of a closed file out of every logging call, the host loop's included."""
    log_file = tmp_path / "host.log"
    write(folder / "closer.py", worker_source(body="import sys; sys.stderr.close()"))
    write(folder / "other.py", worker_source())
    host = start_host(folder, "--no-guard", "--log-file", str(log_file))
    host.wait_started("closer", 1)
    host.wait_started("other", 1)
    write(folder / "other.py", worker_source(version=2))
    host.wait_started("other", 2)
    wait_for(lambda: "other      | reloaded (generation 1)" in log_file.read_text(), what="the reload in the log file")
    assert host.stop() == 0


def test_a_huge_error_message_is_cut_in_status_which_keeps_answering(folder, start_host, tmp_path):
    """LAST ERROR is one line for a table; the whole message of a worker that raised
    ValueError(f"bad: {payload}") went into every status reply, and a reply that cannot be
    read within the control socket's 1 s was cut off: status then failed for everyone."""
    write(folder / "big.py", worker_source(body='raise ValueError("x" * 5_000_000)', RESTART="never"))
    host = start_host(folder)
    host.wait_log("| big        | exited")
    result = run_cli("status", "-d", str(folder), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (worker,) = json.loads(result.stdout)["workers"]
    assert worker["last_error"].startswith("ValueError: xxx") and len(worker["last_error"]) <= 500
    assert host.stop() == 0


def test_logging_set_up_by_a_worker_keeps_records_flowing_into_the_log(folder, start_host, tmp_path):
    """``logging.basicConfig(force=True)`` or ``logging.config.dictConfig`` at a worker's
    module level replaces the root logger's handlers, hotreload's bridge among them: the
    records of every worker and library then left the host's log (the log file, the worker
    tags) silently. The bridge is added back, with a warning."""
    log_file = tmp_path / "host.log"
    top = """
    import logging, logging.config
    logging.config.dictConfig({"version": 1, "root": {"level": "INFO", "handlers": []}})
    """
    write(folder / "configures.py", worker_source(top=top, body='logging.getLogger("mine").warning("std record")'))
    host = start_host(folder, "--log-file", str(log_file))
    host.wait_started("configures", 1)
    wait_for(lambda: "| configures | mine: std record" in log_file.read_text(), what="the record in the log file")
    assert "replaced the root logger's handlers" in log_file.read_text()
    assert host.stop() == 0


def test_an_error_whose_str_blocks_does_not_freeze_the_host(folder, start_host, tmp_path):
    """Formatting a worker's exception runs its ``__str__``, user code that may be slow or
    block (a lazy lookup, a lock): done in the host loop, it froze the host — no status, no
    reload, no stop on SIGTERM. It is done in the worker's own thread."""
    top = """
    import time

    class Slow(Exception):
        def __str__(self):
            while True:
                time.sleep(0.05)
    """
    write(folder / "slow.py", worker_source(top=top, body="raise Slow()"))
    write(folder / "other.py", worker_source())
    host = start_host(folder)
    host.wait_started("slow", 1)
    host.wait_started("other", 1)
    write(folder / "other.py", worker_source(version=2))  # handled after the raise, in order
    host.wait_started("other", 2)
    result = run_cli("status", "-d", str(folder), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
