"""The suite's own helpers (conftest.py): what they read is what a process finished writing."""
from conftest import Host


def test_a_line_still_being_written_is_not_read(tmp_path):
    """A write that straddles a page of the page cache becomes visible a page at a time: a
    test polling the report or the log can read the first part of a line, such as
    ``ticker start 2`` of ``ticker start 23 1``. Only lines ended by their newline count."""
    host = Host.__new__(Host)  # no process: only its files
    host.report, host.stderr_path = tmp_path / "report.txt", tmp_path / "stderr.txt"
    host.report.write_text("ticker start 1 1\nticker start 2")
    host.stderr_path.write_text("12:00:00.000 | INFO    | ticker     | running\n12:00:00.001 | INFO    | tic")
    assert host.starts("ticker") == [1]
    assert host.events() == ["ticker start 1 1"]
    assert host.log().count("ticker") == 1
