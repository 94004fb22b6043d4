"""The events of `hotreload events`: pure constructors, the schema they keep, one line each."""
import json
from pathlib import Path

from hotreload import events
from hotreload.loader import WorkerError

AT = 1_700_000_000.25  # a fixed wall-clock time: the events are data, not clock readings


def test_each_constructor_makes_an_event_of_the_documented_schema():
    made = [
        events.state_changed("ticker", "running", "starting", "generation 2"),
        events.reloaded("ticker", "/w/ticker.py", 3, 4.25),
        events.reloaded(None, "/w/_util.py", None, 1.5),
        events.reload_failed("ticker", "/w/ticker.py", 12, "SyntaxError: invalid syntax"),
        events.reload_failed(None, None, None, "it imports x (its file is gone)"),
        events.crashed("ticker", "RuntimeError", "RuntimeError: lost the database"),
        events.crashed("ticker", "KeyError", "KeyError: 'k'", "/w/ticker.py", 7),
        events.command("restart", ["alpha", "beta"]),
    ]
    for event in made:
        stamped = events.stamped(event, AT)
        kind = stamped["event"]
        assert set(stamped) == {"time", "event", "worker", *events.SCHEMA[kind]}, kind
        for field, types in events.SCHEMA[kind].items():
            assert isinstance(stamped[field], types), (kind, field)
        assert json.loads(json.dumps(stamped)) == stamped  # plain JSON data
    assert list(events.SCHEMA) == list(events.KINDS)


def test_the_time_is_iso_8601_with_the_offset_as_log_json_writes_it():
    stamped = events.stamped(events.command("stop", ["a"]), AT)
    assert list(stamped)[:2] == ["time", "event"]
    from datetime import datetime

    parsed = datetime.fromisoformat(stamped["time"])
    assert parsed.utcoffset() is not None and parsed.timestamp() == AT


def test_one_line_for_humans_per_kind():
    def line(event, here=None):
        return events.describe(events.stamped(event, AT), here)

    assert line(events.state_changed("t", "running", "starting", "")) == "starting -> running"
    assert line(events.state_changed("t", "backoff", "running", "crashed; restarting in 0.50 s")) == \
        "running -> backoff: crashed; restarting in 0.50 s"
    assert line(events.reloaded("t", "/w/t.py", 3, 4.25)) == "generation 3 in 4.2 ms (/w/t.py)"
    assert line(events.reloaded(None, "/w/_util.py", None, 1.5), here="/w") == "_util.py in 1.5 ms"
    assert line(events.reload_failed("t", "/w/t.py", 12, "SyntaxError: bad"), here="/w") == "t.py:12: SyntaxError: bad"
    assert line(events.reload_failed("t", "/w/t.py", None, "no run")) == "/w/t.py: no run"
    assert line(events.reload_failed("t", None, None, "it imports x")) == "it imports x"
    assert line(events.crashed("t", "KeyError", "KeyError: 'k'")) == "KeyError: 'k'"
    assert line(events.crashed("t", "KeyError", "KeyError: 'k'", "/w/t.py", 7), here="/w") == "t.py:7: KeyError: 'k'"
    assert line(events.command("restart", ["a", "b"])) == "restart a b"
    assert line(events.command("restart-host", [])) == "restart-host"


def test_an_event_of_a_kind_this_version_does_not_know_is_still_shown():
    newer = {"time": "2024-01-01T00:00:00+00:00", "event": "cpu_alarm", "worker": "w", "percent": 99}
    assert events.describe(newer) == "percent=99"


def error_raised_by(source: str, path: Path) -> BaseException:
    path.write_text(source)
    code = compile(source, str(path), "exec")
    try:
        exec(code, {})
    except BaseException as exc:  # noqa: B036 - the test's subject
        return exc
    raise AssertionError("it did not raise")


def test_where_an_error_happened_is_the_innermost_line_in_the_workers_folder(tmp_path):
    folder = tmp_path / "workers"
    folder.mkdir()
    exc = error_raised_by("import json\nx = 1\njson.loads('{')\n", folder / "w.py")
    assert events.where(exc, folder) == (str(folder / "w.py"), 3)  # not json's own frames
    outside = error_raised_by("raise KeyError('k')\n", tmp_path / "elsewhere.py")
    assert events.where(outside, folder) == (None, None)
    syntax = SyntaxError("invalid syntax", (str(folder / "s.py"), 7, 3, "x = ("))
    assert events.where(syntax, folder) == (str(folder / "s.py"), 7)
    contract = WorkerError(str(folder / "c.py"), 4, "run must be callable, not int")
    assert events.where(contract, folder) == (str(folder / "c.py"), 4)
    assert events.where(RuntimeError("no traceback"), folder) == (None, None)


def test_a_syntax_error_without_a_file_has_no_place():
    assert events.where(SyntaxError("bad"), Path("/w")) == (None, None)


def test_where_of_an_exception_whose_attributes_raise_is_unknown_not_an_error():
    class Hostile(Exception):
        @property
        def path(self):
            raise ValueError("no path")

    class HostileSyntax(SyntaxError):
        @property
        def filename(self):
            raise KeyboardInterrupt

    assert events.where(Hostile(), Path("/w")) == (None, None)
    assert events.where(HostileSyntax("x"), Path("/w")) == (None, None)
