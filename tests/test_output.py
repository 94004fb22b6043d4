"""What a worker writes to sys.stdout and sys.stderr becomes its log lines, in every sink."""
from __future__ import annotations

import copy
import io
import json
import re
import threading

import pytest
from loguru import logger

from conftest import read_terminal, worker_source, write
from hotreload import ownership
from hotreload.output import LINE_MAX, Capture, lines_of

ASYNC_WORKER = '''
import asyncio, sys

async def run(ctx):
    async def task():
        print("from a task")
    await asyncio.create_task(task())
    await asyncio.get_running_loop().run_in_executor(None, lambda: print("from the loop's executor"))
    print("from async run", file=sys.stderr)
    await asyncio.sleep(3600)
'''


def test_lines_of_splits_at_newlines_and_keeps_the_rest():
    assert lines_of("", "a\nb\nc") == (["a", "b"], "c")
    assert lines_of("held ", "on\n") == (["held on"], "")
    assert lines_of("", "\n\n") == (["", ""], "")
    assert lines_of("", "dos\r\n\rcr\n") == (["dos", "\rcr"], "")
    assert lines_of("ab", "cdefg\nhijklmn", limit=3) == (["abc", "def", "g", "hij", "klm"], "n")


@pytest.fixture
def records():
    """Messages logged meanwhile, as ``worker LEVEL message``."""
    found: list[str] = []
    sink = logger.add(lambda m: found.append(m.rstrip("\n")), format="{extra[worker]} {level} {message}")
    yield found
    logger.remove(sink)


def in_worker_thread(action, worker="w"):
    thread = threading.Thread(target=action, name="unit")
    ownership.adopt(thread, worker)
    thread.start()
    thread.join(10)


def test_a_capture_logs_a_worker_thread_lines_and_passes_the_rest_through(records):
    real = io.StringIO()
    capture = Capture(real, "WARNING")
    capture.write("not a worker's\n")

    def worker():
        assert capture.write("one\ntw") == 6
        capture.write("o\nthree")
        capture.flush()
        capture.writelines(["four", "\n"])
        capture.write("x" * (LINE_MAX + 1) + "\n")
        capture.write("left")

    in_worker_thread(worker)
    assert real.getvalue() == "not a worker's\n"
    assert records == ["w WARNING one", "w WARNING two", "w WARNING three", "w WARNING four",
                       f"w WARNING {'x' * LINE_MAX}", "w WARNING x"]
    capture.log_ended()
    assert records[-1] == "w WARNING left"


def test_a_capture_answers_like_its_stream_and_refuses_what_it_refuses():
    real = io.StringIO()
    capture = Capture(real, "INFO")
    assert capture.isatty() is False and capture.encoding is real.encoding and capture.closed is False
    with pytest.raises(TypeError):
        capture.write(b"bytes")
    assert copy.copy(capture).stream is real
    capture.close()
    assert real.closed


def lines_in(text: str, worker: str) -> list[str]:
    """``LEVEL message`` of each line of ``worker`` in a text log."""
    found = re.findall(rf"^\d\d:\d\d:\d\d\.\d{{3}} \| (\w+) +\| {worker} +\| (.*)$", text, re.M)
    return [f"{level} {message}" for level, message in found]


def test_prints_from_run_its_threads_and_its_tasks_are_its_log_lines_in_every_sink(folder, tmp_path, start_host):
    body = """
    import sys, threading, concurrent.futures
    print("from run")
    print("to stderr", file=sys.stderr)
    thread = threading.Thread(target=lambda: print("from its thread"), name="helper")
    thread.start(); thread.join()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(print, "from its pool").result()
    """
    write(folder / "plain.py", worker_source(body=body))
    write(folder / "aio.py", ASYNC_WORKER)
    log_file = tmp_path / "host.log"
    host = start_host(folder, "--log-file", str(log_file))
    host.wait_log("from its pool")
    host.wait_log("from async run")
    # the file's sink writes each line a moment after the terminal's: wait for the file too
    host.wait_for(lambda: all(text in log_file.read_text() for text in ("from its pool", "from async run")),
                  "the last lines in the log file")
    for text in (host.log(), log_file.read_text()):
        assert {"INFO from run", "WARNING to stderr", "INFO from its thread", "INFO from its pool"} <= set(
            lines_in(text, "plain"))
        assert {"INFO from a task", "INFO from the loop's executor", "WARNING from async run"} <= set(
            lines_in(text, "aio"))
    assert host.stop() == 0


