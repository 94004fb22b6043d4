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

# Frames that say nothing about the user's code: the import machinery and our own loader.
_HIDDEN_FRAMES = ("<frozen importlib", "hotreload/loader.py", "hotreload/worker.py")


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


def _keep(frame: traceback.FrameSummary) -> bool:
    name = frame.filename
    return not name.startswith(_HIDDEN_FRAMES[0]) and not name.endswith(_HIDDEN_FRAMES[1:])


def format_error(exc: BaseException) -> str:
    """A traceback that points at the user's file and line, without the frames of the
    import machinery or of hotreload itself; chained exceptions are kept.

    For a SyntaxError the last lines show the file, line and a caret under the fault.
    """
    summary = traceback.TracebackException.from_exception(exc)
    todo, seen = [summary], set()
    while todo:
        te = todo.pop()
        if id(te) in seen:
            continue
        seen.add(id(te))
        te.stack = traceback.StackSummary.from_list([f for f in te.stack if _keep(f)])
        todo += [t for t in (te.__cause__, te.__context__) if t is not None]
    return "".join(summary.format()).rstrip()
