"""Logging: loguru on stderr (and optionally a rotated file), every line tagged with the
worker it concerns (``host`` for the host itself), and the standard ``logging`` module
routed into it so that records from workers and libraries are neither lost nor doubled."""
from __future__ import annotations

import json
import logging
import sys
import threading
import traceback
from typing import Any

from loguru import logger

from hotreload.worker import THREAD_PREFIX

__all__ = ["configure", "format_error", "logger"]

TEXT_FORMAT = (
    "<green>{time:HH:mm:ss.SSS}</green> | <level>{level: <7}</level> | "
    "<cyan>{extra[worker]: <10}</cyan> | <level>{message}</level>"
)
FILE_ROTATION = "10 MB"
FILE_RETENTION = 5

# Frames of the machinery between the host and the user's code: hidden from tracebacks of
# the user's errors, so that the first frame shown is the user's file and line.
_MACHINERY = ("hotreload/loader.py", "hotreload/worker.py", "hotreload/core.py", "hotreload/importer.py",
              "importlib/__init__.py")


def _json_line(record: dict[str, Any]) -> str:
    line = {
        "time": record["time"].isoformat(),
        "level": record["level"].name,
        "worker": record["extra"].get("worker", "host"),
        "message": record["message"],
    }
    record["extra"]["json"] = json.dumps(line)
    return "{extra[json]}\n"


class _Intercept(logging.Handler):
    """Hands stdlib ``logging`` records to loguru, tagged with the worker whose thread logged."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        name = threading.current_thread().name
        worker = name[len(THREAD_PREFIX):] if name.startswith(THREAD_PREFIX) else "host"
        message = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            message += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip()
        logger.bind(worker=worker).log(level, "{}: {}", record.name, message)


def configure(level: str = "INFO", as_json: bool = False, file: str | None = None) -> None:
    """Send every log line to stderr (and ``file``), as coloured text or one JSON object a line."""
    logger.remove()
    logger.configure(extra={"worker": "host"})
    fmt: Any = _json_line if as_json else TEXT_FORMAT
    common = dict(level=level, format=fmt, backtrace=False, diagnose=False)
    logger.add(sys.stderr, colorize=None if not as_json else False, **common)
    if file:
        logger.add(file, colorize=False, rotation=FILE_ROTATION, retention=FILE_RETENTION, **common)
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
    """
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