def test_a_traceback_and_a_warning_are_warning_lines_of_the_worker(folder, tmp_path, start_host):
    body = """
    import traceback, warnings
    try:
        1 / 0
    except ZeroDivisionError:
        traceback.print_exc()
    warnings.warn("careful")
    """
    write(folder / "tb.py", worker_source(body=body))
    host = start_host(folder)
    host.wait_log("UserWarning: careful")
    lines = lines_in(host.log(), "tb")
    assert "WARNING Traceback (most recent call last):" in lines
    assert "WARNING ZeroDivisionError: division by zero" in lines
    assert any(re.fullmatch(r"WARNING .*tb\.py:\d+: UserWarning: careful", line) for line in lines)
    assert host.stop() == 0


def test_a_partial_line_waits_for_its_newline_or_a_flush_or_the_end_of_the_run(folder, tmp_path, start_host):
    body = """
    import sys
    sys.stdout.write("held ")
    ctx.log.info("after the first part")
    sys.stdout.write("until the newline\\n")
    sys.stdout.write("flushed")
    sys.stdout.flush()
    print("unfinished", end="")
    ctx.log.info("before the end")
    """
    write(folder / "partial.py", worker_source(body=body))
    host = start_host(folder)
    host.wait_log("before the end")
    lines = lines_in(host.log(), "partial")
    assert lines.index("INFO after the first part") < lines.index("INFO held until the newline") < lines.index(
        "INFO flushed") < lines.index("INFO before the end")
    assert not any("unfinished" in line for line in lines)
    assert host.stop() == 0
    lines = lines_in(host.log(), "partial")
    assert lines.index("INFO unfinished") < lines.index("INFO stopped")


def test_json_lines_stay_json_whatever_a_worker_prints(folder, tmp_path, start_host):
    nasty = ['{"not": "closed"', "tab\tand \\ backslash", "<red>markup</red> {} {0} {name}", "\x1b[31mred\x1b[0m",
             "é 😀", "carriage\r"]
    body = f"""
    import sys
    for text in {nasty!r}:
        print(text)
        print(text, file=sys.stderr)
    sys.stdout.write("two\\nlines\\n")
    print("done")
    """
    write(folder / "nasty.py", worker_source(body=body))
    log_file = tmp_path / "host.log"
    host = start_host(folder, "--log-json", "--log-file", str(log_file))
    host.wait_log('"done"')
    for text in (host.log(), log_file.read_text()):
        records = [json.loads(line) for line in text.splitlines()]
        # The host's own lines about the worker ("running") may fall between its prints.
        mine = [(r["level"], r["message"]) for r in records
                if r["worker"] == "nasty" and r["message"] not in ("starting", "running")]
        for message in nasty:
            expected = message.rstrip("\r")
            assert ("INFO", expected) in mine and ("WARNING", expected) in mine
        assert mine.index(("INFO", "two")) + 1 == mine.index(("INFO", "lines"))
    assert host.stop() == 0


def test_writes_from_threads_of_nobody_are_unchanged(folder, tmp_path, start_host):
    """A thread started at import (by the host's importer thread, as a library's would be)
    is nobody's: what it writes goes to the real stream as it is."""
    top = """
    import sys, threading
    print("printed at import")
    def library():
        sys.stderr.write("a library writes this\\n")
    threading.Thread(target=library, name="library").start()
    """
    write(folder / "lib.py", worker_source(top=top))
    host = start_host(folder, "--log-json")
    host.wait_started("lib", 1)
    host.wait_log("a library writes this")
    assert "a library writes this\n" in host.log().splitlines(keepends=True)
    assert "printed at import" not in host.log()  # on stdout, as before
    assert host.stop() == 0


