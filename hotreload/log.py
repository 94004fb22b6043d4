"""Logging: loguru on stderr (and optionally a rotated file), every line tagged with the
worker it concerns (``host`` for the host itself), and the standard ``logging`` module
routed into it so that records from workers and libraries are neither lost nor doubled."""
from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from typing import TYPE_CHECKING, Any, Callable

import loguru
from loguru import logger

from hotreload import output, ownership, safe
from hotreload.colours import RESET, colour_of, wanted
from hotreload.logfile import LogFile
from hotreload.records import SinksRemoved

if TYPE_CHECKING:
    from hotreload.journal import Journal

__all__ = [
    "THREAD_PREFIX", "bridge_removed", "configure", "fields", "format_error", "logger", "restore_bridge",
    "restore_sinks", "sinks_removed_by", "wake_on_removal",
]

THREAD_PREFIX = "worker:"  # a worker's thread is named THREAD_PREFIX + its name
TEXT_FORMAT = "{time:HH:mm:ss.SSS} | {level: <7} | {extra[worker]: <10} | {message}"
# On a terminal: the time green and the level as loguru colours it, as before, and the name
# in its own colour (``colours.colour_of``); the host's own lines in bold, in no colour.
COLOURED_FORMAT = (
    "<green>{{time:HH:mm:ss.SSS}}</green> | <level>{{level: <7}}</level> | "
    "{start}{{extra[worker]: <10}}" + RESET + " | <level>{{message}}</level>\n{{exception}}"
)
HOST_STYLE = "\033[1m"

# Frames of the machinery between the host and the user's code: hidden from tracebacks of
# the user's errors, so that the first frame shown is the user's file and line.
_MACHINERY = ("hotreload/loader.py", "hotreload/worker.py", "hotreload/core.py", "hotreload/importer.py",
              "importlib/__init__.py")


def _coloured_line(record: dict[str, Any]) -> str:
    worker = record["extra"].get("worker", "host")
    return COLOURED_FORMAT.format(start=HOST_STYLE if worker == "host" else colour_of(str(worker)))


def fields(record: dict[str, Any]) -> dict[str, Any]:
    """A record as ``--log-json`` writes it, and as the journal keeps it for ``hotreload logs``."""
    return {
        "time": record["time"].isoformat(),
        "level": record["level"].name,
        "worker": record["extra"].get("worker", "host"),
        "message": record["message"],
    }


def _json_line(record: dict[str, Any]) -> str:
    record["extra"]["json"] = json.dumps(fields(record))
    return "{extra[json]}\n"


def _nothing(record: dict[str, Any]) -> str:
    """The journal sink's format: it keeps ``fields(record)``, so loguru need format nothing."""
    return ""


def _tag_with_owner(record: Any) -> None:
    """A line logged with loguru's own ``logger`` (not ``ctx.log``) from a worker's thread, or
    from a thread it started, is that worker's: it is tagged so, as its prints are."""
    if record["extra"].get("worker") == "host":
        owner = ownership.current()
        if owner is not None:
            record["extra"]["worker"] = owner


class _Intercept(logging.Handler):
    """Hands stdlib ``logging`` records to loguru, tagged with the worker whose thread logged."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        worker = ownership.current() or "host"  # a worker's thread, or one it started
        try:  # the arguments are the caller's objects: their __str__ may raise
            message = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                message += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip()
        except Exception:  # logging's convention: report it on stderr, never raise into the caller
            self.handleError(record)
            return
        logger.bind(worker=worker).log(level, "{}: {}", record.name, message)


class _Stderr:
    """The host's stderr sink: a line it cannot write is dropped. A worker may close
    ``sys.stderr``, and loguru lets the ValueError of a closed file out of every logging
    call (it reports only an OSError quietly), the host loop's calls included."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def write(self, message: str) -> None:
        try:
            self.stream.write(message)
        except (OSError, ValueError):
            pass

    def flush(self) -> None:
        try:
            self.stream.flush()
        except (OSError, ValueError):
            pass

    def isatty(self) -> bool:  # loguru colours a terminal
        try:
            return bool(self.stream.isatty())
        except (OSError, ValueError):
            return False


class _Canary:
    """A sink that never writes, added beside the host's: loguru calls its ``stop()`` when it
    is removed (documented for sinks with a ``write`` method). No one else knows the host's
    handler ids, so what removes it is ``logger.remove()`` of every handler."""

    def __init__(self, on_removed: Callable[[], None]) -> None:
        self.on_removed: Callable[[], None] | None = on_removed  # None once the host removes it itself

    def write(self, message: str) -> None:  # never called: its filter drops every record
        pass

    def stop(self) -> None:
        on_removed, self.on_removed = self.on_removed, None
        if on_removed is not None:
            on_removed()


class _Sinks:
    """The host's sinks as ``configure`` set them up, to add again when they were removed."""

    def __init__(self) -> None:
        self.specs: list[tuple[Any, dict[str, Any]]] = []  # (sink, options) for logger.add
        self.canary: _Canary | None = None
        self.removed_by: str | None = None  # who removed them, until they are added again
        self.post: Callable[[Any], None] | None = None  # how to wake the host
        self.pid = os.getpid()

    def add(self) -> None:
        for sink, options in self.specs:
            logger.add(sink, **options)
        self.canary = _Canary(self._removed)
        # At the top level, so that it never lowers loguru's cut-off for cheap DEBUG calls.
        logger.add(self.canary, level="CRITICAL", filter=lambda record: False, format="{message}")
        self.removed_by = None

    def _removed(self) -> None:
        if os.getpid() != self.pid:  # a forked child removing its copies: not the host's
            return
        self.removed_by = _remover()
        if self.post is not None:
            self.post(SinksRemoved(self.removed_by))


