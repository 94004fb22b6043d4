"""A program worker's COMMAND, ENV, CWD and STOP_SIGNAL, and the Procfile: pure parsing."""
import signal
from pathlib import Path

import pytest

from hotreload.guardian import GUARDIAN_ENV
from hotreload.program import MAX_LINE, Process, Program, _environment, _Lines, parse, read_procfile, unfit_settings
from hotreload.settings import Settings, SettingsError

FOLDER = Path("/srv/workers")


def test_no_command_is_no_program():
    assert parse({"run": print, "ENV": "a thread worker's own variable"}, FOLDER) is None


def test_a_command_string_is_split_like_a_shell_would_without_a_shell():
    program = parse({"COMMAND": "python -m http.server --bind '127.0.0.1' 8000 $HOME"}, FOLDER)
    assert program.argv == ("python", "-m", "http.server", "--bind", "127.0.0.1", "8000", "$HOME")


def test_the_defaults():
    program = parse({"COMMAND": ["sleep", "1"]}, FOLDER)
    assert program == Program(argv=("sleep", "1"), env=(), cwd=str(FOLDER), stop_signal=signal.SIGTERM)


def test_env_cwd_and_stop_signal_are_read():
    program = parse({"COMMAND": ("a", Path("b")), "ENV": {"B": "2", "A": "1"}, "CWD": "static/../site",
                     "STOP_SIGNAL": "SIGINT"}, FOLDER)
    assert program.argv == ("a", "b")
    assert program.env == (("A", "1"), ("B", "2"))
    assert program.cwd == "/srv/workers/site"
    assert program.stop_signal == signal.SIGINT


def test_an_absolute_cwd_is_kept():
    assert parse({"COMMAND": "x", "CWD": "/tmp"}, FOLDER).cwd == "/tmp"


@pytest.mark.parametrize("value", ["SIGHUP", "HUP", signal.SIGHUP, 1])
def test_a_stop_signal_by_name_or_number(value):
    assert parse({"COMMAND": "x", "STOP_SIGNAL": value}, FOLDER).stop_signal == signal.SIGHUP


def test_equal_settings_make_equal_programs_whatever_the_order_of_env():
    one = parse({"COMMAND": "a b", "ENV": {"X": "1", "Y": "2"}}, FOLDER)
    two = parse({"COMMAND": ["a", "b"], "ENV": {"Y": "2", "X": "1"}}, FOLDER)
    assert one == two
    assert one != parse({"COMMAND": "a b", "ENV": {"X": "1", "Y": "3"}}, FOLDER)


@pytest.mark.parametrize("namespace, name, message", [
    ({"COMMAND": ""}, "COMMAND", "must name a program to run"),
    ({"COMMAND": []}, "COMMAND", "must name a program to run"),
    ({"COMMAND": ["", "x"]}, "COMMAND", "must name a program to run"),
    ({"COMMAND": "echo 'unclosed"}, "COMMAND", "cannot be split like a shell would: No closing quotation"),
    ({"COMMAND": 5}, "COMMAND", "must be a list of strings or a string, not int 5"),
    ({"COMMAND": ["echo", 5]}, "COMMAND", "must be a list of strings or a string; item 1 is int 5"),
    ({"COMMAND": ["echo", "a\0b"]}, "COMMAND", "must not contain a NUL character"),
    ({"COMMAND": "x", "ENV": ["A=1"]}, "ENV", "must be a dict of strings, not list"),
    ({"COMMAND": "x", "ENV": {"PORT": 8000}}, "ENV['PORT']", "must be a string, not int 8000"),
    ({"COMMAND": "x", "ENV": {"A=B": "1"}}, "ENV", "a name must be a non-empty string without '=' or NUL"),
    ({"COMMAND": "x", "CWD": 3}, "CWD", "must be a folder's path (a string), not int 3"),
    ({"COMMAND": "x", "STOP_SIGNAL": "SIGNOPE"}, "STOP_SIGNAL", "must be a signal such as 'SIGTERM'"),
    ({"COMMAND": "x", "STOP_SIGNAL": 0}, "STOP_SIGNAL", "must be a signal such as 'SIGTERM'"),
    ({"COMMAND": "x", "STOP_SIGNAL": True}, "STOP_SIGNAL", "must be a signal such as 'SIGTERM'"),
])
def test_wrong_values_name_the_setting_and_what_is_allowed(namespace, name, message):
    with pytest.raises(SettingsError) as caught:
        parse(namespace, FOLDER)
    assert caught.value.name == name
    assert message in str(caught.value)