def test_stdout_still_answers_isatty_encoding_and_fileno(folder, tmp_path, start_host):
    body = """
    import sys
    report("streams", sys.stdout.isatty(), sys.stdout.encoding, sys.stdout.fileno(), sys.stderr.fileno(),
           sys.stderr.errors, sys.stdout.buffer.name)
    print("reported")
    """
    write(folder / "asks.py", worker_source(body=body))
    host = start_host(folder)
    host.wait_for(lambda: host.events("streams"), "the report")
    assert host.events("streams") == ["streams False utf-8 1 2 backslashreplace <stdout>"]
    assert host.stop() == 0
    read_terminal(folder, tmp_path, {}, "--color=never", until=("| reported",))
    assert host.events("streams")[1].startswith("streams True utf-8 1 2")  # on a pty


def test_a_worker_sink_or_handler_on_sys_stderr_writes_there_once_and_never_loops(folder, tmp_path, start_host):
    """A loguru sink or logging handler a worker adds on sys.stderr writes lines that are
    logged already (ctx.log, the logging bridge): they go to the real stderr as they are."""
    body = """
    import logging, sys
    from loguru import logger
    sink = logger.add(sys.stderr, format="MINE {message}", enqueue=True)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("STD %(message)s"))
    logging.getLogger("mine").addHandler(handler)
    try:
        ctx.log.info("through ctx.log")
        logging.getLogger("mine").warning("through logging")
        logger.complete()
    finally:
        logger.remove(sink)
        logging.getLogger("mine").removeHandler(handler)
    ctx.log.info("sinks gone")
    """
    write(folder / "sinks.py", worker_source(body=body))
    log_file = tmp_path / "host.log"
    host = start_host(folder, "--log-file", str(log_file))
    host.wait_log("sinks gone")
    host.barrier()
    log = host.log()
    raw = log.splitlines()
    assert raw.count("MINE through ctx.log") == 1 and raw.count("STD through logging") == 1
    assert not [line for line in lines_in(log, "sinks") if "MINE" in line or "STD" in line]
    in_file = log_file.read_text()
    assert in_file.count("through ctx.log") == 1 and in_file.count("through logging") == 1
    assert host.stop() == 0


def test_two_workers_printing_10000_lines_each_as_fast_as_they_can_lose_and_mix_none(folder, tmp_path, start_host):
    for name in ("fast_a", "fast_b"):
        body = f"""
        for number in range(10_000):
            print("{name}", number, "x" * 40)
        report("{name}", "printed")
        """
        write(folder / f"{name}.py", worker_source(body=body))
    log_file = tmp_path / "host.log"
    host = start_host(folder, "--log-file", str(log_file))
    host.wait_for(lambda: len(host.events()) >= 4 and all(
        [e for e in host.events(n) if e.endswith("printed")] for n in ("fast_a", "fast_b")), "both to print")
    host.barrier()
    for text in (log_file.read_text(), host.log()):
        for name in ("fast_a", "fast_b"):
            lines = lines_in(text, name)
            printed = [line for line in lines if line.startswith(f"INFO {name} ")]
            assert printed == [f"INFO {name} {number} {'x' * 40}" for number in range(10_000)]
    assert host.stop() == 0


def test_logs_from_a_worker_and_the_threads_it_started_are_tagged_with_its_name(folder, start_host):
    """Plain loguru and stdlib logging, from the worker's thread and from one it started:
    its lines, as its prints are. The host's own lines stay the host's."""
    body = """
    import logging, threading
    from loguru import logger

    def work():
        logger.info("loguru from its thread")
        logging.getLogger("lib").warning("logging from its thread")

    helper = threading.Thread(target=work)
    helper.start()
    helper.join()
    logger.info("loguru from run")
    logging.getLogger("lib").warning("logging from run")
    ctx.log.info("done")
    """
    write(folder / "tagged.py", worker_source(body=body))
    host = start_host(folder, "--log-json")
    host.wait_log('"done"')
    records = [json.loads(line) for line in host.log().splitlines()]
    by_message = {r["message"].split(": ", 1)[-1]: r["worker"] for r in records}
    for message in ("loguru from its thread", "logging from its thread", "loguru from run", "logging from run"):
        assert by_message.get(message) == "tagged", (message, by_message)
    assert any(r["worker"] == "host" and "worker(s) in" in r["message"] for r in records)
    assert host.stop() == 0