_LOGURU = os.path.dirname(loguru.__file__)


def _remover() -> str:
    """``file:line`` of the first frame outside loguru and this module: who called remove()."""
    frame = sys._getframe(1)
    while frame is not None and (frame.f_code.co_filename.startswith(_LOGURU) or frame.f_code.co_filename == __file__):
        frame = frame.f_back
    return f"{frame.f_code.co_filename}:{frame.f_lineno}" if frame is not None else "(unknown)"


_sinks = _Sinks()


def sinks_removed_by() -> str | None:
    """Who removed the host's sinks (``file:line``), if they are gone; None if in place."""
    return _sinks.removed_by


def restore_sinks() -> None:
    """Add the host's sinks again, after ``sinks_removed_by`` said they are gone. The sinks
    the remover added stay: they are its own."""
    if _sinks.removed_by is not None:
        _sinks.add()


def bridge_removed() -> bool:
    """True when the root logger of ``logging`` lost the handler that routes its records
    here: a worker's ``logging.basicConfig(force=True)`` or ``logging.config.dictConfig``
    replaces the root's handlers. False before ``configure``."""
    return bool(_sinks.specs) and not any(isinstance(h, _Intercept) for h in logging.root.handlers)


def restore_bridge() -> None:
    """Add the ``logging`` bridge back beside the handlers the worker set up."""
    logging.root.addHandler(_Intercept())


def wake_on_removal(post: Callable[[Any], None] | None) -> None:
    """Have ``post(SinksRemoved(...))`` called (from any thread) when the sinks are removed."""
    _sinks.post = post


def configure(
    level: str = "INFO", as_json: bool = False, file: str | None = None, colour: str = "auto",
    journal: Journal | None = None,
) -> None:
    """Send every log line to stderr (and ``file``), as text or one JSON object a line, and
    keep it in ``journal`` for ``hotreload logs``. The text on stderr is coloured as
    ``colour`` says (``--color``: auto, always, never)."""
    if _sinks.canary is not None:
        _sinks.canary.on_removed = None  # removed here, by the host itself
    logger.remove()
    logger.configure(extra={"worker": "host"}, patcher=_tag_with_owner)
    plain: Any = _json_line if as_json else TEXT_FORMAT
    common = dict(level=level, backtrace=False, diagnose=False)
    stderr = _Stderr(output.real(sys.stderr))  # never the Capture: its log calls would come back
    coloured = not as_json and wanted(colour, stderr.isatty(), os.environ.get("NO_COLOR"))
    _sinks.specs = [(stderr, dict(colorize=coloured, format=_coloured_line if coloured else plain, **common))]
    if file:
        sink = LogFile(file)
        _sinks.specs.append((sink, dict(colorize=False, format=plain, filter=sink.keep_record, **common)))
    if journal is not None:
        keep = journal.add_record

        def to_journal(message: Any) -> None:
            keep(fields(message.record), message.record["time"].timestamp())

        _sinks.specs.append((to_journal, dict(common, format=_nothing, colorize=False)))
    _sinks.add()
    logging.basicConfig(handlers=[_Intercept()], level=0, force=True)
    # watchdog's DEBUG records describe every inotify event, our own imports included.
    logging.getLogger("watchdog").setLevel(logging.INFO)


def _user_frames(stack: traceback.StackSummary) -> traceback.StackSummary:
    """``stack`` without the import machinery, and without the host's own leading frames
    when the error comes from the user's code (an error of the host keeps them all)."""
    frames = [f for f in stack if not f.filename.startswith("<frozen importlib")]
    first_user = next((i for i, f in enumerate(frames) if not f.filename.endswith(_MACHINERY)), None)
    return traceback.StackSummary.from_list(frames[first_user:] if first_user is not None else frames)


def format_error(exc: BaseException) -> str:
    """A traceback that points at the user's file and line, without the frames of the
    import machinery or of hotreload before it; chained exceptions are kept.

    For a SyntaxError the last lines show the file, line and a caret under the fault.
    Never raises: the exception's ``__str__`` is user code, and if the traceback module
    itself cannot format it, its type, message and where it was raised are given.
    """
    try:
        return _formatted(exc)
    except BaseException:  # noqa: B036 - a __str__ raising SystemExit gets past traceback's own guard
        frames = traceback.extract_tb(exc.__traceback__) if exc.__traceback__ is not None else []
        where = "".join(_user_frames(frames).format())
        return f"Traceback (most recent call last):\n{where}{safe.one_line(exc)}"


def _formatted(exc: BaseException) -> str:
    if isinstance(exc, SyntaxError) and exc.filename:
        # The file, line and caret say it all; the frames would only be the compiler's.
        return "".join(traceback.format_exception_only(type(exc), exc)).rstrip()
    summary = traceback.TracebackException.from_exception(exc)
    todo, seen = [summary], set()
    while todo:
        te = todo.pop()
        if id(te) in seen:
            continue
        seen.add(id(te))
        te.stack = _user_frames(te.stack)
        todo += [t for t in (te.__cause__, te.__context__) if t is not None]
    return "".join(summary.format()).rstrip()
