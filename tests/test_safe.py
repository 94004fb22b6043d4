"""Text of user objects (str, repr, tracebacks) never raises: formatting is user code too."""
import logging
import queue

from hotreload import safe
from hotreload.log import _Intercept, format_error
from hotreload.records import Exited, Worker
from hotreload.worker import Execution
from hotreload.settings import Settings


class DbError(Exception):
    def __str__(self):
        return self.detail  # no such attribute

    def __repr__(self):
        return self.detail


class Evil(Exception):
    """Its __str__ raises a BaseException, which the traceback module does not catch."""

    def __str__(self):
        raise SystemExit(3)


def test_str_and_repr_that_raise_become_a_placeholder_naming_the_type():
    assert safe.text(DbError()) == "<DbError: str() failed>"
    assert safe.shown(DbError()) == "<DbError: repr() failed>"
    assert safe.text(Evil()) == "<Evil: str() failed>"
    assert safe.text(ValueError("fine")) == "fine" and safe.shown("x") == "'x'"


def test_one_line_is_the_type_and_first_line_or_the_placeholder():
    assert safe.one_line(ValueError("first\nsecond")) == "ValueError: first"
    assert safe.one_line(KeyError()) == "KeyError"
    assert safe.one_line(DbError()) == "<DbError: str() failed>"


def test_format_error_of_an_unprintable_exception_still_shows_where_it_was_raised():
    for cls in (DbError, Evil):
        try:
            raise cls()
        except cls as exc:
            text = format_error(exc)
        assert "test_safe.py" in text and cls.__name__ in text


def test_the_repr_of_exited_never_raises():
    worker = Worker("db", "db.py", None, Settings(), target=lambda ctx: None)
    assert repr(Exited(Execution(worker, None), DbError())) == "Exited(worker='db', error=<DbError: repr() failed>)"


def test_a_stdlib_record_whose_argument_cannot_be_formatted_does_not_raise_into_the_caller(capsys):
    record = logging.LogRecord("lib", logging.INFO, __file__, 1, "value %s", (DbError(),), None)
    handler = _Intercept()
    handler.emit(record)  # logging's own convention: report on stderr, never raise
    assert "Logging error" in capsys.readouterr().err


def test_sys_exit_with_a_code_whose_eq_raises_is_reported_as_the_workers_error():
    class Code:
        def __eq__(self, other):
            raise DbError()

        __hash__ = object.__hash__

    def run(ctx):
        raise SystemExit(Code())

    exits = queue.SimpleQueue()
    worker = Worker("w", "w.py", None, Settings(), target=run)
    Execution(worker, exits).start()
    exited = exits.get(timeout=10)
    assert isinstance(exited.error, SystemExit) and isinstance(exited.error.code, Code)


def test_one_line_is_cut_to_its_limit():
    assert safe.one_line(ValueError("x" * 10_000), limit=20) == "ValueError: xxxxxxx…"
    assert safe.one_line(ValueError("short"), limit=20) == "ValueError: short"
    assert len(safe.one_line(ValueError("x" * 10_000_000))) == safe.ONE_LINE_MAX
