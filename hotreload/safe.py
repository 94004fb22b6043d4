"""The text of user objects — ``str``, ``repr``, the one-line form of an exception — that
cannot raise.

Formatting a worker's exception or a setting's value runs the user's ``__str__`` and
``__repr__``, which can raise like any user code (``return self.detail`` with no
``detail``). Every place that turns such an object into text for the log, ``status`` or an
error message goes through these, so that a bad ``__str__`` is reported as
``<DbError: str() failed>`` instead of ending the supervision of the worker.
"""
from __future__ import annotations

from typing import Any

__all__ = ["one_line", "shown", "text", "type_name"]

ONE_LINE_MAX = 500  # characters


def type_name(obj: Any) -> str:
    """The name of ``obj``'s type, or ``object`` if even that raises."""
    try:
        return type(obj).__name__
    except BaseException:  # noqa: B036 - a metaclass may do anything
        return "object"


def text(obj: Any) -> str:
    """``str(obj)``, or ``<TypeName: str() failed>`` if that raises (anything at all)."""
    try:
        return str.__str__(str(obj))  # a plain str, even if __str__ returned a subclass
    except BaseException:  # noqa: B036 - SystemExit or KeyboardInterrupt from __str__ too
        pass
    return f"<{type_name(obj)}: str() failed>"


def shown(obj: Any) -> str:
    """``repr(obj)``, or ``<TypeName: repr() failed>`` if that raises."""
    try:
        return str.__str__(repr(obj))  # a plain str, even if __repr__ returned a subclass
    except BaseException:  # noqa: B036
        pass
    return f"<{type_name(obj)}: repr() failed>"


def one_line(exc: BaseException, limit: int = ONE_LINE_MAX) -> str:
    """``TypeName: first line of the message`` (``TypeName`` alone without a message), cut
    to ``limit`` characters; the placeholder alone when the message cannot be had, as it
    names the type already. Cut, because a message may carry a payload of megabytes, and
    this line goes into every ``status`` reply."""
    message = text(exc)
    if message == f"<{type_name(exc)}: str() failed>":
        return message
    lines = message.strip().splitlines()
    line = f"{type_name(exc)}: {lines[0]}" if lines else type_name(exc)
    return line if len(line) <= limit else line[:limit - 1] + "…"