def test_the_procfile_format():
    text = "# the stack\n\nweb: python -m http.server 8000\nworker-2:   sh -c 'echo hi'\n"
    entries, problems = read_procfile(text, FOLDER)
    assert problems == []
    assert list(entries) == ["web", "worker-2"]
    assert entries["web"] == (3, parse({"COMMAND": "python -m http.server 8000"}, FOLDER))
    assert entries["worker-2"][1].argv == ("sh", "-c", "echo hi")


def test_procfile_lines_that_are_not_name_colon_command_are_reported_by_line():
    entries, problems = read_procfile("web: a\nno colon here\nbad name!: b\nweb: c\nq: 'x\nempty:\n", FOLDER)
    assert list(entries) == ["web"]
    assert entries["web"][1].argv == ("a",)
    assert [line for line, _ in problems] == [2, 3, 4, 5, 6]
    assert "not `name: command`" in problems[0][1]
    assert "listed on line 1 already" in problems[2][1]
    assert "No closing quotation" in problems[3][1]


def test_a_procfile_line_cannot_take_a_reserved_name():
    entries, problems = read_procfile("host: sleep 1\nweb: sleep 1\n", FOLDER, reserved=("host",))
    assert list(entries) == ["web"]
    assert problems == [(1, "'host' is the host's own name in logs, status and events: rename the line")]


def test_output_bytes_become_whole_lines_and_a_huge_line_comes_in_pieces():
    got = []
    lines = _Lines(got.append)
    assert lines.feed(b"one\r\ntw") and lines.feed(b"o\n\xff\n")
    assert got == ["one", "two", "\ufffd"]
    assert lines.feed(b"x" * (MAX_LINE + 10))
    assert got[3:] == ["x" * MAX_LINE]
    assert not lines.feed(b"")  # the end of the stream
    lines.close()
    assert got[4:] == ["x" * 10]


def test_the_environment_is_the_hosts_without_its_guardian_plus_env(monkeypatch):
    monkeypatch.setenv(GUARDIAN_ENV, "123")
    monkeypatch.setenv("KEEP", "kept")
    monkeypatch.delenv("PYTHONUNBUFFERED", raising=False)
    env = _environment(parse({"COMMAND": "x", "ENV": {"KEEP": "replaced", "NEW": "1"}}, FOLDER))
    assert GUARDIAN_ENV not in env and env["PYTHONUNBUFFERED"] == "1"
    assert env["KEEP"] == "replaced" and env["NEW"] == "1"
    monkeypatch.setenv("PYTHONUNBUFFERED", "")
    assert _environment(parse({"COMMAND": "x"}, FOLDER))["PYTHONUNBUFFERED"] == ""


def test_a_program_cannot_have_the_settings_that_need_a_ctx():
    assert unfit_settings(Settings()) == []
    assert unfit_settings(Settings(ready="tcp:8080")) == []
    assert [name for name, _ in unfit_settings(Settings(heartbeat=5.0, ready="signal"))] == ["HEARTBEAT", "READY"]


def test_a_process_has_every_attribute_core_reads_on_an_execution():
    import re
    import threading

    from loguru import logger

    from hotreload import core
    from hotreload.records import Worker

    read = set(re.findall(r"\bexecution\.([a-z]\w*)", Path(core.__file__).read_text()))
    assert {"stop_event", "thread", "started_at", "stop_deadline"} <= read  # the scan sees core's reads
    worker = Worker("web", "Procfile", logger.bind(worker="web"), Settings(), target=parse({"COMMAND": "x"}, FOLDER))
    process = Process(worker, inbox=None)
    missing = sorted(name for name in read if not hasattr(process, name))
    assert missing == [], f"core reads these on an execution, which a Process lacks: {missing}"
    assert isinstance(process.thread, threading.Thread) and not process.thread.is_alive()
