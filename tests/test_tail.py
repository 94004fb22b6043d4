"""How `hotreload logs` and `events` print a record or an event (pure)."""
from hotreload import tail

RECORD = {"time": "2024-05-01T23:01:07.608123+02:00", "level": "WARNING", "worker": "ticker",
          "message": "crashed after 1.0 s:\nTraceback (most recent call last):\nRuntimeError: no"}


def test_a_record_is_printed_as_run_prints_it():
    assert tail.log_line(RECORD) == (
        "23:01:07.608 | WARNING | ticker     | crashed after 1.0 s:\nTraceback (most recent call last):\n"
        "RuntimeError: no"
    )
    on_the_second = {**RECORD, "time": "2024-05-01T23:01:07+02:00"}  # isoformat leaves out zero microseconds
    assert tail.log_line(on_the_second).startswith("23:01:07.000 | ")


def test_colours_only_when_asked_levels_as_loguru_and_the_name_in_its_colour():
    assert "\033[" not in tail.log_line(RECORD)
    coloured = tail.log_line(RECORD, colour=True)
    assert coloured.startswith("\033[32m23:01:07.608\033[0m | \033[1;33mWARNING\033[0m | ")
    assert f"\033[{tail.name_colour('ticker')}mticker    \033[0m" in coloured
    assert coloured.endswith("\033[1;33m" + RECORD["message"] + "\033[0m")
    custom = tail.log_line({**RECORD, "level": "NOTICE"}, colour=True)  # a level of the user's: plain
    assert " | NOTICE  | " in custom


def test_an_event_in_one_line_with_paths_relative_to_here():
    event = {"time": "2024-05-01T23:01:07.608123+02:00", "event": "reload_failed", "worker": "ticker",
             "file": "/home/me/svc/workers/ticker.py", "line": 12, "error": "NameError: name 'x' is not defined"}
    assert tail.event_line(event, here="/home/me/svc") == (
        "23:01:07.608 | reload_failed | ticker     | workers/ticker.py:12: NameError: name 'x' is not defined"
    )
    helper = {"time": event["time"], "event": "reload", "worker": None, "file": "/w/_util.py",
              "generation": None, "ms": 2.4}
    assert tail.event_line(helper, colour=True).split(" | ")[2] == f"\033[{tail.name_colour('host')}mhost      \033[0m"


def test_a_gap_says_how_many_lines_were_dropped():
    assert tail.gap_line(120) == "[… 120 lines dropped here: this reader did not keep up …]"
