"""What a worker does to the process it shares with the host must not end the host."""
from __future__ import annotations

from conftest import wait_for, worker_source, write


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
